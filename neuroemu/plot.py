"""Plots of device statistics and experiment results.

Each figure comes as a pair: ``compute_*`` returns plain data (dicts of lists, json-ready) and
``plot_*(data, *, ax=None, **kwargs) -> Axes`` draws it. Pass ``ax`` to draw into your own figure;
without it a new figure is made with ``matplotlib.pyplot``. matplotlib is imported only inside the
functions that draw, and nothing here changes rcParams, styles or the backend.

:func:`device_figures` writes the PNGs of ``neuroemu devices plot NAME --out DIR``. It builds its
figures with ``matplotlib.figure.Figure`` on an Agg canvas, so it works without a display and
leaves pyplot's figure list untouched.

Units: conductances in µS, time in s, weights in units of the tile's ``w_max`` (1 = the full
conductance range of one side).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .hardware import response
from .hardware.cards import Card, load_card
from .hardware.crossbar import Periphery, Tile

G_LABEL = "conductance G (µS)"


# ---------------------------------------------------------------------------------------- helpers
def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    return ax


def _file_figure(**kwargs):
    """A figure on an Agg canvas, not registered with pyplot (for writing files)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _card(card: Card | str) -> Card:
    return card if isinstance(card, Card) else load_card(card)


def citation_short(card: Card | str) -> str:
    """Short form of a card's source citation: "Nandakumar et al. 2018", "Gokmen & Vlasov 2016".

    Falls back to the citation's first clause when it does not start with author names.
    """
    cit = _card(card).source.get("citation", "").strip()
    pieces = [p.strip() for p in cit.split(",")]
    authors = []
    for p in pieces:
        words = p.split()
        if 1 <= len(words) <= 5 and all(w[:1].isupper() for w in words) and any(w.endswith(".") for w in words[:-1]):
            authors.append(words[-1])
        else:
            break
    if not authors:
        head = re.split(r"[;(]", cit)[0].strip().rstrip(",")
        return head if len(head) <= 48 else head[:45].rstrip() + "..."
    years = re.findall(r"\((?:[^()]*\b)?((?:19|20)\d\d)\)", cit) or re.findall(r"\b((?:19|20)\d\d)\b", cit)
    who = authors[0] if len(authors) == 1 else (" & ".join(authors) if len(authors) == 2 else f"{authors[0]} et al.")
    return f"{who} {years[-1]}" if years else who


def _title(card: Card, what: str) -> str:
    return f"{card.name}: {what}\n{citation_short(card)}"


# ---------------------------------------------------------------------------------------- pulse response
def compute_pulse_response(card: Card | str, pulses: int = 20, devices: int = 1000, seed: Any = 0, *,
                           direction: str = "up") -> dict[str, Any]:
    """Mean ± std conductance after each pulse (see :func:`neuroemu.hardware.response.pulse_response`)."""
    return response.pulse_response(card, pulses, devices, seed, direction=direction)


def plot_pulse_response(data: Mapping[str, Any], *, ax=None, label: str | None = None, color=None,
                        bounds: bool = True, **kwargs):
    """Mean conductance vs pulse number with a ±1 std band. Pulse 0 is the RESET state.

    Call twice on the same ``ax`` to compare directions or cards. ``kwargs`` go to ``ax.plot``.
    """
    ax = _axes(ax)
    n = np.concatenate([[0], np.asarray(data["pulses"])])
    mean = np.concatenate([[data.get("initial_mean", np.nan)], np.asarray(data["mean"], float)])
    std = np.concatenate([[data.get("initial_std", np.nan)], np.asarray(data["std"], float)])
    if label is None:
        label = f"{data['card']} ({data.get('direction', 'up')})"
    marker = "o" if n.size <= 60 else None
    (line,) = ax.plot(n, mean, color=color, marker=marker, ms=3, label=f"{label}: mean", **kwargs)
    color = line.get_color()
    ax.fill_between(n, mean - std, mean + std, color=color, alpha=0.25, lw=0, label=f"{label}: ±1 std")
    if bounds and "g_max" in data:
        ax.axhline(data["g_max"], color="0.4", ls=":", lw=1)
        ax.axhline(data["g_min"], color="0.4", ls=":", lw=1)
    ax.set_xlabel("pulse number")
    ax.set_ylabel(G_LABEL)
    ax.set_xlim(0, n[-1])
    ax.legend(fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------- drift
def compute_drift(card: Card | str, g0_values: Sequence[float] | None = None, times: Sequence[float] | None = None,
                  devices: int = 1000, seed: Any = 0) -> dict[str, Any]:
    """Mean ± std conductance vs time after programming (see :func:`neuroemu.hardware.response.drift_curve`).

    Defaults: G0 at 25, 50, 75 and 100 % of the card's range; times from 1 s to 10^7 s (about 4
    months), logarithmically spaced.
    """
    card = _card(card)
    if g0_values is None:
        lo, hi = float(card.params["g_min"]), float(card.params["g_max"])
        g0_values = [lo + f * (hi - lo) for f in (0.25, 0.5, 0.75, 1.0)]
    if times is None:
        times = np.logspace(0, 7, 36)
    return response.drift_curve(card, g0_values, times, devices, seed)


def plot_drift(data: Mapping[str, Any], *, ax=None, **kwargs):
    """Conductance vs time since programming (log time axis), one mean ± std band per G0."""
    ax = _axes(ax)
    t = np.asarray(data["times"], float)
    order = np.argsort(t)
    t = t[order]
    for g0, mean, std in zip(data["g0"], data["mean"], data["std"]):
        mean = np.asarray(mean, float)[order]
        std = np.asarray(std, float)[order]
        (line,) = ax.plot(t, mean, label=f"G0 = {g0:.3g} µS", **kwargs)
        color = line.get_color()
        ax.fill_between(t, mean - std, mean + std, color=color, alpha=0.25, lw=0)
    if np.all(t > 0):
        ax.set_xscale("log")
    ax.set_xlabel("time since programming (s)")
    ax.set_ylabel(G_LABEL)
    ax.legend(fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------- read noise
def compute_read_noise(card: Card | str, g_values: Sequence[float] | None = None, reads: int = 2000,
                       seed: Any = 0, *, t: float = 0.0) -> dict[str, Any]:
    """Std of one read vs G (see :func:`neuroemu.hardware.response.read_noise_curve`).

    Default G: 12 values evenly spaced from 5 % to 100 % of the card's range.
    """
    card = _card(card)
    if g_values is None:
        lo, hi = float(card.params["g_min"]), float(card.params["g_max"])
        g_values = np.linspace(lo + 0.05 * (hi - lo), hi, 12)
    return response.read_noise_curve(card, g_values, reads, seed, t=t)


def plot_read_noise(data: Mapping[str, Any], *, ax=None, color=None, **kwargs):
    """Measured read-noise std vs conductance; the card's linear law as a dashed line when it has one."""
    ax = _axes(ax)
    g = np.asarray(data["g"], float)
    ax.plot(g, data["std"], "o-", color=color, ms=4, label=f"measured ({data.get('reads', '?')} reads)", **kwargs)
    if data.get("model_std") is not None:
        ax.plot(g, data["model_std"], "--", color="0.3", lw=1, label="card: σ = rel·G + abs")
    ax.set_xlabel(G_LABEL)
    ax.set_ylabel("read noise σ (µS)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------- histograms
def compute_conductance_histograms(snapshots: Mapping[str, Any], *, bins: int = 50,
                                   g_range: tuple[float, float] | None = None) -> dict[str, Any]:
    """Histograms of device conductances for several snapshots.

    ``snapshots`` maps a label to a :class:`~neuroemu.hardware.crossbar.Tile` (its noiseless conductances
    now) or to an array of conductances (µS). Bins are shared: ``g_range`` or the first tile's card
    range, else the range of the data. Values outside are counted in the edge bins.
    """
    if not snapshots:
        raise ValueError("snapshots: expected at least one snapshot")
    values = {}
    for label, snap in snapshots.items():
        if isinstance(snap, Tile):
            if g_range is None:
                g_range = (snap.prm.g_min, snap.prm.g_max)
            snap = snap.conductances()
        values[str(label)] = np.asarray(snap, float).reshape(-1)
    if g_range is None:
        allv = np.concatenate(list(values.values()))
        g_range = (float(allv.min()), float(allv.max()) if allv.max() > allv.min() else float(allv.min()) + 1.0)
    edges = np.linspace(g_range[0], g_range[1], bins + 1)
    counts = []
    for v in values.values():
        idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, bins - 1)
        counts.append(np.bincount(idx, minlength=bins).tolist())
    return {"unit": "uS", "edges": edges.tolist(), "labels": list(values), "counts": counts}


def histograms_from_recorder(recorder, name: str, steps: Iterable[int] | None = None) -> dict[str, Any]:
    """The conductance histograms a :class:`~neuroemu.record.Recorder` kept for tile ``name``, in the
    format of :func:`compute_conductance_histograms` (``steps``: which snapshots; default up to 5
    evenly spaced)."""
    edges, st, counts = recorder.histograms(name)
    if steps is None:
        pick = np.unique(np.linspace(0, len(st) - 1, min(5, len(st))).round().astype(int))
    else:
        wanted = list(steps)
        missing = sorted(set(wanted) - set(st.tolist()))
        if missing:
            raise ValueError(f"steps {missing} were not observed for tile {name!r}")
        pick = [int(np.flatnonzero(st == s)[0]) for s in wanted]
    return {"unit": "uS", "edges": edges.tolist(), "labels": [f"step {st[i]}" for i in pick],
            "counts": [counts[i].tolist() for i in pick]}


def plot_conductance_histograms(data: Mapping[str, Any], *, ax=None, density: bool = False, **kwargs):
    """Snapshots overlaid as step histograms on one axes (``density``: fraction of devices per bin)."""
    ax = _axes(ax)
    edges = np.asarray(data["edges"], float)
    for label, c in zip(data["labels"], data["counts"]):
        c = np.asarray(c, float)
        if density and c.sum() > 0:
            c = c / c.sum()
        ax.stairs(c, edges, label=label, lw=1.5, **kwargs)
    ax.set_xlabel(G_LABEL)
    ax.set_ylabel("fraction of devices" if density else "devices (count)")
    ax.set_xlim(edges[0], edges[-1])
    ax.legend(fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------- programming
def compute_programmed_vs_target(card: Card | str, targets: Sequence[float] | None = None, seed: Any = 0, *,
                                 method: str = "write", max_pulses: int = 100, t: float = 0.0) -> dict[str, Any]:
    """Programmed vs target weights (see :func:`neuroemu.hardware.response.programmed_vs_target`).

    Default targets: 400 values uniform over 1.1× the tile's nominal weight range (so clipping at
    the bounds shows).
    """
    card = _card(card)
    if targets is None:
        lo, hi = Tile(1, 1, card, periphery=Periphery.ideal(), rng=0).w_range
        mid, half = 0.5 * (lo + hi), 0.55 * (hi - lo)
        targets = np.random.default_rng(seed).uniform(mid - half, mid + half, 400)
    return response.programmed_vs_target(card, targets, seed, method=method, max_pulses=max_pulses, t=t)


def plot_programmed_vs_target(data: Mapping[str, Any], *, ax=None, color=None, **kwargs):
    """Scatter of programmed vs target weight with the identity line and the rms error in the legend."""
    ax = _axes(ax)
    x = np.asarray(data["target"], float)
    y = np.asarray(data["programmed"], float)
    lo, hi = data.get("w_range", (x.min(), x.max()))
    inside = (x >= lo) & (x <= hi)
    rms = float(np.sqrt(np.mean((y[inside] - x[inside]) ** 2))) if inside.any() else float("nan")
    ax.scatter(x, y, s=6, alpha=0.6, color=color, label=f"programmed (rms error {rms:.3g})",
               **kwargs)
    span = [min(x.min(), y.min()), max(x.max(), y.max())]
    ax.plot(span, span, "k--", lw=1, label="identity")
    ax.set_xlabel("target weight (w_max units)")
    ax.set_ylabel("programmed weight (w_max units)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------- study results
def _is_acc(name: str) -> bool:
    return "acc" in name.lower()


def _percent(values: np.ndarray, metric: str, percent: bool | None) -> bool:
    if percent is not None:
        return percent
    v = values[np.isfinite(values)]
    return _is_acc(metric) and v.size > 0 and v.min() >= 0 and v.max() <= 1


def _metric_label(metric: str, percent: bool) -> str:
    text = metric.replace("_", " ")
    if percent:
        return f"{text} (%)"
    return f"{text} (fraction)" if _is_acc(metric) else text


def compute_accuracy_bars(rows: Iterable[Mapping[str, Any]], *, metric: str = "accuracy", group: str = "card",
                          hue: str = "scheme") -> dict[str, Any]:
    """Mean ± std (over rows, e.g. seeds) of ``metric`` per (``group``, ``hue``) pair.

    Groups and hues keep the order they first appear in. Missing pairs hold NaN (n = 0).
    """
    rows = list(rows)
    groups: dict[str, None] = {}
    hues: dict[str, None] = {}
    vals: dict[tuple[str, str], list[float]] = {}
    for i, r in enumerate(rows):
        for key in (metric, group, hue):
            if key not in r:
                raise ValueError(f"row {i}: missing field {key!r} (has {', '.join(map(str, r))})")
        g, h = str(r[group]), str(r[hue])
        groups.setdefault(g)
        hues.setdefault(h)
        vals.setdefault((g, h), []).append(float(r[metric]))
    mean = [[float(np.mean(vals[g, h])) if (g, h) in vals else math.nan for h in hues] for g in groups]
    std = [[float(np.std(vals[g, h])) if (g, h) in vals else math.nan for h in hues] for g in groups]
    n = [[len(vals.get((g, h), [])) for h in hues] for g in groups]
    return {"metric": metric, "group": group, "hue": hue, "groups": list(groups), "hues": list(hues),
            "mean": mean, "std": std, "n": n}


def plot_accuracy_bars(rows, *, ax=None, metric: str = "accuracy", group: str = "card", hue: str = "scheme",
                       percent: bool | None = None, **kwargs):
    """Grouped bars: one group per ``group`` value (card), one bar per ``hue`` value (scheme), error
    bars ±1 std over repeated rows (seeds). ``rows``: result dicts, or the output of
    :func:`compute_accuracy_bars`. Accuracies in [0, 1] are shown in % unless ``percent=False``."""
    data = rows if isinstance(rows, Mapping) and "groups" in rows else compute_accuracy_bars(
        rows, metric=metric, group=group, hue=hue)
    ax = _axes(ax)
    mean = np.asarray(data["mean"], float).reshape(len(data["groups"]), len(data["hues"]))
    std = np.asarray(data["std"], float).reshape(mean.shape)
    n = np.asarray(data["n"]).reshape(mean.shape)
    pct = _percent(mean, data["metric"], percent)
    f = 100.0 if pct else 1.0
    x = np.arange(len(data["groups"]))
    width = 0.8 / max(len(data["hues"]), 1)
    for j, h in enumerate(data["hues"]):
        err = np.where(n[:, j] > 1, std[:, j], np.nan) * f
        ax.bar(x - 0.4 + (j + 0.5) * width, mean[:, j] * f, width, yerr=err, capsize=2, label=h, **kwargs)
    ax.set_xticks(x, data["groups"])
    ax.set_xlabel(data["group"])
    ax.set_ylabel(_metric_label(data["metric"], pct))
    ax.legend(title=data["hue"], fontsize="small")
    return ax


def compute_learning_curves(metrics_rows: Iterable[Mapping[str, Any]], *, x: str = "epoch",
                            y: str = "test_accuracy", run: str | Sequence[str] = "run") -> dict[str, Any]:
    """``y`` vs ``x`` per run from metrics rows (rows lacking ``x`` or ``y`` are skipped).

    ``run`` names the field(s) that identify a run (e.g. ``("card", "scheme", "seed")``); rows
    without them belong to one unnamed run.
    """
    keys = [run] if isinstance(run, str) else list(run)
    runs: dict[str, dict[str, list[float]]] = {}
    for r in metrics_rows:
        if r.get(x, "") == "" or r.get(y, "") == "":
            continue
        label = " ".join(str(r[k]) for k in keys if k in r) or "run"
        d = runs.setdefault(label, {"x": [], "y": []})
        d["x"].append(float(r[x]))
        d["y"].append(float(r[y]))
    for d in runs.values():
        order = np.argsort(d["x"], kind="stable")
        d["x"] = [d["x"][i] for i in order]
        d["y"] = [d["y"][i] for i in order]
    return {"x": x, "y": y, "runs": runs}


def plot_learning_curves(metrics_rows, *, ax=None, x: str = "epoch", y: str = "test_accuracy",
                         run: str | Sequence[str] = "run", percent: bool | None = None, **kwargs):
    """``y`` (default test accuracy) vs ``x`` (default epoch), one line per run. ``metrics_rows``:
    rows of a metrics.csv (:func:`neuroemu.record.read_csv`) or :func:`compute_learning_curves` output."""
    data = metrics_rows if isinstance(metrics_rows, Mapping) and "runs" in metrics_rows else \
        compute_learning_curves(metrics_rows, x=x, y=y, run=run)
    ax = _axes(ax)
    allv = np.array([v for d in data["runs"].values() for v in d["y"]], float)
    pct = _percent(allv, data["y"], percent)
    f = 100.0 if pct else 1.0
    for label, d in data["runs"].items():
        ax.plot(d["x"], np.asarray(d["y"]) * f, marker="o" if len(d["x"]) <= 30 else None, ms=3, label=label,
                **kwargs)
    ax.set_xlabel(data["x"].replace("_", " "))
    ax.set_ylabel(_metric_label(data["y"], pct))
    if data["runs"]:
        ax.legend(fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------- device figures
def _save(fig, path: Path, dpi: int) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=dpi, format="png")
    os.replace(tmp, path)
    return path


def _figure_pulses(card: Card) -> int:
    if card.kind == "pcm_set":
        return 40
    span = float(card.params["g_max"] - card.params["g_min"])
    return int(min(max(math.ceil(0.6 * span / card.nominal_step), 10), 3000))


def device_figures(card: Card | str, out_dir: str | os.PathLike, seed: Any = 0, *, devices: int = 1000,
                   dpi: int = 120) -> list[Path]:
    """Write the device PNGs of a card into ``out_dir``; returns their paths.

    * ``<name>_pulse_response.png`` — from RESET, SET pulses (``pcm_set``) or up and down pulses
      (bidirectional cards) until 10 % past the bound; skipped for cards programmed by target.
    * ``<name>_drift.png`` — conductance vs time for four G0.
    * ``<name>_read_noise.png`` — single-read std vs G.
    * ``<name>_programmed_vs_target.png`` — ``pcm_set`` cards by SET pulses with read-verify (how
      they are really written), other cards by target (``Tile.write``).

    ``analog_chip`` cards get :func:`chip_figures` instead.
    """
    card = _card(card)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if card.kind == "analog_chip":
        return chip_figures(card, out, seed, dpi=dpi)
    paths = []
    size = (6.4, 4.6)
    if card.pulsable:
        fig = _file_figure(figsize=size, layout="constrained")
        ax = fig.add_subplot()
        n = _figure_pulses(card)
        directions = ("up", "down") if card.bidirectional else ("up",)
        for d in directions:
            data = compute_pulse_response(card, n, devices, seed, direction=d)
            plot_pulse_response(data, ax=ax, label=("SET" if card.kind == "pcm_set" else d), bounds=(d == "up"))
        ax.set_title(_title(card, f"pulse response ({devices} devices)"), fontsize="medium")
        paths.append(_save(fig, out / f"{card.name}_pulse_response.png", dpi))

    fig = _file_figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    plot_drift(compute_drift(card, devices=devices, seed=seed), ax=ax)
    drifts = card.kind == "pcm_inference" or card.params.get("drift_nu", 0.0) > 0
    ax.set_title(_title(card, "drift" if drifts else "drift (this card does not drift)"), fontsize="medium")
    paths.append(_save(fig, out / f"{card.name}_drift.png", dpi))

    fig = _file_figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    data = compute_read_noise(card, reads=max(devices, 1000), seed=seed)
    plot_read_noise(data, ax=ax)
    noisy = any(s > 0 for s in data["std"])
    what = "read noise" if noisy else "read noise (none in this card)"
    if card.kind == "pcm_inference":
        what = "read noise just after programming (1/f: grows with time)"
    ax.set_title(_title(card, what), fontsize="medium")
    paths.append(_save(fig, out / f"{card.name}_read_noise.png", dpi))

    fig = _file_figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    method = "verify" if card.kind == "pcm_set" else "write"
    plot_programmed_vs_target(compute_programmed_vs_target(card, seed=seed, method=method), ax=ax)
    how = "SET pulses with read-verify" if method == "verify" else "write by target"
    ax.set_title(_title(card, f"programmed vs target ({how})"), fontsize="medium")
    paths.append(_save(fig, out / f"{card.name}_programmed_vs_target.png", dpi))
    return paths


# ---------------------------------------------------------------------------------------- analog chips
_PARAM_LABELS = {"v_leak": "leak potential (LSB)", "v_reset": "reset potential (LSB)", "v_th": "threshold (LSB)",
                 "tau_mem": "τ_mem (µs)", "tau_syn": "τ_syn (µs)", "gain": "synaptic gain (relative)"}


def compute_calibration(card: Card | str = "brainscales2", n: int | None = None, seed: Any = 0):
    """A chip of ``n`` neurons (default: the whole chip) drawn from ``seed`` and calibrated; returns
    the :class:`~neuroemu.hardware.calibration.CalibrationReport` (true values before and after)."""
    from .hardware.calibration import calibrate
    from .hardware.substrate import AnalogNeurons

    card = _card(card)
    chip = AnalogNeurons(n or int(card.params["n_neurons"]), card, rng=seed)
    return calibrate(chip, rng=np.random.SeedSequence([0 if seed is None else int(seed), 1]).generate_state(1)[0])


def plot_calibration(report, name: str, *, ax=None, bins: int = 40, **kwargs):
    """Histogram of one parameter across neurons before and after calibration, with the target."""
    ax = _axes(ax)
    scale = 1e6 if name.startswith("tau") else 1.0
    before, after = report.before[name] * scale, report.after[name] * scale
    lo, hi = min(before.min(), after.min()), max(before.max(), after.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    sb, sa = report.spread_before[name], report.spread_after[name]
    unit = (lambda v: f"{v:.2g} LSB") if name in ("v_leak", "v_reset", "v_th") else (lambda v: f"{100 * v:.2g} %")
    ax.hist(before, bins=edges, alpha=0.6, label=f"uncalibrated (spread {unit(sb)})", **kwargs)
    ax.hist(after, bins=edges, alpha=0.8, label=f"calibrated (spread {unit(sa)})", **kwargs)
    ax.axvline(report.targets[name] * scale, color="k", lw=1, ls="--", label="target")
    ax.set_xlabel(_PARAM_LABELS.get(name, name))
    ax.set_ylabel("neurons")
    ax.legend(fontsize="x-small")
    return ax


def compute_mac_transfer(card: Card | str = "brainscales2", samples: int = 4000, seed: Any = 0):
    """One 128-row block of the analog MAC on random 5-bit inputs and 6-bit weights whose mean sweeps
    the whole signed range: ideal gain·Σxw against the ADC output (with and without noise)."""
    from .hardware.analog import MACParams, hagen_mac

    card = _card(card)
    p = MACParams.from_card(card)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, p.x_max + 1, (samples, p.block)).astype(np.float64)
    mean = rng.uniform(-1, 1, (samples, 1)) * p.w_max
    w = np.clip(np.rint(mean + 0.3 * p.w_max * rng.standard_normal((samples, p.block))), -p.w_max, p.w_max)
    ideal = p.gain * (x * w).sum(axis=1)
    out = np.empty(samples)
    quiet = np.empty(samples)
    for k in range(samples):  # one output column per sample: weights differ per sample
        out[k] = hagen_mac(x[k:k + 1], w[k:k + 1], p, rng=rng)[0, 0]
        quiet[k] = hagen_mac(x[k:k + 1], w[k:k + 1], dataclasses.replace(p, noise_std=0.0))[0, 0]
    return {"ideal": ideal, "out": out, "noise_free": quiet, "range": p.out_range, "noise_std": p.noise_std,
            "gain": p.gain}


def plot_mac_transfer(data: Mapping[str, Any], *, ax=None, **kwargs):
    """ADC output vs ideal gain·Σxw: the noise band, the floor and the 8-bit saturation."""
    ax = _axes(ax)
    ax.plot(data["ideal"], data["out"], ".", ms=2, alpha=0.4, label=f"output (noise {data['noise_std']:g} LSB)",
            **kwargs)
    order = np.argsort(data["ideal"])
    ax.plot(data["ideal"][order], data["noise_free"][order], "k-", lw=1, label="without noise")
    lo, hi = data["range"]
    ax.axhline(hi, color="grey", ls=":", lw=1)
    ax.axhline(lo, color="grey", ls=":", lw=1, label="8-bit saturation")
    ax.set_xlabel(f"ideal {data['gain']:g}·Σ x·w (LSB)")
    ax.set_ylabel("MAC output (LSB)")
    ax.legend(fontsize="small")
    return ax


def compute_membrane_traces(card: Card | str = "brainscales2", n: int = 6, steps: int = 150, seed: Any = 0,
                            rate: float = 0.01, weight: float = 0.08, sources: int = 10):
    """Membranes and spikes of ``n`` neurons of one chip fed the *same* Poisson input, uncalibrated and
    calibrated, next to the ideal neuron. Inputs: ``sources`` trains of ``rate`` spikes per step, each
    with ``weight`` (normalised) onto every neuron (the defaults keep the mean membrane just below
    threshold, so the neurons fire on fluctuations)."""
    from .hardware.calibration import calibrate
    from .hardware.substrate import AnalogNeurons, IdealNeurons

    card = _card(card)
    rng = np.random.default_rng(seed)
    x = ((rng.random((steps, 1, sources)) < rate).sum(axis=2, keepdims=True) * weight).repeat(n, axis=2)
    chip = AnalogNeurons(n, card, rng=seed)
    out = {"dt": card.params["dt"], "acceleration": card.params["acceleration"]}
    out["uncalibrated"] = chip.run(x, rng=1)
    calibrate(chip, rng=2)
    out["calibrated"] = chip.run(x, rng=1)
    out["ideal"] = IdealNeurons.from_card(n, card).run(x)
    return out


def plot_membrane_traces(data: Mapping[str, Any], which: str, *, ax=None, **kwargs):
    """Membrane traces (normalised: rest 0, threshold 1) of the neurons, spikes drawn as ticks."""
    ax = _axes(ax)
    z, v = data[which]
    t = np.arange(v.shape[0]) * data["dt"] * 1e6
    for j in range(v.shape[2]):
        line, = ax.plot(t, v[:, 0, j], lw=0.8, **kwargs)
        ts = t[z[:, 0, j] > 0]
        ax.plot(ts, np.full(ts.shape, 1.6 + 0.08 * j), "|", color=line.get_color(), ms=5)
    zi, vi = data["ideal"]
    ax.plot(t, vi[:, 0, 0], "k--", lw=1, label="ideal neuron")
    ax.axhline(1.0, color="grey", lw=0.6, ls=":")
    ax.set_xlabel(f"chip time (µs); ×{data['acceleration']:g} = biological time")
    ax.set_ylabel("membrane (normalised)")
    ax.legend(fontsize="small", loc="lower right")
    return ax


def compute_raster(card: Card | str = "brainscales2", n: int = 64, steps: int = 300, seed: Any = 0,
                   rate: float = 0.01, weight: float = 0.08):
    """Spikes of ``n`` neurons under identical Poisson input, uncalibrated and calibrated (chip of
    ``seed``), and of the ideal neurons: shows the fixed-pattern spread of firing."""
    return compute_membrane_traces(card, n=n, steps=steps, seed=seed, rate=rate, weight=weight)


def plot_raster(data: Mapping[str, Any], which: str, *, ax=None, **kwargs):
    """Spike raster: neuron index vs chip time."""
    ax = _axes(ax)
    z = data[which][0][:, 0, :]
    t, j = np.nonzero(z)
    ax.plot(t * data["dt"] * 1e6, j, "|", ms=3, **kwargs)
    ax.set_xlim(0, z.shape[0] * data["dt"] * 1e6)
    ax.set_xlabel("chip time (µs)")
    ax.set_ylabel("neuron")
    ax.set_title(f"{which}: {int(z.sum())} spikes", fontsize="small")
    return ax


def chip_figures(card: Card | str, out_dir: str | os.PathLike, seed: Any = 0, *, dpi: int = 120) -> list[Path]:
    """The figures of an ``analog_chip`` card (one chip drawn from ``seed``):

    * ``<name>_calibration.png`` — parameter spread across all neurons before/after calibration;
    * ``<name>_mac_transfer.png`` — analog MAC output vs ideal Σxw (noise, floor, saturation);
    * ``<name>_membrane_traces.png`` — membranes of six neurons with the same input;
    * ``<name>_raster.png`` — spike rasters of 64 neurons with the same input.
    """
    from .hardware.substrate import PARAMETERS

    card = _card(card)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    report = compute_calibration(card, seed=seed)
    fig = _file_figure(figsize=(12, 6.4), layout="constrained")
    for k, name in enumerate(PARAMETERS):
        plot_calibration(report, name, ax=fig.add_subplot(2, 3, k + 1))
    fig.suptitle(_title(card, f"calibration of {len(report.before['v_leak'])} neurons (chip seed {seed})"),
                 fontsize="medium")
    paths.append(_save(fig, out / f"{card.name}_calibration.png", dpi))

    fig = _file_figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    plot_mac_transfer(compute_mac_transfer(card, seed=seed), ax=ax)
    ax.set_title(_title(card, "analog MAC, one 128-row block"), fontsize="medium")
    paths.append(_save(fig, out / f"{card.name}_mac_transfer.png", dpi))

    traces = compute_membrane_traces(card, steps=300, seed=seed)
    fig = _file_figure(figsize=(12, 4.2), layout="constrained")
    for k, which in enumerate(("uncalibrated", "calibrated")):
        ax = fig.add_subplot(1, 2, k + 1)
        plot_membrane_traces(traces, which, ax=ax)
        ax.set_title(f"{which}: six neurons, the same input", fontsize="small")
    fig.suptitle(_title(card, "membrane traces"), fontsize="medium")
    paths.append(_save(fig, out / f"{card.name}_membrane_traces.png", dpi))

    raster = compute_raster(card, seed=seed)
    fig = _file_figure(figsize=(12, 4.2), layout="constrained")
    for k, which in enumerate(("ideal", "uncalibrated", "calibrated")):
        plot_raster(raster, which, ax=fig.add_subplot(1, 3, k + 1))
    fig.suptitle(_title(card, "spike rasters, 64 neurons with the same input"), fontsize="medium")
    paths.append(_save(fig, out / f"{card.name}_raster.png", dpi))
    return paths


# ---------------------------------------------------------------------------------------- experiment figures
def compute_run_bars(rows: Iterable[Mapping[str, Any]], metric: str, *,
                     extra: Mapping[str, str] | Sequence[str] = ()) -> dict[str, Any]:
    """Per-run values of ``metric`` (with ``<metric>_std`` when present) and of ``extra`` columns
    (a list of column names, or a mapping label -> column), from the result table of an experiment
    (one row per run)."""
    rows = list(rows)
    extra = dict(extra) if isinstance(extra, Mapping) else {e.replace("_", " "): e for e in extra}
    return {"metric": metric, "runs": [str(r["run"]) for r in rows],
            "value": [float(r[metric]) for r in rows],
            "std": [float(r.get(f"{metric}_std", 0.0)) for r in rows],
            "extra": {label: [float(r[col]) for r in rows] for label, col in extra.items()}}


def plot_run_bars(data: Mapping[str, Any], *, ax=None, xlabel: str | None = None, log: bool = False, **kwargs):
    """Horizontal bars, one per run (first run on top), with ±std error bars and the ``extra``
    columns as markers on the same axis (e.g. accuracy after drift delays)."""
    ax = _axes(ax)
    y = np.arange(len(data["runs"]))[::-1]
    std = np.asarray(data["std"], float)
    ax.barh(y, data["value"], xerr=np.where(std > 0, std, np.nan), capsize=2, color="0.75",
            label=data["metric"].replace("_", " "), **kwargs)
    for (name, vals), marker in zip(data["extra"].items(), "os^vD<>"):
        ax.plot(vals, y, marker, ms=4, ls="none", label=name)
    ax.set_yticks(y, data["runs"], fontsize="small")
    ax.set_xlabel(xlabel or data["metric"].replace("_", " "))
    if log:
        ax.set_xscale("symlog", linthresh=1.0)
    if data["extra"]:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return ax


def delay_key(d: float) -> str:
    """A delay in seconds as an exact, readable key: 3600.0 -> '3600', 0.5 -> '0.5'."""
    return repr(int(d)) if float(d).is_integer() else repr(float(d))


def delay_label(d: float) -> str:
    """A delay in seconds as '30 s', '5 min', '1 h', '30 d'."""
    for unit, sec in (("d", 86400), ("h", 3600), ("min", 60)):
        if d >= sec:
            return f"{d / sec:g} {unit}"
    return f"{d:g} s"


def run_panels(results: Sequence[Mapping[str, Any]], title: str, draw, path, *, ncol: int = 4, dpi: int = 110) -> Path:
    """One small panel per run (its first seed's result), drawn by ``draw(ax, result)``; saved to ``path``."""
    first = list({r["run"]: r for r in reversed(results)}.values())[::-1]
    nrow = math.ceil(len(first) / ncol)
    fig = _file_figure(figsize=(3.2 * ncol, 2.4 * nrow), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).reshape(-1)
    for ax, r in zip(axes, first):
        draw(ax, r)
        ax.set_title(f"{r['run']} (seed {r['seed']})", fontsize="x-small")
        ax.tick_params(labelsize="x-small")
    for ax in axes[len(first):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize="medium")
    return _save(fig, Path(path), dpi)


def _draw_g_hist(ax, result: Mapping[str, Any], *, step_label: str = "epoch") -> None:
    """First and last conductance histogram of ``result["g_hist"]`` on ``ax``. ``step_label`` names
    what the recorded steps count ("epoch", "update", ...): the legend reads "<step_label> <step>".
    For :func:`run_panels`, bind it: ``functools.partial(_draw_g_hist, step_label="update")``."""
    h = result["g_hist"]
    edges = np.asarray(h["edges"], float)
    counts = np.atleast_2d(np.asarray(h["counts"], float))
    steps = h.get("steps", list(range(len(counts))))
    for k in sorted({0, len(counts) - 1}):
        ax.stairs(counts[k], edges, fill=(k == len(counts) - 1), alpha=0.6, label=f"{step_label} {steps[k]}")
    ax.set_yscale("log")
    ax.set_xlabel(G_LABEL, fontsize="x-small")
    ax.legend(fontsize="xx-small")


def _draw_pulse_hist(ax, result: Mapping[str, Any]) -> None:
    h = result["pulse_hist"]
    edges = np.asarray(h["edges"], float)
    ax.stairs(np.asarray(h["counts"], float), np.maximum(edges, 0.5), fill=True, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("pulses per synapse (0 shown at 0.5)", fontsize="x-small")


__all__ = [
    "citation_short", "compute_accuracy_bars", "compute_run_bars", "plot_run_bars", "compute_conductance_histograms", "compute_drift",
    "compute_learning_curves", "compute_programmed_vs_target", "compute_pulse_response", "compute_read_noise",
    "device_figures", "histograms_from_recorder", "plot_accuracy_bars", "plot_conductance_histograms",
    "plot_drift", "plot_learning_curves", "plot_programmed_vs_target", "plot_pulse_response", "plot_read_noise",
]
