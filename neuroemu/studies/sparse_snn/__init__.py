"""Sparse spiking gradient descent on latency-coded Fashion-MNIST (Perez-Nieves & Goodman 2021).

A 784-N-N-10 spiking network (LIF hidden layers with reset by subtraction, leaky read-out, logits =
maximum over time) is trained by surrogate-gradient BPTT with the dense backward or the sparse one
(:mod:`neuroemu.rules.sparse`: only neurons with |V − θ| < B_th carry gradient). One job per
(run, seed); a run picks the backward, N and B_th. Every job records test accuracy per epoch, the
active fraction, the backward time and the memory the backward keeps per layer, and whether the
hidden layers died.

After training, each job saves its weights (``runs/<id>.npz``) and deploys the network on emulated
hardware:

* ``chip``: the weights programmed once on tiles of ``chip.card`` (default the PCM inference
  statistics of Joshi et al. 2020, with global drift compensation), test accuracy measured again
  after each ``chip.delays``;
* ``neurons``: the LIF layers and the read-out run on the analog neurons of ``neurons.card`` (an
  ``analog_chip`` card, default BrainScaleS-2), uncalibrated and calibrated, and on the ideal model
  of the calibrated chip. The mapping: the chip's τ_mem is the network's (10 µs of chip time for
  10 ms), its synaptic input is current-based with the shortest τ_syn the cells calibrate well
  (``neurons.targets``), so every input current is scaled by 1 / (peak of the chip's
  post-synaptic potential) — an input then moves the membrane as far as in the network; the chip
  resets to the leak rather than by subtraction; the read-out is scaled to stay inside the
  membrane's rails (fixed from training images on the ideal chip model).

A seed whose training loss is NaN/inf, or whose epoch-mean loss is above ``diverge_factor``
(default 5) × the loss of its first batch, stops there, skips the hardware evaluations and is
marked diverged (:mod:`neuroemu.divergence`); the tables average the other seeds. Long jobs print progress
lines from inside (:class:`neuroemu.progress.JobProgress`).
"""

from __future__ import annotations

import functools
import time
import zlib
from typing import Any

import numpy as np

from ...chip import Hardware
from ...config import Opt, check_delays
from ...data.classification import ClassificationTask, accuracy
from ...rules.sparse import dead_layers
from ...train import Protocol
from ...errors import ConfigError
from ...plot import delay_key, delay_label
from ...runner import ARRAYS
from ... import divergence, energy
from .. import tables
from ..common import (DATA, each_run, energy_section, header, ops_summary,  # noqa: F401
                      prepare, start_report, wall_time)  # prepare: this study's

NAME = "sparse_snn"

SCHEMA: dict[str, Any] = {
    **header(NAME, divergence.LOSS_FACTOR),
    "data": DATA,
    "encoding": {
        "t_steps": Opt("int", 100, 1, 100000),
        "tau_eff": Opt("float", 20.0, 1e-9, 1e9),
        "theta": Opt("float", 0.2, 0, 1),
    },
    "model": {
        "hidden": Opt("int", 200, 1, 100000, doc="neurons per hidden layer (two layers)"),
        "tau_mem": Opt("float", 10e-3, 1e-6, 10.0),
        "tau_out": Opt("float", 10e-3, 1e-6, 10.0),
        "surrogate_scale": Opt("float", 100.0, 1e-9, 1e9),
        "backward": Opt("str", "sparse", choices=("dense", "sparse")),
        "b_th": Opt("float", 0.2, 0, 1e9, doc="active band |V − θ| < b_th of the sparse backward"),
        "dead_guard": Opt("bool", False, doc="stop a run whose hidden layer falls silent"),
    },
    "train": {
        "epochs": Opt("int", 10, 1, 10000),
        "batch_size": Opt("int", 256, 1, 60000),
        "lr": Opt("float", 2e-4, 1e-12, 1e3, doc="Adam learning rate"),
        "lr_schedule": Opt("str", "constant", choices=("constant", "cosine"),
                           doc="cosine: lr·½(1 + cos(π k / K)) over the K training steps"),
    },
    "chip": {
        "card": Opt("str", "pcm_joshi2020", doc="card the trained weights are programmed onto"),
        "delays": Opt("list", [1.0, 3600.0, 86400.0, 2592000.0], check=check_delays, doc="seconds after programming"),
        "drift_compensation": Opt("bool", True),
    },
    "neurons": {
        "card": Opt("str", "brainscales2", nullable=True, doc="analog_chip card to run the neurons on (null: skip)"),
        "targets": Opt("dict", {"tau_syn": 5e-6, "refractory": 0.0},
                       doc="overrides of the card's calibration targets (seconds, LSB)"),
    },
    "eval": {"batch_size": Opt("int", 500, 1, 100000),
             "chip_images": Opt("int", 2000, 1, 10000, doc="test images evaluated on emulated hardware")},
    "runs": Opt("list", [{"backward": "dense"}, {"backward": "sparse"}],
                doc="runs: overrides of model fields, e.g. {backward: sparse, hidden: 100}"),
}

RUN = {
    "name": Opt("str", None, nullable=True),
    "backward": Opt("str", None, nullable=True, choices=("dense", "sparse")),
    "hidden": Opt("int", None, 1, 100000, nullable=True),
    "b_th": Opt("float", None, 0, 1e9, nullable=True),
    "dead_guard": Opt("bool", None, nullable=True),
}


#: What ``check`` derives into every run (the merged model), left out of the written config.yaml.
DERIVED_RUN_KEYS = ("model",)


def check(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    from ...hardware.cards import load_card
    from ...errors import NeuroemuError
    from ...runner import check_run_names

    try:
        cfg["chip"]["card_data"] = load_card(cfg["chip"]["card"]).to_dict()  # part of the job: an edited card reruns
    except NeuroemuError as exc:
        raise ConfigError(f"{where} chip.card: {exc}") from None
    if cfg["neurons"]["card"] is not None:
        from ...hardware.substrate import chip_targets

        try:
            neurons = load_card(cfg["neurons"]["card"])
            chip_targets(neurons, cfg["neurons"]["targets"])
        except NeuroemuError as exc:
            raise ConfigError(f"{where} neurons: {exc}") from None
        cfg["neurons"]["card_data"] = neurons.to_dict()
    runs = []
    for w, run in each_run(cfg, where, RUN):
        model = {**cfg["model"], **{k: v for k, v in run.items() if k != "name" and v is not None}}
        run["model"] = model
        if run["name"] is None:
            run["name"] = f"{model['backward']}/N{model['hidden']}" + \
                (f"/b_th{model['b_th']:g}" if model["backward"] == "sparse" else "")
        runs.append(run)
    check_run_names(runs, where)
    cfg["runs"] = runs
    return cfg



def jobs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    from ..._version import __version__

    common = {k: cfg[k] for k in ("data", "encoding", "train", "chip", "neurons", "eval", "diverge_factor")}
    return [{"id": f"{run['name']}@seed{seed}", "run": run, "seed": seed, "neuroemu": __version__, **common}
            for run in cfg["runs"] for seed in cfg["seeds"]]


# ---------------------------------------------------------------------------------------- one job
def _encoder(enc: dict[str, Any]):
    from ...data.encoders import latency_encode

    return functools.partial(latency_encode, t_steps=enc["t_steps"], tau_eff=enc["tau_eff"], theta=enc["theta"])


class LearningRate:
    """The learning rate of ``train`` at each of ``steps`` training steps (``train.lr_schedule``)."""

    def __init__(self, train: dict[str, Any], steps: int):
        self.lr, self.schedule, self.steps = train["lr"], train["lr_schedule"], steps

    def __call__(self, step: int) -> float:
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + np.cos(np.pi * step / self.steps))
        return self.lr


def learning_rate(train: dict[str, Any], step: int, steps: int) -> float:
    """The learning rate at training step ``step`` of ``steps`` (``train.lr_schedule``)."""
    return LearningRate(train, steps)(step)


class _Task(ClassificationTask):
    """Fashion-MNIST batches; at every epoch test accuracy, whether a hidden layer died (on the first
    training-batch-sized slice of the test set) and the per-layer statistics of the epoch's
    batches. With ``stop_when_dead`` the run ends at the first epoch with a dead layer."""

    def __init__(self, *args, dead_images: int, stop_when_dead: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.dead_images, self.stop_when_dead = dead_images, stop_when_dead
        self.stop = False
        self.epoch = 0
        self.agg: dict[str, list] = {}

    def observe(self, batch, measured: dict[str, Any]) -> None:
        stats = measured["stats"]
        for k, name in (("active", "active_fraction"), ("bwd", "backward_s"), ("bytes", "backward_bytes"),
                        ("counts", "mean_count")):
            self.agg.setdefault(k, []).append(stats[name])

    def evaluate(self, chip, stage: str, last=None) -> dict[str, Any]:
        if stage != "epoch":
            return {}
        self.epoch += 1
        x, y = self.held_out["test"]
        dead = dead_layers(chip.model.run(chip, x[:self.dead_images])[1], chip.model.net.dead_rate)
        row = {"test_acc": accuracy(chip, x, y, self.eval_batch), "dead": bool(dead)}
        agg, self.agg = self.agg, {}
        for k, name in enumerate(("hidden1", "hidden2")):
            row[f"{name}_active_fraction"] = float(np.mean([a[k] for a in agg["active"]]))
            row[f"{name}_backward_ms"] = float(np.median([b[k] for b in agg["bwd"]]) * 1e3)
            row[f"{name}_backward_MB"] = float(np.max([b[k] for b in agg["bytes"]]) / 1e6)
            row[f"{name}_spikes_per_neuron"] = float(np.mean([c[k] for c in agg["counts"]]))
        if dead and self.stop_when_dead:  # the trainer ends after this epoch
            self.stop = True
        return row


def _no_device(column: str) -> bool:
    return False


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (run, seed), then evaluate it on the chip after each delay. A seed that diverges
    stops there and returns what it recorded, with ``diverged``."""
    from ...data import load_fashion_mnist
    from ...models.snn import SNN
    from ...rules.sparse import SparseBPTT, SparseSNN
    from ...train import Trainer, checkpoint_path

    data, enc, tr, m = job["data"], job["encoding"], job["train"], job["run"]["model"]
    seed = job["seed"]
    # the same initial network and batch order for every run of a seed: dense and sparse start alike
    rng_init, rng_data = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, zlib.crc32(b"ssgd")]).spawn(2))
    xtr, ytr = load_fashion_mnist("train", data_dir=data["dir"], download=data["download"], limit=data["train_limit"])
    xte, yte = load_fashion_mnist("test", data_dir=data["dir"], download=data["download"], limit=data["test_limit"])
    n = m["hidden"]
    net = SparseSNN((784, n, n, 10), tau_mem=m["tau_mem"], tau_out=m["tau_out"], b_th=m["b_th"],
                    backward=m["backward"], surrogate_scale=m["surrogate_scale"], rng=rng_init)
    chip = SNN(net, encode=_encoder(enc)).build(Hardware.exact(), rng=0)
    bs = tr["batch_size"]
    protocol = Protocol(epochs=tr["epochs"], diverge_factor=job["diverge_factor"])
    task = _Task(xtr, ytr, batch_size=bs, rng=rng_data, held_out={"test": (xte, yte)},
                 eval_batch=job["eval"]["batch_size"], dead_images=bs, stop_when_dead=m["dead_guard"])
    rule = SparseBPTT(LearningRate(tr, tr["epochs"] * (len(xtr) // bs)), backward=m["backward"])
    trainer = Trainer(chip, rule, task, protocol, job_id=job["id"], observe_start=False, device=_no_device,
                      device_stats=False, checkpoint=checkpoint_path(job["id"]), key=job)
    result = trainer.run()
    metrics = [{"run": job["run"]["name"], "seed": seed, **r} for r in result.rows]
    dead_at = next((r["epoch"] for r in metrics if r["dead"]), None)
    head = {"run": job["run"]["name"], "backward": m["backward"], "hidden": n, "b_th": m["b_th"], "seed": seed}
    if result.diverged is not None:
        return {**head, "diverged": {**result.diverged, "metric": "train_loss"}, "dead_at_epoch": dead_at,
                "train_time_s": result.train_time_s, "metrics": metrics, "ops": ops_summary(result.ops)}
    chip = result.chip
    n_eval = job["eval"]["chip_images"]
    xc, yc = xte[:n_eval], yte[:n_eval]
    deployed: dict[str, Any] = {}  # per inference on each chip the network is deployed on
    on_chip = _on_chip(chip, job, xc, yc, deployed)
    neurons = _on_neurons(chip, job, xc, yc, xtr[:job["eval"]["batch_size"]], deployed)
    return {**head, "test_acc": metrics[-1]["test_acc"], "dead_at_epoch": dead_at,
            "train_time_s": result.train_time_s, "metrics": metrics, "chip": on_chip, "neurons": neurons,
            ARRAYS: {f"w{k}": w for k, w in enumerate(chip.model.weights(chip))},
            "ops": ops_summary(result.ops), "ops_deployed": deployed}


def _on_chip(chip, job, xte, yte, ops: dict[str, Any]) -> dict[str, float]:
    """Program the trained weights once on the chip card and measure test accuracy after each delay;
    ``ops["chip"]``: the inferences of the first (at 0 s)."""
    from ...hardware.crossbar import Periphery
    from ...models.snn import with_model

    c = job["chip"]
    base = Hardware(card=c["card"], periphery=Periphery.device_reads())
    on = chip.deploy(lambda w: base.replace(w_max=max(float(np.abs(w).max()), 1e-12)),
                     np.random.default_rng([job["seed"], 7]), compensate_drift=c["drift_compensation"])
    on = with_model(on, chip.model.replace(spike_reads=True))
    out, elapsed = {}, 0.0
    for d in [0.0, *c["delays"]]:
        on.advance(d - elapsed)
        elapsed = d
        if c["drift_compensation"]:
            on.compensate_drift()
        before = on.ops()
        out[delay_key(d)] = accuracy(on, xte, yte, job["eval"]["batch_size"])
        ops.setdefault("chip", energy.per_sample(on, energy.diff(on.ops(), before), len(xte)))
    return out


#: Neuron substrates of the ``neurons`` evaluation, in report order.
SUBSTRATE_RUNS = ("network", "chip_model", "analog", "analog_calibrated")
SUBSTRATE_LABELS = {"network": "network's own LIF", "chip_model": "ideal chip neurons",
                    "analog": "analog, uncalibrated", "analog_calibrated": "analog, calibrated"}


def psp_peak(neurons) -> float:
    """Peak membrane deflection (normalised) of the ideal substrate ``neurons`` after one unit input
    current at one step: the factor by which its synaptic filter amplifies an instantaneous input."""
    x = np.zeros((200, 1, neurons.n))
    x[0] = 1.0
    return float(neurons.run(x, spiking=False)[1].max())


def _on_neurons(chip, job, xte, yte, xcal, ops: dict[str, Any]) -> dict[str, Any] | None:
    """Test accuracy with the neuron layers on the chip's neurons (weights ideal); see the module doc.
    ``ops[substrate]``: the inferences on each of the chip's substrates."""
    from ...hardware.cards import load_card
    from ...hardware.factory import make_substrate
    from ...hardware.substrate import chip_targets
    from ...models.snn import with_model

    c = job["neurons"]
    if c["card"] is None:
        return None
    card, seed, batch = load_card(c["card"]), job["seed"], job["eval"]["batch_size"]
    model = chip.model
    sizes = [layer.shape[0] for layer in chip]
    ideal = [make_substrate("ideal", k, card, targets=c["targets"]) for k in sizes]
    scale = [1.0 / psp_peak(s) for s in ideal]
    # the read-out's largest value on training images (ideal chip model) at 80 % of the upper rail
    top = with_model(chip, model.replace(neurons=ideal, gains=scale)).forward(xcal)
    t = chip_targets(card, c["targets"])
    rail = (card.params["v_max"] - t["v_leak"]) / (t["v_th"] - t["v_leak"])
    scale[-1] *= 0.8 * rail / max(float(np.quantile(top.max(axis=1), 0.99)), 1e-12)
    out: dict[str, Any] = {"psp_peak": 1.0 / float(np.mean(scale[:-1])), "readout_scale": scale[-1] * psp_peak(ideal[-1])}
    t0 = time.perf_counter()
    out["network"] = accuracy(chip, xte, yte, batch)
    for name in SUBSTRATE_RUNS[1:]:
        if name == "chip_model":
            subs = ideal
        else:  # the same chip (mismatch from the seed and layer) uncalibrated and calibrated
            subs = [make_substrate("analog", k, card, rng=np.random.default_rng([seed, 100 + layer]),
                                   calibrate=name == "analog_calibrated", targets=c["targets"],
                                   calibration_rng=np.random.default_rng([seed, 200 + layer]))
                    for layer, k in enumerate(sizes)]
        noise = np.random.default_rng([seed, 300, zlib.crc32(name.encode())])
        on = with_model(chip, model.replace(neurons=subs, gains=scale, noise=noise))
        before = on.ops()
        out[name] = accuracy(on, xte, yte, batch)
        ops[name] = energy.per_sample(on, energy.diff(on.ops(), before), len(xte))
    out["wall_s"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]], delays: list[float]) -> list[dict[str, Any]]:
    """One row per run: means (and the accuracy's std) over the seeds that did not diverge; ``dead``
    counts the seeds whose hidden layer fell silent, ``diverged`` those that diverged."""
    rows = []
    for name, rs, ok, seeds in tables.run_groups(results):
        row = {"run": name, "backward": rs[0]["backward"], "hidden": rs[0]["hidden"], **seeds,
               "dead": sum(r["dead_at_epoch"] is not None for r in rs)}
        if ok:
            row["test_acc"], row["test_acc_std"] = tables.mean_std([r["test_acc"] for r in ok], 100)
            row["train_time_s"] = float(np.mean([r["train_time_s"] for r in ok]))
            last = [r["metrics"][-1] for r in ok]
            for k in ("hidden1_active_fraction", "hidden2_active_fraction", "hidden1_backward_ms",
                      "hidden2_backward_ms", "hidden1_backward_MB", "hidden2_backward_MB"):
                row[k] = float(np.mean([x[k] for x in last]))
            for d in [0.0, *delays]:
                row[f"chip_{delay_key(d)}s"] = float(np.mean([r["chip"][delay_key(d)] for r in ok]) * 100)
            if all(r.get("neurons") for r in ok):
                for k in SUBSTRATE_RUNS:
                    row[f"neurons_{k}"] = float(np.mean([r["neurons"][k] for r in ok]) * 100)
        rows.append(row)
    return rows


def console_table(rows: list[dict[str, Any]]) -> list[str]:
    return tables.console_table(rows, [("active % (h2)", "hidden2_active_fraction", ".2%"),
                                       ("bwd ms (h2)", "hidden2_backward_ms", ".1f"),
                                       ("MB (h2)", "hidden2_backward_MB", ".1f"), ("dead", "dead", "d")])


def tidy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per job (for sweeps); a diverged job gives where and how instead of its results."""
    if divergence.is_diverged(result):
        return [{"run": result["run"], "seed": result["seed"], **divergence.tidy(result),
                 "train_time_s": result["train_time_s"]}]
    last = result["metrics"][-1]
    return [{"run": result["run"], "seed": result["seed"], "test_acc": result["test_acc"],
             **{k: v for k, v in last.items() if k.startswith("hidden")},
             **{f"chip_{k}s": v for k, v in result["chip"].items()},
             **{f"neurons_{k}": result["neurons"][k] for k in SUBSTRATE_RUNS if result.get("neurons")},
             "train_time_s": result["train_time_s"]}]


def report(cfg: dict[str, Any], results: list[dict[str, Any]], out, meta: dict[str, Any]) -> dict[str, Any]:
    from ... import plot
    from ...io import atomic_write_text

    metrics = [m for r in results for m in r["metrics"]]
    out, figs = start_report(out, metrics)
    delays = cfg["chip"]["delays"]
    rows = table(results, delays)
    kept = [r for r in rows if tables.kept(r)]
    paths = []
    xs = [0.0, *delays]
    if kept:  # figures of the seeds that did not diverge
        fig = plot._file_figure(figsize=(7.5, 4.8), layout="constrained")
        plot.plot_learning_curves([m for r in divergence.split(results)[0] for m in r["metrics"]], ax=fig.add_subplot(),
                                  y="test_acc", run=("run", "seed"))
        paths.append(plot._save(fig, figs / "learning_curves.png", 120))
        fig = plot._file_figure(figsize=(7.5, 4.8), layout="constrained")
        ax = fig.add_subplot()
        for r in kept:
            ax.plot([max(d, 0.5) for d in xs], [r[f"chip_{delay_key(d)}s"] for d in xs], marker="o", label=r["run"])
        ax.set_xscale("log")
        ax.set_xlabel("time after programming (s; 0 shown at 0.5)")
        ax.set_ylabel("test accuracy on the chip (%)")
        ax.set_title(f"trained networks programmed on {cfg['chip']['card']}", fontsize="medium")
        ax.legend(fontsize="small")
        paths.append(plot._save(fig, figs / "chip_drift.png", 120))
    on_neurons = [r for r in kept if "neurons_network" in r]
    if on_neurons:
        fig = plot._file_figure(figsize=(7.5, 4.8), layout="constrained")
        ax = fig.add_subplot()
        width = 0.8 / len(SUBSTRATE_RUNS)
        for k, name in enumerate(SUBSTRATE_RUNS):
            ax.bar(np.arange(len(on_neurons)) + (k - (len(SUBSTRATE_RUNS) - 1) / 2) * width,
                   [r[f"neurons_{name}"] for r in on_neurons], width, label=SUBSTRATE_LABELS[name])
        ax.set_xticks(np.arange(len(on_neurons)), [r["run"] for r in on_neurons], fontsize="small")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(max(0.0, min(r[f"neurons_{n}"] for r in on_neurons for n in SUBSTRATE_RUNS) - 10), 100)
        ax.set_title(f"trained networks on the neurons of {cfg['neurons']['card']}", fontsize="medium")
        ax.legend(fontsize="small")
        paths.append(plot._save(fig, figs / "neuron_substrates.png", 120))
    head = ["run", "test acc. (%)", "dead seeds", "active (h1 / h2)", "backward ms (h1 / h2)", "backward MB (h1 / h2)",
            "train time (s)"] + [f"chip {delay_label(d) if d else 'at 0 s'}" for d in xs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["run"], tables.value_cell(r, "test_acc"), f"{r['dead']} / {r['seeds']}"]
        if tables.kept(r):
            cells += [f"{100 * r['hidden1_active_fraction']:.2f} % / {100 * r['hidden2_active_fraction']:.2f} %",
                      f"{r['hidden1_backward_ms']:.1f} / {r['hidden2_backward_ms']:.1f}",
                      f"{r['hidden1_backward_MB']:.1f} / {r['hidden2_backward_MB']:.1f}",
                      f"{r['train_time_s']:.0f}"] + [f"{r[f'chip_{delay_key(d)}s']:.2f}" for d in xs]
        else:
            cells += ["–"] * (4 + len(xs))
        lines.append("| " + " | ".join(cells) + " |")
    lines += tables.markdown_notes(rows, "epoch")
    energy_table, elines = energy_section(
        run_ops(results, cfg), figs, paths,
        "Per update: the forward pass's reads of the layers only, the same for the dense and the sparse "
        "backward; the backward pass runs off the chip, and its cost is the backward ms and MB columns above.")
    if on_neurons:
        head = ["run"] + [SUBSTRATE_LABELS[k] for k in SUBSTRATE_RUNS]
        lines += ["", f"On the neurons of `{cfg['neurons']['card']}` (targets overridden: "
                  f"{', '.join(f'{k} = {v:g}' for k, v in cfg['neurons']['targets'].items()) or 'none'}; weights ideal; "
                  f"first {cfg['eval']['chip_images']} test images), test accuracy (%):", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join([r["run"]] + [f"{r[f'neurons_{k}']:.2f}" for k in SUBSTRATE_RUNS]) + " |"
                  for r in on_neurons]
    text = f"""# Sparse spiking gradient descent on Fashion-MNIST

{cfg['description'] or ''}

Produced by:

```
{meta['command']}
```

* network: 784-N-N-10 LIF (reset by subtraction, not differentiated), leaky read-out (max over time),
  fast-sigmoid surrogate (scale {cfg['model']['surrogate_scale']:g}), Adam lr {cfg['train']['lr']:g} ({cfg['train']['lr_schedule']}), batch {cfg['train']['batch_size']},
  {cfg['train']['epochs']} epoch(s), the paper's spike-count regularisers; latency code {cfg['encoding']['t_steps']} steps,
  τ_eff {cfg['encoding']['tau_eff']:g}, θ {cfg['encoding']['theta']:g}; seeds {', '.join(map(str, cfg['seeds']))}
* paper (Perez-Nieves & Goodman 2021, N = 200, one seed): 81.9 % dense, 82.8 % sparse
* on the chip: weights programmed once on `{cfg['chip']['card']}` (drift compensation:
  {cfg['chip']['drift_compensation']}), accuracy on the first {cfg['eval']['chip_images']} test images after each delay
* on the chip's neurons: every LIF layer and the read-out on the analog neurons of `{cfg['neurons']['card']}`
  (τ_mem as trained; current-based synapses, so inputs are scaled by 1 / PSP peak; reset to the leak
  instead of by subtraction; read-out scaled into the membrane's rails), uncalibrated and calibrated
  (the same chip), and on the ideal model of the calibrated chip
* trained weights: `runs/<run>_seed<seed>.npz` (arrays w0, w1, w2; `SparseSNN.load_weights`)
* divergence: a seed whose training loss is NaN/inf, or whose epoch-mean loss is above {cfg['diverge_factor']:g} × its
  first batch's, stops and is left out of the means ("diverged k/n")
* versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}; {wall_time(meta)}

""" + "\n".join(lines) + "\n\n" + "\n".join([*elines, ""]) + \
        "\n".join(f"![{p.stem}](figures/{p.name})" for p in paths) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    return {"table": rows, "figures": [str(p) for p in paths], "diverged": divergence.jobs(results),
            "energy": energy_table}


_INFERENCE = ("per_inference", "energy_per_inference_pJ", "latency_per_inference_s")


def run_ops(results: list[dict[str, Any]], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Entries (``run``, ``seed``, ``ops``) of the seeds that did not diverge: each run as trained (the
    float chip: per update and per inference), then per inference on each chip it was deployed on (the
    chip card as programmed, the chip's neuron substrates)."""
    labels = {"chip": f"on {cfg['chip']['card']}",
              **{k: f"on the neurons of {cfg['neurons']['card']} ({SUBSTRATE_LABELS[k]})" for k in SUBSTRATE_RUNS[1:]}}
    entries = []
    for name in dict.fromkeys(r["run"] for r in results):
        rs = [r for r in results if r["run"] == name and not divergence.is_diverged(r)]
        entries += [{"run": name, "seed": r["seed"], "ops": r["ops"]} for r in rs if r.get("ops")]
        for key, label in labels.items():
            entries += [{"run": f"{name} {label}", "seed": r["seed"], "ops": r["ops_deployed"][key]}
                        for r in rs if key in r.get("ops_deployed", {})]
    return entries
