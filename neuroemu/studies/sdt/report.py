"""The self-defined-targets study's report (see :mod:`neuroemu.studies.sdt`): the per-run table, the
sweep rows, the figures and ``RESULTS.md``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ... import divergence
from .. import tables
from ..common import energy_section, wall_time

#: The direct-association read-outs reported: result key → DirectAssociation mode (ours: "wins"; the
#: authors' headline: "av").
DA_MODES = {"direct_association": "wins", "direct_association_av": "av"}

#: Unsupervised runs: direct association after every epoch on these many train/test images.
MONITOR = (10000, 2000)


def table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: means and stds over the seeds that did not diverge; ``seeds``, ``diverged``
    and (chip runs) the pulse-limit hits of all seeds."""
    rows = []
    for name, rs, ok, seeds in tables.run_groups(results):
        row = {"run": name, "trainer": rs[0]["trainer"], "mode": rs[0]["mode"], **seeds}
        if "pulse_limit_hits" in rs[0]:
            row["pulse_limit_hits"] = sum(r["pulse_limit_hits"] for r in rs)
        if ok:
            row["train_time_s"] = float(np.mean([r["train_time_s"] for r in ok]))
            for k in ("test_acc", "val_acc", *DA_MODES, "linear_readout", "pretrain_acc"):
                if k in ok[0]:
                    row[k], row[f"{k}_std"] = tables.mean_std([r[k] for r in ok], 100)
            if "pulses_per_synapse" in ok[0]:
                row["pulses_per_synapse"] = float(np.mean([r["pulses_per_synapse"] for r in ok]))
        rows.append(row)
    return rows


def console_table(rows: list[dict[str, Any]]) -> list[str]:
    return tables.console_table(rows, [("direct assoc. %", "direct_association", ".2f"),
                                       ("direct assoc. (av) %", "direct_association_av", ".2f"),
                                       ("linear %", "linear_readout", ".2f")])


def tidy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per job (for sweeps); a diverged job gives where and how instead of its results."""
    keys = ("test_acc", "val_acc", *DA_MODES, "linear_readout", "pretrain_acc", "train_time_s")
    return [{"run": result["run"], "seed": result["seed"], **{k: result[k] for k in keys if k in result},
             **divergence.tidy(result)}]


def report(cfg: dict[str, Any], results: list[dict[str, Any]], out, meta: dict[str, Any]) -> dict[str, Any]:
    from pathlib import Path

    from ... import plot
    from ...io import atomic_write_text, write_csv

    out = Path(out)
    if any(r["curve"] for r in results):
        write_csv(out / "metrics.csv", [c for r in results for c in r["curve"]])
    curve = [c for r in divergence.split(results)[0] for c in r["curve"]]  # figures: the seeds kept
    rows = table(results)
    own = [f"{r['name']} on seed{'s' if len(r['seeds']) > 1 else ''} {', '.join(map(str, r['seeds']))}"
           for r in cfg["runs"] if r["seeds"]]
    own_seeds = f" ({'; '.join(own)} only)" if own else ""
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    paths = []
    if curve:
        fig = plot._file_figure(figsize=(7.5, 4.8), layout="constrained")
        plot.plot_learning_curves(curve, ax=fig.add_subplot(), y="loss", run=("run", "seed"))
        paths.append(plot._save(fig, figs / "training_loss.png", 120))
    unsup = [r for r in rows if "linear_readout" in r]
    if unsup:
        fig = plot._file_figure(figsize=(8.5, 1.4 + 0.45 * len(unsup)), layout="constrained")
        plot.plot_run_bars({"runs": [r["run"] for r in unsup], "value": [r["linear_readout"] for r in unsup],
                            "std": [r["linear_readout_std"] for r in unsup], "metric": "linear read-out",
                            "extra": {f"direct association ({m})": [r.get(k, math.nan) for r in unsup]
                                      for k, m in DA_MODES.items() if any(k in r for r in unsup)}},
                           ax=fig.add_subplot(), xlabel="test accuracy (%)")
        paths.append(plot._save(fig, figs / "readouts.png", 120))
    das = [c for c in curve if c.get("direct_association") is not None]
    if das:
        fig = plot._file_figure(figsize=(7.5, 4.8), layout="constrained")
        ax = plot.plot_learning_curves(das, ax=fig.add_subplot(), y="direct_association", run=("run", "seed"),
                                       percent=True)  # fractions, shown in % as the label says
        ax.set_ylabel(f"direct association (%), first {MONITOR[1]} test images")
        paths.append(plot._save(fig, figs / "direct_association.png", 120))
    accs = [c for c in curve if c.get("test_acc") is not None]
    if accs:
        fig = plot._file_figure(figsize=(7.5, 4.8), layout="constrained")
        ax = plot.plot_learning_curves(accs, ax=fig.add_subplot(), y="test_acc", run=("run", "seed"))
        ax.set_xlabel("epoch (pre-training, then one unsupervised + one supervised epoch per round)")
        paths.append(plot._save(fig, figs / "semi_test_accuracy.png", 120))

    def cell(r, k):
        return tables.value_cell(r, k, note=False)

    acc, acc_head = ("val_acc", "validation") if cfg["data"]["validation"] else ("test_acc", "test")
    head = ["run", "mode", f"{acc_head} accuracy (%)", "direct association (wins)", "direct association (av)",
            "linear read-out", "pre-training only", "pulses/synapse", "seeds", "train time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["run"], r["mode"], cell(r, acc), cell(r, "direct_association"),
                                        cell(r, "direct_association_av"),
                                        cell(r, "linear_readout"), cell(r, "pretrain_acc"),
                                        tables.number(r, "pulses_per_synapse", ".2f"),
                                        f"{r['seeds']}" + (f" ({tables.status(r)})" if r["diverged"] else ""),
                                        tables.number(r, "train_time_s", ".0f")]) + " |")
    lines += tables.markdown_notes(rows, "epoch")
    energy_table, elines = energy_section(divergence.split(results)[0], figs, paths,
                                          "Per update: the mean over every epoch of the run's schedule (semi-supervised runs: pre-training, "
                                          "unsupervised and supervised epochs together); per inference: the network's output for one test "
                                          "image (the linear read-out of unsupervised runs is off-chip). The equilibrium-"
                                          "propagation network's relaxations count as two dense reads of every layer but "
                                          "the first per step (its drive is read once).")
    lines += ["", *elines] if energy_table else []
    s, bp, ep = cfg["sdt"], cfg["bp"], cfg["eqprop"]
    sched = "" if bp["lr_end"] == 1 else \
        f" (linear schedule to ×{bp['lr_end']:g} over {bp['lr_decay_epochs'] or bp['epochs']} epochs)"
    used = {r["trainer"] for r in cfg["runs"]} | {r["mode"] for r in cfg["runs"]}
    settings = []
    if "bp" in used:
        cnn = any(r["arch"] == "cnn" for r in cfg["runs"])
        settings.append(f"""* backprop: {bp['optimizer']} lr {bp['lr']}{sched}, batch {bp['batch_size']}, {bp['epochs']} epochs
  (unsupervised and supervised runs), input dropout {bp['input_dropout']:g}""" + (f"""; cnn: conv weights pruned
  {bp['prune_conv']:g}, conv layers {'trained' if bp['train_conv'] else 'held at their random initialisation'}""" if cnn else "")
                        + "\n")
    if "eqprop" in used:
        settings.append(f"""* EqProp: dt {ep['dt']:g}, {ep['t_free']} free + {ep['t_nudge']} nudged steps, β {ep['beta']:g} ({ep['nudge']}),
  lr {ep['lr']} ({ep['optimizer']}), batch {ep['batch_size']}, {ep['epochs']} epochs (unsupervised and supervised runs)
""")
    for r in cfg["runs"]:
        if r["mode"] != "semi":
            continue
        sem, sec = r["semi"], r["eqprop" if r["trainer"] == "eqprop" else "bp"]
        settings.append(f"""* {r['name']}: {sem['labels']} labels, {sem['pretrain_epochs']} pre-training epochs (batch {sem['batch_size']},
  lr {sec['pretrain_lr'] or sec['lr']}), then {sem['rounds']} rounds of one unsupervised epoch (lr {sec['lr']} ×
  {_factor_text(sem)}) and one supervised epoch (lr {sec['lr']})
""")
    own = [f"{r['name']} {r[sec]['lr']}" for r in cfg["runs"] if r["trainer"] != "none" and r["mode"] != "semi"
           for sec in ["eqprop" if r["trainer"] == "eqprop" else "bp"] if r[sec]["lr"] != cfg[sec]["lr"]]
    if own:
        settings.append(f"* runs with learning rates of their own: {'; '.join(own)}\n")
    if cfg["data"]["validation"]:
        settings.append(f"* evaluated on {cfg['data']['validation']} training images held out of training (drawn with "
                        f"seed {cfg['data']['validation_seed']}), not on the test set, which is not loaded\n")
    ro = cfg["readout"]
    if ro["method"] == "lbfgs":
        chosen = ", ".join(f"{r['run']} {r['readout_l2']:g}" for r in results if "readout_l2" in r)
        readout = (f"full-batch L-BFGS, at most {ro['max_iter']} iterations, L2 penalty chosen among "
                   f"{', '.join(f'{v:g}' for v in ro['l2'])} on {ro['validation']} held-out training images"
                   + (f" — chosen: {chosen}" if chosen and len(ro["l2"]) > 1 else ""))
    else:
        readout = f"minibatch Adam, lr {ro['lr']:g}, batch {ro['batch_size']}, {ro['epochs']} epochs"
    text = f"""# Self-defined targets (WTA + homeostasis) on Fashion-MNIST

{cfg['description'] or ''}

Produced by:

```
{meta['command']}
```

* self-defined target (defaults; runs may override): k-WTA of y − H, k = {s['k']}, γ = {s['gamma']:g},
  output dropout {s['output_dropout']:g}, label smoothing {s['smoothing']:g}; H reset every epoch
{"".join(settings)}* losses: ½Σ(y − d)² over the output units (unsupervised), softmax cross-entropy (10 class outputs)
* unsupervised runs: test accuracy = the linear read-out (softmax regression on the standardised frozen
  outputs, all training labels; {readout}); direct association labels each output unit on the
  training set: "wins" with the class it wins most (the most active unit decides), "av" (the authors'
  headline) with the class of its highest mean response (the class whose units answer most on
  average decides)
* paper (papers.md §6): unsupervised CNN 90.25 ± 0.27 %, the same CNN supervised 93.1 % (Fashion-MNIST);
  MNIST 784-2000: 97.1 % BP / 97.3 % EP, random control 97.07 %; semi-supervised MNIST 784-5000-10,
  600 labels: 96.6 % EP / 94.9 % BP (pre-training only 91.8 / 90.3 %)
* divergence: a run whose training loss is NaN/inf, or whose epoch-mean loss is above {cfg['diverge_factor']:g} × the first
  batch's of that phase, stops and is left out of the means ("diverged k/n")
* seeds {', '.join(map(str, cfg['seeds']))}{own_seeds}; versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())};
  {wall_time(meta)}; the table gives each run's training time

""" + "\n".join(lines) + "\n\n" + "\n".join(f"![{p.stem}](figures/{p.name})" for p in paths) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    return {"table": rows, "figures": [str(p) for p in paths], "diverged": divergence.jobs(results),
            "energy": energy_table}


def _factor_text(semi: dict[str, Any]) -> str:
    if semi.get("unsupervised_lr_start") is None:
        return f"{semi['unsupervised_lr_factor']:g}"
    return (f"{semi['unsupervised_lr_start']:g}, ramped linearly to {semi['unsupervised_lr_factor']:g} over "
            f"{semi['ramp_rounds']} rounds")
