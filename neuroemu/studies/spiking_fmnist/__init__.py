"""Latency-coded Fashion-MNIST on a spiking network, run on ideal and emulated analog neurons.

A feed-forward spiking network (784 → current-based LIF hidden layer(s) → integrating read-out,
logits = maximum of the read-out membrane over time) is trained off-chip by surrogate-gradient BPTT
(:mod:`neuroemu.rules.surrogate`) with the neuron the chip card is calibrated to: its targets for
τ_mem, τ_syn, reset and refractory time, one emulation step per input time bin. The trained weights
are then deployed on each run's chip and the test set is run through it:

* ``synapses``: any card; its tile holds each layer's weights with max|W| mapped to the largest
  weight (``brainscales2``: the 6-bit synapse array in spiking mode; PCM/RRAM: a crossbar read
  at every time step, through exact reads or the default periphery, whose output noise and ADC
  range are then taken relative to that full-scale weight, as in aihwkit);
* ``neurons``: ``ideal`` (the float model the network was trained with) or ``analog`` (the chip's
  neurons: fixed-pattern mismatch drawn from the seed, temporal noise, membrane rails), optionally
  ``calibrated`` first.

One job per seed trains once and evaluates every run; the same seed gives the same emulated chip to
every run, so uncalibrated and calibrated runs differ only by the calibration.

Before deployment the read-out weights are scaled by one positive factor so that the read-out
membranes stay inside the analog membrane's range (the largest logits of a training batch at
``eval.readout_headroom`` of the distance from rest to the upper rail); this leaves the float
network's decisions unchanged, since the read-out is linear in its weights.

A seed whose training loss is NaN/inf, or whose epoch-mean loss is above ``diverge_factor``
(default 5) × the loss of its first batch, stops there, is deployed nowhere and counts as diverged
in every run's row (:mod:`neuroemu.divergence`); the tables average the other seeds. Long jobs print
progress lines from inside (:class:`neuroemu.progress.JobProgress`).
"""

from __future__ import annotations

import functools
import time
import zlib
from typing import Any

import numpy as np

from ...hardware.cards import load_card
from ...config import Opt, check_layers
from ...data.classification import ClassificationTask
from ...errors import ConfigError
from ... import divergence, energy
from .. import tables
from ..common import (DATA, deploy_hardware, each_run, energy_section, header,  # noqa: F401
                      ops_summary, prepare, start_report)  # prepare: this study's

NAME = "spiking_fmnist"


SCHEMA: dict[str, Any] = {
    **header(NAME, divergence.LOSS_FACTOR, seeds_doc="one network and one emulated chip per seed"),
    "data": DATA,
    "encoding": {
        "t_steps": Opt("int", 100, 1, 100000, doc="time bins per image (one emulation step each)"),
        "tau_eff": Opt("float", 20.0, 1e-9, 1e9, doc="latency code: spike at tau_eff·ln(x/(x−theta)) bins"),
        "theta": Opt("float", 0.2, 0, 1, doc="latency code: pixels <= theta never spike"),
    },
    "model": {
        "hidden": Opt("list", [200], check=check_layers),
        "card": Opt("str", "brainscales2", doc="analog_chip card whose calibration targets define the neuron"),
        "surrogate_scale": Opt("float", 100.0, 1e-9, 1e9),
    },
    "train": {
        "epochs": Opt("int", 3, 1, 10000),
        "batch_size": Opt("int", 256, 1, 60000),
        "lr": Opt("float", 1e-3, 1e-12, 1e3, doc="Adam learning rate"),
        "regularise": Opt("bool", True, doc="the paper's spike-count regularisers"),
    },
    "eval": {
        "batch_size": Opt("int", 250, 1, 100000),
        "readout_headroom": Opt("float", 0.6, 0.01, 1.0,
                                doc="largest training logits at this fraction of the read-out's range"),
    },
    "runs": Opt("list", doc="list of runs: {name, synapses, neurons, calibrated, periphery}"),
}

RUN = {
    "name": Opt("str", None, nullable=True),
    "synapses": Opt("str", "ideal", doc="card of the weight tiles"),
    "neurons": Opt("str", "ideal", choices=("ideal", "analog")),
    "calibrated": Opt("bool", False, doc="calibrate the analog neurons before the run"),
    "periphery": Opt("str", "ideal", choices=("ideal", "default"),
                     doc="crossbar periphery: exact reads, or the default DAC/ADC/noise"),
}


#: What ``check`` derives into every run (its synapse card's numbers), left out of the written config.yaml.
DERIVED_RUN_KEYS = ("synapses_card",)


def check(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate the runs and build each one's tile and substrate once on a tiny chip."""
    from ...hardware.crossbar import Periphery
    from ...hardware.factory import make_tile
    from ...errors import NeuroemuError
    from ...runner import check_run_names
    from ...hardware.factory import make_substrate

    try:
        chip = load_card(cfg["model"]["card"])
    except NeuroemuError as exc:
        raise ConfigError(f"{where} model.card: {exc}") from None
    if chip.kind != "analog_chip":
        raise ConfigError(f"{where} model.card: expected an analog_chip card (e.g. brainscales2), got {chip.name} "
                          f"(kind '{chip.kind}')")
    widest = max(cfg["model"]["hidden"])
    runs = []
    for w, run in each_run(cfg, where, RUN):
        if run["calibrated"] and run["neurons"] != "analog":
            raise ConfigError(f"{w}.calibrated: only analog neurons are calibrated; got neurons {run['neurons']!r}")
        if run["neurons"] == "analog" and widest > chip["n_neurons"]:
            raise ConfigError(f"{w}.neurons: a hidden layer of {widest} does not fit the {chip['n_neurons']} "
                              f"neurons of {chip.name}")
        try:
            card = load_card(run["synapses"])
            per = Periphery.ideal() if run["periphery"] == "ideal" else Periphery()
            make_tile(2, 2, card, periphery=per, rng=0)
            make_substrate(run["neurons"], 2, chip, rng=0)
        except NeuroemuError as exc:
            raise ConfigError(f"{w}: {exc}") from None
        run["synapses_card"] = card.to_dict()  # the cards' numbers are part of the job: an edited card reruns
        if run["name"] is None:
            run["name"] = f"{card.name}/{run['neurons']}" + ("/calibrated" if run["calibrated"] else "")
        runs.append(run)
    check_run_names(runs, where)
    cfg["runs"] = runs
    cfg["model"]["card_data"] = chip.to_dict()
    return cfg



def jobs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """One job per seed: train once, evaluate every run."""
    from ..._version import __version__

    common = {k: cfg[k] for k in ("data", "encoding", "model", "train", "eval", "runs", "diverge_factor")}
    return [{"id": f"seed{seed}", "seed": seed, "neuroemu": __version__, **common} for seed in cfg["seeds"]]


# ---------------------------------------------------------------------------------------- one job
def _network(job: dict[str, Any], rng: np.random.Generator):
    from ...rules.surrogate import PAPER_REG, SpikingMLP
    from ...hardware.substrate import IdealNeurons

    chip = load_card(job["model"]["card"])
    ideal = IdealNeurons.from_card(1, chip)
    p = chip.params
    sizes = [784, *job["model"]["hidden"], 10]
    return SpikingMLP(sizes, dt=p["dt"], tau_mem=p["tau_mem"], tau_syn=p["tau_syn"], v_reset=ideal.params.v_reset,
                      refractory_steps=int(ideal.params.refractory_steps),
                      surrogate_scale=job["model"]["surrogate_scale"],
                      reg=PAPER_REG if job["train"]["regularise"] else None, rng=rng)


def _evaluate(chip, x, y, batch) -> tuple[float, float]:
    """Test accuracy and hidden spikes per neuron and image."""
    correct, spikes = 0, 0.0
    for i in range(0, len(x), batch):
        logits, counts = chip.model.run(chip, x[i:i + batch])
        correct += int((logits.argmax(axis=1) == y[i:i + batch]).sum())
        spikes += float(sum(c.sum() / c.shape[1] for c in counts))
    return correct / len(x), spikes / len(x) / max(len(chip) - 1, 1)


class _Task(ClassificationTask):
    """Fashion-MNIST batches; at every epoch test accuracy and the hidden spikes per neuron and image
    of the epoch's training batches."""

    rates: list[float] = []

    def observe(self, batch, measured: dict[str, Any]) -> None:
        counts = measured["stats"].get("mean_count")
        self.rates = [*self.rates, counts[0] if counts else 0.0]

    def evaluate(self, chip, stage: str, last=None) -> dict[str, Any]:
        if stage != "epoch":
            return {}
        rates, self.rates = self.rates, []
        return {"test_acc": _evaluate(chip, *self.held_out["test"], self.eval_batch)[0],
                "hidden_spikes_per_neuron": float(np.mean(rates))}


def _no_device(column: str) -> bool:
    return False


def _deploy(chip, run: dict[str, Any], job: dict[str, Any]):
    """The trained chip on one run's synapses and neurons (the seed's chip); returns (chip, calibration
    reports)."""
    from ...hardware.factory import make_substrate
    from ...hardware.calibration import calibrate
    from ...models.snn import with_model

    seed = job["seed"]
    card = load_card(job["model"]["card"])
    synapses = load_card(run["synapses"])

    hardware = deploy_hardware(synapses, run["periphery"])

    rngs = [np.random.default_rng([seed, 1 + layer, zlib.crc32(synapses.name.encode())]) for layer in range(len(chip))]
    on = chip.deploy(hardware, rngs)
    subs, reports = [], []
    for layer, spec in enumerate(chip):
        # the same chip for every run of a seed: mismatch from (seed, layer) only
        sub = make_substrate(run["neurons"], spec.shape[0], card, rng=np.random.default_rng([seed, 100 + layer]))
        if run["calibrated"]:
            reports.append(calibrate(sub, rng=np.random.default_rng([seed, 200 + layer])))
        subs.append(sub)
    noise = np.random.default_rng([seed, 300, zlib.crc32(run["name"].encode())])
    return with_model(on, chip.model.replace(neurons=subs, noise=noise, spike_reads=True)), reports


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train the network of one seed, then evaluate it on every run's chip. A seed that diverges
    stops there: its result has ``diverged`` and, per run, an entry that says so."""
    from ...chip import Hardware, Update
    from ...data import load_fashion_mnist
    from ...data.encoders import latency_encode
    from ...models.snn import SNN
    from ...rules.surrogate import SurrogateBPTT
    from ...train import Protocol, Trainer, checkpoint_path

    data, enc, tr, ev = job["data"], job["encoding"], job["train"], job["eval"]
    seed = job["seed"]
    rng_init, rng_data = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0]).spawn(2))
    xtr, ytr = load_fashion_mnist("train", data_dir=data["dir"], download=data["download"], limit=data["train_limit"])
    xte, yte = load_fashion_mnist("test", data_dir=data["dir"], download=data["download"], limit=data["test_limit"])
    encode = functools.partial(latency_encode, t_steps=enc["t_steps"], tau_eff=enc["tau_eff"], theta=enc["theta"])
    chip = SNN(_network(job, rng_init), encode=encode).build(Hardware.exact(), rng=0)
    bs = tr["batch_size"]
    task = _Task(xtr, ytr, batch_size=bs, rng=rng_data, held_out={"test": (xte, yte)}, eval_batch=ev["batch_size"])
    trainer = Trainer(chip, SurrogateBPTT(tr["lr"]), task, Protocol(epochs=tr["epochs"], diverge_factor=job["diverge_factor"]),
                      job_id=job["id"], observe_start=False, device=_no_device, device_stats=False,
                      checkpoint=checkpoint_path(job["id"]), key=job)
    result = trainer.run()
    metrics = [{"seed": seed, **r} for r in result.rows]
    if result.diverged is not None:
        diverged = {**result.diverged, "metric": "train_loss"}
        runs = [{"run": r["name"], "synapses": r["synapses"], "neurons": r["neurons"], "calibrated": r["calibrated"],
                 "diverged": diverged} for r in job["runs"]]
        return {"seed": seed, "diverged": diverged, "train_time_s": result.train_time_s, "metrics": metrics,
                "runs": runs, "ops": ops_summary(result.ops)}
    chip = result.chip

    p = load_card(job["model"]["card"]).params
    logits = chip.forward(xtr[:bs])
    top = float(np.percentile(logits, 99))
    room = ev["readout_headroom"] * (p["v_max"] - p["v_leak"]) / (p["v_th"] - p["v_leak"])
    scale = min(1.0, room / top) if top > 0 else 1.0
    out = list(chip)[-1]
    held = out.weights()
    chip.apply(Update(out.name, dw=(held * np.float32(scale)).astype(np.float64) - held))

    runs = []
    for run in job["runs"]:
        t1 = time.perf_counter()
        on, reports = _deploy(chip, run, job)
        cal_time = time.perf_counter() - t1
        t2 = time.perf_counter()
        before = on.ops()
        acc, rate = _evaluate(on, xte, yte, ev["batch_size"])
        wall = time.perf_counter() - t2
        ops = energy.per_sample(on, energy.diff(on.ops(), before), len(xte))  # the test set's inferences on this run's chip
        steps = len(xte) * enc["t_steps"]
        entry = {"run": run["name"], "synapses": run["synapses"], "neurons": run["neurons"],
                 "calibrated": run["calibrated"], "test_acc": acc, "hidden_spikes_per_neuron": rate,
                 "emulation_wall_s": wall, "calibration_wall_s": cal_time if reports else 0.0,
                 "chip_time_s": steps * p["dt"], "biological_time_s": steps * p["dt"] * p["acceleration"]}
        if reports:
            entry["calibration"] = [r.rows() for r in reports]
        entry["ops"] = ops
        runs.append(entry)
    return {"seed": seed, "train_time_s": result.train_time_s, "readout_scale": scale, "metrics": metrics,
            "runs": runs, "weights_max": [float(np.abs(w).max()) for w in chip.model.weights(chip)],
            "ops": ops_summary(result.ops)}


_INFERENCE = ("per_inference", "energy_per_inference_pJ", "latency_per_inference_s")


def run_ops(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (run, seed) that did not diverge, with ``ops``: the seed's training (per update,
    off-chip on the float chip) and the inferences of the test set on the run's chip."""
    entries = []
    for res in results:
        if divergence.is_diverged(res):
            continue
        train = {k: v for k, v in res.get("ops", {}).items() if k not in _INFERENCE}
        for r in res["runs"]:
            ops = {**train, **r.get("ops", {})}
            entries.append({"run": r["run"], "seed": res["seed"], **({"ops": ops} if ops else {})})
    return entries


# ---------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: mean and std over the seeds that did not diverge (a diverged seed counts in
    every run's ``diverged``)."""
    rows = []
    entries = [{**r, "seed": res["seed"]} for res in results for r in res["runs"]]
    for name, rs, ok, seeds in tables.run_groups(entries):
        row = {"run": name, "synapses": rs[0]["synapses"], "neurons": rs[0]["neurons"],
               "calibrated": rs[0]["calibrated"], **seeds}
        if ok:
            row["test_acc"], row["test_acc_std"] = tables.mean_std([r["test_acc"] for r in ok], 100)
            row.update({"hidden_spikes_per_neuron": float(np.mean([r["hidden_spikes_per_neuron"] for r in ok])),
                        "emulation_wall_s": float(np.mean([r["emulation_wall_s"] for r in ok])),
                        "chip_time_s": ok[0]["chip_time_s"], "biological_time_s": ok[0]["biological_time_s"]})
        rows.append(row)
    return rows


def console_table(rows: list[dict[str, Any]]) -> list[str]:
    return tables.console_table(rows, [("spikes/neuron", "hidden_spikes_per_neuron", ".2f"),
                                       ("sim s", "emulation_wall_s", ".1f"), ("chip s", "chip_time_s", ".3f")])


def _calibration_table(results: list[dict[str, Any]]) -> str:
    """Spread before/after calibration of the hidden layer's neurons, mean over seeds."""
    cal = [r["calibration"][0] for res in results for r in res["runs"] if r.get("calibration")]
    if not cal:
        return ""
    lines = ["| parameter | target | spread before | spread after | after / before |", "|---|---|---|---|---|"]
    for k, first in enumerate(cal[0]):
        b = np.mean([c[k]["spread_before"] for c in cal])
        a = np.mean([c[k]["spread_after"] for c in cal])
        lsb = first["unit"] == "LSB"
        fmt = (lambda v: f"{v:.3g} LSB") if lsb else (lambda v: f"{100 * v:.2f} %")
        tgt = f"{first['target'] * 1e6:g} µs" if first["parameter"].startswith("tau") else f"{first['target']:g}"
        lines.append(f"| {first['parameter']} | {tgt} | {fmt(b)} | {fmt(a)} | {a / b:.3f} |")
    return "\n".join(lines)


def report(cfg: dict[str, Any], results: list[dict[str, Any]], out, meta: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.csv, RESULTS.md and figures; return the summary."""
    from ... import plot
    from ...io import atomic_write_text

    metrics = [m for r in results for m in r["metrics"]]
    out, figs = start_report(out, metrics)
    rows = table(results)
    ok, _ = divergence.split(results)
    figures = []
    if ok:  # figures of the seeds that did not diverge
        fig = plot._file_figure(figsize=(8, 4.2), layout="constrained")
        plot.plot_run_bars(plot.compute_run_bars(rows, "test_acc"), ax=fig.add_subplot(), xlabel="test accuracy (%)")
        figures.append(plot._save(fig, figs / "accuracy.png", 120))
        fig = plot._file_figure(figsize=(6.4, 4.2), layout="constrained")
        plot.plot_learning_curves([m for r in ok for m in r["metrics"]], ax=fig.add_subplot(), x="epoch",
                                  y="test_acc", run="seed")
        figures.append(plot._save(fig, figs / "learning_curves.png", 120))
    energy_table, elines = energy_section(
        run_ops(results), figs, figures, "Per update: the off-chip training on the float chip (the same network for "
        "every run of a seed); per inference: the test set on the run's chip.")
    chip = load_card(cfg["model"]["card"])
    p = chip.params
    seeds = ", ".join(map(str, cfg["seeds"]))
    lines = []
    for r in rows:
        lines.append(f"| {r['run']} | {r['synapses']} | {r['neurons']}{' (calibrated)' if r['calibrated'] else ''} | "
                     f"{tables.value_cell(r, 'test_acc')} | {tables.number(r, 'hidden_spikes_per_neuron', '.2f')} | "
                     f"{tables.number(r, 'emulation_wall_s', '.0f')} | {tables.number(r, 'chip_time_s', '.3g')} | "
                     f"{tables.number(r, 'biological_time_s', '.3g')} |")
    lines += tables.markdown_notes(rows, "epoch")
    train_time = np.mean([r["train_time_s"] for r in ok]) if ok else float("nan")
    scales = ", ".join(f"{r['readout_scale']:.3f}" for r in ok)
    n_train = cfg["data"]["train_limit"] or 60000
    n_test = cfg["data"]["test_limit"] or 10000
    text = f"""# Latency-coded Fashion-MNIST on ideal and emulated analog neurons

{cfg['description'] or ''}

Produced by:

```
{meta['command']}
```

* network: 784-{'-'.join(map(str, cfg['model']['hidden']))}-10; current-based LIF hidden neurons with the
  calibration targets of `{chip.name}` (τ_mem {p['tau_mem'] * 1e6:g} µs, τ_syn {p['tau_syn'] * 1e6:g} µs, reset to rest,
  refractory {p['refractory'] * 1e6:g} µs, one {p['dt'] * 1e6:g} µs step per time bin, i.e. {p['dt'] * p['acceleration'] * 1e3:g} ms of
  biological time); integrating read-out, logits = max over time of its membrane
* input: latency code, {cfg['encoding']['t_steps']} bins, τ_eff {cfg['encoding']['tau_eff']:g} bins, θ {cfg['encoding']['theta']:g}
* training (off-chip, float, ideal neurons): surrogate-gradient BPTT (fast sigmoid, scale
  {cfg['model']['surrogate_scale']:g}), Adam lr {cfg['train']['lr']:g}, batch {cfg['train']['batch_size']}, {cfg['train']['epochs']} epoch(s),
  spike-count regularisers {'on' if cfg['train']['regularise'] else 'off'}; {n_train} training / {n_test} test images;
  seeds {seeds} (each seed is one trained network and one emulated chip); mean training time {train_time:.0f} s
* deployment: each layer's max|W| maps to the largest weight of the run's synapses; read-out weights
  scaled by {scales or '–'} (per seed) to keep the read-out membrane inside the analog range
* divergence: a seed whose training loss is NaN/inf, or whose epoch-mean loss is above {cfg['diverge_factor']:g} × its
  first batch's, stops and is left out of the means ("diverged k/n")
* versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}

| run | synapses | neurons | test acc. (%) | hidden spikes / neuron / image | emulation wall time (s) | chip time (s) | biological time (s) |
|---|---|---|---|---|---|---|---|
""" + "\n".join(lines) + f"""

Chip time is the time the emulated chip needs for the test set ({n_test} images × {cfg['encoding']['t_steps']} steps of
{p['dt'] * 1e6:g} µs); biological time is that × {p['acceleration']:g} (the acceleration factor); emulation wall time is
what this machine took to emulate it.

"""
    cal = _calibration_table(results)
    if cal:
        text += ("Calibration of the hidden layer's neurons (true parameters of the emulated chip, spread across "
                 "neurons, mean over seeds):\n\n" + cal + "\n\n")
    if energy_table:
        text += "\n".join(elines) + "\n\n"
    text += "\n".join(f"![{q.stem}](figures/{q.name})" for q in figures) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    return {"table": rows, "figures": [str(q) for q in figures],
            "diverged": divergence.jobs(results, job_id=lambda r: f"seed{r['seed']}"), "energy": energy_table}


def tidy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows of one job's result for sweep tables: one row per run evaluated by the job (a
    diverged seed: one row per run with where and how it diverged)."""
    if divergence.is_diverged(result):
        return [{"run": r["run"], "seed": result["seed"], **divergence.tidy(result),
                 "train_time_s": result["train_time_s"]} for r in result["runs"]]
    return [{"run": r["run"], "seed": result["seed"], "test_acc": r["test_acc"],
             "hidden_spikes_per_neuron": r["hidden_spikes_per_neuron"], "emulation_wall_s": r["emulation_wall_s"],
             "calibration_wall_s": r["calibration_wall_s"], "chip_time_s": r["chip_time_s"],
             "train_time_s": result["train_time_s"], "readout_scale": result["readout_scale"]}
            for r in result["runs"]]
