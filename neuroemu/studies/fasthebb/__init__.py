"""Semi-supervised Fashion-MNIST with batched Hebbian feature learning (FastHebb, Lagani et al. 2022).

Images are ZCA-whitened (fitted on the training images). A Hebbian layer — convolutional (filters
over image patches, every (image, position) one sample of the rule) or fully connected — learns
from the training images without labels, by one of the rules of :mod:`neuroemu.rules.hebbian`
in its batched form. Its responses, rectified and max-pooled, are the features; a linear read-out
(softmax regression, Adam) is trained on a labelled fraction of the training set (class-balanced
subsets, the same for every run of a seed) and tested on the test set.

Runs (one job per run and seed) choose where the features come from:

* ``hebbian``: the Hebbian layer, with exact float weights (no ``card``) or with its weights on a
  crossbar tile of ``card``, the rule's wanted ΔW applied by ``scheme`` (pulses on the devices;
  the rule's products are read from the array with its read noise, and so are the features);
* ``random``: the same layer left at its random initial weights (the authors' control);
* ``backprop``: the same architecture (layer, rectifier, pooling, linear read-out) trained end to
  end by backprop on the labelled images only, from raw pixels (whitening made it worse: 80.7 % vs
  88.5 % after two epochs on 20 000 images).

The read-out and the backprop control train for ``epochs`` over the labelled images, and at least
``min_steps`` batches (so that 1 % of the labels still gets enough updates).

A job stops and is marked diverged (:mod:`neuroemu.divergence`) when the Hebbian weights become NaN/inf,
or when a read-out's (or the backprop control's) epoch loss is NaN/inf or above ``diverge_factor``
(default 5) × ln 10, the loss of a ten-class classifier at chance; the tables average the other
seeds. Long jobs print progress lines from inside (:class:`neuroemu.progress.JobProgress`).
"""

from __future__ import annotations

import math
import time
import zlib
from typing import Any

import numpy as np

from ...config import Opt, check_seeds
from ...errors import ConfigError
from ...progress import job_messages
from ...hardware.schemes import PulseLimitWarning
from ... import divergence, energy
from .. import tables
from ...models.hebbian import LAYER
from ..common import (DATA, TILE_RUN, check_tile_run, each_run, energy_section, header,  # noqa: F401
                      ops_summary, prepare, tile_hardware, wall_time)  # prepare: this study's

NAME = "fasthebb"
FEATURES = ("hebbian", "random", "backprop")
#: Cross-entropy of a ten-class classifier at chance: the read-outs' untrained loss (they start near 0).
CHANCE_LOSS = math.log(10)


def _fractions(value, where):
    if not value or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1 for f in value):
        raise ConfigError(f"{where}: expected a non-empty list of label fractions in (0, 1], got {value!r}")
    return sorted(float(f) for f in value)


SCHEMA: dict[str, Any] = {
    **header(NAME, divergence.LOSS_FACTOR),
    "data": DATA,
    "zca": {
        "eps": Opt("float", 0.1, 1e-9, 1e9, doc="ZCA regulariser, relative to the mean eigenvalue"),
        "fit_images": Opt("int", 20000, 2, 60000, doc="training images the whitening is fitted on"),
    },
    "layer": {
        "kind": Opt("str", "conv", choices=("conv", "dense")),
        "units": Opt("int", 96, 1, 100000, doc="filters (conv) or units (dense)"),
        "kernel": Opt("int", 5, 1, 28, doc="conv: filter size"),
        "pool": Opt("int", 3, 1, 28, doc="conv: max-pooling size and stride"),
    },
    "layers": Opt("list", None, nullable=True,
                  doc="a deep stack of Hebbian layers in place of `layer` (float only): a list of "
                      "{kind, units, kernel, pool, norm, readout}, trained greedily one layer at a time"),
    "hebbian": {
        "rule": Opt("str", "swta", choices=("swta", "kwta", "hpca", "oja")),
        "lr": Opt("float", 0.1, 1e-12, 1e6),
        "temperature": Opt("float", 0.02, 1e-9, 1e9, doc="soft-WTA temperature"),
        "k": Opt("int", 1, 1, 100000, doc="k-WTA winners"),
        "similarity": Opt("str", "raised_cosine", choices=("dot", "cosine", "raised_cosine")),
        "weighting": Opt("str", "responses", choices=("mean", "sum", "responses")),
        "epochs": Opt("int", 1, 1, 1000),
        "batch_size": Opt("int", 64, 1, 60000),
    },
    "readout": {
        "epochs": Opt("int", 15, 1, 10000, doc="epochs over the labelled images"),
        "min_steps": Opt("int", 600, 0, 10**8, doc="at least this many batches"),
        "batch_size": Opt("int", 128, 1, 60000),
        "lr": Opt("float", 1e-3, 1e-12, 1e3),
        "weight_decay": Opt("float", 0.0, 0, 1e3),
    },
    "backprop": {
        "epochs": Opt("int", 5, 1, 10000),
        "min_steps": Opt("int", 600, 0, 10**8),
        "batch_size": Opt("int", 64, 1, 60000),
        "lr": Opt("float", 1e-3, 1e-12, 1e3),
    },
    "labels": Opt("list", [0.01, 0.1, 1.0], check=_fractions, doc="labelled fractions of the training set"),
    "eval": {"batch_size": Opt("int", 1000, 1, 100000)},
    "runs": Opt("list", [{"features": "hebbian"}, {"features": "random"}, {"features": "backprop"}],
                doc="runs: {features, card, scheme, scheme_params, n_devices, w_max}"),
}

#: One layer of the deep stack (``layers``; :class:`neuroemu.models.hebbian.StackLayer`).
STACK_LAYER: dict[str, Any] = {
    "kind": Opt("str", "conv", choices=("conv", "dense")),
    "units": Opt("int", doc="filters (conv) or units (dense)"),
    "kernel": Opt("int", 3, 1, 28, doc="conv: filter size (no padding, stride 1)"),
    "pool": Opt("int", 1, 1, 28, doc="conv: max-pooling size and stride after the rectifier (1: none)"),
    "norm": Opt("str", "bn", choices=("none", "bn", "bn_relative"),
                doc="per-channel normalisation of the output, at its statistics over the training images"),
    "readout": Opt("bool", False, doc="also train and test read-outs on this layer's output (the top layer's "
                                     "always are)"),
}

RUN = {**TILE_RUN, "features": Opt("str", "hebbian", choices=FEATURES),
       "seeds": Opt("list", None, nullable=True, check=check_seeds, doc="this run's seeds (default: seeds)"),
       "card": Opt("str", None, nullable=True), "scheme": Opt("str", "ideal"),
       "w_max": Opt("float", 1.5, 1e-9, 1e9, doc="weight of a full conductance side (filters reach about 1.6)")}


def check(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    from ...runner import check_run_names

    h, lay = cfg["hebbian"], cfg["layer"]
    try:
        _rule(h)
    except ConfigError as exc:
        raise ConfigError(f"{where} hebbian: {exc}") from None
    if cfg["layers"] is not None:
        return _check_stack(cfg, where)
    if h["rule"] == "kwta" and h["k"] > lay["units"]:
        raise ConfigError(f"{where} hebbian.k: expected at most layer.units ({lay['units']}) winners, got {h['k']}")
    if lay["kind"] == "conv" and lay["kernel"] > 28:
        raise ConfigError(f"{where} layer.kernel: expected at most 28 (the image side), got {lay['kernel']}")
    if lay["kind"] == "conv" and lay["pool"] > 28 - lay["kernel"] + 1:
        raise ConfigError(f"{where} layer.pool: expected at most the feature-map side {28 - lay['kernel'] + 1}, "
                          f"got {lay['pool']}")
    runs = []
    for w, run in each_run(cfg, where, RUN):
        if run["card"] is not None:
            if run["features"] != "hebbian":
                raise ConfigError(f"{w}.card: only hebbian features are learned on a chip; got features "
                                  f"{run['features']!r}")
            check_tile_run(run, w)
        if run["name"] is None:
            run["name"] = run["features"] + (f"/{run['card']}/{run['scheme']}" if run["card"] else "")
        runs.append(run)
    check_run_names(runs, where)
    cfg["runs"] = runs
    return cfg


def _check_stack(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """check() of a config with a deep stack (``layers``)."""
    from ...config import validate
    from ...runner import check_run_names

    default_layer = validate(None, SCHEMA["layer"], f"{where} layer")
    if cfg["layer"] != default_layer:
        raise ConfigError(f"{where} layer: leave the single-layer section out when `layers` is given "
                          "(the stack's layers say their own sizes)")
    if not cfg["layers"]:
        raise ConfigError(f"{where} layers: expected a non-empty list of layers, e.g. [{{units: 96, kernel: 5, pool: 2}}]")
    layers = [validate(raw, STACK_LAYER, f"{where} layers[{i}]") for i, raw in enumerate(cfg["layers"])]
    for i, lay in enumerate(layers):
        if lay["kind"] == "dense" and lay["pool"] != 1:
            raise ConfigError(f"{where} layers[{i}].pool: a dense layer has no pooling (leave pool out), got {lay['pool']}")
    try:
        _stack(layers)
    except ValueError as exc:  # the geometry: names the layer and the field
        raise ConfigError(f"{where} {str(exc).removeprefix('HebbianStack ')}") from None
    h = cfg["hebbian"]
    if h["rule"] == "kwta":
        for i, lay in enumerate(layers):
            if h["k"] > lay["units"]:
                raise ConfigError(f"{where} hebbian.k: expected at most layers[{i}].units ({lay['units']}) winners, "
                                  f"got {h['k']}")
    cfg["layers"] = layers
    runs = []
    for w, run in each_run(cfg, where, RUN):
        if run["card"] is not None:
            raise ConfigError(f"{w}.card: the deep stack (`layers`) learns with float weights only; on a chip, use "
                              "the single `layer`")
        if run["name"] is None:
            run["name"] = run["features"]
        runs.append(run)
    check_run_names(runs, where)
    cfg["runs"] = runs
    return cfg



def jobs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    from ..._version import __version__

    arch = "layer" if cfg.get("layers") is None else "layers"  # a single-layer job is as it was before stacks
    common = {k: cfg[k] for k in ("data", "zca", arch, "hebbian", "readout", "backprop", "labels", "eval",
                                  "diverge_factor")}
    return [{"id": f"{run['name']}@seed{seed}", "run": {k: v for k, v in run.items() if k != "seeds"}, "seed": seed,
             "neuroemu": __version__, **common}
            for run in cfg["runs"] for seed in (run["seeds"] or cfg["seeds"])]


# ---------------------------------------------------------------------------------------- pieces
def _rule(h: dict[str, Any]):
    from ...rules.hebbian import HebbianRule

    return HebbianRule(h["rule"], lr=h["lr"], temperature=h["temperature"], k=h["k"], sim=h["similarity"],
                       weighting=h["weighting"])


def _model(job: dict[str, Any]):
    from ...models.hebbian import ConvLayer, DenseLayer

    lay = job["layer"]
    return ConvLayer(1, lay["units"], lay["kernel"]) if lay["kind"] == "conv" else DenseLayer(784, lay["units"])


def _stack(layers: list[dict[str, Any]]):
    """The deep stack of the ``layers`` section over Fashion-MNIST images (1, 28, 28), float32."""
    from ...models.hebbian import HebbianStack, StackLayer

    return HebbianStack((1, 28, 28), [StackLayer(lay["kind"], lay["units"], lay["kernel"], lay["pool"], lay["norm"])
                                      for lay in layers])


def readout_layers(layers: list[dict[str, Any]]) -> list[int]:
    """The stack layers (0-based) whose outputs get read-outs: those marked ``readout`` and the top one."""
    return sorted({i for i, lay in enumerate(layers) if lay["readout"]} | {len(layers) - 1})


def label_subset(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of a class-balanced subset holding ``fraction`` of the labels (all of them at 1)."""
    if fraction >= 1.0:
        return np.arange(len(y))
    classes = np.unique(y)
    per = max(1, int(round(fraction * len(y) / len(classes))))
    idx = [rng.permutation(np.flatnonzero(y == c))[:per] for c in classes]
    return np.sort(np.concatenate(idx))


def _steps_epochs(n: int, opts: dict[str, Any]) -> int:
    """Epochs over n labelled images: ``epochs``, or more to reach ``min_steps`` batches."""
    per_epoch = max(1, -(-n // opts["batch_size"]))
    return max(opts["epochs"], -(-opts["min_steps"] // per_epoch))


def _pool(maps: np.ndarray, p: int) -> np.ndarray:
    n, k, h, w = maps.shape
    ho, wo = h // p, w // p
    return maps[:, :, :ho * p, :wo * p].reshape(n, k, ho, p, wo, p).max(axis=(3, 5))


def features(chip, x: np.ndarray, pool: int, *, batch: int = 1000) -> np.ndarray:
    """Rectified (and, for conv layers, max-pooled) responses of the Hebbian layer model on ``chip``
    (read from its array: a device chip's reads carry their noise), flattened, float32."""
    out = []
    for i in range(0, len(x), batch):
        y = chip.forward(x[i:i + batch])
        if y.ndim == 4:
            y = _pool(y, pool)
        out.append(np.maximum(y, 0.0).reshape(len(y), -1).astype(np.float32))
    return np.concatenate(out)


def _readout_accuracy(ftr, ytr, fte, yte, opts, rng, on_epoch=None) -> float:
    """Test accuracy of a linear read-out trained on the features; ``on_epoch(epoch, row)`` after
    every epoch (:func:`neuroemu.nn.train_classifier`'s ``progress``)."""
    from ...nn import Linear, Sequential, accuracy, standardise, train_classifier

    xtr, xte = standardise(ftr, fte)
    model = Sequential(Linear(ftr.shape[1], 10, rng=rng))
    train_classifier(model, xtr, ytr, epochs=_steps_epochs(len(ftr), opts), batch_size=opts["batch_size"],
                     lr=opts["lr"], rng=rng, weight_decay=opts["weight_decay"], progress=on_epoch)
    return accuracy(model, xte, yte)


def _backprop_accuracy(job, xtr, ytr, xte, yte, rng, on_epoch=None) -> float:
    """The backprop control: the same architecture trained end to end (:mod:`neuroemu.nn`: a conv
    layer and Adam, which the chip's models and rules do not have)."""
    from ...nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, accuracy, out_size, train_classifier

    opts = job["backprop"]
    if "layers" in job:
        model = _backprop_stack(job["layers"], rng)
        train_classifier(model, xtr, ytr, epochs=_steps_epochs(len(xtr), opts), batch_size=opts["batch_size"],
                         lr=opts["lr"], rng=rng, progress=on_epoch)
        return accuracy(model, xte, yte, batch_size=job["eval"]["batch_size"])
    lay = job["layer"]
    if lay["kind"] == "conv":
        side = out_size(28, lay["kernel"]) // lay["pool"]
        model = Sequential(Conv2d(1, lay["units"], lay["kernel"], rng=rng), ReLU(), MaxPool2d(lay["pool"]), Flatten(),
                           Linear(lay["units"] * side * side, 10, rng=rng))
    else:
        model = Sequential(Flatten(), Linear(784, lay["units"], rng=rng), ReLU(), Linear(lay["units"], 10, rng=rng))
    train_classifier(model, xtr, ytr, epochs=_steps_epochs(len(xtr), opts), batch_size=opts["batch_size"],
                     lr=opts["lr"], rng=rng, progress=on_epoch)
    return accuracy(model, xte, yte, batch_size=job["eval"]["batch_size"])


def _backprop_stack(layers: list[dict[str, Any]], rng):
    """The deep stack's architecture as a :mod:`neuroemu.nn` network for end-to-end backprop: each
    layer linear (with a bias), rectified and max-pooled as in the stack, then a linear read-out of the
    top layer. :mod:`neuroemu.nn` has no batch norm: the normalisations are left out."""
    from ...nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential

    stack = _stack(layers)
    parts: list[Any] = []
    for i, lay in enumerate(layers):
        c_in = stack.shapes[i][0]
        if lay["kind"] == "conv":
            parts += [Conv2d(c_in, lay["units"], lay["kernel"], rng=rng), ReLU()]
            if lay["pool"] > 1:
                parts.append(MaxPool2d(lay["pool"]))
        else:
            if len(stack.shapes[i]) == 3:
                parts.append(Flatten())
            parts += [Linear(int(np.prod(stack.shapes[i])), lay["units"], rng=rng), ReLU()]
    if len(stack.shapes[-1]) == 3:
        parts.append(Flatten())
    parts.append(Linear(int(np.prod(stack.shapes[-1])), 10, rng=rng))
    return Sequential(*parts)


# ---------------------------------------------------------------------------------------- one job
@job_messages(once=(PulseLimitWarning,))
def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Learn the features of one (run, seed) and train and test a read-out per label fraction. A job
    that diverges stops there and returns ``diverged`` instead of accuracies."""
    from ...data import load_fashion_mnist
    from ...data.preprocess import ZCA
    from ...chip import Hardware
    from ...progress import JobProgress

    run, data, seed = job["run"], job["data"], job["seed"]
    xtr, ytr = load_fashion_mnist("train", data_dir=data["dir"], download=data["download"], limit=data["train_limit"])
    xte, yte = load_fashion_mnist("test", data_dir=data["dir"], download=data["download"], limit=data["test_limit"])
    shape = (-1, 1, 28, 28) if "layers" in job or job["layer"]["kind"] == "conv" else (-1, 784)
    if run["features"] != "backprop":  # backprop learns its own filters: raw pixels serve it better than whitened
        zca = ZCA(job["zca"]["eps"]).fit(xtr, max_samples=job["zca"]["fit_images"])
        xtr, xte = zca.transform(xtr), zca.transform(xte)
    xtr, xte = xtr.reshape(shape), xte.reshape(shape)
    # the same labelled subsets and initial weights for every run of a seed
    base = np.random.SeedSequence([seed, zlib.crc32(b"fasthebb")])
    rng_labels, rng_init, rng_order, rng_read = (np.random.default_rng(s) for s in base.spawn(4))
    subsets = {f: label_subset(ytr, f, rng_labels) for f in job["labels"]}
    out: dict[str, Any] = {"run": run["name"], "features": run["features"], "card": run["card"],
                           "scheme": run["scheme"], "seed": seed, "accuracy": {}}
    progress = JobProgress(job["id"])
    t0 = time.perf_counter()

    def check_epochs(what: str, fraction: float):
        """train_classifier's per-epoch callback: the divergence test and a progress line."""
        watch = divergence.Watch(f"{what} loss (labels {fraction:g})", job["diverge_factor"], reference=CHANCE_LOSS)

        def on_epoch(epoch: int, row: dict[str, Any]) -> None:
            watch.check(epoch, row["loss"])
            if progress.due():
                progress.log(f"{what}, labels {fraction:g}: epoch {epoch}  loss {row['loss']:.3g}")

        return on_epoch

    def diverged(record: dict[str, Any]) -> dict[str, Any]:
        del out["accuracy"]
        out["diverged"] = record
        out["train_time_s"] = time.perf_counter() - t0
        if run["card"] is not None:
            out["pulse_limit_hits"] = chip[LAYER].stats().get("pulse_limit_hits", 0)
        return out

    if run["features"] == "backprop":  # one network per label fraction, each kept as it finishes
        from ...train import Stages

        stages = Stages(job["id"], job)
        state = stages.load()
        done = state.setdefault("accuracy", {})
        t0 -= state.get("elapsed", 0.0)
        try:
            for f, idx in subsets.items():
                if str(f) in done:
                    continue
                rng = np.random.default_rng([seed, int(f * 1e6)])
                done[str(f)] = _backprop_accuracy(job, xtr[idx], ytr[idx], xte, yte, rng, check_epochs("backprop", f))
                state["elapsed"] = time.perf_counter() - t0
                stages.save(state)
        except divergence.Diverged as exc:
            stages.clear()
            return diverged(exc.record)
        stages.clear()
        out["accuracy"] = {str(f): done[str(f)] for f in subsets}
        out["train_time_s"] = time.perf_counter() - t0
        return out
    if "layers" in job:
        return _run_stack(job, out, xtr, ytr, xte, yte, subsets, rng_init, rng_order, progress, check_epochs, t0)
    model = _model(job)
    w0 = {LAYER: model.init_weights(model.layers()[0], rng_init)}
    chip = model.build(Hardware.exact(), weights=w0) if run["card"] is None else _chip(model, run, seed, w0)
    if run["features"] == "hebbian":
        chip, rec, trained = _learn(chip, job, xtr, rng_order)
        out["ops"] = ops_summary(trained.ops)  # per update; the features' inferences are added below
        if trained.diverged is not None:
            return diverged(trained.diverged)
        out["images_per_s"] = job["hebbian"]["epochs"] * len(xtr) / max(trained.train_time_s, 1e-12)
    out["hebbian_time_s"] = time.perf_counter() - t0
    try:
        ftr = features(chip, xtr, job["layer"]["pool"], batch=job["eval"]["batch_size"])
        before = chip.ops()
        fte = features(chip, xte, job["layer"]["pool"], batch=job["eval"]["batch_size"])
        # the test images' features
        out["ops"] = {**out.get("ops", {}), **energy.per_sample(chip, energy.diff(chip.ops(), before), len(xte))}
        for f, idx in subsets.items():
            rng = np.random.default_rng([seed, int(f * 1e6)])
            out["accuracy"][str(f)] = _readout_accuracy(ftr[idx], ytr[idx], fte, yte, job["readout"], rng,
                                                        check_epochs("read-out", f))
    except divergence.Diverged as exc:
        return diverged(exc.record)
    out["train_time_s"] = time.perf_counter() - t0
    out["filters"] = np.asarray(chip[LAYER].weights(), np.float32).tolist()
    if run["card"] is not None:
        out.update(_chip_stats(chip[LAYER], rec))
    return out


def _run_stack(job, out, xtr, ytr, xte, yte, subsets, rng_init, rng_order, progress, check_epochs, t0):
    """run_job for a deep stack: its layers learned greedily (``hebbian``) or left random (``random``),
    each normalised at its statistics over the training images; then the read-outs on the top layer
    (``accuracy``) and on every layer marked ``readout`` (``accuracy_by_layer``, keyed by the layer's
    number from 1)."""
    from ...train import Stages

    run, h, batch = job["run"], job["hebbian"], job["eval"]["batch_size"]
    stack = _stack(job["layers"])
    w0 = stack.init_weights(rng_init)
    rng_orders = [np.random.default_rng(s) for s in np.random.SeedSequence(int(rng_order.integers(2**63))).spawn(
        len(stack))]
    # every learned layer and every read-out is kept as it finishes: an interrupted job goes on from there
    stages = Stages(job["id"], job)
    state = stages.load()
    learned, by_layer = state.setdefault("layers", []), state.setdefault("accuracy_by_layer", {})
    t0 -= state.get("elapsed", 0.0)

    def keep() -> None:
        state["elapsed"] = time.perf_counter() - t0
        stages.save(state)

    def diverged(record):
        stages.clear()
        return _stack_diverged(out, record, t0)

    for i in range(len(stack)):
        if run["features"] == "hebbian" and i >= len(learned):
            progress.log(f"Hebbian layer {i + 1}/{len(stack)} ({stack.specs[i].kind} {stack.specs[i].units})")
            chip, _, trained = _learn(_exact_chip(stack.trainable(i), w0[i]), job, xtr, rng_orders[i],
                                      part=f"layer{i + 1}")
            if trained.diverged is not None:
                return diverged(dict(trained.diverged, layer=i + 1))
            state["learn_time"] = state.get("learn_time", 0.0) + trained.train_time_s
            learned.append(chip[LAYER].weights())
            stack.set_layer(i, learned[i], xtr, batch=batch)
            keep()
        else:
            stack.set_layer(i, learned[i] if run["features"] == "hebbian" else w0[i], xtr, batch=batch)
    if run["features"] == "hebbian":  # images through the whole stack
        out["images_per_s"] = h["epochs"] * len(xtr) / max(state["learn_time"], 1e-12)
    out["hebbian_time_s"] = state.setdefault("hebbian_time_s", time.perf_counter() - t0)
    read = readout_layers(job["layers"])
    ftr, fte = stack.features(xtr, read, batch=batch), stack.features(xte, read, batch=batch)
    try:
        for i in read:
            acc = by_layer.setdefault(str(i + 1), {})
            what = "read-out" if i == read[-1] else f"read-out (layer {i + 1})"
            for f, idx in subsets.items():
                if str(f) in acc:
                    continue
                rng = np.random.default_rng([job["seed"], int(f * 1e6), i])
                acc[str(f)] = _readout_accuracy(ftr[i][idx], ytr[idx], fte[i], yte, job["readout"], rng,
                                                check_epochs(what, f))
                keep()
            del ftr[i], fte[i]
    except divergence.Diverged as exc:
        return diverged(exc.record)
    stages.clear()
    out["accuracy"] = by_layer[str(read[-1] + 1)]
    out["accuracy_by_layer"] = by_layer
    out["train_time_s"] = time.perf_counter() - t0
    out["filters"] = np.asarray(stack.weights[0], np.float32).tolist()
    out["shapes"] = [list(shape) for shape in stack.shapes]  # every layer's input, then the top's output
    return out


def _stack_diverged(out, record, t0):
    del out["accuracy"]
    out["diverged"] = record
    out["train_time_s"] = time.perf_counter() - t0
    return out


def _exact_chip(model, w0):
    from ...chip import Hardware

    return model.build(Hardware.exact(), weights={LAYER: w0})


def _chip(model, run, seed, weights):
    """The Hebbian layer's initial ``weights`` written on a tile of the run's card (ideal periphery:
    the devices' own read noise), behind the run's update scheme."""
    from ...hardware.crossbar import Periphery

    hw = tile_hardware(run, periphery=Periphery.device_reads())
    rng = np.random.default_rng([seed, zlib.crc32(run["name"].encode())])
    return model.build(hw, rng, weights={k: np.asarray(v, np.float64) for k, v in weights.items()})


def _learn(chip, job, x, rng, part: str | None = None):
    """The unsupervised phase: the Hebbian rule on ``chip`` over the images ``x`` (``hebbian.epochs``
    epochs, shuffled by ``rng``), through the trainer (checkpointed when the runner asks). A job
    stops, marked diverged, when the weights become NaN/inf. Returns (the trained chip, a recorder
    of its tile as written and after the last epoch, the trainer's result)."""
    from ...record import Recorder
    from ...rules.hebbian import Hebbian, Unlabelled
    from ...train import Protocol, Trainer, checkpoint_path

    h = job["hebbian"]
    rec = Recorder()
    rec.observe(0, chip.tiles())
    protocol = Protocol(epochs=h["epochs"], watch="max_w", watch_label="hebbian weights (max |w|)",
                        diverge_factor=math.inf)  # NaN/inf only: the weights have no divergence bound
    job_id = job["id"] if part is None else f"{job['id']}/{part}"  # part: one layer of a stack
    result = Trainer(chip, Hebbian(core=_rule(h)), Unlabelled(x, h["batch_size"], rng), protocol, job_id=job_id,
                     observe_start=False, device_stats=False, checkpoint=checkpoint_path(job_id),
                     key=job if part is None else {**job, "part": part}).run()
    if result.diverged is None:
        rec.observe(h["epochs"], result.chip.tiles())
    return result.chip, rec, result


def _chip_stats(layer, rec) -> dict[str, Any]:
    from ...record import pulse_histogram

    stats = layer.stats()
    tile = layer.tile
    edges, steps, counts = rec.histograms(LAYER)
    return {"pulses": int(stats.get("pulses", 0)), "pulses_per_synapse": int(stats.get("pulses", 0)) / tile.n_synapses,
            "energy_pJ": float(stats["energy_pJ"]), "pulse_limit_hits": int(stats.get("pulse_limit_hits", 0)),
            "device_summary": rec.summary(),
            "g_hist": {"edges": np.asarray(edges).tolist(), "steps": np.asarray(steps).tolist(),
                       "counts": np.asarray(counts).tolist()},
            "pulse_hist": pulse_histogram(tile)}


# ---------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]], fractions: list[float]) -> list[dict[str, Any]]:
    """One row per run: test accuracy per label fraction (``acc_<fraction>``), mean and std over the
    seeds that did not diverge; ``labels`` lists the fractions."""
    rows = []
    for name, rs, ok, seeds in tables.run_groups(results):
        row = {"run": name, "features": rs[0]["features"], "card": rs[0]["card"] or "-",
               "scheme": rs[0]["scheme"] if rs[0]["card"] else "-", **seeds, "labels": list(fractions)}
        if any("pulse_limit_hits" in r for r in rs):
            row["pulse_limit_hits"] = sum(r.get("pulse_limit_hits", 0) for r in rs)
        if ok:
            row["train_time_s"] = float(np.mean([r["train_time_s"] for r in ok]))
            for f in fractions:
                row[f"acc_{f:g}"], row[f"acc_{f:g}_std"] = tables.mean_std([r["accuracy"][str(f)] for r in ok], 100)
            if "images_per_s" in ok[0]:
                row["images_per_s"] = float(np.mean([r["images_per_s"] for r in ok]))
            if "pulses_per_synapse" in ok[0]:
                row["pulses_per_synapse"] = float(np.mean([r["pulses_per_synapse"] for r in ok]))
        rows.append(row)
    return rows


def describe_stack(layers: list[dict[str, Any]]) -> str:
    """The deep stack in words, e.g. ``conv 96 5×5 → ReLU → max-pool 2 → bn; ...``."""
    parts = []
    for lay in layers:
        p = (f"conv {lay['units']} {lay['kernel']}×{lay['kernel']}" if lay["kind"] == "conv" else f"dense {lay['units']}")
        p += " → ReLU" + (f" → max-pool {lay['pool']}" if lay["pool"] > 1 else "")
        p += "" if lay["norm"] == "none" else f" → {lay['norm']}"
        parts.append(p)
    return "; ".join(parts) + f"; read-outs on layer(s) {', '.join(str(i + 1) for i in readout_layers(layers))}"


def _layer_lines(results: list[dict[str, Any]], fractions: list[float]) -> list[str]:
    """RESULTS.md lines: the read-outs on every read-out layer of a stack (mean ± std over the seeds that
    did not diverge); none for a single layer, or when only the top layer is read out."""
    ok = [r for r in divergence.split(results)[0] if len(r.get("accuracy_by_layer", {})) > 1]
    if not ok:
        return []
    head = ["run", "layer"] + [f"{100 * f:g} % labels" for f in fractions]
    lines = ["", "Read-outs on each read-out layer of the stack (test accuracy, %):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(r["run"] for r in ok):
        rs = [r for r in ok if r["run"] == name]
        for layer in rs[0]["accuracy_by_layer"]:
            cells = []
            for f in fractions:
                m, sd = tables.mean_std([r["accuracy_by_layer"][layer][str(f)] for r in rs], 100)
                cells.append(f"{m:.2f} ± {sd:.2f}" if len(rs) > 1 else f"{m:.2f}")
            lines.append("| " + " | ".join([name, layer, *cells]) + " |")
    return lines


def console_table(rows: list[dict[str, Any]]) -> list[str]:
    width = max(len(r["run"]) for r in rows) + 2
    fr = [f"acc_{f:g}" for f in rows[0]["labels"]]
    flagged = any(r["diverged"] for r in rows)
    lines = ["run".ljust(width) + "".join(f"{'labels ' + k[4:]:>14}" for k in fr) + ("  status" if flagged else "")]
    for r in rows:
        lines.append(r["run"].ljust(width) + "".join(f"{r[k]:>13.2f}%" if k in r else f"{'diverged':>14}" for k in fr)
                     + (f"  {tables.status(r)}" if flagged else ""))
    return lines + tables.notes(rows, "epoch")


def tidy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per label fraction (for sweeps); a diverged job: one row with where and how."""
    if divergence.is_diverged(result):
        return [{"run": result["run"], "seed": result["seed"], **divergence.tidy(result),
                 "train_time_s": result["train_time_s"]}]
    return [{"run": result["run"], "seed": result["seed"], "labels": float(f), "test_acc": a,
             "train_time_s": result["train_time_s"]} for f, a in result["accuracy"].items()]


def _draw_filters(ax, result):
    w = np.asarray(result["filters"], float)
    k = int(round(np.sqrt(w.shape[1])))
    n = min(len(w), 64)
    cols = 8
    rows = -(-n // cols)
    img = np.full((rows * (k + 1), cols * (k + 1)), np.nan)
    for i in range(n):
        f = w[i].reshape(k, k)
        f = (f - f.min()) / max(f.max() - f.min(), 1e-12)
        r, c = divmod(i, cols)
        img[r * (k + 1):r * (k + 1) + k, c * (k + 1):c * (k + 1) + k] = f
    ax.imshow(img, cmap="gray", interpolation="nearest")
    ax.set_axis_off()


def report(cfg: dict[str, Any], results: list[dict[str, Any]], out, meta: dict[str, Any]) -> dict[str, Any]:
    from pathlib import Path

    from ... import plot
    from ...io import atomic_write_text

    out = Path(out)
    fractions = cfg["labels"]
    rows = table(results, fractions)
    kept = [r for r in rows if tables.kept(r)]
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    paths = []
    if kept:
        fig = plot._file_figure(figsize=(7.5, 4.8), layout="constrained")
        ax = fig.add_subplot()
        for r in kept:
            ax.errorbar([100 * f for f in fractions], [r[f"acc_{f:g}"] for f in fractions],
                        yerr=[r[f"acc_{f:g}_std"] for f in fractions], marker="o", capsize=3, label=r["run"])
        ax.set_xscale("log")
        ax.set_xlabel("labelled training images (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("semi-supervised Fashion-MNIST: Hebbian features vs controls", fontsize="medium")
        ax.legend(fontsize="small")
        paths.append(plot._save(fig, figs / "accuracy_vs_labels.png", 120))
    learned = [r for r in results if "filters" in r and len(np.asarray(r["filters"][0])) <= 121]
    first = cfg["layer"] if cfg.get("layers") is None else cfg["layers"][0]
    if learned and first["kind"] == "conv" and first.get("kernel", 5) ** 2 == len(np.asarray(learned[0]["filters"][0])):
        paths.append(plot.run_panels(learned, "filters (first 64)", _draw_filters, figs / "filters.png"))
    chip = [r for r in results if "g_hist" in r]
    if chip:
        paths.append(plot.run_panels(chip, "Hebbian-layer conductances: as written and after learning",
                                     plot._draw_g_hist, figs / "conductances.png"))
        paths.append(plot.run_panels(chip, "pulses per synapse during learning", plot._draw_pulse_hist,
                                     figs / "pulses_per_device.png"))
    head = ["run", "card", "scheme", "seeds"] + [f"{100 * f:g} % labels" for f in fractions] + \
        ["Hebbian images/s", "pulses/synapse", "time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        accs = [tables.value_cell(r, f"acc_{f:g}", note=False) for f in fractions]
        seeds = f"{r['seeds']}" + (f" ({tables.status(r)})" if r["diverged"] else "")
        lines.append("| " + " | ".join([r["run"], r["card"], r["scheme"], seeds, *accs,
                                        f"{r['images_per_s']:.0f}" if "images_per_s" in r else "-",
                                        f"{r['pulses_per_synapse']:.1f}" if "pulses_per_synapse" in r else "-",
                                        tables.number(r, "train_time_s", ".0f")]) + " |")
    lines += tables.markdown_notes(rows, "epoch")
    energy_table, elines = energy_section(divergence.split(results)[0], figs, paths,
                                          "Per update: a Hebbian batch on the feature layer; per inference: the feature layer's response to "
                                          "one test image (the read-out is off-chip); the backprop control has no chip.")
    lines += ["", *elines] if energy_table else []
    lines += _layer_lines(results, fractions)
    lay, h, ro, bp = cfg["layer"], cfg["hebbian"], cfg["readout"], cfg["backprop"]
    arch = (f"conv {lay['units']} filters {lay['kernel']}×{lay['kernel']}, ReLU, max-pool {lay['pool']}"
            if lay["kind"] == "conv" else f"dense 784→{lay['units']}, ReLU")
    stacked = cfg.get("layers") is not None
    per_layer, what = (" per layer", "stack") if stacked else ("", "layer")
    fitted = "; its normalisations fitted on their outputs" if stacked else ""
    no_bn = " without the normalisations" if stacked else ""
    chip_line = ("* float weights only: the stack is not run on a chip, so no operations or energy are counted (the chip "
                 "model counts them; see the one-layer runs for the feature layer on devices)\n" if stacked else
                 "* on a chip: the Hebbian layer's weights on a tile of the card (ideal periphery, the devices' read\n"
                 "  noise); its products and the features are read from the array; the wanted ΔW is applied by the scheme\n")
    if stacked:
        arch = describe_stack(cfg["layers"]) + (" (trained greedily, one layer at a time, each on the output of the "
                                                "trained layers below; float weights)")
    text = f"""# FastHebb: semi-supervised Fashion-MNIST with Hebbian features

{cfg['description'] or ''}

Produced by:

```
{meta['command']}
```

* features: {arch}; ZCA whitening (ε = {cfg['zca']['eps']:g} × mean eigenvalue, fitted on
  {cfg['zca']['fit_images']} training images)
* Hebbian rule: {h['rule']} (lr {h['lr']:g}, temperature {h['temperature']:g}, k {h['k']}, similarity
  {h['similarity']}, weighting {h['weighting']}), batched (FastHebb) form, {h['epochs']} epoch(s){per_layer}, batch {h['batch_size']},
  no labels
* read-out: linear softmax classifier on standardised features, Adam lr {ro['lr']:g}, batch {ro['batch_size']},
  {ro['epochs']} epochs over the labelled images (at least {ro['min_steps']} batches); class-balanced label subsets
* controls: `random` = the same {what} at its random initial weights (unit-norm Gaussian filters{fitted});
  `backprop` = the same architecture{no_bn} trained end to end on the labelled raw images (Adam lr {bp['lr']:g},
  {bp['epochs']} epochs, at least {bp['min_steps']} batches)
{chip_line}* divergence: a job whose Hebbian weights become NaN/inf, or whose read-out loss is NaN/inf or above
  {cfg['diverge_factor']:g} × ln 10 (chance), stops and is left out of the means ("diverged k/n")
* seeds {', '.join(map(str, cfg['seeds']))} (a run may name its own); mean ± std over seeds; versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())};
  {wall_time(meta)}

Test accuracy (%, full 10 000-image test set unless data.test_limit is set):

""" + "\n".join(lines) + "\n\n" + "\n".join(f"![{p.stem}](figures/{p.name})" for p in paths) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    return {"table": rows, "figures": [str(p) for p in paths], "diverged": divergence.jobs(results),
            "energy": energy_table}
