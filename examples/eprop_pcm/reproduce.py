"""Reproduce the e-prop-on-PCM study: tune every run, then run both protocols; write RESULTS.md.

    python examples/eprop_pcm/reproduce.py [--workers N] [--overwrite] [--render-only]

1. Tunes every run of ``schemes.yaml`` on its validation seeds with the same budget (its ``tune:``
   section; ``neuroemu tune``) into ``results/tune/`` and copies the tuned config to ``tuned.yaml``
   next to this script: the config the README's main job runs.
2. Runs ``tuned.yaml`` on the reported seeds: as it is (the default protocol, 250 updates) into
   ``results/default/``, and with ``--set train.updates=750`` (the full protocol of Demirag et al.
   2021, with the values tuned at 250 updates) into ``results/full/``.
3. Writes ``RESULTS.md`` next to this script: the chosen values, one table per protocol (every
   number in a table from that protocol's runs), the figures and the discussion in ``discussion.md``.

Every step resumes if interrupted. ``--overwrite`` recomputes results stored with other settings
(e.g. by another neuroemu version), which are otherwise refused. ``--render-only`` writes
``RESULTS.md`` from the results already there, without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from neuroemu.studies import run_experiment  # noqa: E402
from neuroemu.io import atomic_write_text  # noqa: E402
from neuroemu.tune import run_tune  # noqa: E402

PROTOCOLS = {"default": [], "full": ["train.updates=750"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=None, help="local worker processes (default: the config's)")
    ap.add_argument("--overwrite", action="store_true",
                    help="recompute and replace stored results that were computed with other settings")
    ap.add_argument("--render-only", action="store_true",
                    help="write RESULTS.md from the results already there; run nothing")
    args = ap.parse_args(argv)
    os.chdir(ROOT)  # the recorded commands read as run from the repository root
    here = HERE.relative_to(ROOT)
    outs = {"tune": here / "results" / "tune", **{name: here / "results" / name for name in PROTOCOLS}}
    if not args.render_only:
        run_tune(here / "schemes.yaml", outs["tune"], workers=args.workers, overwrite=args.overwrite)
        shutil.copyfile(outs["tune"] / "tuned.yaml", here / "tuned.yaml")
        for name, overrides in PROTOCOLS.items():
            run_experiment(here / "tuned.yaml", outs[name], overrides, workers=args.workers, overwrite=args.overwrite)
    files = {"tune": outs["tune"] / "tune.json", **{name: outs[name] / "summary.json" for name in PROTOCOLS}}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        sys.exit(f"reproduce.py: error: {missing[0]} is missing; run without --render-only first")
    summaries = {name: json.loads(f.read_text()) for name, f in files.items()}
    atomic_write_text(HERE / "RESULTS.md", render(summaries))
    print(f"wrote {HERE / 'RESULTS.md'}")


def _compute(summary: dict) -> float:
    """Training time summed over every job of a study (seconds)."""
    return sum(r["train_time_s"] * r["seeds"] for r in summary["table"])


def _cell(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _nmse(r: dict) -> str:
    if "final" not in r:  # every seed diverged
        return "diverged"
    cell = f"{r['final']:.3f} ± {r['final_std']:.3f}"
    return cell + (f" (diverged {r['diverged']}/{r['seeds']})" if r.get("diverged") else "")


def protocol_table(summary: dict) -> list[str]:
    """The result table of one protocol: every column from that protocol's runs."""
    lines = ["| scheme | NMSE | after 1 h | after 1 day | pulses / synapse | refreshes | write energy (µJ) |",
             "|---|---|---|---|---|---|---|"]
    for r in summary["table"]:
        hour, day = _cell(r.get("after_3600s"), ".3f"), _cell(r.get("after_86400s"), ".3f")
        lines.append(f"| {r['run']} | {_nmse(r)} | {hour} | {day} | {_cell(r.get('pulses_per_synapse'), '.2f')} | "
                     f"{_cell(r.get('refreshes'), '.0f')} | {_cell(r.get('energy_uJ'), '.3g')} |")
    return lines


def chosen_table(tune: dict) -> list[str]:
    """Each run's chosen values and its validation score on the last rung."""
    last = {t["run"]: t for t in tune["trials"] if t["chosen"]}
    lines = [f"| run | chosen values | validation {tune['metric']} (seeds {', '.join(map(str, tune['validation_seeds']))}) |",
             "|---|---|---|"]
    for run in tune["runs"]:
        values = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                           for k, v in (run["chosen"] or {}).items()) or "–"
        score = last.get(run["name"], {}).get("score")
        lines.append(f"| {run['name']} | {values} | {_cell(score, '.3f')} |")
    return lines


def _resource(tune: dict) -> str:
    """What the rungs of the search rationed, in words."""
    return "validation seeds, every trial trained in full" if tune["resource"] == "seeds" else tune["resource"]


def _updates(summary: dict) -> int:
    """The number of updates of a protocol, from its recorded command (default: the config's 250)."""
    for part in summary["meta"]["command"].split():
        if part.startswith("train.updates="):
            return int(part.split("=", 1)[1])
    return 250


def render(summaries: dict) -> str:
    default, full, tune = summaries["default"], summaries["full"], summaries["tune"]
    rows_f = {r["run"]: r for r in full["table"] if "final" in r}
    seeds = full["table"][0]["seeds"]
    n_default, n_full = _updates(default), _updates(full)
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
neuroemu tune examples/eprop_pcm/schemes.yaml --out examples/eprop_pcm/results/tune
{default['meta']['command']}
{meta['command']}
```

(`tuned.yaml` is the tuned config the first line writes, copied next to `schemes.yaml`.)

Task: pattern generation, three patterns trained in turn as in the authors' code (each 100 frozen
50 Hz Poisson inputs, 1000 steps of 1 ms, target a sum of four sines; NMSE averaged over the three);
100 recurrent LIF neurons, one linear read-out, fixed random feedback; online e-prop, batch 1; every weight on
the chip (differential PCM pairs of `pcm_nandakumar2018`, read noise at every read, drift between
updates). Seeds 0–{seeds - 1} (network, task and chip per seed); mean ± std over seeds. Full results,
per-run JSON and figures: `results/default/` and `results/full/`. Versions:
{', '.join(f'{k} {v}' for k, v in meta['versions'].items())}. Training time summed over all jobs:
{_compute(default):.0f} s (default) and {_compute(full):.0f} s (full) on this machine.

NMSE = mean (y − y*)² / variance of y* on a final pass with noisy reads (1 = predicting the mean);
"after 1 h" and "after 1 day": the same after the trained chip has drifted that long without
compensation. Pulses per synapse count every device pulse (programming and refresh) over the three
weight matrices.

## Tuning

Every run was tuned on its own with the same budget: {tune['budget']} configurations, successive
halving (η = {tune['eta']}: {' → '.join(map(str, tune['configurations_per_rung']))} configurations on
{' / '.join(map(str, tune['resource_per_rung']))} {_resource(tune)}), scored by the mean {tune['metric']} on the
validation seeds {', '.join(map(str, tune['validation_seeds']))} (the tables below report seeds
{', '.join(map(str, tune['reported_seeds']))}). The full protocol uses the values tuned at
{n_default} updates. Every trial: `results/tune/trials.csv`; the score against the learning rate:
`results/tune/figures/`.

{chr(10).join(chosen_table(tune))}

## Default protocol: {n_default} updates (`tuned.yaml` as it is)

{chr(10).join(protocol_table(default))}

## Full protocol: {n_full} updates (`--set train.updates={n_full}`, as Demirag et al.)

{chr(10).join(protocol_table(full))}

Ranking after {n_full} updates: {ranking}.

{verdict}

{disc}
Figures of the full protocol ({n_full} updates):

{figs}
"""


if __name__ == "__main__":
    main()
