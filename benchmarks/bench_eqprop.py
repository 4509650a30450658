"""Equilibrium propagation: relaxation throughput of the numba phase kernel against plain numpy.

    python benchmarks/bench_eqprop.py [--quick] [--threads 1,2] [--batch B] [--hidden N] [--free T] [--nudge K]

Shape (the one-layer EP network of Liu et al. 2024, papers.md §6): 784 inputs -> 2000 state units
-> 10 output state units ("mse" output), float32, batch 64, random images in [0, 1), weights from
:func:`neuroemu.rules.eqprop.init_params` (seed 0); dt = 0.2, T = 40 free steps, then K = 10
nudged steps (β = 0.2) towards one-hot targets.

Timed, after a warm-up, as medians of alternating calls (ratio = baseline time / our time, higher
is better; throughput = samples per second through the free and the nudged phase), all
baselines measured in the same run:
* relaxation (free + nudged phase): the plain-numpy twin (``tests/reference/eqprop.py``, the
  bottom drive W_1 x computed once per phase) as the baseline; the same twin recomputing W_1 x at
  every step (a naive loop); :func:`neuroemu.rules.eqprop.relax` (one numba kernel per phase,
  products through BLAS);
* one training step (free phase, one nudged phase, update, applied; W_1 x + b_1 computed once for
  both phases): the twin's phases with the same update formula as the baseline against
  :meth:`EqPropNetwork.train_step`.

Both tables are measured at each thread count of ``--threads`` (BLAS and numba together). On a
loaded machine, multi-threaded BLAS stalls on the small per-step products (each waits for a
descheduled thread): compare the 1-thread rows there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import neuroemu  # noqa: F401 - before numpy: it sets the thread pools' idle policy (neuroemu/__init__.py)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import add_threads_option, at_threads, median_times  # noqa: E402
from tests.reference import eqprop as R  # noqa: E402

from neuroemu.rules.eqprop import (  # noqa: E402
    EqPropConfig,
    EqPropNetwork,
    contrastive_update,
    init_params,
    relax,
)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=2000)
    ap.add_argument("--free", type=int, default=40, help="free-phase steps T")
    ap.add_argument("--nudge", type=int, default=10, help="nudged-phase steps K")
    add_threads_option(ap)
    args = ap.parse_args(argv)
    repeat = 3 if args.quick else 15
    nb, n, t_free, t_nudge = args.batch, args.hidden, args.free, args.nudge
    dt, beta, lr = 0.2, 0.2, 0.05
    sizes = (784, n, 10)
    rng = np.random.default_rng(0)
    x = rng.random((nb, 784)).astype(np.float32)
    d = np.eye(10, dtype=np.float32)[rng.integers(0, 10, nb)]
    ws, bs = init_params(sizes, rng=0, dtype=np.float32)
    zeros = [np.zeros((nb, k), np.float32) for k in sizes[1:]]

    def numpy_relax(hoist=True):
        s0 = R.relax(x, ws, bs, zeros, t_free, dt, hoist=hoist)
        return s0, R.relax(x, ws, bs, s0, t_nudge, dt, beta, 1, d, hoist=hoist)

    def ours_relax():
        s0 = relax(ws, bs, x, steps=t_free, dt=dt)
        return s0, relax(ws, bs, x, s0, steps=t_nudge, dt=dt, beta=beta, target=d)

    (a0, ab), (b0, bb) = numpy_relax(), ours_relax()
    for p, q in zip(a0 + ab, b0 + bb):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)

    cfg = EqPropConfig(dt=dt, t_free=t_free, t_nudge=t_nudge, beta=beta, nudge="one_sided")
    net = EqPropNetwork(sizes, config=cfg, rng=0)
    np_ws, np_bs = [w.copy() for w in net.weights], [b.copy() for b in net.biases]

    def numpy_train():  # the bottom drive computed once for both phases, as train_step does
        drive = x @ np_ws[0].T + np_bs[0]
        s0 = R.relax(x, np_ws, np_bs, zeros, t_free, dt, drive=drive)
        sb = R.relax(x, np_ws, np_bs, s0, t_nudge, dt, beta, 1, d, drive=drive)
        dws, dbs = contrastive_update(x, sb, s0, 1.0 / beta, lr)
        for i in range(len(np_ws)):
            np_ws[i] = np_ws[i] + dws[i]
            np_bs[i] = np_bs[i] + dbs[i]

    def ours_train():
        net.train_step(x, d, lr)

    cases = [("plain numpy twin", numpy_relax), ("numpy, W_1 x every step", lambda: numpy_relax(False)),
             ("numba phase kernel", ours_relax)]

    def measure(_n):
        rows = []
        times = median_times([f for _, f in cases], repeat)
        for (name, _), t in zip(cases, times):
            rows.append({"what": "relaxation", "case": name, "ms": t * 1e3, "samples_per_s": nb / t,
                         "ratio": times[0] / t})
        times = median_times([numpy_train, ours_train], repeat)
        for name, t in zip(("plain numpy twin + update", "EqPropNetwork.train_step"), times):
            rows.append({"what": "training step", "case": name, "ms": t * 1e3, "samples_per_s": nb / t,
                         "ratio": times[0] / t})
        return rows

    rows = at_threads(args.threads, measure)
    print(f"equilibrium propagation, 784-{n}-10 (mse), batch {nb}, float32, T = {t_free} free + "
          f"K = {t_nudge} nudged steps; median of {repeat}")
    print(f"{'threads':>7} {'timed':<15} {'case':<27} {'ms':>9} {'samples/s':>11} {'ratio':>7}")
    for r in rows:
        print(f"{r['threads']:>7} {r['what']:<15} {r['case']:<27} {r['ms']:>9.2f} {r['samples_per_s']:>11.0f} "
              f"{r['ratio']:>7.2f}")
    return rows


if __name__ == "__main__":
    main()
