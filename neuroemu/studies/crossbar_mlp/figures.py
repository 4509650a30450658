"""Figures of the crossbar_mlp study: accuracy per run (and after drift), learning curves, pulses and
write energy per run, layer-1 conductance and pulse histograms per run."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...plot import (_draw_g_hist, _draw_pulse_hist, _file_figure, _save, compute_run_bars, delay_key,
                     delay_label, plot_learning_curves, plot_run_bars, run_panels)


def experiment_figures(rows: Sequence[Mapping[str, Any]], metrics: Sequence[Mapping[str, Any]],
                       results: Sequence[Mapping[str, Any]], delays: Sequence[float], out_dir) -> list[Path]:
    """Figures of a crossbar experiment: accuracy per run (and after drift), learning curves,
    pulses and write energy per run, final layer-1 conductance histograms per run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    n = len(rows)
    tall = (9.0, 1.2 + 0.32 * n)

    fig = _file_figure(figsize=tall, layout="constrained")
    acc = compute_run_bars(rows, "test_acc",
                           extra={f"after {delay_label(d)}": f"acc_after_{delay_key(d)}s" for d in delays})
    ax = plot_run_bars(acc, ax=fig.add_subplot(), xlabel="test accuracy (%)")
    lo = min([v for v in acc["value"] + [x for e in acc["extra"].values() for x in e] if v > 0] or [0])
    ax.set_xlim(max(0.0, lo - 5), 100)
    ax.set_title("Fashion-MNIST test accuracy on the emulated chip", fontsize="medium")
    paths.append(_save(fig, out / "accuracy.png", 120))

    fig = _file_figure(figsize=(7.5, 4.8), layout="constrained")
    plot_learning_curves(metrics, ax=fig.add_subplot(), y="test_acc", run="run")
    paths.append(_save(fig, out / "learning_curves.png", 120))

    fig = _file_figure(figsize=(11, 1.2 + 0.32 * n), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    plot_run_bars(compute_run_bars(rows, "pulses_per_synapse"), ax=ax1, log=True, xlabel="pulses per synapse")
    plot_run_bars(compute_run_bars(rows, "energy_uJ"), ax=ax2, log=True, xlabel="write energy (µJ)")
    paths.append(_save(fig, out / "pulses_energy.png", 120))

    for name, title, draw in (
            ("conductances.png", "layer-1 device conductances: as programmed (epoch 0) and after training",
             functools.partial(_draw_g_hist, step_label="epoch")),
            ("pulses_per_device.png", "layer-1 pulses per synapse over the whole run (all its devices)",
             _draw_pulse_hist)):
        paths.append(run_panels(results, title, draw, out / name))
    return paths


__all__ = ["experiment_figures"]
