"""What ``neuroemu tune`` writes (see :mod:`neuroemu.tune`): ``trials.csv``, ``tune.json``,
``tuned.yaml``, ``RESULTS.md`` and ``figures/score_vs_lr.png``, and the console table; and how values
read in job ids and tables. ``p`` is the :class:`neuroemu.tune.Plan` of the search."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .io import atomic_write_json, atomic_write_text, write_csv


def value_text(value: Any) -> str:
    """A value as job ids and tables show it: the shortest round-trip text of a number."""
    if isinstance(value, float):
        return repr(value)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def values_label(values: dict[str, Any]) -> str:
    """Values as one line: ``key=value,...`` in their order."""
    return ",".join(f"{k}={value_text(v)}" for k, v in values.items())


def tuned_config(p: Any, chosen: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The config as written, without its tune section, each run with its chosen values."""
    raw = copy.deepcopy(p.raw)
    for r in p.runs:
        if r.name in chosen:
            p.run_config(r, chosen[r.name], raw)
    return raw


def _space_text(spec: dict[str, Any], values: list[Any]) -> str:
    if "values" in spec:
        return "[" + ", ".join(value_text(v) for v in values) + "]"
    lo, hi = spec["range"]
    return f"{spec['scale']} {lo:g} … {hi:g}, {len(values)} points" + (" (integers)" if spec["int"] else "")


def _lr_key(run: Any) -> str:
    """The key a run's figure puts on its x axis: the first learning-rate-like key, else the first."""
    keys = list(run.space)
    return next((k for k in keys if "lr" in k.split(".")[-1]), keys[0])


def _fmt(score: float | None) -> str:
    return "–" if score is None else f"{score:.4g}"


def console_table(p: Any, trials: list[dict[str, Any]], chosen: dict[str, dict[str, Any]]) -> list[str]:
    """One line per run: its chosen values and their score on the last rung."""
    last = {t["run"]: t for t in trials if t["chosen"]}
    rows = []
    for r in p.runs:
        if not r.tuned:
            rows.append((r.name, "not tuned (as configured)", ""))
            continue
        t = last.get(r.name)
        rows.append((r.name, values_label(chosen[r.name]) if r.name in chosen else "–",
                     _fmt(t["score"]) if t else "–"))
    head = ("run", "chosen", f"{p.metric} ({'lower' if p.mode == 'min' else 'higher'} is better)")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *rows]]


def write(p: Any, out: Path, trials: list[dict[str, Any]], chosen: dict[str, dict[str, Any]],
           meta: dict[str, Any]) -> None:
    keys = list(dict.fromkeys(k for r in p.runs for k in r.space))
    res_col = "validation seeds" if p.resource == "seeds" else p.resource
    rows = []
    for t in trials:
        row = {"run": t["run"], "point": t["point"], "rung": t["rung"], res_col: t["resource"]}
        row.update({k: _cell(t["values"].get(k)) for k in keys})
        row.update({p.metric: t["score"], "seeds": len(t["seeds"]), "diverged": t["diverged"],
                    "promoted": t["promoted"], "chosen": t["chosen"]})
        rows.append(row)
    write_csv(out / "trials.csv", rows)
    raw = tuned_config(p, chosen)
    relocate = getattr(p.module, "relocate", None)  # files the config names relative to itself
    if relocate is not None:
        raw = relocate(raw, Path(p.config_path).resolve().parent, out.resolve())
    done = not meta["failed"] and all(r.name in chosen for r in p.runs if r.tuned)
    if done:
        header = (f"# {p.config_path} with each run's values chosen by\n#   {meta['command']}\n"
                  f"# (trials and scores: {out}/RESULTS.md). Run it on the reported seeds {p.cfg['seeds']}:\n"
                  f"#   neuroemu run {out}/tuned.yaml --out RESULTS_DIR\n")
        atomic_write_text(out / "tuned.yaml", header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    figure = _figure(p, trials, out / "figures") if trials else None
    atomic_write_json(out / "tune.json", {
        "experiment": p.module.NAME, "config": p.config_path, **meta, "method": p.section["method"],
        "budget": p.section["budget"], "eta": p.section["eta"], "configurations_per_rung": p.sizes,
        "resource": p.resource, "resource_per_rung": p.resources, "validation_seeds": p.seeds,
        "reported_seeds": p.cfg["seeds"], "metric": p.metric, "mode": p.mode, "set": p.section["set"],
        "runs": [{"name": r.name, "space": r.space, "grid": r.values, "chosen": chosen.get(r.name)} for r in p.runs],
        "chosen": chosen, "trials": trials, "tuned_config": "tuned.yaml" if done else None,
    })
    atomic_write_text(out / "RESULTS.md", _markdown(p, out, trials, chosen, meta, keys, res_col, figure, done))


def _cell(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def _markdown(p: Any, out: Path, trials, chosen, meta, keys, res_col, figure: Path | None, done: bool) -> str:
    from .studies.common import wall_time

    sec = p.section
    better = "lower" if p.mode == "min" else "higher"
    tuned = [r for r in p.runs if r.tuned]
    if p.resource == "seeds":
        rungs = f"the number of validation seeds scored: {', '.join(map(str, p.resources))} (every trial trains " \
                "for the full length)"
    else:
        rungs = f"{p.resource} = {', '.join(map(str, p.resources))}"
    method = "a grid, every configuration trained with the full resource" if len(p.sizes) == 1 else \
        (f"successive halving over a grid: configurations per rung {' → '.join(map(str, p.sizes))} (each rung keeps "
         f"the best 1/{sec['eta']})")
    trials_line = [p.about] if p.about else []
    if sec["set"]:
        trials_line.append(f"values for the trials only: {', '.join(f'{k} = {value_text(v)}' for k, v in sec['set'].items())}")
    lines = [f"# Tuning: {p.module.NAME}, {p.config_path}", "", "Produced by:", "", "```", meta["command"], "```", "",
             f"* method: {method}; rungs ration {rungs}",
             f"* fairness: every tuned run is searched with the same budget of {sec['budget']} configurations (a grid "
             f"of exactly {sec['budget']} points over its space), the same rungs and the same validation seeds",
             f"* validation seeds: {', '.join(map(str, p.seeds))}, disjoint from the reported seeds "
             f"{', '.join(map(str, p.cfg['seeds']))}",
             *([f"* reported data kept out: {'; '.join(trials_line)}"] if trials_line else []),
             f"* score: {p.metric} ({better} is better), the mean over a trial's seeds; a configuration that diverged "
             "on any seed scores worst; ties go to the earlier grid point",
             f"* compute: {len(trials)} trial(s), {meta['jobs']} job(s)"
             + (f", {meta['train_time_s']:.0f} s of training over all jobs" if meta.get("train_time_s") else "")
             + f"; this invocation: {wall_time(meta)}",
             f"* versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}", ""]
    if meta["failed"]:
        lines += [f"**Unfinished**: {len(meta['failed'])} job(s) failed (first: {next(iter(meta['failed']))}); "
                  "the tables show what finished. Rerun the same command to resume.", ""]
    lines += ["## Chosen values", "", f"| run | searched | chosen | {p.metric} on the last rung | diverged trials |",
              "|---|---|---|---|---|"]
    last = {t["run"]: t for t in trials if t["chosen"]}
    for r in p.runs:
        if not r.tuned:
            lines.append(f"| {r.name} | not tuned (runs as configured) | | | |")
            continue
        searched = "; ".join(f"{k}: {_space_text(r.space[k], r.values[k])}" for k in r.space)
        mine = [t for t in trials if t["run"] == r.name]
        div = sum(1 for t in mine if t["diverged"])
        t = last.get(r.name)
        warn = " (every trial diverged)" if mine and div == len(mine) else ""
        lines.append(f"| {r.name} | {searched} | {values_label(chosen[r.name]) if r.name in chosen else '–'}{warn} | "
                     f"{_fmt(t['score']) if t else '–'} | {div}/{len(mine)} |")
    lines.append("")
    if done:
        lines += [f"[tuned.yaml](tuned.yaml) is the config with each run's chosen values ({len(tuned)} run(s) tuned); "
                  f"it runs on the reported seeds with `neuroemu run {out}/tuned.yaml --out RESULTS_DIR`.", ""]
    if figure is not None:
        lines += [f"![score against learning rate](figures/{figure.name})", ""]
    lines += ["## Every trial", "", "| run | rung | " + res_col + " | " + " | ".join(keys) + f" | {p.metric} | seeds | "
              "diverged | kept |", "|" + "---|" * (len(keys) + 7)]
    for t in trials:
        kept = "chosen" if t["chosen"] else ("promoted" if t["promoted"] else "")
        cells = [t["run"], str(t["rung"]), str(t["resource"])] + \
            [value_text(t["values"][k]) if k in t["values"] else "" for k in keys] + \
            [_fmt(t["score"]), str(len(t["seeds"])), str(t["diverged"]), kept]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figure(p: Any, trials: list[dict[str, Any]], out_dir: Path) -> Path | None:
    """Score against each run's learning rate (or first searched key): one panel per tuned run, one
    colour per rung, diverged trials as crosses at the worst edge, the chosen value starred."""
    from . import plot

    tuned = [r for r in p.runs if r.tuned]
    if not tuned:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    ncol = min(4, len(tuned))
    nrow = math.ceil(len(tuned) / ncol)
    fig = plot._file_figure(figsize=(3.3 * ncol, 2.6 * nrow + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).reshape(-1)
    colors = [f"C{k}" for k in range(10)]
    what = "validation seeds" if p.resource == "seeds" else p.resource
    for ax, r in zip(axes, tuned):
        key = _lr_key(r)
        mine = [t for t in trials if t["run"] == r.name and key in t["values"]]
        xs = [t["values"][key] for t in mine]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        pos = {v: i for i, v in enumerate(dict.fromkeys(map(value_text, xs)))}
        xv = [float(x) if numeric else pos[value_text(x)] for x in xs]
        finite = [t["score"] for t in mine if t["score"] is not None]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        edge = lo if p.mode == "max" else hi
        for rung in range(len(p.sizes)):
            sel = [(x, t) for x, t in zip(xv, mine) if t["rung"] == rung]
            ok = [(x, t["score"]) for x, t in sel if t["score"] is not None]
            bad = [x for x, t in sel if t["score"] is None]
            label = f"rung {rung + 1}: {what} {p.resources[rung]}"
            if ok:
                ax.plot(*zip(*sorted(ok)), "o-" if len(r.space) == 1 else "o", color=colors[rung % 10], ms=4, lw=0.8,
                        label=label)
            if bad:
                ax.plot(bad, [edge] * len(bad), "x", color=colors[rung % 10], ms=6,
                        label=None if ok else label + " (diverged)")
        best = [(x, t["score"]) for x, t in zip(xv, mine) if t["chosen"] and t["score"] is not None]
        if best:
            ax.plot(*zip(*best), "*", color="k", ms=12, label="chosen")
        if numeric and xv and min(xv) > 0 and max(xv) / min(xv) > 10:
            ax.set_xscale("log")
        if finite and lo > 0 and hi / lo > 10:  # a few blown-up trials would flatten the rest
            ax.set_yscale("log")
        if not numeric:
            ax.set_xticks(range(len(pos)), list(pos), fontsize="xx-small")
        ax.set_title(r.name, fontsize="x-small")
        ax.set_xlabel(key, fontsize="x-small")
        ax.set_ylabel(p.metric, fontsize="x-small")
        ax.tick_params(labelsize="x-small")
        ax.legend(fontsize="xx-small")
    for ax in axes[len(tuned):]:
        ax.set_visible(False)
    fig.suptitle(f"{p.metric} ({'lower' if p.mode == 'min' else 'higher'} is better) against each run's learning "
                 "rate, per rung\n× diverged, ★ chosen", fontsize="medium")
    return plot._save(fig, out_dir / "score_vs_lr.png", 110)
