"""Bring your own network: a NIR file deployed on emulated hardware, tested on latency-coded Fashion-MNIST.

The network is a NIR graph (``network.file``, read by :func:`neuroemu.interop.nir.from_nir` with
``network.dt``, ``method`` and ``synapse_input``): its input node takes the 784 pixels of an image
as a latency code (:func:`neuroemu.data.encoders.latency_encode`, ``encoding``), its output node has
10 values, and the logits are their maximum over time (:meth:`NIRNetwork.logits
<neuroemu.interop.nir.NIRNetwork.logits>`). No training: the network is deployed as the file holds
it, and every run measures its test accuracy on other hardware:

* ``synapses``: ``float`` (:meth:`Hardware.exact <neuroemu.chip.Hardware.exact>`: the weights as
  float64 arrays, no tiles) or a device card: each weight layer programmed once (scheme ``ideal``)
  with its max|W| mapped onto the card as :meth:`Chip.deploy <neuroemu.chip.Chip.deploy>` does
  (PCM inference cards: max|W| → g_max; the analog chip: max|W| → its largest integer weight;
  other cards: w_max = max|W|), read through exact reads (``periphery: ideal``) or the default
  DAC/ADC/noise (``periphery: default``, output noise and ADC range relative to that full-scale
  weight, as in aihwkit);
* ``neurons``: ``ideal`` (the discretised NIR neurons) or ``analog`` (every LIF and CubaLIF node on
  the analog neurons of ``neuron_card``, ``calibrated`` or not; the mapping and what it
  approximates: :mod:`neuroemu.interop.nir`); ``reset: to_value`` makes every neuron node reset to
  its v_reset instead of what the file says (the analog chip cannot subtract; a network trained
  with reset by subtraction runs on analog neurons only with it, as an approximation).

One job per (run, seed): the seed draws the chip (devices, programming noise, neuron mismatch,
temporal noise); a run on a card that drifts (:func:`drifts`: the PCM cards) is evaluated
after each of ``eval.delays`` seconds after programming (optionally with global drift
compensation), every other run once, right after programming. The reference is the run on
``float`` synapses with ideal neurons and the file's resets (deterministic: every seed gives the
same numbers); when the config has no such run, one named ``float/ideal`` is added in front. The
tables report every run's accuracy and its difference from the reference, hidden spikes per neuron
and image, wall time, and for analog neurons the chip time the test set takes on the chip.

The file's content is part of every job (its SHA-256): an edited file is a different job, and
finished results of the old file are refused (:class:`~neuroemu.runner.ResultsDiffer`).
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ... import energy
from ...config import Opt, check_delays
from ...errors import ConfigError
from ...plot import delay_key, delay_label
from ...runner import check_run_names, local_file, written_file
from .. import tables
from ..common import (DATA, deploy_hardware, each_run, energy_section, header,  # noqa: F401
                      prepare, start_report, wall_time)

NAME = "nir_deploy"
FLOAT = "float"  #: ``synapses`` of the exact float chip (no tiles)
REFERENCE = "float/ideal"  #: name of the reference run added when the config has none
N_PIXELS, N_CLASSES = 784, 10
SPIKING = ("IF", "LIF", "CubaLIF")  #: NIR node types whose outputs are spikes

SCHEMA: dict[str, Any] = {
    **header(NAME, 5.0, seeds_doc="one emulated chip per seed (devices, mismatch, noise)"),
    "network": {
        "file": Opt("str", doc="the .nir file (relative to this config's directory)"),
        "dt": Opt("float", 1e-3, 1e-12, 1e6, doc="time step, in the graph's time unit (seconds)"),
        "method": Opt("str", "exact", choices=("exact", "euler"), doc="discretisation of the neuron ODEs"),
        "synapse_input": Opt("str", None, nullable=True, choices=("hold", "impulse"),
                             doc="how CubaLIF/CubaLI read their input (null: the nodes' metadata, else hold)"),
        "sha256": Opt("str", None, nullable=True,
                      doc="the file's SHA-256 (filled in; when given, the file must have it)"),
    },
    "data": {k: v for k, v in DATA.items() if k != "train_limit"},
    "encoding": {
        "t_steps": Opt("int", 100, 1, 100000, doc="time steps per image"),
        "tau_eff": Opt("float", 20.0, 1e-9, 1e9, doc="latency code: spike at tau_eff·ln(x/(x−theta)) steps"),
        "theta": Opt("float", 0.2, 0, 1, doc="latency code: pixels <= theta never spike"),
    },
    "eval": {
        "batch_size": Opt("int", 250, 1, 100000),
        "delays": Opt("list", [0.0, 3600.0, 86400.0], check=check_delays,
                      doc="seconds after programming at which drifting cards are evaluated"),
        "drift_compensation": Opt("bool", False, doc="global drift compensation before each evaluation"),
    },
    "runs": Opt("list", doc="list of runs: {name, synapses, periphery, neurons, neuron_card, calibrated, reset}"),
}

RUN = {
    "name": Opt("str", None, nullable=True),
    "synapses": Opt("str", FLOAT, doc="device card of the weights, or 'float' (exact, no tiles)"),
    "periphery": Opt("str", "ideal", choices=("ideal", "default"),
                     doc="crossbar periphery: exact reads, or the default DAC/ADC/noise"),
    "neurons": Opt("str", "ideal", choices=("ideal", "analog")),
    "neuron_card": Opt("str", "brainscales2", doc="analog_chip card of analog neurons"),
    "calibrated": Opt("bool", False, doc="calibrate the analog neurons first"),
    "reset": Opt("str", None, nullable=True, choices=("to_value",),
                 doc="null: the file's resets; to_value: every neuron node resets to its v_reset"),
}


# ---------------------------------------------------------------------------------------- config
def located(net: dict[str, Any]) -> Path:
    """Where a ``network`` section's file is: in its ``_from`` directory when the config was resolved."""
    return Path(net.get("_from", "")) / net["file"]


def network(net: dict[str, Any], run: dict[str, Any], rng: Any = None, *, calibrated: bool | None = None):
    """The :class:`~neuroemu.interop.nir.NIRNetwork` of a resolved ``network`` section with a run's
    neurons (``calibrated`` overrides the run's; ``rng``: the analog neurons' mismatch and
    calibration)."""
    from ...interop.nir import from_nir, require_nir

    nir = require_nir()
    graph = nir.read(located(net))
    if run["reset"] == "to_value":
        _reset_to_value(graph)
    return from_nir(graph, dt=net["dt"], method=net["method"], synapse_input=net["synapse_input"],
                    neurons=run["neurons"], neuron_card=run["neuron_card"],
                    calibrated=run["calibrated"] if calibrated is None else calibrated, rng=rng)


def _reset_to_value(graph: Any) -> None:
    """Every neuron node of ``graph`` (nested graphs included) resets to its v_reset."""
    for node in graph.nodes.values():
        if hasattr(node, "nodes"):
            _reset_to_value(node)
        elif type(node).__name__ in SPIKING:
            meta = dict(node.metadata or {})
            meta["neuroemu"] = {**dict(meta.get("neuroemu") or {}), "reset": "to_value"}
            node.metadata = meta


def is_reference(run: dict[str, Any]) -> bool:
    """The float network with ideal neurons and the file's resets."""
    return run["synapses"] == FLOAT and run["neurons"] == "ideal" and run["reset"] is None


def drifts(card: Any) -> bool:
    """Whether the card's devices drift: a PCM inference card (state-dependent ν), or a card whose
    ``drift_nu`` or ``drift_nu_std`` is above 0."""
    p = card.params
    return card.kind == "pcm_inference" or p.get("drift_nu", 0.0) > 0 or p.get("drift_nu_std", 0.0) > 0


def relocate(raw: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
    """A config written in ``old`` (or resolved: ``network._from``) as it reads from ``new``: a
    relative ``network.file`` is named relative to ``new`` (config.yaml in a results directory,
    tuned.yaml in a search's)."""
    net = dict(raw["network"])
    net["file"] = written_file(net["file"], net, old, new)
    return {**raw, "network": net}


def check(cfg: dict[str, Any], where: str, base_dir: Path | None = None) -> dict[str, Any]:
    """Resolve the network file (relative to the config's directory; named in the jobs by its file
    name and SHA-256, its directory kept in the local key ``_from``), build the network and every run's
    hardware and neurons once on the real graph (a mistake fails now, not in a worker), add the
    reference run when it is missing."""
    from ...chip import Hardware
    from ...errors import NeuroemuError
    from ...hardware.cards import load_card
    from ...interop.nir import require_nir
    from ...plugins import file_digest

    net = cfg["network"]
    w = f"{where} network.file"
    try:
        require_nir()
    except ImportError as exc:
        raise ConfigError(f"{where} network: {exc}") from None
    written = net["file"]
    path = Path(written)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if not path.is_file():
        raise ConfigError(f"{w}: no such NIR file {path}")
    digest = file_digest(path)
    if net["sha256"] is not None and net["sha256"] != digest:
        raise ConfigError(f"{where} network.sha256: {path} has SHA-256 {digest}, not the {net['sha256']} the "
                          "config pins (the file changed)")
    name, local = local_file(written, base_dir)  # named by its file name and SHA-256; where it is stays local
    net.update(file=name, sha256=digest, **local)

    ideal = {"synapses": FLOAT, "neurons": "ideal", "neuron_card": "brainscales2", "calibrated": False, "reset": None}
    try:
        model = network(net, ideal)
    except (ConfigError, OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{w}: {path}: {exc}") from None
    shape = model.nodes[model.input_name].in_shape
    if int(np.prod(shape)) != N_PIXELS:
        raise ConfigError(f"{w}: the network's input has shape {shape}; expected {N_PIXELS} values (28×28 "
                          "Fashion-MNIST pixels)")
    n_out = int(np.prod(model.nodes[model.output_name].out_shape))
    if n_out != N_CLASSES:
        raise ConfigError(f"{w}: the network's output has {n_out} values; expected {N_CLASSES} (the classes)")

    runs = []
    for wr, run in each_run(cfg, where, RUN):
        if run["calibrated"] and run["neurons"] != "analog":
            raise ConfigError(f"{wr}.calibrated: only analog neurons are calibrated; got neurons {run['neurons']!r}")
        if run["synapses"] == FLOAT:
            if run["periphery"] != "ideal":
                raise ConfigError(f"{wr}.periphery: '{FLOAT}' synapses have no tiles, hence no periphery; expected "
                                  "'ideal' (or give a card, e.g. 'ideal' for float tiles)")
        else:
            try:
                card = load_card(run["synapses"])
                Hardware(card=card, scheme="ideal").check(f"{wr}.synapses")
            except NeuroemuError as exc:
                raise ConfigError(f"{wr}.synapses: {exc}") from None
            run["card_data"] = {"synapses": card.to_dict()}  # the cards' numbers: an edited card reruns
        if run["neurons"] == "analog":
            try:
                ncard = load_card(run["neuron_card"])
            except NeuroemuError as exc:
                raise ConfigError(f"{wr}.neuron_card: {exc}") from None
            if ncard.kind != "analog_chip":
                raise ConfigError(f"{wr}.neuron_card: expected an analog_chip card (e.g. brainscales2), got "
                                  f"{ncard.name} (kind '{ncard.kind}')")
            run["card_data"] = {**run.get("card_data", {}), "neurons": ncard.to_dict()}
            try:
                network(net, run, rng=0, calibrated=False)  # the mapping onto the chip, without calibrating
            except ConfigError as exc:
                hint = ("; set `reset: to_value` on the run to reset to v_reset instead (an approximation of the "
                        "trained network)") if "subtract" in str(exc) else ""
                raise ConfigError(f"{wr}.neurons: {exc}{hint}") from None
        if run["name"] is None:
            run["name"] = "/".join([run["synapses"], *(["default periphery"] if run["periphery"] == "default" else []),
                                    "analog" + ("/calibrated" if run["calibrated"] else "") if run["neurons"] == "analog"
                                    else "ideal", *(["reset to value"] if run["reset"] else [])])
        runs.append(run)
    if not any(is_reference(r) for r in runs):
        if any(r["name"] == REFERENCE for r in runs):
            raise ConfigError(f"{where} runs: the run named {REFERENCE!r} is not the reference (float synapses, ideal "
                              "neurons, the file's resets); rename it or add the reference run")
        runs.insert(0, {**validate_run(ideal), "name": REFERENCE})
    check_run_names(runs, where)
    cfg["runs"] = runs
    return cfg


def validate_run(run: dict[str, Any]) -> dict[str, Any]:
    from ...config import validate

    return validate(dict(run), RUN, "reference run")


def jobs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """One job per (run, seed)."""
    from ..._version import __version__

    common = {k: cfg[k] for k in ("network", "data", "encoding", "eval")}
    return [{"id": f"{run['name']}@seed{seed}", "run": run, "seed": seed, "neuroemu": __version__, **common}
            for run in cfg["runs"] for seed in cfg["seeds"]]


# ---------------------------------------------------------------------------------------- one job
def _hardware(run: dict[str, Any]):
    """A function of a layer's weights giving the run's tile hardware (max|W| = full scale)."""
    from ...hardware.cards import load_card

    card = load_card(run["synapses"])
    return deploy_hardware(card, run["periphery"]), card


class SpikeReads:
    """A chip layer whose binary inputs (spikes, the latency code) go through its tile's spike path
    (bool reads: no DAC; the synapse array of an analog chip instead of its MAC mode), as a
    neuromorphic chip's synapses are driven; other inputs through the usual read."""

    def __init__(self, layer: Any):
        self.layer = layer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.layer, name)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.bool_ and np.all((x == 0) | (x == 1)):
            x = x > 0
        return self.layer.forward(x)


def deploy(model: Any, run: dict[str, Any], seed: int, *, compensate_drift: bool = False):
    """(the network's layers on the run's synapses, their card or None): devices of layer k from
    (seed, k, card), binary inputs read as spikes (:class:`SpikeReads`)."""
    from ...chip import Chip, Hardware

    chip = model.build(Hardware.exact())
    if run["synapses"] == FLOAT:
        return chip, None
    hardware, card = _hardware(run)
    rngs = [np.random.default_rng([seed, 1 + k, zlib.crc32(card.name.encode())]) for k in range(len(chip))]
    on = chip.deploy(hardware, rngs, compensate_drift=compensate_drift)
    return Chip(on.model, [SpikeReads(layer) for layer in on], on.hardware), card


def evaluate(chip: Any, x: np.ndarray, y: np.ndarray, enc: dict[str, Any], batch: int,
             rng: np.random.Generator) -> tuple[float, float]:
    """(test accuracy, spikes per spiking neuron and image) of the network on ``chip``; the logits
    are the output's maximum over time; ``rng``: the analog neurons' temporal noise."""
    from ...data.encoders import latency_encode

    model = chip.model
    shape = model.nodes[model.input_name].in_shape
    spiking = [n for n, c in model.nodes.items() if c.kind in SPIKING]
    n_neurons = sum(int(np.prod(model.nodes[n].out_shape)) for n in spiking)
    correct, spikes = 0, 0.0
    for i in range(0, len(x), batch):
        s = latency_encode(x[i:i + batch], t_steps=enc["t_steps"], tau_eff=enc["tau_eff"], theta=enc["theta"])
        s = np.asarray(s, np.float64).reshape(s.shape[0], s.shape[1], *shape)
        out, rec = model.forward(chip, s, record=True, rng=rng)
        correct += int((out.max(axis=0).argmax(axis=1) == y[i:i + batch]).sum())
        spikes += float(sum(rec.outputs[n].sum() for n in spiking))
    return correct / len(x), spikes / len(x) / max(n_neurons, 1)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Build the network with the run's neurons (the seed's chip), program it onto the run's
    synapses, and measure test accuracy after each delay (drifting cards) or once."""
    from ...data import load_fashion_mnist
    from ...hardware.cards import load_card
    from ...progress import JobProgress

    run, seed, ev, data, enc = job["run"], job["seed"], job["eval"], job["data"], job["encoding"]
    xte, yte = load_fashion_mnist("test", data_dir=data["dir"], download=data["download"], limit=data["test_limit"])
    t0 = time.perf_counter()
    model = network(job["network"], run, rng=np.random.default_rng([seed, 100]))
    chip, card = deploy(model, run, seed, compensate_drift=ev["drift_compensation"])
    build_s = time.perf_counter() - t0
    noise = np.random.default_rng([seed, 300, zlib.crc32(run["name"].encode())])
    delays = ev["delays"] if card is not None and drifts(card) else [0.0]
    progress = JobProgress(job["id"])
    acc, wall, elapsed, spikes, ops = {}, {}, 0.0, None, None
    for d in delays:
        chip.advance(d - elapsed)
        elapsed = d
        if ev["drift_compensation"] and card is not None:
            chip.compensate_drift()
        t1 = time.perf_counter()
        before = chip.ops()
        a, rate = evaluate(chip, xte, yte, enc, ev["batch_size"], noise)
        if ops is None:  # the test set's inferences right after programming
            ops = energy.per_sample(chip, energy.diff(chip.ops(), before), len(xte))
        wall[delay_key(d)] = time.perf_counter() - t1
        acc[delay_key(d)] = a
        spikes = rate if spikes is None else spikes
        progress.log(f"{delay_label(d) if d else '0 s'} after programming: test accuracy {100 * a:.2f} %")
    steps = len(xte) * enc["t_steps"]
    out = {"run": run["name"], "seed": seed, "synapses": run["synapses"], "periphery": run["periphery"],
           "neurons": run["neurons"], "calibrated": run["calibrated"], "reset": run["reset"],
           "reference": is_reference(run), "drifts": len(delays) > 1, "delays": delays,
           "test_acc": acc[delay_key(delays[0])], "test_acc_at": acc, "spikes_per_neuron": spikes,
           "build_wall_s": build_s, "eval_wall_s": wall, "n_test": len(xte),
           "network_time_s": steps * job["network"]["dt"], "ops": ops}
    if run["neurons"] == "analog":
        p = load_card(run["neuron_card"]).params
        out["chip_time_s"] = steps * p["dt"]
    return out


# ---------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: mean ± std over seeds of the accuracy right after programming (and after
    each delay for drifting cards), its difference from the reference, spikes, times."""
    rows = []
    ref = [r["test_acc"] for r in results if r["reference"]]
    ref_acc = float(np.mean(ref)) * 100 if ref else None
    for name, rs, _, seeds in tables.run_groups(results):
        r0 = rs[0]
        row = {"run": name, **{k: r0[k] for k in ("synapses", "periphery", "neurons", "calibrated", "reset",
                                                     "reference", "drifts")}, **seeds}
        row["test_acc"], row["test_acc_std"] = tables.mean_std([r["test_acc"] for r in rs], 100)
        if ref_acc is not None:
            row["vs_reference"] = row["test_acc"] - ref_acc
        if r0["drifts"]:
            for d in r0["delays"]:
                k = delay_key(d)
                row[f"acc_{k}s"], row[f"acc_{k}s_std"] = tables.mean_std([r["test_acc_at"][k] for r in rs], 100)
        row["spikes_per_neuron"] = float(np.mean([r["spikes_per_neuron"] for r in rs]))
        row["eval_wall_s"] = float(np.mean([r["eval_wall_s"][delay_key(r["delays"][0])] for r in rs]))
        row["build_wall_s"] = float(np.mean([r["build_wall_s"] for r in rs]))
        row["network_time_s"] = r0["network_time_s"]
        if "chip_time_s" in r0:
            row["chip_time_s"] = r0["chip_time_s"]
        rows.append(row)
    return rows


def console_table(rows: list[dict[str, Any]]) -> list[str]:
    return tables.console_table(rows, [("vs ref pp", "vs_reference", "+.2f"), ("spikes/neuron", "spikes_per_neuron", ".2f"),
                                       ("eval s", "eval_wall_s", ".1f")], unit="")


def tidy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per job (for sweeps)."""
    return [{"run": result["run"], "seed": result["seed"], "test_acc": result["test_acc"],
             **{f"acc_{k}s": v for k, v in result["test_acc_at"].items()},
             "spikes_per_neuron": result["spikes_per_neuron"], "build_wall_s": result["build_wall_s"],
             "eval_wall_s": sum(result["eval_wall_s"].values()), **({"chip_time_s": result["chip_time_s"]}
                                                                      if "chip_time_s" in result else {})}]


def _figures(rows: list[dict[str, Any]], figs: Path, delays: list[float]) -> list[Path]:
    from ... import plot

    paths = []
    fig = plot._file_figure(figsize=(8, 0.9 + 0.45 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    plot.plot_run_bars(plot.compute_run_bars(rows, "test_acc"), ax=ax, xlabel="test accuracy (%)")
    ref = next((r for r in rows if r["reference"]), None)
    if ref is not None:
        ax.axvline(ref["test_acc"], color="C3", ls="--", lw=1, label=f"ideal network ({ref['test_acc']:.2f} %)")
        ax.legend(fontsize="small", loc="lower left")
    ax.set_title("the NIR network on each run's hardware (mean ± std over seeds)", fontsize="medium")
    paths.append(plot._save(fig, figs / "accuracy.png", 120))
    drifting = [r for r in rows if r["drifts"]]
    if drifting:
        fig = plot._file_figure(figsize=(6.4, 4.2), layout="constrained")
        ax = fig.add_subplot()
        xs = [max(d, 1.0) for d in delays]
        for r in drifting:
            ys = [r[f"acc_{delay_key(d)}s"] for d in delays]
            es = [r[f"acc_{delay_key(d)}s_std"] for d in delays]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=2, label=r["run"])
        if ref is not None:
            ax.axhline(ref["test_acc"], color="C3", ls="--", lw=1, label="ideal network")
        ax.set_xscale("log")
        ax.set_xlabel("time after programming (s; 0 shown at 1 s)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize="small")
        paths.append(plot._save(fig, figs / "drift.png", 120))
    return paths


def report(cfg: dict[str, Any], results: list[dict[str, Any]], out, meta: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.csv, RESULTS.md and figures; return the summary."""
    from ...io import atomic_write_text
    from ...interop.nir import require_nir

    metrics = [{k: v for k, v in t.items()} for r in results for t in tidy(r)]
    out, figs = start_report(out, metrics)
    rows = table(results)
    delays = cfg["eval"]["delays"]
    paths = _figures(rows, figs, delays)
    erows, elines = energy_section(results, figs, paths)
    net, enc, ev = cfg["network"], cfg["encoding"], cfg["eval"]
    n_test = results[0]["n_test"]
    drift_cols = [d for d in delays] if any(r["drifts"] for r in rows) else []
    head = ["run", "synapses", "neurons", "test acc. (%)", "vs ideal (pp)"] + \
        [f"after {delay_label(d) if d else '0 s'}" for d in drift_cols] + \
        ["spikes / neuron / image", "eval wall time (s)", "chip time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        syn = r["synapses"] + (" (default periphery)" if r["periphery"] == "default" else "")
        neu = r["neurons"] + (" (calibrated)" if r["calibrated"] else "") + (", reset to value" if r["reset"] else "")
        cells = [r["run"] + (" (reference)" if r["reference"] else ""), syn, neu, tables.value_cell(r, "test_acc"),
                 tables.number(r, "vs_reference", "+.2f")]
        cells += [tables.value_cell(r, f"acc_{delay_key(d)}s") if r["drifts"] else "–" for d in drift_cols]
        cells += [f"{r['spikes_per_neuron']:.2f}", f"{r['eval_wall_s']:.1f}", tables.number(r, "chip_time_s", ".3g")]
        lines.append("| " + " | ".join(cells) + " |")
    versions = {**meta["versions"], "nir": getattr(require_nir(), "__version__", "?")}
    text = f"""# A NIR network on emulated hardware: latency-coded Fashion-MNIST

{cfg['description'] or ''}

Produced by:

```
{meta['command']}
```

* network: `{net['file']}` (SHA-256 `{net['sha256'][:16]}…`), read with dt {net['dt']:g} s, method `{net['method']}`,
  synapse_input {net['synapse_input'] or 'from the file (else hold)'}; logits = maximum over time of the output node
* input: latency code, {enc['t_steps']} steps, τ_eff {enc['tau_eff']:g} steps, θ {enc['theta']:g}; {n_test} test images
* synapses: each weight layer programmed once, max|W| mapped to the card's full scale; drifting cards
  evaluated {', '.join(delay_label(d) if d else '0 s' for d in delays)} after programming (drift compensation:
  {ev['drift_compensation']}), other runs right after programming
* seeds {', '.join(map(str, cfg['seeds']))} (each seed one emulated chip: devices, neuron mismatch, noise);
  "vs ideal" is the difference from the reference run (float synapses, ideal neurons), in percentage points
* versions: {', '.join(f'{k} {v}' for k, v in versions.items())}; {wall_time(meta)}

""" + "\n".join(lines) + f"""

Spikes are counted over every spiking node (IF, LIF, CubaLIF). Chip time: what the test set takes on the
analog chip ({n_test} images × {enc['t_steps']} chip steps); eval wall time: what this machine took to
emulate one pass over the test set (per seed, right after programming).

""" + "\n".join(elines) + "\n" + "\n".join(f"![{p.stem}](figures/{p.name})" for p in paths) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    return {"table": rows, "figures": [str(p) for p in paths], "energy": erows}
