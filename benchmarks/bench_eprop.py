"""One e-prop update on the emulated PCM chip against the same network with float weights.

    python benchmarks/bench_eprop.py [--quick] [--study]

Shape (pattern generation, Demirag et al. 2021): 100 Poisson inputs, 100 recurrent LIF neurons,
1 readout, 1000 steps, batch 1. The baseline, measured in the same run, is the float network
(:class:`neuroemu.rules.eprop.EpropNetwork`: forward, e-prop gradients, plain gradient step). The
chip update does the same on three PCM tiles: noisy reads of every time step (input and output
tiles through their spike path, the recurrent tile inside the neuron loop), gradients, the
mixed-precision scheme's pulses, and the drift clock. ratio = chip time / float time (lower is
better; target <= 3). ``--study`` also times the whole default study of
``examples/eprop_pcm/schemes.yaml`` (all schemes and seeds, the configured workers).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import median_times  # noqa: E402

from neuroemu.config import validate  # noqa: E402
from neuroemu.data.tasks import pattern_generation  # noqa: E402
from neuroemu.studies import eprop_pcm  # noqa: E402
from neuroemu.rules.base import run_step  # noqa: E402
from neuroemu.rules.eprop import EpropNetwork  # noqa: E402

CONFIG = ROOT / "examples" / "eprop_pcm" / "schemes.yaml"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--study", action="store_true", help="also time the whole default study")
    args = ap.parse_args(argv)
    repeat = 3 if args.quick else 20
    raw = yaml.safe_load(CONFIG.read_text())
    raw.pop("tune", None)  # the tune command's section, not the study's
    raw["runs"] = [r for r in raw["runs"] if r.get("scheme") == "mixed_precision"]
    cfg = eprop_pcm.check(validate(raw, eprop_pcm.SCHEMA, str(CONFIG)), str(CONFIG))
    job = eprop_pcm.jobs(cfg)[0]
    lr, lr_out = cfg["train"]["lr"], cfg["train"]["lr_out"]
    task = pattern_generation(n_in=cfg["task"]["n_in"], t_steps=cfg["task"]["t_steps"], rng=0)
    chip, rule = eprop_pcm.network(job, task.x.shape[2], 1, np.random.default_rng(0))
    rule.bind(chip)
    net = EpropNetwork(rule.cfg, *chip.weights().values())

    def float_update():
        net.apply(net.gradients(task.x, task.target, task.mask), {"w_in": lr, "w_rec": lr, "w_out": lr_out,
                                                                  "b_out": lr_out})

    def chip_update():
        run_step(rule, chip, task)
        chip.advance(1.0)

    t_float, t_chip = median_times([float_update, chip_update], repeat)
    rows = [{"case": "float network (numpy + numba e-prop)", "ms": t_float * 1e3, "ratio": 1.0},
            {"case": "PCM chip, mixed precision, noisy reads", "ms": t_chip * 1e3, "ratio": t_chip / t_float}]
    print(f"one e-prop update: {task.x.shape[2]} inputs, {cfg['model']['n_rec']} LIF, {task.x.shape[0]} steps, "
          f"batch 1; median of {repeat}")
    print(f"{'case':<42} {'ms':>9} {'ratio':>7}")
    for r in rows:
        print(f"{r['case']:<42} {r['ms']:>9.2f} {r['ratio']:>7.2f}")
    if args.study:
        from neuroemu.studies import run_experiment

        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            run_experiment(CONFIG, tmp, quiet=True)
            wall = time.perf_counter() - t
        print(f"whole default study ({CONFIG.relative_to(ROOT)}): {wall:.0f} s")
        rows.append({"case": "whole default study", "s": wall})
    return rows


if __name__ == "__main__":
    main()
