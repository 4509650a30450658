"""Sparse spiking gradient descent (Perez-Nieves & Goodman 2021): dense against sparse backward.

    python benchmarks/bench_sparse.py [--quick] [--weights PATH.npz] [--init-gain G] [--random-input]

Shape (the paper's Fashion-MNIST network): 784 latency-coded inputs -> 200 LIF -> 200 LIF -> 10
leaky readout, 100 steps, batch 256, float32. Input: the first 256 Fashion-MNIST training images
when the data set is on disk (:func:`neuroemu.data.load_fashion_mnist`, no download), else random
images, latency-coded (τ_eff = 20 steps, θ = 0.2).

The active fraction (|V − θ| < B_th = 0.2) sets the sparse speed-up and depends on the weights.
``--weights`` loads trained weights (:meth:`SparseSNN.save_weights`); otherwise the paper's init
(std 20(1 − β)/√N_in) is scaled up by factors of 1.25 until both hidden layers have >= 1 % active
entries (about what a trained network shows; the paper reports ≈ 1 %), and the gain is printed.

Timed, after a warm-up, as medians of alternating calls (ratio = baseline time / our time, higher
is better), all baselines measured in the same run:
* backward of the second hidden layer (gradient from above + regulariser -> dW_2 and the gradient
  to layer 1): dense (numba recursion + BLAS) and its plain-numpy twin against sparse;
* the whole network backward (readout, both hidden layers): dense against sparse;
* forward + backward per batch: the plain-numpy dense implementation (``tests/reference/sparse.py``)
  against this module's dense and sparse;
* one training step (forward, backward, Adam) in both modes, and for scale of
  :class:`~neuroemu.rules.surrogate.SpikingMLP` (surrogate-gradient BPTT of current-based neurons,
  the rule of the spiking_fmnist experiment; its own init) on the same shape, against dense.
Memory: bytes kept from the forward for each layer's backward (dense: v and input spikes; sparse:
active indices + σ' values + presynaptic trace). The paper: 6.1× backward speed-up of that layer on
a GPU at N = 200 and ~30 % less backward memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import median_times  # noqa: E402
from tests.reference import sparse as R  # noqa: E402

from neuroemu.data.encoders import latency_encode  # noqa: E402
from neuroemu.rules.sparse import SparseSNN, dense_layer_backward, sparse_layer_backward  # noqa: E402
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


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--weights", type=Path, default=None, help="trained weights (.npz from SparseSNN.save_weights)")
    ap.add_argument("--init-gain", type=float, default=None, help="init std = gain (1 - β)/sqrt(N_in), no search")
    ap.add_argument("--random-input", action="store_true", help="random images even when Fashion-MNIST is found")
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
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
        return sparse_layer_backward(act2, gz2_act, dc, fs.saved[1].trace, w2, beta=sparse.beta, below=act1)

    def numpy_fwd_bwd():
        return R.dense_network_grads(dense.weights, s, labels, beta=dense.beta, beta_out=dense.beta_out,
                                     reg=dense.reg)

    mlp = SpikingMLP(sizes, rng=0)
    opt_d, opt_s, opt_m = Adam(lr=2e-4), Adam(lr=2e-4), Adam(lr=2e-4)
    steps = [
        ("layer-2 backward", [("plain numpy, dense", l2_numpy), ("dense (numba + BLAS)", l2_dense),
                              ("sparse", l2_sparse)], 1),
        ("whole backward", [("dense", lambda: dense.backward(fd, labels)),
                            ("sparse", lambda: sparse.backward(fs, labels))], 0),
        ("forward + backward", [("plain numpy, dense", numpy_fwd_bwd),
                                ("dense", lambda: dense.loss_and_grads(s, labels)),
                                ("sparse", lambda: sparse.loss_and_grads(s, labels))], 0),
        ("training step", [("dense", lambda: dense.train_step(s, labels, opt_d)),
                           ("sparse", lambda: sparse.train_step(s, labels, opt_s)),
                           ("SpikingMLP (surrogate)", lambda: mlp.train_step(s, labels, opt_m))], 0),
    ]
    rows = []
    for what, cases, base in steps:
        times = median_times([f for _, f in cases], repeat)
        for (name, _), t in zip(cases, times):
            rows.append({"what": what, "case": name, "ms": t * 1e3, "ratio": times[base] / t})

    st_s = sparse.backward(fs, labels)[3]
    print(f"sparse gradient descent, 784-{n}-{n}-10, {T} steps, batch {batch}, float32, {source}; "
          f"median of {repeat}; weights: {args.weights or f'random, init gain {gain:g}'}")
    print(f"active fraction (|V - 1| < 0.2): layer 1 {fs.active_fraction[0]:.4f}, layer 2 "
          f"{fs.active_fraction[1]:.4f}; spikes per neuron and sample: {st_s['mean_count'][0]:.3f}, "
          f"{st_s['mean_count'][1]:.3f}")
    print(f"{'timed':<20} {'case':<24} {'ms':>9} {'ratio':>7}")
    for r in rows:
        print(f"{r['what']:<20} {r['case']:<24} {r['ms']:>9.2f} {r['ratio']:>7.2f}")
    print(f"{'memory kept for backward':<26} {'dense MB':>9} {'sparse MB':>10} {'ratio':>7}")
    for name, bd, bs in zip(("hidden 1", "hidden 2", "readout"), st_d["backward_bytes"], st_s["backward_bytes"]):
        print(f"{name:<26} {bd / 1e6:>9.2f} {bs / 1e6:>10.2f} {bd / bs:>7.2f}")
        rows.append({"what": "memory", "case": name, "dense_MB": bd / 1e6, "sparse_MB": bs / 1e6, "ratio": bd / bs})
    td, ts = sum(st_d["backward_bytes"]), sum(st_s["backward_bytes"])
    print(f"{'total':<26} {td / 1e6:>9.2f} {ts / 1e6:>10.2f} {td / ts:>7.2f}")
    return rows


if __name__ == "__main__":
    main()
