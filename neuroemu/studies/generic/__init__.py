"""Any rule, on any network, on any chip, from a config: ``experiment: train``.

The config names the network model, the learning rule and the task — the package's own by short
name, or one's own by import path ``package.module:Name``, file ``rules.py:Name`` (relative to the
config) or entry point (:mod:`neuroemu.plugins`) — with their parameters, the training protocol
(:class:`neuroemu.train.Protocol`) and the chip (:class:`neuroemu.chip.Hardware`: card, scheme,
periphery …). Each run is a chip, and may override any field of the model, rule, task or protocol
(e.g. its own learning rate); every run is trained on every seed::

    experiment: train
    seeds: [0, 1, 2]
    model: {name: mlp, sizes: [784, 128, 10]}
    rule: {name: my_rules.py:WeightPerturbation, lr: 0.05}
    task: {name: fashion_mnist, batch_size: 100, train_limit: 10000}
    protocol: {epochs: 2, delays: [3600]}
    runs:
      - {name: float, chip: {card: ideal}}
      - {chip: {card: pcm_nandakumar2018, scheme: mixed_precision}, rule: {lr: 0.1}}

A factory that takes ``rng`` gets its own generator: the model's and devices' from the chip stream,
the task's and the rule's from their own (all from the seed and the run's name). The report is the
final evaluation's metrics (mean ± std over seeds), the drift delays, the chip's pulses and write
energy, and the learning curves.
"""

from __future__ import annotations

import inspect
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ... import divergence
from ...chip import Hardware, build_chip
from ...config import Opt
from ...errors import ConfigError, NeuroemuError
from ...hardware.schemes import PulseLimitWarning
from ...plot import delay_key, delay_label
from ...progress import job_messages
from ...runner import LOCAL_KEYS, check_run_names, identity, local_file, written_file
from .. import tables
from ..common import each_run, energy_section, header, ops_summary, start_report

NAME = "train"
#: What ``check`` adds to each run: the SHA-256 of each plug-in's file (left out of config.yaml).
DERIVED_RUN_KEYS = ("sources",)

PROTOCOL = {
    "epochs": Opt("int", None, 1, 10**6, nullable=True, doc="passes over the task's batches"),
    "updates": Opt("int", None, 1, 10**9, nullable=True, doc="or: this many single updates"),
    "eval_every": Opt("int", None, 1, 10**9, nullable=True, doc="updates between evaluations (update protocols)"),
    "seconds_per_update": Opt("float", 0.0, 0, doc="chip time per update (the drift clock)"),
    "delays": Opt("list", [], doc="seconds after training at which the chip is evaluated again (drift)"),
    "drift_compensation": Opt("bool", False, doc="global drift compensation after training and at every delay"),
    "deploy": Opt("bool", False, doc="train on the float chip, then program the weights onto the run's chip"),
    "watch": Opt("str", "loss", doc="the rule's measurement watched for divergence"),
}

SCHEMA: dict[str, Any] = {
    **header(NAME, divergence.LOSS_FACTOR),
    "model": Opt("any", doc="the network: a name, or {name: ..., its parameters}"),
    "rule": Opt("any", doc="the learning rule: a name, or {name: ..., its parameters}"),
    "task": Opt("any", doc="the data and its evaluation: a name, or {name: ..., its parameters}"),
    "protocol": PROTOCOL,
    "chip": Opt("dict", {}, doc="the chip of every run, unless the run changes it (card, scheme, periphery, ...)"),
    "runs": Opt("list", doc="list of runs: {name, chip, and any changes to model, rule, task, protocol}"),
}

RUN = {"name": Opt("str", None, nullable=True), "chip": Opt("dict", {}, doc="changes to the config's chip"),
       **{k: Opt("dict", {}, doc=f"changes to the config's {k}") for k in ("model", "rule", "task", "protocol")}}
PARTS = ("model", "rule", "task")


def _spec(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return _unreserved(value, where)
    raise ConfigError(f"{where}: expected a name or a mapping with 'name' and its parameters, got {value!r}")


def _unreserved(params: dict[str, Any], where: str) -> dict[str, Any]:
    """``params``, refused when a key at any depth is one of the runner's local keys (they say where
    a file is and are left out of a job's identity)."""

    def check(value: Any, at: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k in LOCAL_KEYS:
                    raise ConfigError(f"{at}.{k}: the name {k!r} is reserved (where a file is on this machine, left "
                                      "out of a job's identity); rename the parameter")
                check(v, f"{at}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                check(v, f"{at}[{i}]")

    check(params, where)
    return dict(params)


def _file_source(name: str) -> tuple[str, str] | None:
    """(file, attribute) of a plug-in named by its file (``path/rule.py:Rule``), else None."""
    source, sep, attr = name.rpartition(":")
    return (source, attr) if sep and (source.endswith(".py") or "/" in source) else None


def _from_here(spec: dict[str, Any], base_dir: Path | None, where: str) -> dict[str, Any]:
    """A plug-in file (named relative to the config's directory, or absolute) is named by its file
    name, its directory kept apart in ``_from``: a local key, left out of the job's identity, which
    holds the file's SHA-256 instead (``sources``). The same job from any working directory,
    checkout or machine."""
    file = _file_source(spec["name"])
    if file is not None:
        if not file[0].endswith(".py"):
            raise ConfigError(f"{where}.name: {file[0]}: expected a Python file, a name ending in .py (file.py:Name)")
        name, local = local_file(file[0], base_dir)
        spec.update(name=f"{name}:{file[1]}", **local)
    return spec


def relocate(raw: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
    """A config written in ``old`` as it reads from ``new``: files named relative to the config (or,
    in a resolved config, by their ``_from`` directory) are named relative to ``new`` (config.yaml
    in a results directory, tuned.yaml in a search's)."""
    def moved(spec: Any) -> Any:
        if isinstance(spec, str):
            return moved({"name": spec})["name"]
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            spec = dict(spec)
            file = _file_source(spec["name"])
            if file is not None:
                spec["name"] = f"{written_file(file[0], spec, old, new)}:{file[1]}"
            spec = identity(spec)
        return spec

    out = {**raw, **{k: moved(raw[k]) for k in PARTS if k in raw}}
    out["runs"] = [{**r, **{k: moved(r[k]) for k in PARTS if isinstance(r, dict) and k in r}} for r in raw["runs"]]
    return out


def _accepts(factory: Any, name: str) -> bool:
    """Whether ``factory`` names the parameter ``name`` (a ``**kwargs`` catch-all does not count:
    it may pass everything on to something that does not take it)."""
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _load(kind: str, spec: dict[str, Any], where: str) -> Any:
    from ... import plugins

    return plugins.load(kind, spec["name"], base_dir=spec.get("_from"), where=f"{where}.name")


def _make(kind: str, spec: dict[str, Any], where: str, **optional: Any) -> Any:
    """Build a part, passing each of ``optional`` only when its factory takes it."""
    from ... import plugins

    factory = _load(kind, spec, where)
    extra = {k: v for k, v in optional.items() if _accepts(factory, k) and k not in spec}
    return plugins.make(kind, identity(spec), base_dir=spec.get("_from"), where=where, **extra)


def check(cfg: dict[str, Any], where: str, base_dir: Path | None = None) -> dict[str, Any]:
    """Merge every run's changes into the config's model, rule, task, protocol and chip; check that
    the parts load, the chip builds and the protocol is whole; keep each card's numbers in its run."""
    from ... import plugins
    from ...config import validate
    from ...train import Protocol

    base = {k: _from_here(_spec(cfg[k], f"{where} {k}"), base_dir, f"{where} {k}") for k in PARTS}
    runs = []
    for w, raw in each_run(cfg, where, RUN):
        run: dict[str, Any] = {"name": raw["name"]}
        for k in PARTS:
            change = _unreserved(raw[k], f"{w}.{k}")
            run[k] = _from_here(change, base_dir, f"{w}.{k}") if "name" in change else {**base[k], **change}  # a new name: its own parameters
        run["protocol"] = validate({**cfg["protocol"], **raw["protocol"]}, PROTOCOL, f"{w}.protocol")
        try:
            Protocol(**{k: v for k, v in run["protocol"].items() if k != "deploy"})
        except ValueError as exc:
            raise ConfigError(f"{w}.protocol: {exc}") from None
        chip = {**cfg["chip"], **raw["chip"]}
        hw = Hardware.from_config(chip, f"{w}.chip")
        run["chip"] = chip
        run["card_data"] = hw.card.to_dict()  # an edited card reruns
        sources = {}
        for k in PARTS:  # the parts load now, not in a worker
            digest = plugins.source_digest(_load(k, run[k], f"{w}.{k}"))
            if "_from" in run[k]:  # the file the config names; and the module defining the object, when another
                named = plugins.file_digest(Path(run[k]["_from"]) / _file_source(run[k]["name"])[0])
                if digest is not None and digest != named:
                    sources[f"{k}_module"] = digest
                digest = named
            if digest is not None:
                sources[k] = digest
        if sources:  # an edited plug-in file reruns
            run["sources"] = sources
        if run["name"] is None:
            run["name"] = f"{hw.card.name}/{hw.scheme}" + ("/deploy" if run["protocol"]["deploy"] else "")
        runs.append(run)
    check_run_names(runs, where)
    cfg["runs"] = runs
    for k in PARTS:
        cfg[k] = base[k]
    return cfg


def tune_trial(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """A config as a tuning trial (:mod:`neuroemu.tune`): scored on the task's validation set, the
    test set not loaded (tasks that take ``test``), no drift delays."""
    for i, run in enumerate(cfg["runs"]):
        factory = _load("task", run["task"], f"{where} runs[{i}].task")
        if not run["task"].get("validation"):
            raise ConfigError(f"{where} runs[{i}].task.validation: tuning scores its trials on held-out training "
                              "data, never on the test set; hold some out (e.g. task: {validation: 5000})")
        if _accepts(factory, "test"):
            run["task"] = {**run["task"], "test": False}
        run["protocol"] = {**run["protocol"], "delays": []}
    return cfg


#: How ``neuroemu tune`` searches this experiment: trials scored by the validation accuracy, the
#: rungs shorten ``protocol.epochs``, and a run may have its own rule, protocol, task or model values
#: (``rule.lr`` per run).
TUNE = {"metric": "val_acc", "mode": "max", "resource": "protocol.epochs",
        "sections": ("rule", "protocol", "task", "model"), "trial": tune_trial,
        "about": "trials are scored on training data held out of training (task.validation); the test set is not "
                 "loaded"}


def prepare(cfg: dict[str, Any]) -> None:
    """Nothing to fetch before the workers start: a task loads its own data."""


def jobs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    from ..._version import __version__

    return [{"id": f"{run['name']}@seed{seed}", "run": run, "seed": seed, "diverge_factor": cfg["diverge_factor"],
             "neuroemu": __version__} for run in cfg["runs"] for seed in cfg["seeds"]]


@job_messages(once=(PulseLimitWarning,))
def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Build the run's chip, rule and task, train them with the :class:`~neuroemu.train.Trainer`,
    and return the final metrics, the delays, the chip's counters and the learning curve."""
    from ...record import pulse_histogram
    from ...train import Protocol, Trainer, checkpoint_path

    run = job["run"]
    rng_chip, rng_task, rng_rule = (np.random.default_rng(s) for s in
                                    np.random.SeedSequence([job["seed"], zlib.crc32(run["name"].encode())]).spawn(3))
    hw = Hardware.from_config(run["chip"], "chip")
    model = _make("model", run["model"], "model", rng=rng_chip)
    task = _make("task", run["task"], "task", rng=rng_task)
    rule = _make("rule", run["rule"], "rule", rng=rng_rule)
    p = dict(run["protocol"])
    deploy = p.pop("deploy")
    protocol = Protocol(**p, deploy=hw if deploy else None, diverge_factor=job["diverge_factor"])
    try:
        chip = build_chip(model, Hardware.ideal(hw.w_max) if deploy else hw, rng_chip)
    except NeuroemuError as exc:
        raise ConfigError(f"{run['name']}: {exc}") from None
    result = Trainer(chip, rule, task, protocol, job_id=job["id"], deploy_rng=rng_chip,
                     checkpoint=checkpoint_path(job["id"]), key=identity(job)).run()
    chip, stats = result.chip, result.chip.stats()
    unit = "epoch" if protocol.epochs is not None else "update"
    out = {"run": run["name"], "seed": job["seed"], "card": hw.card.name, "scheme": "ideal" if deploy else hw.scheme,
           "unit": unit, "final": _scalars(result.final),
           "after": {delay_key(d): _scalars(v) for d, v in result.after.items()},
           "pulses": stats["pulses"], "pulses_per_synapse": stats["pulses"] / chip.n_synapses,
           "refreshes": stats["refreshes"], "energy_pJ": stats["energy_pJ"],
           "pulse_limit_hits": stats["pulse_limit_hits"], "train_time_s": result.train_time_s,
           "metrics": [{"run": run["name"], "seed": job["seed"], **_scalars(r)} for r in result.rows],
           "ops": ops_summary(result.ops)}
    if result.diverged is not None:
        out["diverged"] = result.diverged
    else:
        first = next(iter(chip)).tile
        if first is not None:  # an exact float chip has no tiles
            out["pulse_hist"] = pulse_histogram(first)
    return out


def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a mapping (a task may return arrays too; they are not recorded)."""
    return {k: float(v) if isinstance(v, (float, np.floating)) else int(v) if isinstance(v, (int, np.integer))
            else v for k, v in d.items() if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}


# ---------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: every final metric and every metric after each delay (mean, std over the
    seeds that did not diverge), pulses per synapse, refreshes, write energy, train time."""
    rows = []
    for name, rs, ok, seeds in tables.run_groups(results):
        row = {"run": name, "card": rs[0]["card"], "scheme": rs[0]["scheme"], "unit": rs[0]["unit"], **seeds,
               "pulse_limit_hits": sum(r.get("pulse_limit_hits", 0) for r in rs)}
        if ok:
            for key in ok[0]["final"]:
                scale = 100 if key.endswith("_acc") else 1
                row[key], row[f"{key}_std"] = tables.mean_std([r["final"][key] for r in ok], scale)
            for d, values in ok[0]["after"].items():
                for key in values:
                    scale = 100 if key.endswith("_acc") else 1
                    row[f"{key}_after_{d}s"] = float(np.mean([r["after"][d][key] for r in ok]) * scale)
            for key in ("pulses_per_synapse", "refreshes", "train_time_s"):
                row[key] = float(np.mean([r[key] for r in ok]))
            row["energy_uJ"] = float(np.mean([r["energy_pJ"] for r in ok]) * 1e-6)
        rows.append(row)
    return rows


def _main_metric(rows: list[dict[str, Any]]) -> str | None:
    keys = [k for r in rows for k in r if k.endswith("_std")]
    for preferred in ("test_acc", "val_acc"):
        if f"{preferred}_std" in keys:
            return preferred
    return keys[0][:-4] if keys else None


def console_table(rows: list[dict[str, Any]]) -> list[str]:
    main = _main_metric(rows) or "test_acc"
    head = f"{main.replace('_', ' ')}{' %' if main.endswith('_acc') else ''}"
    return tables.console_table(rows, [("pulses/syn", "pulses_per_synapse", ".2f"), ("refreshes", "refreshes", ".0f"),
                                       ("energy uJ", "energy_uJ", ".3g")], main=(head, main, _fmt(main)),
                                unit=rows[0]["unit"])


def _fmt(key: str) -> str:
    """Accuracies (in %) with two decimals, other metrics with four significant digits."""
    return ".2f" if "_acc" in key else ".4g"


def markdown_table(rows: list[dict[str, Any]], unit: str) -> str:
    finals = list(dict.fromkeys(k[:-4] for r in rows for k in r if k.endswith("_std")))
    after = list(dict.fromkeys(k for r in rows for k in r if "_after_" in k))
    head = ["run"] + [f"{k.replace('_', ' ')}{' (%)' if k.endswith('_acc') else ''}" for k in finals] + \
        [k.replace("_after_", " after ").replace("_", " ") for k in after] + \
        ["pulses / synapse", "refreshes", "write energy (µJ)", "train time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["run"]] + [tables.value_cell(r, k, _fmt(k)) for k in finals] + \
            [tables.number(r, k, _fmt(k)) for k in after] + \
            [tables.number(r, "pulses_per_synapse", ".2f"), tables.number(r, "refreshes", ".0f"),
             tables.number(r, "energy_uJ", ".3g"), tables.number(r, "train_time_s", ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + tables.markdown_notes(rows, unit))


def _figures(rows, results, figs: Path) -> list[Path]:
    from ...plot import _file_figure, _save, compute_run_bars, plot_learning_curves, plot_run_bars

    ok, _ = divergence.split(results)
    metrics = [m for r in ok for m in r["metrics"]]
    main = _main_metric(rows)
    paths = []
    unit = results[0]["unit"]
    curve_keys = [k for k in (main, "train_loss") if k and metrics and k in metrics[0]]
    if curve_keys:
        fig = _file_figure(figsize=(5.0 * len(curve_keys), 3.6), layout="constrained")
        for ax, key in zip(np.atleast_1d(fig.subplots(1, len(curve_keys))), curve_keys):
            plot_learning_curves(metrics, ax=ax, x=unit, y=key)
        paths.append(_save(fig, figs / "learning_curves.png", 110))
    kept = [r for r in rows if tables.kept(r) and main in r]
    if kept:
        fig = _file_figure(figsize=(6.0, 1.0 + 0.45 * len(kept)), layout="constrained")
        plot_run_bars(compute_run_bars(kept, main), ax=fig.subplots())
        paths.append(_save(fig, figs / "final.png", 110))
    return paths


def report(cfg: dict[str, Any], results: list[dict[str, Any]], out, meta: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.csv, RESULTS.md and figures; return the summary (for summary.json)."""
    from ...io import atomic_write_text

    out, figs = start_report(out, [m for r in results for m in r["metrics"]])
    rows = table(results)
    figures = _figures(rows, results, figs)
    energy, elines = energy_section(divergence.split(results)[0], figs, figures)
    unit = results[0]["unit"]
    delays = sorted({float(d) for run in cfg["runs"] for d in run["protocol"]["delays"]})

    def part(spec, base=None):
        shown = ", ".join(f"{a} {b}" for a, b in identity(spec).items()  # not where its file is
                          if a != "name" and (base is None or base.get(a) != b))
        return f" ({shown})" if shown else ""

    described = "\n".join(
        [f"* {k}: {cfg[k]['name']}{part(cfg[k])}" for k in PARTS] +
        [f"* run {r['name']}: chip {', '.join(f'{a} {b}' for a, b in r['chip'].items()) or 'ideal'}" +
         "".join(f"; {k}{' ' + r[k]['name'] if r[k]['name'] != cfg[k]['name'] else ''}{part(r[k], cfg[k])}"
                 for k in PARTS if r[k] != cfg[k]) for r in cfg["runs"]])
    text = f"""# {cfg['description'] or 'Training on emulated chips'}

Produced by:

```
{meta['command']}
```

{described}
* protocol: {', '.join(f'{k} {v}' for k, v in cfg['runs'][0]['protocol'].items() if v not in (None, [], False))}
  {'(drift delays: ' + ', '.join(delay_label(d) for d in delays) + ')' if delays else ''}
* seeds {', '.join(map(str, cfg['seeds']))}; a seed whose watched measurement is NaN/inf, or above
  {cfg['diverge_factor']:g} × its first value at an evaluation, stops and is left out of the means
* versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}

{markdown_table(rows, unit)}

""" + "\n".join([*elines, ""]) + "\n".join(f"![{p.stem}](figures/{p.name})" for p in figures) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    return {"table": rows, "figures": [str(p) for p in figures], "diverged": divergence.jobs(results), "energy": energy}


def tidy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per job for sweep tables."""
    row = {"run": result["run"], "seed": result["seed"], **result.get("final", {}),
           **{f"{k}_after_{d}s": v for d, vals in result.get("after", {}).items() for k, v in vals.items()},
           **{k: result[k] for k in ("pulses_per_synapse", "refreshes", "energy_pJ", "train_time_s") if k in result},
           **divergence.tidy(result)}
    return [row]

