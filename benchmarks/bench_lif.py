"""LIF forward over a sequence: numba sequence kernel against a plain-numpy loop over time.

    python benchmarks/bench_lif.py [--quick] [--threads 1,2]

Shape (Perez-Nieves & Goodman 2021 hidden layer): 784 inputs -> 200 LIF neurons, 100 steps,
batch 256, float32. Input currents = (spike inputs @ W), computed once by a numpy matmul and
shared by both; only the neuron update is timed. The baseline, measured in the same run, loops
over time in numpy doing the same update (v = α v + I − z v_th, z = v > v_th) and stores the spike
and voltage traces. ratio = numpy time / kernel time (higher is better). For scale, the last rows
time the emulated analog neurons of the ``brainscales2`` card on the same currents (current-based,
per-neuron parameters, membrane noise: more work than the baseline, not the same update):
``AnalogNeurons.run`` (spikes and normalised float32 membranes, the outputs lif_sequence has),
``simulate`` (membranes in LSB, float64), ``simulate(membranes=False)`` (spikes only) and the same
without temporal noise (the rest is the noise draws' share);
``vs lif_sequence`` is the kernel's time over the analog neurons' (higher is better). Tables at every
``--threads`` count (kernels and BLAS; default 1 and 2): the analog neurons run the samples of the
batch in parallel, with the same results at any count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import neuroemu  # noqa: F401 - before numpy: it sets the thread pools' idle policy (neuroemu/__init__.py)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import add_threads_option, at_threads, median_times  # noqa: E402

from neuroemu.hardware.neurons import LIFParams, lif_sequence  # noqa: E402
from neuroemu.hardware.substrate import AnalogNeurons  # noqa: E402


def numpy_lif(cur, alpha, v_th):
    """The baseline: the same update as the kernel (subtract reset, no refractory period)."""
    f = cur.dtype.type
    a, th = f(alpha), f(v_th)
    zs = np.empty_like(cur)
    vs = np.empty_like(cur)
    v = np.zeros(cur.shape[1:], cur.dtype)
    z = np.zeros_like(v)
    for t in range(cur.shape[0]):
        v = (a * v + cur[t]) - z * th
        z = (v > th).astype(cur.dtype)
        zs[t], vs[t] = z, v
    return zs, vs


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    add_threads_option(ap)
    args = ap.parse_args(argv)
    repeat = 3 if args.quick else 20
    rng = np.random.default_rng(0)
    T, batch, n_in, n = 100, 256, 784, 200
    spikes = (rng.random((T, batch, n_in)) < 0.05).astype(np.float32)
    w = rng.normal(0, 20 * (1 - np.exp(-0.1)) / np.sqrt(n_in), (n_in, n)).astype(np.float32)
    cur = np.ascontiguousarray((spikes.reshape(T * batch, n_in) @ w).reshape(T, batch, n))
    p = LIFParams(alpha=float(np.exp(-0.1)), v_th=1.0)  # dt 1 ms, tau_mem 10 ms

    zk, vk, _ = lif_sequence(cur, p)
    zn, vn = numpy_lif(cur, p.alpha, p.v_th)
    same = bool(np.array_equal(zk, zn) and np.array_equal(vk, vn))

    chip = AnalogNeurons(n, "brainscales2", rng=0)
    work = T * batch * n

    def measure(k):
        t_np, t_k, *t_a = median_times([lambda: numpy_lif(cur, p.alpha, p.v_th), lambda: lif_sequence(cur, p),
                                        lambda: chip.run(cur, rng=1), lambda: chip.simulate(cur, rng=1),
                                        lambda: chip.simulate(cur, rng=1, membranes=False),
                                        lambda: chip.simulate(cur, rng=1, membranes=False, noise=False)], repeat)
        rows = [
            {"case": "numpy loop over time", "ms": t_np * 1e3, "updates_per_s": work / t_np, "ratio": 1.0},
            {"case": "numba lif_sequence", "ms": t_k * 1e3, "updates_per_s": work / t_k, "ratio": t_np / t_k,
             "vs_lif": 1.0},
        ]
        # not the same work: CUBA neurons with per-neuron parameters, membrane noise and rails
        for case, t in zip(("analog chip neurons, run", "analog, simulate (f64 v)", "analog, spikes only",
                            "analog, spikes only, no noise"), t_a):
            rows.append({"case": case, "ms": t * 1e3, "updates_per_s": work / t, "ratio": t_np / t,
                         "vs_lif": t_k / t})
        return rows

    rows = at_threads(args.threads, measure)
    print(f"LIF forward, {n_in}->{n} neurons, {T} steps, batch {batch}, float32; "
          f"median of {repeat}; spike rate {zk.mean():.3f}; traces identical: {same}")
    for k in sorted({r["threads"] for r in rows}):
        print(f"threads: {k}")
        print(f"{'case':<30} {'ms':>9} {'steps*neurons*batch/s':>22} {'speed-up':>9} {'vs lif_sequence':>16}")
        for r in rows:
            if r["threads"] == k:
                vs = f"{r['vs_lif']:.2f}" if "vs_lif" in r else ""
                print(f"{r['case']:<30} {r['ms']:>9.3f} {r['updates_per_s']:>22.3e} {r['ratio']:>9.2f} {vs:>16}")
    return rows


if __name__ == "__main__":
    main()
