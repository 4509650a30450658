"""Sparse spiking gradient descent (Perez-Nieves & Goodman 2021): dense against sparse backward.

    python benchmarks/bench_sparse.py [--quick] [--threads 1,2] [--weights PATH.npz] [--init-gain G] [--random-input]

Shape (the paper's Fashion-MNIST network): 784 latency-coded inputs -> 200 LIF -> 200 LIF -> 10
leaky readout, 100 steps, batch 256, float32. Input: the first 256 Fashion-MNIST training images
when the data set is on disk (:func:`neuroemu.data.load_fashion_mnist`, no download), else random
images, latency-coded (τ_eff = 20 steps, θ = 0.2).

The active fraction (|V − θ| < B_th = 0.2) sets the sparse speed-up and depends on the weights.
``--weights`` loads trained weights (:meth:`SparseSNN.save_weights`); otherwise the paper's init
(std 20(1 − β)/√N_in) is scaled up by factors of 1.25 until both hidden layers have >= 1 % active
entries (about what a trained network shows; the paper reports ≈ 1 %), and the gain is printed.

Timed, after a warm-up, as medians of alternating calls (ratio = baseline time / our time, higher
is better), all baselines measured in the same run, one table per thread count of ``--threads``
(kernels and BLAS alike, :func:`neuroemu.threads.limit`):
* the forward alone: the dense GEMM forward of before (``S Wᵀ`` in BLAS per layer; the sparse mode
  also forming the dense presynaptic trace) against the event-driven forward of both modes;
* backward of the second hidden layer (gradient from above + regulariser -> dW_2 and the gradient
  to layer 1): dense (numba recursion + BLAS) and its plain-numpy twin against sparse, with the
  layer's input kept as a dense presynaptic trace (before) and as an event list (now);
* the whole network backward (readout, both hidden layers): dense against sparse;
* forward + backward per batch: the sparse path of before (GEMM forward, dense traces; ratio
  base) and the plain-numpy dense implementation (``tests/reference/sparse.py``) against this
  module's dense and sparse;
* one training step (forward, backward, Adam) in both modes, and for scale of
  :class:`~neuroemu.rules.surrogate.SpikingMLP` (surrogate-gradient BPTT of current-based neurons,
  the rule of the spiking_fmnist experiment; its own init) on the same shape, against dense.
Memory: bytes kept from the forward for each layer's backward (dense: v and input spikes; sparse:
active indices + σ' values + the input's event list; sparse before: the dense presynaptic trace in
place of the event list), and the peak of the memory allocated during one forward + backward
(``tracemalloc``, numpy arrays; numba's own scratch buffers, a few MB, are not traced). The paper:
6.1× backward speed-up of that layer on a GPU at N = 200 and ~30 % less backward memory.
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
from tests.reference import sparse as R  # noqa: E402

from neuroemu.data.encoders import latency_encode  # noqa: E402
from neuroemu.rules.sparse import (  # noqa: E402
    DenseSaved,
    SparseForward,
    SparseSaved,
    SparseSNN,
    dense_layer_backward,
    leaky_readout,
    lif_layer,
    lif_layer_active,
    presynaptic_trace,
    sparse_layer_backward,
)
from neuroemu.rules.surrogate import PAPER_INIT_GAIN, Adam, SpikingMLP, spike_count_reg  # noqa: E402

TARGET_ACTIVE = 0.01


def _images(batch, rng, random_input):
    if not random_input:
        try:
            from neuroemu.data import load_fashion_mnist

            x, y = load_fashion_mnist("train", limit=batch, download=False)
            if len(x) == batch:
                return x, y, "Fashion-MNIST"
        except Exception:  # noqa: BLE001 - any failure falls back to random images
            pass
    return rng.random((batch, 784)).astype(np.float32), rng.integers(0, 10, batch), "random images"


def _network(mode, sizes, gain, weights):
    net = SparseSNN(sizes, backward=mode, init_gain=gain, rng=0)
    if weights is not None:
        net.load_weights(weights)
    return net


def gemm_forward(net: SparseSNN, s) -> SparseForward:
    """The forward of before: every layer's currents a dense BLAS product S Wᵀ; the sparse mode
    keeps the dense presynaptic trace of each layer's input (its backward takes it in place of the
    event list) and the dense spikes of the last layer."""
    x = np.ascontiguousarray(s, dtype=net.dtype)
    nt, nb, _ = x.shape
    counts, fractions, saved = [], [], []
    for w in net.weights[:-1]:
        cur = (x.reshape(nt * nb, -1) @ w.T).reshape(nt, nb, -1)
        if net.backward_mode == "sparse":
            trace = presynaptic_trace(x, net.beta)
            z, act = lif_layer_active(cur, net.beta, net.theta, net.b_th, net.surrogate_scale)
            saved.append(SparseSaved(act, trace))
            fractions.append(act.fraction)
        else:
            z, v, count = lif_layer(cur, net.beta, net.theta, net.b_th, with_count=True)
            saved.append(DenseSaved(v, x))
            fractions.append(count / v.size)
        counts.append(z.sum(axis=0))
        x = z
    y = leaky_readout((x.reshape(nt * nb, -1) @ net.weights[-1].T).reshape(nt, nb, -1), net.beta_out)
    return SparseForward(y.max(axis=0), counts, fractions, saved, x, np.argmax(y, axis=0))


def peak_bytes(fn) -> int:
    """Peak of the memory allocated (tracemalloc) while fn runs, above what was allocated before."""
    import tracemalloc

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--weights", type=Path, default=None, help="trained weights (.npz from SparseSNN.save_weights)")
    ap.add_argument("--init-gain", type=float, default=None, help="init std = gain (1 - β)/sqrt(N_in), no search")
    ap.add_argument("--random-input", action="store_true", help="random images even when Fashion-MNIST is found")
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    add_threads_option(ap)
    args = ap.parse_args(argv)
    repeat = 3 if args.quick else 15
    rng = np.random.default_rng(0)
    n, batch, T = args.hidden, args.batch, args.steps
    sizes = (784, n, n, 10)
    x, labels, source = _images(batch, rng, args.random_input)
    s = latency_encode(x, t_steps=T)

    gain = PAPER_INIT_GAIN if args.init_gain is None else args.init_gain
    if args.weights is None and args.init_gain is None:
        for _ in range(20):
            frac = _network("sparse", sizes, gain, None).forward(s).active_fraction
            if min(frac) >= TARGET_ACTIVE:
                break
            gain *= 1.25
    dense, sparse = _network("dense", sizes, gain, args.weights), _network("sparse", sizes, gain, args.weights)
    fd, fs = dense.forward(s), sparse.forward(s)
    assert np.array_equal(fd.logits, fs.logits)
    fs_old = gemm_forward(sparse, s)

    # inputs of the second hidden layer's backward (the readout's gradient and the regulariser)
    _, _, _, st_d = dense.backward(fd, labels)
    _, dcounts = spike_count_reg(fd.spike_counts, dense.reg)
    dc = dcounts[1].astype(np.float32)
    logits = fd.logits.astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(batch), labels] -= 1.0
    g = np.zeros((T, batch, 10), np.float32)
    bb, kk = np.indices(fd.t_star.shape)
    g[fd.t_star, bb, kk] = p / batch
    gy = R.leaky_backward(g, dense.beta_out).reshape(T * batch, 10)
    gz2 = (gy @ dense.weights[2]).reshape(T, batch, n)
    act1, act2 = fs.saved[0].active, fs.saved[1].active
    gz2_act = gz2.reshape(-1, n)[np.repeat(np.arange(T * batch), np.diff(act2.ptr)), act2.idx]
    v2, s1, w2 = fd.saved[1].v, fd.saved[1].s, dense.weights[1]
    buf = np.empty_like(gz2)

    def l2_dense():
        np.add(gz2, dc[None], out=buf)
        return dense_layer_backward(buf, v2, s1, w2, beta=dense.beta)

    def l2_numpy():
        gv = R.dense_bptt(gz2 + dc[None], v2, dense.beta, 1.0, 100.0, np.inf).reshape(T * batch, n)
        return gv.T @ s1.reshape(T * batch, n), gv @ w2

    def l2_sparse():
        return sparse_layer_backward(act2, gz2_act, dc, fs.saved[1].events, w2, beta=sparse.beta, below=act1)

    trace1 = presynaptic_trace(s1, sparse.beta)

    def l2_sparse_trace():
        return sparse_layer_backward(act2, gz2_act, dc, trace1, w2, beta=sparse.beta, below=act1)

    def sparse_before():
        return sparse.backward(gemm_forward(sparse, s), labels)

    def numpy_fwd_bwd():
        return R.dense_network_grads(dense.weights, s, labels, beta=dense.beta, beta_out=dense.beta_out,
                                     reg=dense.reg)

    mlp = SpikingMLP(sizes, rng=0)
    mlp_args = {"matmul": mlp.ideal_matmul}
    opt_d, opt_s, opt_m, opt_m2 = Adam(lr=2e-4), Adam(lr=2e-4), Adam(lr=2e-4), Adam(lr=2e-4)
    steps = [
        ("forward", [("dense GEMM (before)", lambda: gemm_forward(dense, s)),
                     ("sparse GEMM + trace (before)", lambda: gemm_forward(sparse, s)),
                     ("dense, event-driven", lambda: dense.forward(s)),
                     ("sparse, event-driven", lambda: sparse.forward(s))], 1),
        ("layer-2 backward", [("plain numpy, dense", l2_numpy), ("dense (numba + BLAS)", l2_dense),
                              ("sparse, trace (before)", l2_sparse_trace), ("sparse, events", l2_sparse)], 1),
        ("whole backward", [("dense", lambda: dense.backward(fd, labels)),
                            ("sparse, trace (before)", lambda: sparse.backward(fs_old, labels)),
                            ("sparse, events", lambda: sparse.backward(fs, labels))], 1),
        ("forward + backward", [("sparse (before)", sparse_before),
                                ("plain numpy, dense", numpy_fwd_bwd),
                                ("dense", lambda: dense.loss_and_grads(s, labels)),
                                ("sparse", lambda: sparse.loss_and_grads(s, labels))], 0),
        ("training step", [("dense", lambda: dense.train_step(s, labels, opt_d)),
                           ("sparse", lambda: sparse.train_step(s, labels, opt_s)),
                           ("SpikingMLP, GEMM (before)", lambda: mlp.train_step(s, labels, opt_m2, **mlp_args)),
                           ("SpikingMLP (surrogate)", lambda: mlp.train_step(s, labels, opt_m))], 0),
    ]

    def measure(threads: int) -> list[dict]:
        rows = []
        for what, cases, base in steps:
            times = median_times([f for _, f in cases], repeat)
            for (name, _), t in zip(cases, times):
                rows.append({"what": what, "case": name, "ms": t * 1e3, "ratio": times[base] / t})
        print(f"\n{threads} thread(s)")
        print(f"{'timed':<20} {'case':<30} {'ms':>9} {'ratio':>7}")
        for r in rows:
            print(f"{r['what']:<20} {r['case']:<30} {r['ms']:>9.2f} {r['ratio']:>7.2f}")
        return rows

    st_s = sparse.backward(fs, labels)[3]
    st_old = sparse.backward(fs_old, labels)[3]
    print(f"sparse gradient descent, 784-{n}-{n}-10, {T} steps, batch {batch}, float32, {source}; "
          f"median of {repeat}; weights: {args.weights or f'random, init gain {gain:g}'}")
    print(f"active fraction (|V - 1| < 0.2): layer 1 {fs.active_fraction[0]:.4f}, layer 2 "
          f"{fs.active_fraction[1]:.4f}; spikes per neuron and sample: {st_s['mean_count'][0]:.3f}, "
          f"{st_s['mean_count'][1]:.3f}; input events per entry: "
          f"{fs.saved[0].events.nnz / np.prod(fs.saved[0].events.shape):.4f}")
    rows = at_threads(args.threads, measure)

    print(f"\n{'memory kept for backward':<26} {'dense MB':>9} {'sparse before':>14} {'sparse MB':>10} {'saving':>7}")
    for name, bd, bo, bs in zip(("hidden 1", "hidden 2", "readout"), st_d["backward_bytes"], st_old["backward_bytes"],
                                st_s["backward_bytes"]):
        print(f"{name:<26} {bd / 1e6:>9.2f} {bo / 1e6:>14.2f} {bs / 1e6:>10.2f} {1 - bs / bd:>7.1%}")
        rows.append({"what": "memory", "case": name, "dense_MB": bd / 1e6, "sparse_before_MB": bo / 1e6,
                     "sparse_MB": bs / 1e6, "saving": 1 - bs / bd})
    td, to, ts = (sum(st["backward_bytes"]) for st in (st_d, st_old, st_s))
    print(f"{'total':<26} {td / 1e6:>9.2f} {to / 1e6:>14.2f} {ts / 1e6:>10.2f} {1 - ts / td:>7.1%}")
    peaks = [peak_bytes(f) for f in (lambda: dense.loss_and_grads(s, labels), sparse_before,
                                     lambda: sparse.loss_and_grads(s, labels))]
    print(f"{'peak during fwd + bwd':<26} {peaks[0] / 1e6:>9.2f} {peaks[1] / 1e6:>14.2f} {peaks[2] / 1e6:>10.2f} "
          f"{1 - peaks[2] / peaks[0]:>7.1%}")
    rows.append({"what": "memory", "case": "peak", "dense_MB": peaks[0] / 1e6, "sparse_before_MB": peaks[1] / 1e6,
                 "sparse_MB": peaks[2] / 1e6, "saving": 1 - peaks[2] / peaks[0]})
    return rows


if __name__ == "__main__":
    main()
