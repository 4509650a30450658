"""Crossbar forward-read throughput against a plain float32 numpy matmul of the same shape.

    python benchmarks/bench_forward.py [--quick] [--threads 1,2]

Shape: 784 inputs -> 256 outputs, batch 256 (the issue's reference shape). The baseline,
``x @ W.T`` in float32 numpy, is measured in the same run. ratio = baseline time / tile time
(higher is better; 1.0 = as fast as the bare matmul). Target for the default periphery
(7-bit DAC with noise management, output noise, 9-bit ADC with saturation): >= 0.5.
For comparison, IBM aihwkit's analog forward reaches about 0.22 of a plain GEMM on a 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import neuroemu  # noqa: F401 - before numpy: it sets the thread pools' idle policy (neuroemu/__init__.py)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import add_threads_option, at_threads, median_times  # noqa: E402

from neuroemu.hardware.crossbar import Periphery, Tile  # noqa: E402

TARGET = 0.5


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    add_threads_option(ap)
    args = ap.parse_args(argv)
    repeat = 5 if args.quick else 200
    rng = np.random.default_rng(0)
    n_out, n_in, batch = 256, 784, 256
    x = rng.random((batch, n_in), dtype=np.float32)
    spikes = rng.random((batch, n_in)) < 0.05
    w = rng.uniform(-0.3, 0.3, (n_out, n_in)).astype(np.float32)
    cases = [
        ("default periphery (DAC 7b, ADC 9b, out noise)", "linear_step", Periphery(read_noise=False), x),
        ("default + per-device read noise (PCM card)", "pcm_nandakumar2018", Periphery(), x),
        ("ideal periphery (exact float read)", "ideal", Periphery.ideal(), x),
        ("spike input, 5 % active, default periphery", "linear_step", Periphery(read_noise=False), spikes),
    ]
    def measure(_n):
        rows = []
        for label, card, per, inp in cases:
            tile = Tile(n_out, n_in, card, periphery=per, rng=1)
            tile.write(w)
            xin = inp
            base, t = median_times([lambda: xin.astype(np.float32) @ w.T if xin.dtype == bool else xin @ w.T,
                                    lambda: tile.forward(xin)], repeat)
            rows.append({"case": label, "card": card, "baseline_ms": base * 1e3, "tile_ms": t * 1e3,
                         "ratio": base / t})
        return rows

    rows = at_threads(args.threads, measure)
    print(f"crossbar forward, {n_in}->{n_out}, batch {batch}; baseline = float32 numpy x @ W.T; median of {repeat}")
    print(f"{'threads':>7} {'case':<48} {'card':<20} {'matmul ms':>9} {'tile ms':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['threads']:>7} {r['case']:<48} {r['card']:<20} {r['baseline_ms']:>9.3f} {r['tile_ms']:>8.3f} "
              f"{r['ratio']:>6.2f}")
    for r in rows[::len(cases)]:
        print(f"target at {r['threads']} thread(s): ratio >= {TARGET} for the default periphery: "
              f"{'met' if r['ratio'] >= TARGET else 'NOT met'}")
    return rows


if __name__ == "__main__":
    main()
