"""Reproduce the e-prop-on-PCM study in both protocols and write examples/eprop_pcm/RESULTS.md.

    python examples/eprop_pcm/reproduce.py [--workers N]

Runs ``schemes.yaml`` as it is (the default protocol, 250 updates) into ``results/default/`` and
with ``--set train.updates=750`` (the full protocol of Demirag et al. 2021) into ``results/full/``
(both resume if interrupted), then writes ``RESULTS.md`` next to this script: the two result tables
side by side, the ranking of the schemes against the paper's conclusion, the figures, and the
discussion in ``discussion.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from neuroemu.experiments import run_experiment  # noqa: E402
from neuroemu.io import atomic_write_text  # noqa: E402

PROTOCOLS = {"default": [], "full": ["train.updates=750"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=None, help="local worker processes (default: the config's)")
    args = ap.parse_args(argv)
    os.chdir(ROOT)  # the recorded commands read as run from the repository root
    here = HERE.relative_to(ROOT)
    summaries = {}
    for name, overrides in PROTOCOLS.items():
        out = here / "results" / name
        run_experiment(here / "schemes.yaml", out, overrides, workers=args.workers)
        summaries[name] = json.loads((out / "summary.json").read_text())
    atomic_write_text(HERE / "RESULTS.md", render(summaries))
    print(f"wrote {HERE / 'RESULTS.md'}")


def _compute(summary: dict) -> float:
    """Training time summed over every job of a study (seconds)."""
    return sum(r["train_time_s"] * r["seeds"] for r in summary["table"])


def render(summaries: dict) -> str:
    default, full = summaries["default"], summaries["full"]
    rows_d = {r["run"]: r for r in default["table"]}
    rows_f = {r["run"]: r for r in full["table"]}
    seeds = rows_f[next(iter(rows_f))]["seeds"]
    lines = ["| scheme | NMSE, 250 updates | NMSE, 750 updates | after 1 day (750) | pulses / synapse (750) | "
             "refreshes (750) | write energy µJ (750) |", "|---|---|---|---|---|---|---|"]
    for name, f in rows_f.items():
        d = rows_d.get(name)
        dv = f"{d['final']:.3f} ± {d['final_std']:.3f}" if d else "–"
        day = f.get("after_86400s")
        lines.append(f"| {name} | {dv} | {f['final']:.3f} ± {f['final_std']:.3f} | "
                     f"{'–' if day is None else f'{day:.3f}'} | {f['pulses_per_synapse']:.2f} | {f['refreshes']:.0f} | "
                     f"{f['energy_uJ']:.3g} |")
    order = sorted(rows_f.values(), key=lambda r: r["final"])
    fp32 = rows_f.get("fp32")
    ranking = " < ".join(f"{r['run']} ({r['final']:.3f})" for r in order)
    mp = rows_f.get("pcm_nandakumar2018/mixed_precision")
    verdict = ""
    if fp32 and mp:
        worse = [r for r in order if r["final"] > mp["final"] + 2 * mp["final_std"] and r["run"] != "fp32"]
        verdict = (f"Mixed precision ends at {mp['final']:.3f} against {fp32['final']:.3f} for fp32 "
                   f"({mp['final'] / fp32['final']:.1f}×); {len(worse)} of the {len(rows_f) - 2} other schemes end "
                   f"more than two standard deviations above mixed precision.")
    meta = full["meta"]
    disc = (HERE / "discussion.md").read_text() if (HERE / "discussion.md").is_file() else ""
    figs = "\n".join(f"![{Path(p).stem}](results/full/figures/{Path(p).name})" for p in full["figures"])
    return f"""# e-prop on an emulated PCM chip: weight-update schemes (Demirag et al. 2021)

Written by `python examples/eprop_pcm/reproduce.py`, which runs

```
{default['meta']['command']}
{meta['command']}
```

Task: pattern generation (100 frozen 50 Hz Poisson inputs, 1000 steps of 1 ms, target a sum of
four sines); 100 recurrent LIF neurons, one linear read-out; online e-prop, batch 1; every weight on
the chip (differential PCM pairs of `pcm_nandakumar2018`, read noise at every read, drift between
updates). Seeds 0–{seeds - 1} (network, task and chip per seed); mean ± std over seeds. Full results,
per-run JSON and figures: `results/default/` and `results/full/`. Versions:
{', '.join(f'{k} {v}' for k, v in meta['versions'].items())}. Training time summed over all jobs:
{_compute(default):.0f} s (default) and {_compute(full):.0f} s (full) on this machine.

{chr(10).join(lines)}

NMSE = mean (y − y*)² / variance of y* on a final pass with noisy reads (1 = predicting the mean).

Ranking after 750 updates: {ranking}.

{verdict}

{disc}
{figs}
"""


if __name__ == "__main__":
    main()
