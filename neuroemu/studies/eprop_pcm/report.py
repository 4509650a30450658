"""The e-prop study's report (see :mod:`neuroemu.studies.eprop_pcm`): the authors' setup and how a
config departs from it, the per-run table, the sweep rows, the figures and ``RESULTS.md``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...hardware.cards import load_card
from ...plot import delay_key, delay_label
from ... import divergence
from .. import tables
from ..common import energy_section, start_report, wall_time


# ---------------------------------------------------------------------------------------- the authors' setup
#: The settings of Demirag et al.'s code (github.com/YigitDemirag/srnn-pcm; its README's tuned set for
#: mixed precision where it gives one) that apply to every scheme: (config field, value, where from).
AUTHORS: tuple[tuple[str, Any, str], ...] = (
    ("task.n_in", 100, "train.py --inp_dim"),
    ("task.t_steps", 1000, "train.py --n_t"),
    ("task.patterns", 3, "train.py: 6 Sinusoids samples, 50 % for training"),
    ("model.n_rec", 100, "train.py --n_rec"),
    ("model.n_alif", 0, "srnn.py: LIF only"),
    ("model.tau_m", 0.03, "train.py --tau_rec"),
    ("model.tau_out", 0.03, "train.py --tau_out"),
    ("model.v_th", 0.193, "README tuned set --thr (train.py default 0.1)"),
    ("model.n_ref", 0, "srnn.py: no refractory period"),
    ("model.feedback", "random", "srnn.py: w_fb drawn once, never updated"),
    ("model.c_reg", 8.4e-4, "README tuned set --reg (train.py default 1e-4)"),
    ("model.reg_form", "signal", "srnn.py acc_gradient: L = L_loss + reg·(f − f0)"),
    ("model.f_target", 12.0, "train.py --f0"),
    ("model.init", "devices", "xbar.py XBar(G0=w_init_gain): PCM runs start every device at G0 ± 10 %"),
    ("model.init_gain", 0.237, "README tuned set --w_init_gain"),
    ("model.out_gain", None, "srnn.py: the same gain for every matrix"),
    ("model.readout_bias", False, "srnn.py: b_o = 0, not trained"),
    ("train.grad_clamp", 100.0, "srnn.py acc_gradient: .clamp(-100, 100)"),
    ("train.update_interval", 38.6, "train.py: tp += T0 before every write"),
    ("hardware.w_max", 1.006, "README tuned set --xbar_scale 11.825 µS per weight unit: (12 − 0.1)/11.825"),
)

#: What the study does not take from the authors' code, and why (RESULTS.md and docs/eprop_pcm.md).
DIFFERENCES: tuple[tuple[str, str], ...] = (
    ("Initial weights",
     "their PCM runs set both devices of every pair to w_init_gain = 0.237 µS ± 10 %; here the same weights "
     "(std √2·0.0237/11.825 ≈ 0.003) are programmed as a difference onto one device of each pair, the other at "
     "g_min = 0.1 µS, so the devices start about 0.1 µS lower (read noise 0.133 instead of 0.137 µS per device). "
     "The float and digital references start from these same weights, where their float run starts from "
     "Kaiming-normal × 0.237 (std 0.034): every scheme trains the same initial network."),
    ("Learning rates",
     "their README says each scheme needs its own hyperparameters and gives a tuned set for mixed precision only "
     "(η_in 3.3e-4, η_rec 3.9e-4, η_out 1.66e-5). Here input and recurrent weights share one rate. The config's "
     "defaults are lr 7e-5 ≈ their η·v_th (6.4e-5, 7.6e-5) and lr_out 1.66e-5; `neuroemu tune` gives each scheme "
     "its own (the same search budget for each), and a tuned config's runs carry them (the line above says "
     "whether this one's do)."),
    ("Read noise",
     "their code clamps every noisy device read to [0.1, 12] µS, which biases reads of low-conductance devices "
     "upward; here the per-device Gaussian read noise is applied in its exact output-referred form (one normal per "
     "output), which cannot express a per-device clamp."),
    ("Drift clock",
     "their reads come 0–1 s after each write and apply the drift power law before T0 (freshly written devices read "
     "1.16–1.57× high); here the card applies drift only for t − t_p ≥ T0 = 38.6 s, the model's domain. The writes "
     "are T0 apart in both (train.update_interval)."),
    ("Refresh",
     "in their code the stochastic and mixed-precision schemes never refresh (refresh=False), and the multi-memristor "
     "refresh, at two fixed chip times, crashes (a missing argument); here every PCM run re-programs saturated pairs "
     "every 10 updates (scheme parameter refresh_every, open to tuning)."),
    ("Stochastic scheme",
     "a pulse with probability |ΔW|/Δw_pulse (Δw_pulse: the card's nominal 0.75 µS pulse), which is unbiased; "
     "theirs is |ΔG|/prob_scale (780 in their README). The two differ by a factor on the learning rate, which tuning "
     "covers."),
    ("Sign threshold",
     "one threshold on ΔW for the three matrices; theirs is θ on each gradient (their README: 0.9). θ·lr/v_th on "
     "ΔW is their threshold for the input and recurrent matrices; for the read-out theirs would be θ·lr_out."),
    ("Mixed-precision step",
     "their ε = 0.125 weight units is written as ⌈0.125·11.8 µS / 0.75 µS⌉ = 2 pulses; here ε is one nominal pulse "
     "(0.75 µS at 11.8 µS per unit ≈ 0.063): about the same pulses per accumulated weight change, one at a time."),
    ("Multi-device scale",
     "their reads sum the N devices of a side at 11.8 µS per weight unit while their updates count the mean; here "
     "the N devices share one synapse's range (N × 11.8 µS per weight unit), as the updates assume."),
    ("Added references",
     "Tiki-Taka is not in their comparison; the 4-bit digital reference uses the quantized card where their "
     "accumulator has steps of 0.125 on [−1, 1]."),
    ("Evaluation",
     "their code prints the training MSE of the latest sequence; here the NMSE of a separate pass over the three "
     "patterns after training, with noisy reads, averaged over the patterns, over several seeds."),
    ("Input timing",
     "in their code the input of step t reaches the membrane at t + 1; here at t: the frozen input is shifted by "
     "1 ms, the same task."),
    ("Eligibility traces",
     "computed recursively (O(T)); the authors' code convolves over the whole sequence (O(T²)). This changes the "
     "cost, not the result: the kernel is checked against stopped-gradient BPTT in the tests."),
)


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    section, key = dotted.split(".")
    return cfg[section][key]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)
    return a == b


def departures(cfg: dict[str, Any]) -> list[str]:
    """The fields of :data:`AUTHORS` that this config sets otherwise: "field value (the authors': x)"."""
    out = []
    for field, value, _ in AUTHORS:
        if field.startswith("task.") and cfg["task"]["name"] != "pattern_generation":
            continue
        mine = _get(cfg, field)
        if not _same(mine, value):
            out.append(f"{field} {mine} (the authors': {value})")
    return out


#: The titles of :data:`DIFFERENCES` about the chip and the update schemes (not about Demirag et al.'s
#: pattern-generation task): what still applies when the task and network follow another setup.
CHIP_DIFFERENCES = ("Read noise", "Drift clock", "Refresh", "Stochastic scheme", "Sign threshold",
                    "Mixed-precision step", "Multi-device scale", "Added references", "Eligibility traces")


def differences_markdown(cfg: dict[str, Any]) -> list[str]:
    """The "differences from the authors' setup" list of RESULTS.md: the config's own ``differences``,
    this config's departures from :data:`AUTHORS`, then :data:`DIFFERENCES`. Evidence accumulation is
    not Demirag et al.'s task: its task and network follow Bellec et al.'s code (the config's
    ``differences`` say how and where it departs), and only the chip-side differences
    (:data:`CHIP_DIFFERENCES`) are added."""
    own = [f"* {item}" for item in cfg["differences"]]
    if cfg["task"]["name"] != "pattern_generation":
        lines = ["## Differences from the authors' setup", "",
                 "The task and the network follow Bellec et al.'s evidence-accumulation code (Nat. Commun. 2020, "
                 "Fig. 3; github.com/IGITUGraz/eligibility_propagation); "
                 + ("this config departs from it as follows:" if own else "this config states no difference from it."),
                 "", *own, *([""] if own else []),
                 "Demirag et al. (whose e-prop-on-PCM code this study follows for the chip and the update schemes) "
                 "train pattern generation only; of the study's differences from their code, these concern the chip "
                 "and still apply:", ""]
        return lines + [f"* **{title}**: {text}" for title, text in DIFFERENCES if title in CHIP_DIFFERENCES]
    lines = ["## Differences from the authors' setup", "",
             "Demirag et al.'s code (srnn-pcm) and its README's tuned set for mixed precision, as recorded in "
             "`neuroemu.studies.eprop_pcm.AUTHORS`; units converted as the module docstring says.", "", *own]
    gone = departures(cfg)
    lines.append("* **This configuration**: " + ("; ".join(gone) if gone else "follows every setting listed there") + ".")
    lines.append("* **Its learning rates**: " + _rates_note(cfg))
    lines += [f"* **{title}**: {text}" for title, text in DIFFERENCES]
    return lines


def _rates_note(cfg: dict[str, Any]) -> str:
    """Whether the runs share the config's rates or carry their own (a tuned config), and their range."""
    def span(key):
        vals = sorted({r.get("train", {}).get(key, cfg["train"][key]) for r in cfg["runs"]})
        return f"{vals[0]:g}" if len(vals) == 1 else f"{vals[0]:g} to {vals[-1]:g}"

    if not any({"lr", "lr_out"} & set(r.get("train", {})) for r in cfg["runs"]):
        return (f"every run at the config's lr {cfg['train']['lr']:g} and lr_out {cfg['train']['lr_out']:g}, not "
                "searched per scheme.")
    return (f"each run its own (lr {span('lr')}, lr_out {span('lr_out')}), as its run in the config sets them "
            "(`neuroemu tune` writes them there: a search with the same budget per run on validation seeds). Where "
            "the command above changes the training with `--set`, the rates are those set for the config without "
            "the change.")


def _scale_note(cfg: dict[str, Any]) -> str:
    """" (X µS per weight unit on CARD)" for the differential-pair cards of the runs that use hardware.w_max."""
    notes = {}
    for run in cfg["runs"]:
        card = load_card(run["card"])
        if card.kind in ("pcm_set", "pcm_inference") and run["w_max"] is None:
            p = card.params
            notes[card.name] = (p["g_max"] - p["g_min"]) / cfg["hardware"]["w_max"]
    return "".join(f" ({v:.3g} µS per weight unit per device on {k})" for k, v in notes.items())


# ---------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]], delays: list[float]) -> list[dict[str, Any]]:
    """One row per run: mean and std over the seeds that did not diverge of the final error (or
    accuracy) and device counters; ``seeds``, ``diverged`` and the pulse-limit hits of all seeds."""
    rows = []
    for name, rs, ok, seeds in tables.run_groups(results):
        row = {"run": name, "card": rs[0]["card"], "scheme": rs[0]["scheme"], "metric": rs[0]["metric"], **seeds,
               "pulse_limit_hits": sum(r.get("pulse_limit_hits", 0) for r in rs)}
        if ok:
            row["final"], row["final_std"] = tables.mean_std([r["final"] for r in ok])
            row.update({"pulses_per_synapse": float(np.mean([r["pulses_per_synapse"] for r in ok])),
                        "refreshes": float(np.mean([r["refreshes"] for r in ok])),
                        "energy_uJ": float(np.mean([r["energy_pJ"] for r in ok]) * 1e-6),
                        "train_time_s": float(np.mean([r["train_time_s"] for r in ok]))})
            for d in delays:
                row[f"after_{delay_key(d)}s"] = float(np.mean([r["after"][delay_key(d)] for r in ok]))
        rows.append(row)
    return rows


def console_table(rows: list[dict[str, Any]]) -> list[str]:
    label = "final NMSE" if rows[0]["metric"] == "nmse" else "accuracy"
    return tables.console_table(rows, [("pulses/syn", "pulses_per_synapse", ".2f"), ("refreshes", "refreshes", ".0f"),
                                       ("energy uJ", "energy_uJ", ".3g"), ("time s", "train_time_s", ".0f")],
                                main=(label, "final", ".3f"), unit="update")


def tidy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per job (for sweeps); a diverged job gives where and how instead of its results."""
    keys = ("run", "card", "scheme", "seed", "final", "pulses_per_synapse", "refreshes", "energy_pJ", "train_time_s")
    return [{**{k: result[k] for k in keys if k in result}, **divergence.tidy(result),
             **{f"after_{k}s": v for k, v in result.get("after", {}).items()}}]


def _mean_curves(curves: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Learning curves averaged over seeds: one row per (run, update)."""
    acc: dict[tuple[str, int], list[float]] = {}
    for r in curves:
        acc.setdefault((r["run"], r["update"]), []).append(r[metric])
    return [{"run": k[0], "update": k[1], metric: float(np.mean(v))} for k, v in acc.items()]


def figures(rows, results, delays, out_dir) -> list:
    """Learning curves, final error per scheme, produced vs target pattern, recurrent-layer conductance
    histograms and pulse counts per scheme, and the drift of the mean conductance over the run. Give
    it the rows and results of the seeds that did not diverge."""
    import functools
    from pathlib import Path

    from ... import plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = rows[0]["metric"]
    paths = []
    curves = [c for r in results for c in r["curve"]]
    fig = plot._file_figure(figsize=(8, 5), layout="constrained")
    ax = plot.plot_learning_curves(_mean_curves(curves, metric), ax=fig.add_subplot(), x="update", y=metric,
                                   run="run", percent=False)
    if metric == "nmse":
        ax.set_yscale("log")
    ax.set_title(f"learning curves (mean over {rows[0]['seeds']} seed(s))", fontsize="medium")
    paths.append(plot._save(fig, out / "learning_curves.png", 120))

    fig = plot._file_figure(figsize=(9, 1.2 + 0.32 * len(rows)), layout="constrained")
    extra = {f"after {delay_label(d)}": f"after_{delay_key(d)}s" for d in delays}
    data = plot.compute_run_bars(rows, "final", extra=extra)
    plot.plot_run_bars(data, ax=fig.add_subplot(), xlabel="final normalised MSE" if metric == "nmse" else "accuracy",
                       log=metric == "nmse")
    paths.append(plot._save(fig, out / "final_error.png", 120))

    panels = [("conductances.png", "recurrent-layer device conductances: as programmed and after training",
               functools.partial(plot._draw_g_hist, step_label="update")),
              ("pulses_per_device.png", "recurrent-layer pulses per synapse over the run (all its devices)",
               plot._draw_pulse_hist)]
    if metric == "nmse":
        panels.insert(0, ("patterns.png", "produced (after training) vs target pattern", _draw_pattern))
    for name, title, draw in panels:
        paths.append(plot.run_panels(results, title, draw, out / name))

    first = list({r["run"]: r for r in reversed(results)}.values())[::-1]
    fig = plot._file_figure(figsize=(12, 4.6), layout="constrained")
    for k, layer in enumerate(("input", "recurrent", "output")):
        ax = fig.add_subplot(1, 3, k + 1)
        for r in first:
            xs = [c["update"] for c in r["curve"]]
            ax.plot(xs, [c[f"{layer}.g_mean_uS"] for c in r["curve"]], lw=1, label=r["run"])
        ax.set_xlabel("update (1 s of chip time each)")
        ax.set_ylabel(f"{layer} tile: mean device G (µS)")
    # one legend for the three panels, below them: inside a panel it hides the curves
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=min(len(first), 4),
               fontsize="x-small", frameon=False)
    fig.suptitle("mean conductance over the run: programming, drift and refresh (first seed)", fontsize="medium")
    paths.append(plot._save(fig, out / "drift.png", 110))
    return paths


def _draw_pattern(ax, result) -> None:
    """Target and produced output of every pattern, stacked (results of one pattern: one list each)."""
    targets, ys = np.atleast_2d(result["target"]), np.atleast_2d(result["y"])
    each = result.get("final_each") or [result["final"]]
    t = np.arange(targets.shape[1])
    for k, (tg, y) in enumerate(zip(targets, ys)):
        off = -2.5 * k
        ax.plot(t, tg + off, "k-", lw=1, label="target" if k == 0 else None)
        ax.plot(t, y + off, lw=1, color=f"C{k}", label=f"pattern {k + 1}: NMSE {each[k]:.3f}")
    if len(targets) > 1:
        ax.set_yticks([])
    ax.set_xlabel("step (ms)", fontsize="x-small")
    ax.legend(fontsize="xx-small")


def _metric_note(metric: str) -> str:
    """What the main column of RESULTS.md's table measures."""
    what = ("NMSE = mean (y − y*)² / variance of y* on one final pass with noisy reads (1 = predicting the\n"
            "mean), averaged over the patterns" if metric == "nmse" else
            "Accuracy = the fraction of the test trials (fresh trials of the run's seed, the same for every run) whose\n"
            "decision, the argmax of the read-out averaged over the recall window, is the side with more cues\n"
            "(0.5 = chance), on one pass with noisy reads")
    return (what + '; "after" columns: the same after the trained chip has drifted\n'
            "for that long. Pulses per synapse count all device pulses (programming, refresh) over the three\n"
            "matrices.")


def report(cfg: dict[str, Any], results: list[dict[str, Any]], out, meta: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.csv (learning curves), RESULTS.md and figures; return the summary."""
    from ...io import atomic_write_text

    out, figs = start_report(out, [c for r in results for c in r["curve"]], make_figures=False)  # figures() makes it
    delays = cfg["eval"]["delays"]
    rows = table(results, delays)
    kept = [r for r in rows if tables.kept(r)]
    paths = figures(kept, divergence.split(results)[0], delays, figs) if kept else []
    energy_table, elines = energy_section(
        divergence.split(results)[0], figs, paths,
        "Per update: what the chip counted during one e-prop update (the reads of the sequence, the neuron updates, "
        "the scheme's digital work, the writes); the sequence tasks give no per-inference batch.")
    metric = rows[0]["metric"]
    head = ["run", "final NMSE" if metric == "nmse" else "accuracy"] + \
        [f"after {delay_label(d)}" for d in delays] + ["pulses / synapse", "refreshes", "write energy (µJ)",
                                                       "train time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["run"], tables.value_cell(r, "final", ".3f")] + \
            [tables.number(r, f"after_{delay_key(d)}s", ".3f") for d in delays] + \
            [tables.number(r, "pulses_per_synapse", ".1f"), tables.number(r, "refreshes", ".0f"),
             tables.number(r, "energy_uJ", ".3g"), tables.number(r, "train_time_s", ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += tables.markdown_notes(rows, "update")
    lines += ["", *elines] if energy_table else []
    t, m, hw, tr = cfg["task"], cfg["model"], cfg["hardware"], cfg["train"]
    if t["name"] == "pattern_generation":
        task_line = (f"{t['name']} ({t['patterns']} frozen pattern(s), one per update in a new order each epoch; "
                     f"{t['n_in']} inputs, {t['t_steps']} steps of 1 ms)")
    else:
        task_line = f"{t['name']} ({t['n_in']} inputs, batch {t['batch']})"
    if m["init"] == "devices":
        init_line = (f"the authors' PCM init, every device at {m['init_gain']:g} µS ± 10 % (weights ≈ 0), the same "
                     "for every run")
    else:
        init_line = f"Kaiming-normal × {m['init_gain']:g}" + \
            ("" if m["out_gain"] is None else f" (read-out × {m['out_gain']:g})")
    fb_line = f" (Kaiming-normal × {m['init_gain']:g}, never updated)" if m["feedback"] == "random" else ""
    clamp = ("no gradient clamp" if tr["grad_clamp"] is None else
             f"each sequence's gradient clamped to ±{tr['grad_clamp']:g} in the authors' units "
             f"(±{tr['grad_clamp'] / m['v_th']:.4g} on input and recurrent gradients here)")
    interval = "the sequence length" if tr["update_interval"] is None else f"{tr['update_interval']:g} s"
    step_line = "ΔW = Adam's step on g (lr, lr_out its step sizes)" if tr["optimizer"] == "adam" else "ΔW = −lr·g"
    own = [f"{r['name']}: " + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in r["train"].items())
           for r in cfg["runs"] if r.get("train")]
    own_line = ("\n* runs with their own training values: " + "; ".join(own)) if own else ""
    at_most = "" if tr["stop_accuracy"] is None else f" at most (stopping at accuracy {tr['stop_accuracy']:g})"
    stopped = {}  # run -> updates trained per seed, for runs with a stopping accuracy
    for r in results:
        if "updates_trained" in r:
            stopped.setdefault(r["run"], []).append(f"{r['updates_trained']} (seed {r['seed']})")
    if stopped:
        own_line += ("\n* stopping rule (train.stop_accuracy): a run ends at the first learning-curve point whose training "
                     "batch, scored before its own update, reaches the accuracy; updates trained: " +
                     "; ".join(f"{run}: {', '.join(n)}" for run, n in stopped.items()))
    text = f"""# e-prop on an emulated PCM chip: weight-update schemes compared

{cfg['description'] or ''}

Produced by:

```
{meta['command']}
```

* task: {task_line}; seeds {', '.join(map(str, cfg['seeds']))}
* network: {m['n_rec']} recurrent neurons ({m['n_alif']} ALIF), τ_m {m['tau_m'] * 1e3:g} ms, τ_out {m['tau_out'] * 1e3:g} ms,
  v_th {m['v_th']:g}, refractory {m['n_ref']} steps; initial weights: {init_line};
  e-prop with {m['feedback']} feedback{fb_line}, firing-rate regulariser {m['c_reg']:g} toward {m['f_target']:g} Hz
  ({m['reg_form']} form); {'a digital read-out bias' if m['readout_bias'] else 'no read-out bias'}; no autapses
* training: {tr['updates']} updates{at_most}, lr {tr['lr']:g} (input, recurrent) and {tr['lr_out']:g}
  (read-out): {step_line} through each run's scheme; {clamp}{own_line}
* chip: weight {hw['w_max']:g} = a full conductance side{_scale_note(cfg)}, {hw['n_devices']} device(s) per side
  unless a run says otherwise; every read with per-device read noise:
  {hw['read_noise']}; {interval} of chip time from one update to the next (drift)
* versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}
* compute: {sum(r['train_time_s'] for r in results):.0f} s of training over all jobs (this invocation:
  {wall_time(meta)})
* divergence: a run whose error is NaN/inf, or at an evaluation above {cfg['diverge_factor']:g} × the untrained
  network's, stops and is left out of the means ("diverged k/n"); pulse schemes clip an update to
  their max_pulses per synapse and say so below the table

""" + "\n".join(lines) + "\n\n" + _metric_note(metric) + """

""" + "\n".join(f"![{p.stem}](figures/{p.name})" for p in paths) + "\n\n" + \
        "\n".join(differences_markdown(cfg)) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    return {"table": rows, "figures": [str(p) for p in paths], "diverged": divergence.jobs(results),
            "energy": energy_table}
