"""Self-defined targets (WTA + homeostasis) on Fashion-MNIST, by backprop and by equilibrium propagation
(Liu, Laydevant, Pontlevy, Querlioz & Grollier 2024).

A run trains one network (one job per run and seed) in one of three modes:

* ``unsupervised``: every training batch gets the self-defined target of the network's outputs
  (k-WTA of y − H, homeostasis H, reset each epoch; :mod:`neuroemu.rules.sdt`), learned by
  backprop (MSE to the target, ``trainer: bp``) or used as the nudging target of equilibrium
  propagation (``trainer: eqprop``). ``trainer: none`` leaves the network at its random
  initialisation (the authors' control). Test accuracy by two read-outs of the frozen outputs:
  direct association (each output unit labelled with a class on the training set: by the class it
  wins most, the most active unit deciding, and as the authors do, "av", by its highest mean response,
  the class whose units answer most on average deciding; :class:`neuroemu.rules.sdt.DirectAssociation`)
  and a linear classifier trained on the training set's outputs (minibatch Adam, or with
  ``readout.method: lbfgs`` a deterministic L-BFGS logistic regression whose L2 penalty is chosen on
  held-out training images). After every epoch, direct association on the first 10 000 training and
  2000 test images is logged (metrics.csv, a figure), to show when the outputs gain or lose class
  selectivity.
* ``supervised``: the same network with 10 outputs trained on the labels (one-hot targets). With
  10 class outputs the loss is softmax cross-entropy, as in the authors' semi-supervised code: a
  linear logit layer for backprop, EqProp's read-out outside the energy (Laborieux et al.).
* ``semi``: supervised pre-training on ``semi.labels`` labelled images (class-balanced), then
  ``semi.rounds`` times an unsupervised epoch on all images followed by a supervised epoch on the
  labelled ones; the outputs are the 10 classes.

Architectures: ``mlp`` (784 → hidden … → outputs, units clip(x, 0, 1)) or ``cnn`` (the authors'
32f5-128f3 network: padded convolutions, ReLU, 4×4 max-pooling with stride 2, 6272 features, dropout
``bp.input_dropout``, a linear output layer; backprop only; a fixed random fraction
``bp.prune_conv`` of the conv weights held at 0; with ``bp.train_conv`` false the conv layers keep
their initialisation and their features are computed once). Weights and biases start
U(±1/√fan_in), as in PyTorch: with larger weights most clip(x, 0, 1) outputs start at the floor of
the clip, where no gradient reaches them, and self-defined targets never revive them. ``bp.lr``
may give one rate per weight layer, and ``bp.lr_end`` a linear schedule (the authors' LinearLR).

Without a ``card`` the weights are float32 arrays of an exact float chip
(:meth:`neuroemu.chip.Hardware.exact`), changed as the float network would change them. On a chip
(``card``, EqProp only): every weight matrix sits on a crossbar tile of the card; each step reads
the weights from the tiles and the scheme applies the update EqProp wants (pulses on the devices);
the biases stay digital. A job interrupted mid-run resumes from its checkpoint at the last epoch end.

A run whose training loss is NaN/inf, or whose epoch-mean loss is above ``diverge_factor``
(default 5) × the loss of the first batch of that phase (supervised or unsupervised), stops there
and is marked diverged (:mod:`neuroemu.divergence`); the tables average the other seeds. Long jobs print
progress lines from inside (:class:`neuroemu.progress.JobProgress`).
"""

from __future__ import annotations

import math
import time
import zlib
from typing import Any, NamedTuple

import numpy as np

from ...config import Opt, validate
from ...errors import ConfigError
from ...progress import job_messages
from ...hardware.schemes import PulseLimitWarning
from ... import divergence, energy
from .report import DA_MODES, MONITOR, console_table, report, table, tidy  # noqa: F401
from ..common import (DATA, TILE_RUN, check_tile_run, each_run, header,  # noqa: F401
                      ops_summary, prepare, require_validation, tile_hardware)  # prepare: this study's

NAME = "sdt"
TRAINERS = ("bp", "eqprop", "none")
MODES = ("unsupervised", "supervised", "semi")

SDT = {
    "k": Opt("int", 5, 1, 100000, doc="winners of the k-WTA"),
    "gamma": Opt("float", 0.3, 0, 1e6, doc="homeostasis rate"),
    "smoothing": Opt("float", 0.0, 0, 0.999),
    "output_dropout": Opt("float", 0.0, 0, 0.999, doc="output units left out of each sample's competition"),
}
BP = {
    "optimizer": Opt("str", "sgd", choices=("sgd", "adam")),
    "lr": Opt("any", 0.008, doc="on the loss ½Σ_units (y − d)², batch mean; a number or one per weight layer "
                                "(the cnn's: conv1, conv2, output)"),
    "lr_end": Opt("float", 1.0, 1e-9, 1e3, doc="linear schedule: the lr factor reached after lr_decay_epochs"),
    "lr_decay_epochs": Opt("int", None, 1, 100000, nullable=True, doc="epochs of the linear schedule (default: epochs)"),
    "batch_size": Opt("int", 16, 1, 60000),
    "epochs": Opt("int", 10, 0, 10000),
    "input_dropout": Opt("float", 0.0, 0, 0.999),
    "pretrain_lr": Opt("any", None, nullable=True, doc="semi: pre-training learning rate(s); null: lr"),
    "prune_conv": Opt("float", 0.5, 0, 0.999, doc="cnn: fraction of conv weights held at 0"),
    "train_conv": Opt("bool", True, doc="cnn: false holds the conv layers at their (pruned) random initialisation"),
}
EQPROP = {
    "dt": Opt("float", 0.2, 1e-6, 1.0),
    "t_free": Opt("int", 40, 1, 100000),
    "t_nudge": Opt("int", 10, 1, 100000),
    "beta": Opt("float", 0.2, 1e-9, 1e3),
    "nudge": Opt("str", "random_sign", choices=("one_sided", "random_sign", "symmetric")),
    "lr": Opt("any", 0.03, doc="a learning rate or one per weight matrix"),
    "batch_size": Opt("int", 16, 1, 60000),
    "epochs": Opt("int", 10, 0, 10000),
    "pretrain_lr": Opt("any", None, nullable=True, doc="semi: pre-training learning rate(s); null: lr"),
    "optimizer": Opt("str", "sgd", choices=("sgd", "adam"),
                     doc="sgd: the contrastive update × lr; adam: Adam on the contrastive estimate, at lr"),
}

SEMI = {
    "labels": Opt("int", 600, 10, 60000, doc="labelled training images (class-balanced)"),
    "pretrain_epochs": Opt("int", 20, 0, 10000),
    "rounds": Opt("int", 10, 0, 10000, doc="unsupervised epoch + supervised epoch, this many times"),
    "batch_size": Opt("int", 32, 1, 60000, doc="batch of the supervised epochs on the labelled images"),
    "unsupervised_lr_factor": Opt("float", 1.0, 1e-9, 1e3, doc="rounds: lr factor of the unsupervised epochs"),
    "unsupervised_lr_start": Opt("float", None, 1e-12, 1e3, nullable=True,
                                 doc="rounds: the factor of round 1, ramped linearly to unsupervised_lr_factor "
                                     "over ramp_rounds (null: no ramp)"),
    "ramp_rounds": Opt("int", 1, 1, 100000, doc="rounds of the linear ramp of the unsupervised factor"),
}


def _check_l2(value: Any, where: str) -> list[float]:
    def ok(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0

    if ok(value):
        value = [value]
    if not isinstance(value, list) or not value or not all(ok(v) for v in value):
        raise ConfigError(f"{where}: expected an L2 penalty >= 0 or a non-empty list of them, got {value!r}")
    return [float(v) for v in value]


SCHEMA: dict[str, Any] = {
    **header(NAME, divergence.LOSS_FACTOR),
    "data": {
        **DATA,
        "validation": Opt("int", 0, 0, 59999, doc="training images held out of training and scored in place of the "
                          "test set (0 = none; the test set is then not loaded); the same images for every run and seed"),
        "validation_seed": Opt("int", 0, 0, doc="seed of the draw of the validation images"),
    },
    "sdt": SDT,
    "bp": BP,
    "eqprop": EQPROP,
    "semi": SEMI,
    "readout": {
        "method": Opt("str", "adam", choices=("adam", "lbfgs"),
                      doc="adam: minibatch Adam (epochs, batch_size, lr); lbfgs: full-batch L-BFGS logistic "
                          "regression (l2, validation, max_iter), deterministic"),
        "epochs": Opt("int", 10, 1, 10000),
        "batch_size": Opt("int", 128, 1, 60000),
        "lr": Opt("float", 1e-3, 1e-12, 1e3),
        "l2": Opt("any", [1e-4, 1e-3, 1e-2], check=_check_l2,
                  doc="lbfgs: an L2 penalty, or a list: the best on `validation` held-out training images"),
        "validation": Opt("int", 10000, 1, 1000000, doc="lbfgs: held-out training images that choose l2"),
        "max_iter": Opt("int", 500, 1, 100000, doc="lbfgs: iterations"),
    },
    "eval": {"batch_size": Opt("int", 1000, 1, 100000)},
    "runs": Opt("list", doc="runs: {trainer, arch, hidden, mode, card, scheme, ...; sdt/bp/eqprop/semi overrides}"),
}

RUN = {
    "name": Opt("str", None, nullable=True),
    "trainer": Opt("str", "bp", choices=TRAINERS),
    "arch": Opt("str", "mlp", choices=("mlp", "cnn")),
    "hidden": Opt("list", [2000], doc="mlp: layer sizes above the input; unsupervised: the last is the output"),
    "outputs": Opt("int", 3000, 1, 100000, doc="cnn, unsupervised: output units"),
    "probe": Opt("str", "outputs", choices=("outputs", "features"),
                 doc="cnn, trainer none: read out the outputs, or the linear read-out of the conv features themselves"),
    "mode": Opt("str", "unsupervised", choices=MODES),
    **{k: TILE_RUN[k] for k in ("scheme_params", "n_devices")},
    "card": Opt("str", None, nullable=True),
    "scheme": Opt("str", "ideal"),
    "w_max": Opt("float", 1.0, 1e-9, 1e9),
    "sdt": Opt("dict", {}),
    "bp": Opt("dict", {}),
    "eqprop": Opt("dict", {}),
    "semi": Opt("dict", {}),
    "seeds": Opt("list", None, nullable=True,
                 doc="this run's seeds, some of the config's (default: all of them): for a run of which one seed "
                     "takes hours"),
}


def check(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    from ...rules.eqprop import _rates
    from ...runner import check_run_names

    n_val, limit = cfg["data"]["validation"], cfg["data"]["train_limit"] or 60000
    if n_val >= limit:
        raise ConfigError(f"{where} data.validation: expected fewer than the {limit} training images, got {n_val}")
    runs = []
    for w, run in each_run(cfg, where, RUN):
        for sec, schema in (("sdt", SDT), ("bp", BP), ("eqprop", EQPROP), ("semi", SEMI)):
            run[sec] = validate({**cfg[sec], **run[sec]}, schema, f"{w}.{sec}")
        if not run["hidden"] or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                                        for h in run["hidden"]):
            raise ConfigError(f"{w}.hidden: expected a non-empty list of layer sizes >= 1, got {run['hidden']!r}")
        for sec, n in (("bp", _weight_layers(run)), ("eqprop", len(run["hidden"]) + (run["mode"] != "unsupervised"))):
            for key in ("lr", "pretrain_lr"):
                if run[sec][key] is None:
                    continue
                try:
                    rates = _rates(run[sec][key], n)
                except ConfigError as e:
                    raise ConfigError(f"{w}.{sec}.{key}{str(e).removeprefix('lr')}") from None
                if min(rates) <= 0:
                    raise ConfigError(f"{w}.{sec}.{key}: expected learning rates > 0, got {run[sec][key]!r}")
        if run["arch"] == "cnn" and run["trainer"] == "eqprop":
            raise ConfigError(f"{w}.arch: the cnn is trained by backprop only; expected trainer bp or none")
        if run["probe"] == "features" and (run["arch"], run["trainer"]) != ("cnn", "none"):
            raise ConfigError(f"{w}.probe: 'features' reads out the random conv features; expected arch cnn and "
                              f"trainer none, got {run['arch']} and {run['trainer']}")
        if run["trainer"] == "none" and run["mode"] != "unsupervised":
            raise ConfigError(f"{w}.trainer: 'none' (the random control) is read out as an unsupervised network; "
                              f"expected mode unsupervised, got {run['mode']!r}")
        n_out = _n_out(run)
        if run["mode"] == "unsupervised" and run["sdt"]["k"] > n_out:
            raise ConfigError(f"{w}.sdt.k: expected at most the {n_out} output units, got {run['sdt']['k']}")
        if run["mode"] == "semi" and run["sdt"]["k"] != 1:
            raise ConfigError(f"{w}.sdt.k: a semi-supervised run's outputs are the 10 classes; expected k 1, got "
                              f"{run['sdt']['k']}")
        if run["card"] is not None:
            if run["trainer"] != "eqprop":
                raise ConfigError(f"{w}.card: only EqProp runs are trained on a chip; got trainer {run['trainer']!r}")
            check_tile_run(run, w)
        if run["seeds"] is not None and (not run["seeds"] or not set(run["seeds"]) <= set(cfg["seeds"])):
            raise ConfigError(f"{w}.seeds: expected some of the config's seeds {cfg['seeds']}, got {run['seeds']!r}")
        if run["name"] is None:
            arch = "cnn" if run["arch"] == "cnn" else "784-" + "-".join(map(str, run["hidden"]))
            run["name"] = f"{run['trainer']}/{arch}/{run['mode']}" + \
                (f"/{run['card']}/{run['scheme']}" if run["card"] else "") + \
                ("/conv-features" if run["probe"] == "features" else "")
        runs.append(run)
    check_run_names(runs, where)
    cfg["runs"] = runs
    return cfg


def tune_trial(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """A config as a tuning trial (:mod:`neuroemu.tune`): scored on held-out training images, the
    test set is not loaded."""
    require_validation(cfg, where)
    return cfg


def tune_metric(cfg: dict[str, Any]) -> str:
    """What scores a trial: direct association ("av", the authors' measure) where every run is
    unsupervised, since the linear read-out of the untrained random network's outputs already scores
    high and would favour the rate at which a network changes least; else the accuracy."""
    return "direct_association_av" if all(r["mode"] == "unsupervised" for r in cfg["runs"]) else "val_acc"


#: How ``neuroemu tune`` searches this experiment (see :mod:`neuroemu.tune`): a trial is scored on
#: held-out training images (:func:`tune_metric`; higher is better), the rungs of successive halving
#: ration the validation seeds (every trial trains in full), and a run can have its own ``sdt``,
#: ``bp``, ``eqprop`` and ``semi`` values (so each run its own rates).
TUNE = {"metric": tune_metric, "mode": "max", "resource": "seeds", "sections": ("sdt", "bp", "eqprop", "semi"),
        "trial": tune_trial,
        "about": "trials are scored on training images held out of training (data.validation); the test set is not "
                 "loaded"}


def jobs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    from ..._version import __version__

    common = {k: cfg[k] for k in ("data", "readout", "eval", "diverge_factor")}
    # options at their defaults are left out of the jobs: results recorded before they existed stay valid
    if not common["data"]["validation"]:
        common["data"] = {k: v for k, v in common["data"].items() if k not in ("validation", "validation_seed")}
    # a job is one run on one seed: which seeds the run has is not part of it (nor of its hash)
    return [{"id": f"{run['name']}@seed{seed}", "run": {k: v for k, v in run.items() if k != "seeds"}, "seed": seed,
             "neuroemu": __version__, **common}
            for run in cfg["runs"] for seed in run["seeds"] or cfg["seeds"]]


# ---------------------------------------------------------------------------------------- networks
def _n_out(run: dict[str, Any]) -> int:
    if run["mode"] != "unsupervised":
        return 10
    return run["outputs"] if run["arch"] == "cnn" else run["hidden"][-1]


def _weight_layers(run: dict[str, Any]) -> int:
    if run["arch"] == "cnn":
        return 3
    return len(run["hidden"]) + (run["mode"] != "unsupervised")


def _network(run: dict[str, Any], rng: np.random.Generator, rng_mask: np.random.Generator):
    """(the network model, the gradient rule, the self-defined-target rule around it) of a run;
    the initial weights drawn from ``rng``."""
    from ...models.convnet import clip_mlp, sdt_cnn
    from ...models.eqprop import EqPropModel
    from ...rules.eqprop import EqProp, EqPropConfig, _rates
    from ...rules.sdt import SelfDefinedTarget, SelfDefinedTargets, TargetBackprop

    n_out, unsup = _n_out(run), run["mode"] == "unsupervised"
    if run["trainer"] == "eqprop":
        ep = run["eqprop"]
        cfg = EqPropConfig(dt=ep["dt"], t_free=ep["t_free"], t_nudge=ep["t_nudge"], beta=ep["beta"],
                           nudge=ep["nudge"], output="mse" if unsup else "xent")
        model = EqPropModel([784, *run["hidden"]] + ([] if unsup else [10]), config=cfg, rng=rng)
        inner = EqProp(_rates(ep["lr"], _weight_layers(run)), rng=rng, optimizer=ep["optimizer"])
    else:
        bp = run["bp"]
        if run["arch"] == "cnn":
            model = sdt_cnn(n_out, prune=bp["prune_conv"], train_conv=bp["train_conv"],
                            input_dropout=bp["input_dropout"], rng=rng)
        else:
            model = clip_mlp([784, *run["hidden"], *([] if unsup else [n_out])], logits=not unsup,
                             input_dropout=bp["input_dropout"], rng=rng)
        epochs = bp["epochs"]
        inner = TargetBackprop(_rates(bp["lr"], _weight_layers(run))[-len(model.trained):],
                               optimizer=bp["optimizer"], loss="mse" if unsup else "xent",
                               lr_end=1.0 if run["mode"] == "semi" else bp["lr_end"],
                               decay_epochs=bp["lr_decay_epochs"] or epochs)
    s = run["sdt"]
    target = SelfDefinedTarget(n_out, k=s["k"], gamma=s["gamma"], smoothing=s["smoothing"],
                               output_dropout=s["output_dropout"])
    return model, inner, SelfDefinedTargets(inner, target, rng=rng_mask)


def _hardware(run: dict[str, Any]):
    """A float chip, or the run's card and scheme (tiles read without periphery: only the devices'
    own read noise)."""
    from ...chip import Hardware
    from ...hardware.crossbar import Periphery

    if run["card"] is None:
        return Hardware.exact()
    return tile_hardware(run, periphery=Periphery.device_reads())


def outputs(chip, x: np.ndarray, batch: int) -> np.ndarray:
    """The network's outputs for all of x, ``batch`` samples at a time."""
    return np.concatenate([chip.forward(x[i:i + batch]) for i in range(0, len(x), batch)])


class _Phase(NamedTuple):
    """One epoch of a run's schedule: its ``kind`` (supervised: one-hot labels, or unsupervised:
    self-defined targets), the images (``idx`` into the training set, None: all), the batch size,
    the learning rates set before it (None: kept) and whether the test accuracy is taken after it."""

    kind: str
    idx: np.ndarray | None
    batch: int
    lrs: list[float] | None = None
    test: bool = False


class _Schedule:
    """A run's training for :class:`neuroemu.train.Trainer`: epoch e is a pass over the images of
    ``plan[e − 1]`` in a new order from ``rng`` (the last batch may be smaller), the learning rates
    of ``rule`` set first where the phase gives them. Every epoch of an unsupervised run logs
    direct association (``monitor``); a phase with ``test`` logs the accuracy on ``test``."""

    def __init__(self, x, y, plan: list[_Phase], *, rule, rng, monitor, test, eval_batch: int):
        self.x, self.y, self.plan, self.rule, self.rng = x, y, plan, rule, rng
        self.monitor, self.test, self.eval_batch = monitor, test, eval_batch
        self.epoch = 0
        self.losses: list[float] = []
        self.eval_s = 0.0

    def batches(self, epoch: int) -> "_Epoch":
        phase = self.plan[epoch - 1]
        if phase.lrs is not None:
            self.rule.lrs = list(phase.lrs)
        self.epoch, self.losses = epoch, []
        n = len(self.x) if phase.idx is None else len(phase.idx)
        return _Epoch(self, phase, self.rng.permutation(n), epoch)

    def observe(self, batch, measured) -> None:
        self.losses.append(measured["loss"])

    def evaluate(self, chip, stage: str, last=None) -> dict[str, float]:
        """After an epoch: direct association fitted on the first MONITOR[0] training images, scored
        on the first MONITOR[1] test images (unsupervised runs), or the test accuracy where the
        phase asks for it (not counted in the training time)."""
        if stage != "epoch":
            return {}
        t = time.perf_counter()
        scores = self.monitored(chip)
        if self.plan[self.epoch - 1].test:
            xte, yte = self.test
            scores["test_acc"] = float(np.mean(outputs(chip, xte, self.eval_batch).argmax(axis=1) == yte))
        self.eval_s += time.perf_counter() - t
        return scores

    def monitored(self, chip) -> dict[str, float]:
        if self.monitor is None:
            return {}
        (xtr, ytr), (xte, yte) = self.monitor
        n_tr, n_te = MONITOR
        return direct_association(outputs(chip, xtr[:n_tr], self.eval_batch), ytr[:n_tr],
                                  outputs(chip, xte[:n_te], self.eval_batch), yte[:n_te])

    _DATA = ("x", "y", "monitor", "test")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self._DATA}

    def restore(self, fresh: "_Schedule") -> None:
        for k in self._DATA:
            setattr(self, k, getattr(fresh, k))


class _Epoch:
    """The batches of one epoch (a sized iterable)."""

    def __init__(self, task: _Schedule, phase: _Phase, order: np.ndarray, epoch: int):
        self.task, self.phase, self.order, self.epoch = task, phase, order, epoch

    def __len__(self) -> int:
        return -(-len(self.order) // self.phase.batch)

    def __iter__(self):
        from ...rules.sdt import TargetBatch

        t, p, onehot = self.task, self.phase, np.eye(10, dtype=np.float32)
        x, y = (t.x, t.y) if p.idx is None else (t.x[p.idx], t.y[p.idx])
        for i in range(0, len(self.order), p.batch):
            idx = self.order[i:i + p.batch]
            yield TargetBatch(x[idx], onehot[y[idx]] if p.kind == "supervised" else None, self.epoch)


def unsupervised_factor(semi: dict[str, Any], round_: int) -> float:
    """The learning-rate factor of the unsupervised epoch of round ``round_`` (1, 2, ...): the
    section's ``unsupervised_lr_factor``, or, with ``unsupervised_lr_start``, a linear ramp from it
    (round 1) to the factor (round ``ramp_rounds`` and after)."""
    end, start = semi["unsupervised_lr_factor"], semi.get("unsupervised_lr_start")
    if start is None:
        return end
    n = semi["ramp_rounds"]
    return start + (end - start) * min(round_ - 1, n - 1) / max(n - 1, 1)


def _no_device(column: str) -> bool:
    return False


class _Watches:
    """The divergence watches of a run, one per kind of phase, each checking the epochs of its kind."""

    def __init__(self, watches: dict[str, divergence.Watch], plan: list[_Phase]):
        self.watches, self.kinds = watches, [p.kind for p in plan]

    def check(self, at: int, value: float, **kw: Any) -> None:
        self.watches[self.kinds[at - 1]].check(at, value, **kw)


# ---------------------------------------------------------------------------------------- one job
@job_messages(once=(PulseLimitWarning,))
def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (run, seed) and evaluate it. A run that diverges stops there and returns what it
    recorded, with ``diverged``."""
    from ...data import load_fashion_mnist
    from ...data.classification import validation_split
    from ...rules.eqprop import _rates
    from ...train import Protocol, Trainer, checkpoint_path
    from ..fasthebb import label_subset

    run, data, seed = job["run"], job["data"], job["seed"]
    xtr, ytr = load_fashion_mnist("train", data_dir=data["dir"], download=data["download"], limit=data["train_limit"])
    if data.get("validation"):  # held-out training images in place of the test set, which is not loaded
        keep, val = validation_split(len(xtr), data["validation"], data["validation_seed"])
        xtr, ytr, xte, yte = xtr[keep], ytr[keep], xtr[val], ytr[val]
    else:
        xte, yte = load_fashion_mnist("test", data_dir=data["dir"], download=data["download"], limit=data["test_limit"])
    if run["arch"] == "cnn":
        xtr, xte = xtr.reshape(-1, 1, 28, 28), xte.reshape(-1, 1, 28, 28)
    base = np.random.SeedSequence([seed, zlib.crc32(b"sdt")])
    rng_init, rng_order, rng_mask, rng_labels = (np.random.default_rng(s) for s in base.spawn(4))
    chip_rng = np.random.default_rng([seed, zlib.crc32(run["name"].encode())])
    trainer, mode = run["trainer"], run["mode"]
    model, inner, rule = _network(run, rng_init, rng_mask)
    chip = model.build(_hardware(run), chip_rng)
    sec = run["eqprop" if trainer == "eqprop" else "bp"]
    batch, epochs = sec["batch_size"], sec["epochs"]
    ev = job["eval"]["batch_size"]
    t0 = time.perf_counter()
    test_ops: dict[str, Any] = {}  # the test images' counts: their conv features (cnn) and outputs
    if hasattr(model, "features"):  # the cnn's fixed conv layers: their features, once
        xtr = model.features(chip, xtr, ev)
        before = chip.ops()
        xte = model.features(chip, xte, ev)
        test_ops = energy.diff(chip.ops(), before)
    base_lrs = list(inner.lrs)

    # the schedule: one phase of epochs, or (semi) pre-training, then rounds of one epoch each way
    plan = [_Phase(mode, None, batch)] * epochs if trainer != "none" and mode != "semi" else []
    if trainer != "none" and mode == "semi":
        sem = run["semi"]
        idx = label_subset(ytr, sem["labels"] / len(ytr), rng_labels)
        pre_lr = sec["pretrain_lr"]
        plan = [_Phase("supervised", idx, sem["batch_size"], base_lrs if pre_lr is None else _rates(pre_lr, len(base_lrs)))
                ] * sem["pretrain_epochs"]
        if plan:
            plan[-1] = plan[-1]._replace(test=True)
        else:  # the untrained network's
            pre_acc = float(np.mean(outputs(chip, xte, ev).argmax(axis=1) == yte))
        for r in range(sem["rounds"]):
            plan += [_Phase("unsupervised", None, batch, [lr * unsupervised_factor(sem, r + 1) for lr in base_lrs]),
                     _Phase("supervised", idx, sem["batch_size"], base_lrs, test=True)]
    curve: list[dict[str, Any]] = []
    res: dict[str, Any] = {"run": run["name"], "trainer": trainer, "mode": mode, "card": run["card"],
                           "scheme": run["scheme"] if run["card"] else None, "seed": seed}
    train_time = time.perf_counter() - t0
    if plan:
        task = _Schedule(xtr, ytr, plan, rule=inner, rng=rng_order, eval_batch=ev, test=(xte, yte),
                         monitor=((xtr, ytr), (xte, yte)) if mode == "unsupervised" else None)
        tr = Trainer(chip, rule, task, Protocol(epochs=len(plan), watch="loss"), job_id=job["id"],
                     observe_start=False, device=_no_device, device_stats=False,
                     checkpoint=checkpoint_path(job["id"]), key=job)
        tr.watch = _Watches({k: divergence.Watch(f"{k} loss", job["diverge_factor"])
                             for k in ("supervised", "unsupervised")}, plan)
        out = tr.run()
        chip, task = out.chip, out.task
        res["ops"] = ops_summary(out.ops)  # per update, over all the phases' epochs
        for row in out.rows:
            curve.append({"run": run["name"], "seed": seed, "epoch": row["epoch"], "phase": plan[row["epoch"] - 1].kind,
                          "loss": row["train_loss"],
                          **{k: row[k] for k in (*DA_MODES, "test_acc") if k in row}})
        if out.diverged is not None:
            if out.diverged["bound"] is not None:  # the epoch's mean loss: its row is kept
                curve.append({"run": run["name"], "seed": seed, "epoch": len(curve) + 1,
                              "phase": plan[len(curve)].kind, "loss": float(np.mean(task.losses)),
                              **task.monitored(chip)})
            res["diverged"] = out.diverged
        train_time = out.train_time_s - task.eval_s
    res.update({"train_time_s": train_time, "curve": curve})
    if trainer == "eqprop" and run["card"]:
        st = chip.stats()
        res["pulses_per_synapse"] = st["pulses"] / chip.n_synapses
        res["pulse_limit_hits"] = st["pulse_limit_hits"]
    if "diverged" in res:
        return res
    before = chip.ops()
    out_te = outputs(chip, xte, ev)
    res["ops"] = {**res.get("ops", {}),
                  **energy.per_sample(chip, energy.add(test_ops, energy.diff(chip.ops(), before)), len(xte))}
    if run["probe"] == "features":  # the random conv features themselves, read out linearly
        res.update(_linear(xtr, ytr, xte, yte, job["readout"], np.random.default_rng([seed, 1])))
        res["test_acc"] = res["linear_readout"]
    elif mode == "unsupervised":
        out_tr = outputs(chip, xtr, ev)
        res.update(direct_association(out_tr, ytr, out_te, yte))
        res.update(_linear(out_tr, ytr, out_te, yte, job["readout"], np.random.default_rng([seed, 1])))
        res["winners_used"] = int(np.unique(out_te.argmax(axis=1)).size)
        res["test_acc"] = res["linear_readout"]
    else:
        res["test_acc"] = float(np.mean(out_te.argmax(axis=1) == yte))
        if mode == "semi":
            res["pretrain_acc"] = curve[sem["pretrain_epochs"] - 1]["test_acc"] if sem["pretrain_epochs"] else pre_acc
    if data.get("validation"):
        res["val_acc"] = res.pop("test_acc")  # scored on the held-out training images, not the test set
    return res


def direct_association(out_tr, ytr, out_te, yte) -> dict[str, float]:
    """Test accuracies of direct association fitted on the training outputs, in each of
    :data:`DA_MODES` (ours: ``wins``; the authors' headline: ``av``)."""
    from ...rules.sdt import DirectAssociation

    return {k: DirectAssociation(10, mode=m).fit(out_tr, ytr).accuracy(out_te, yte) for k, m in DA_MODES.items()}


def _linear(ftr, ytr, fte, yte, opts, rng) -> dict[str, Any]:
    """The linear read-out on frozen outputs: {"linear_readout": test accuracy} (+ the chosen "readout_l2")."""
    from ...nn import Linear, Sequential, accuracy, linear_probe, standardise, train_classifier

    if opts["method"] == "lbfgs":
        res = linear_probe(ftr, ytr, fte, yte, l2=opts["l2"], validation=opts["validation"],
                           max_iter=opts["max_iter"], rng=rng)
        return {"linear_readout": res["test_acc"], "readout_l2": res["l2"]}
    xtr, xte = standardise(ftr, fte, dtype=np.float32)
    model = Sequential(Linear(ftr.shape[1], 10, rng=rng))
    train_classifier(model, xtr, ytr, epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"], rng=rng)
    return {"linear_readout": accuracy(model, xte, yte)}
