"""Pulsed weight-update throughput against a plain float32 numpy SGD step of the same shape.

    python benchmarks/bench_update.py [--quick] [--size OUT IN] [--batch B] [--d-std S] [--repeat N] [--threads 1,2]

Shape: 784 inputs -> 256 outputs, batch 100. Data: x ~ uniform[0, 1) with about half the entries
set to 0 (like image pixels), d ~ N(0, σ_d²) with σ_d = 0.01 (``--d-std``), lr = 0.01, all float32. The baseline,
``W -= lr * d.T @ x`` in float32 numpy, is measured in the same run, alternating with each scheme's updates.
ratio = baseline time / scheme time (higher is better). Target: ratio >= 0.4 (IBM aihwkit's C++
pulsed update reaches about 0.15 on the 2-core reference machine).

Each update is the whole scheme step: for stochastic_coincidence and tiki_taka, the pulse trains
of all samples and every coincidence applied to the device physics (on linear_step about 240k
pulses per update, each with its own cycle-to-cycle noise); for mixed_precision the float32
matmul, the float64 accumulator and the pulses. stochastic_coincidence runs twice: with its
default update mode (aihwkit's BL management: here lr·x_max·d_max/Δw_pulse is below 1, so every
sample's train has one slot) and with a fixed BL of 31 (``update_bl_management: false``); both
issue the same number of pulses on average.

Every pulsed case on linear_step runs one pulse at a time (the default) and with ``aggregate_pulses``
on ("aggregated": a device's pulses of one update as one step where the card's law makes that
exact); the PCM card's pulses never aggregate. The tables are measured
at 1 and 2 threads (``--threads``; kernels and BLAS alike), each against its own baseline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import neuroemu  # noqa: F401 - before numpy: it sets the thread pools' idle policy (neuroemu/__init__.py)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import add_threads_option, at_threads, median_times  # noqa: E402

from neuroemu.hardware.crossbar import Tile  # noqa: E402
from neuroemu.hardware.schemes import make_scheme  # noqa: E402
from neuroemu.threads import limit  # noqa: E402

TARGET = 0.4
CASES = [  # (scheme, card, scheme parameters, what the parameters say)
    ("stochastic_coincidence", "linear_step", {}, ""),
    ("stochastic_coincidence", "linear_step", {"aggregate_pulses": True}, "aggregated"),
    ("stochastic_coincidence", "linear_step", {"update_bl_management": False}, "fixed BL"),
    ("stochastic_coincidence", "linear_step", {"update_bl_management": False, "aggregate_pulses": True},
     "fixed BL, aggregated"),
    ("mixed_precision", "linear_step", {}, ""),
    ("mixed_precision", "linear_step", {"aggregate_pulses": True}, "aggregated"),
    ("tiki_taka", "linear_step", {}, ""),
    ("tiki_taka", "linear_step", {"aggregate_pulses": True}, "aggregated"),
    ("mixed_precision", "pcm_nandakumar2018", {}, ""),
]


def make_data(n_out: int, n_in: int, batch: int, d_std: float, n_sets: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(n_sets):
        x = rng.random((batch, n_in), dtype=np.float32)
        x[rng.random((batch, n_in)) < 0.5] = 0.0
        d = (d_std * rng.standard_normal((batch, n_out))).astype(np.float32)
        sets.append((x, d))
    return sets


def cycle(data, fn):
    """A call of fn(x, d) on the next data set of ``data`` (in turn), as one timed function."""
    state = {"i": 0}

    def step():
        x, d = data[state["i"] % len(data)]
        state["i"] += 1
        fn(x, d)
    return step


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--size", nargs=2, type=int, default=[256, 784], metavar=("OUT", "IN"))
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--d-std", type=float, default=0.01, help="std of the backprop errors d (default 0.01); "
                    "the pulse count per update grows with it")
    ap.add_argument("--repeat", type=int, default=None, help="timed updates per case (default 30, quick 5)")
    add_threads_option(ap)
    args = ap.parse_args(argv)
    repeat = args.repeat or (5 if args.quick else 30)
    n_out, n_in = args.size
    lr = 0.01
    data = make_data(n_out, n_in, args.batch, args.d_std)

    def measure(n_threads: int) -> list[dict]:
        w = np.zeros((n_out, n_in), np.float32)

        def sgd(x, d):
            nonlocal w
            w -= lr * (d.T @ x)

        rows = []
        for name, card, params, variant in CASES:
            tile = Tile(n_out, n_in, card, rng=1)
            scheme = make_scheme(name, tile, rng=2, **params)
            p0 = scheme.stats()["pulses"]
            n0 = scheme.n_updates
            base, t = median_times([cycle(data, sgd), cycle(data, lambda x, d: scheme.update(x, d, lr))], repeat)
            pulses = (scheme.stats()["pulses"] - p0) / max(scheme.n_updates - n0, 1)
            rows.append({"scheme": name, "variant": variant, "card": card, "ms": t * 1e3, "baseline_ms": base * 1e3,
                         "ratio": base / t, "pulses_per_update": pulses})
        base_all = float(np.median([r["baseline_ms"] for r in rows]))
        rows.insert(0, {"scheme": "float32 SGD", "variant": "", "card": "-", "ms": base_all, "baseline_ms": base_all,
                        "ratio": 1.0, "pulses_per_update": 0.0})
        return rows

    rows = at_threads(args.threads, measure)
    with limit(1):
        parts = breakdown(n_out, n_in, data, lr, repeat)
    print(f"pulsed update, {n_in}->{n_out}, batch {args.batch}: x ~ U[0,1) with ~50 % zeros, "
          f"d ~ N(0, {args.d_std:g}^2), "
          f"lr {lr}, float32")
    print(f"baseline = float32 numpy W -= lr * d.T @ x, timed alternately with each scheme; median of {repeat} "
          "updates after warm-up; ratio = baseline / scheme (higher is better)")
    for n in dict.fromkeys(r["threads"] for r in rows):
        table = [r for r in rows if r["threads"] == n]
        print(f"\n{n} thread{'s' if n > 1 else ''} (kernels and BLAS):")
        print(f"{'scheme':<24} {'variant':<20} {'card':<20} {'ms/update':>10} {'ratio':>7} {'pulses/update':>14}")
        for r in table:
            print(f"{r['scheme']:<24} {r['variant']:<20} {r['card']:<20} {r['ms']:>10.3f} {r['ratio']:>7.3f} "
                  f"{r['pulses_per_update']:>14.0f}")
        met = [r for r in table[1:] if r["ratio"] >= TARGET]
        print(f"target: ratio >= {TARGET}: met by {len(met)} of {len(table) - 1} pulsed cases"
              + (f" ({', '.join(r['scheme'] + '/' + r['card'] + (' ' + r['variant'] if r['variant'] else '') for r in met)})"
                 if met else ""))
    pulses = parts[0]["pulses_per_update"]
    print(f"\nwhere the time of one stochastic_coincidence update on linear_step goes (1 thread; {pulses:.0f} pulses):")
    print(f"{'part':<58} {'ms/update':>10} {'share':>7} {'ns/pulse':>9}")
    for r in parts:
        print(f"{r['part']:<58} {r['ms']:>10.3f} {r['share']:>7.0%} {r['ms'] * 1e6 / max(pulses, 1):>9.2f}")
    return rows


def breakdown(n_out: int, n_in: int, data, lr: float, repeat: int) -> list[dict]:
    """The default coincidence update split into its parts, each timed on its own with the kernels
    the scheme calls: drawing the coincidences (``coincidence_draw``), drawing one normal per pulse
    (``rng.normals``, the step noise's cost), and the rest of the update (reading and writing the
    device state and its bookkeeping), as the difference."""
    from neuroemu._kernels import rng as R
    from neuroemu._kernels import update as U

    tile = Tile(n_out, n_in, "linear_step", rng=1)
    scheme = make_scheme("stochastic_coincidence", tile, rng=2)
    p, dw = scheme.params, tile.card.nominal_step / tile.scale
    p0, n0 = scheme.stats()["pulses"], scheme.n_updates
    update = cycle(data, lambda x, d: scheme.update(x, d, lr))
    update()
    pulses = (scheme.stats()["pulses"] - p0) / (scheme.n_updates - n0)
    draw = cycle(data, lambda x, d: U.coincidence_draw(x, d, lr, dw, p["update_management"],
                                                       p["update_bl_management"], p["bl"], 7))
    noise = np.empty(int(round(pulses)))
    t_update, t_draw, t_noise = median_times([update, draw, lambda: R.normals(7, 1, noise)], repeat)
    rest = max(t_update - t_draw - t_noise, 0.0)
    return [{"part": part, "ms": t * 1e3, "share": t / t_update, "pulses_per_update": pulses, "threads": 1}
            for part, t in (("whole update", t_update), ("drawing the coincidences", t_draw),
                            ("one normal per pulse (the step noise)", t_noise),
                            ("the rest: device state and its bookkeeping", rest))]


if __name__ == "__main__":
    main()
