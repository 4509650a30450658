"""Sparse spiking gradient descent: kernels against their numpy twins, the dense backward against
an independent scalar BPTT, the sparse backward against the dense one (b_th = inf) and against the
dense one with the surrogate masked to the active band, memory accounting, a short training run,
the dead-network guard, hooks and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroemu._kernels import events as K_ev
from neuroemu._kernels import sparse as K
from neuroemu.data.encoders import latency_encode
from neuroemu.rules.sparse import (
    ActiveSet,
    DeadNetworkError,
    SparseSNN,
    dead_layers,
    dense_layer_backward,
    lif_layer,
    lif_layer_active,
    lif_layer_events,
    masked_surrogate,
    presynaptic_trace,
    sparse_layer_backward,
)
from neuroemu.rules.surrogate import Adam, Events, SpikeCountReg, spike_events
from tests.reference import sparse as R

DT = 1e-3
DTYPES = (np.float32, np.float64)


def _tau(decay_factor):
    """Time constant (s) giving the decay factor exp(−dt/τ)."""
    return -DT / math.log(decay_factor)


def _currents(rng, shape, dtype):
    """Input currents that make a LIF layer (β = 0.85) spike now and then."""
    return (rng.normal(0.25, 0.6, shape)).astype(dtype)


def _active(rng, shape, dtype, b_th=0.4):
    _, v, _ = R.lif_forward(_currents(rng, shape, dtype), 0.85, 1.0)
    return R.active_set(v, 1.0, b_th, 100.0)


# ----------------------------------------------------------------------------- kernels == twins
@pytest.mark.parametrize("dtype", DTYPES)
def test_lif_kernels_match_twin(rng, dtype):
    cur = _currents(rng, (30, 4, 7), dtype)
    z, v = np.empty_like(cur), np.empty_like(cur)
    for b_th in (0.0, 0.2, 0.7, math.inf):
        count = K.lif_forward(cur, 0.85, 1.0, b_th, z, v)
        zr, vr, count_r = R.lif_forward(cur, 0.85, 1.0, b_th)
        assert np.array_equal(z, zr) and np.array_equal(v, vr) and count == count_r and 0 < z.mean() < 0.5
        z2 = np.empty_like(cur)
        ptr, idx, sg = K.lif_forward_active(cur, 0.85, 1.0, b_th, 100.0, z2)
        zr2, (ptr_r, idx_r, sg_r) = R.lif_forward_active(cur, 0.85, 1.0, b_th, 100.0)
        assert np.array_equal(z2, zr2)
        assert np.array_equal(ptr, ptr_r) and np.array_equal(idx, idx_r) and np.array_equal(sg, sg_r)
        assert sg.dtype == dtype and idx.dtype == np.int32 and ptr.dtype == np.int64 and ptr[-1] == count
    assert ptr[-1] == cur.size  # b_th = inf: every entry active


def test_active_forward_grows_its_buffers(rng):
    cur = _currents(rng, (40, 8, 64), np.float64)  # 20480 entries, more than the initial capacity 1024
    z = np.empty_like(cur)
    ptr, idx, sg = K.lif_forward_active(cur, 0.85, 1.0, math.inf, 100.0, z)
    assert ptr[-1] == cur.size == len(idx) == len(sg)


@pytest.mark.parametrize("dtype", DTYPES)
def test_leak_and_trace_kernels_match_twin(rng, dtype):
    x = rng.normal(0, 1, (25, 3, 6)).astype(dtype)
    for kern, twin in ((K.leaky_forward, R.leaky_forward), (K.leaky_backward, R.leaky_backward),
                       (K.presyn_trace, R.presyn_trace)):
        out = np.empty_like(x)
        kern(x, 0.9, out)
        assert np.array_equal(out, twin(x, 0.9)), kern.__name__


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b_th", [0.3, math.inf])
def test_dense_bptt_matches_twin(rng, dtype, b_th):
    _, v, _ = R.lif_forward(_currents(rng, (30, 4, 7), dtype), 0.85, 1.0)
    gz = rng.normal(0, 1, v.shape).astype(dtype)
    gv = np.empty_like(gz)
    K.dense_bptt(gz, v, 0.85, 1.0, 100.0, b_th, gv)
    assert np.array_equal(gv, R.dense_bptt(gz, v, 0.85, 1.0, 100.0, b_th))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [3, 8, 21])
def test_gather_rows_dot_matches_twin(rng, dtype, k):
    ptr, idx, sg = _active(rng, (20, 3, 9), dtype)
    g = rng.normal(0, 1, (60, k)).astype(dtype)
    wt = rng.normal(0, 1, (9, k)).astype(dtype)
    out = K.gather_rows_dot(ptr, idx, g, wt)
    assert np.array_equal(out, R.gather_rows_dot(ptr, idx, g, wt))
    rows = np.repeat(np.arange(60), np.diff(ptr))
    f32 = dtype == np.float32
    np.testing.assert_allclose(out, (g @ wt.T)[rows, idx], rtol=1e-4 if f32 else 1e-12, atol=1e-5 if f32 else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_active_ds_and_weight_grad_match_twin(rng, dtype):
    ptr, idx, sg = _active(rng, (20, 3, 9), dtype)
    gz = rng.normal(0, 1, idx.shape).astype(dtype)
    dcount = rng.normal(0, 1, (3, 9)).astype(dtype)
    ds = K.active_ds(ptr, idx, gz, dcount, sg, 3)
    assert np.array_equal(ds, R.active_ds(ptr, idx, gz, dcount, sg, 3))
    tr = rng.random((60, 11)).astype(dtype)
    dw0 = rng.normal(0, 1, (9, 11)).astype(dtype)
    dw = dw0.copy()
    K.sparse_weight_grad(ptr, idx, ds, tr, dw)
    assert np.array_equal(dw, R.sparse_weight_grad(ptr, idx, ds, tr, dw0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [9, 16, 5])
def test_sparse_input_grad_matches_twin(rng, dtype, n):
    nt, nb, n_lo = 20, 3, 11
    ptr, idx, sg = _active(rng, (nt, nb, n), dtype)
    ptr_lo, idx_lo, _ = _active(rng, (nt, nb, n_lo), dtype)
    ds = rng.normal(0, 1, idx.shape).astype(dtype)
    w = rng.normal(0, 1, (n, n_lo)).astype(dtype)
    out = K.sparse_input_grad(ptr, idx, ds, nt, nb, 0.85, ptr_lo, idx_lo, w)
    assert np.array_equal(out, R.sparse_input_grad(ptr, idx, ds, nt, nb, 0.85, ptr_lo, idx_lo, w))
    # against the dense recursion gv_t = ds_t + β gv_{t+1} and the matmul gv W
    dense = np.zeros((nt * nb, n), dtype)
    dense[np.repeat(np.arange(nt * nb), np.diff(ptr)), idx] = ds
    gv = R.leaky_backward(dense.reshape(nt, nb, n), 0.85).reshape(nt * nb, n)
    full = gv @ w
    rows_lo = np.repeat(np.arange(nt * nb), np.diff(ptr_lo))
    np.testing.assert_allclose(out, full[rows_lo, idx_lo], rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lif_forward_events_matches_twin(rng, dtype):
    cur = _currents(rng, (30, 4, 13), dtype)
    for b_th in (0.0, 0.2, 0.7, math.inf):
        counts = np.zeros((4, 13), dtype)
        ptr, idx, sg, eptr, eidx = K.lif_forward_events(cur, 0.85, 1.0, b_th, 100.0, counts)
        (ptr_r, idx_r, sg_r), (eptr_r, eidx_r), counts_r = R.lif_forward_events(cur, 0.85, 1.0, b_th, 100.0)
        assert np.array_equal(ptr, ptr_r) and np.array_equal(idx, idx_r) and np.array_equal(sg, sg_r)
        assert np.array_equal(eptr, eptr_r) and np.array_equal(eidx, eidx_r) and np.array_equal(counts, counts_r)
        assert sg.dtype == dtype and idx.dtype == eidx.dtype == np.int32 and eptr.dtype == np.int64
        assert 0 < len(eidx) < cur.size // 2
    # the buffers grow past their first capacity
    big = _currents(rng, (40, 8, 64), dtype)
    ptr, idx, sg, _, _ = K.lif_forward_events(big, 0.85, 1.0, math.inf, 100.0, np.zeros((8, 64), dtype))
    assert ptr[-1] == big.size == len(idx) == len(sg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", [False, True])
@pytest.mark.parametrize("n", [9, 16, 5])
def test_active_backward_matches_twin_and_the_dense_products(rng, dtype, values, n):
    nt, nb, n_in, n_lo = 20, 11, 7, 7
    ptr, idx, sg = _active(rng, (nt, nb, n), dtype)
    ptr_lo, idx_lo, _ = _active(rng, (nt, nb, n_lo), dtype)
    s = (rng.random((nt * nb, n_in)) < 0.2).astype(dtype)
    if values:
        s *= rng.random(s.shape).astype(dtype)
    eptr, eidx, binary = K_ev.spike_events(s)
    assert binary != values
    val = s[np.repeat(np.arange(nt * nb), np.diff(eptr)), eidx] if values else np.empty(0, dtype)
    ds = rng.normal(0, 1, idx.shape).astype(dtype)
    w = rng.normal(0, 1, (n, n_lo)).astype(dtype)
    wt = np.ascontiguousarray(w.T)
    dwt, out = K.active_backward(ptr, idx, ds, nt, nb, 0.85, eptr, eidx, val, ptr_lo, idx_lo, wt)
    dwt_r, out_r = R.active_backward(ptr, idx, ds, nt, nb, 0.85, eptr, eidx, val, ptr_lo, idx_lo, wt)
    assert np.array_equal(dwt, dwt_r) and np.array_equal(out, out_r)
    # against the dense recursion gv_t = ds_t + β gv_{t+1}, dW = gvᵀ S and gS = gv W
    dense = np.zeros((nt * nb, n), dtype)
    dense[np.repeat(np.arange(nt * nb), np.diff(ptr)), idx] = ds
    gv = R.leaky_backward(dense.reshape(nt, nb, n), 0.85).reshape(nt * nb, n)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dwt.T, gv.T @ s, **tol)
    rows_lo = np.repeat(np.arange(nt * nb), np.diff(ptr_lo))
    np.testing.assert_allclose(out, (gv @ w)[rows_lo, idx_lo], **tol)
    # and against the trace formulation: Σ over the active entries of ds times the trace
    dw_tr = R.sparse_weight_grad(ptr, idx, ds, R.presyn_trace(s.reshape(nt, nb, n_in), 0.85).reshape(nt * nb, -1),
                                 np.zeros((n, n_in), dtype))
    np.testing.assert_allclose(dwt.T, dw_tr, **tol)
    # without a layer below
    dwt2, out2 = K.active_backward(ptr, idx, ds, nt, nb, 0.85, eptr, eidx, val, np.zeros(nt * nb + 1, np.int64),
                                   np.zeros(0, np.int32), wt)
    assert np.array_equal(dwt2, dwt) and out2.shape == (0,)


def test_backward_kernels_do_not_depend_on_the_thread_count(rng):
    from neuroemu import threads

    nt, nb, n, n_in = 20, 11, 9, 7
    ptr, idx, _ = _active(rng, (nt, nb, n), np.float64)
    ptr_lo, idx_lo, _ = _active(rng, (nt, nb, n_in), np.float64)  # the layer below has n_in neurons
    ds = rng.normal(0, 1, idx.shape)
    eptr, eidx, _ = K_ev.spike_events((rng.random((nt * nb, n_in)) < 0.2).astype(np.float64))
    wt = rng.normal(0, 1, (n_in, n))
    res = []
    for k in (1, threads.available()):
        with threads.limit(k):
            res.append(K.active_backward(ptr, idx, ds, nt, nb, 0.85, eptr, eidx, np.empty(0), ptr_lo, idx_lo, wt))
    assert all(np.array_equal(a, b) for a, b in zip(*res))


def test_wrappers_agree_with_kernels(rng):
    cur = _currents(rng, (15, 2, 5), np.float64)
    z, v = lif_layer(cur, 0.85)
    z2, act = lif_layer_active(cur, 0.85, b_th=0.3)
    assert lif_layer(cur, 0.85, b_th=0.3, with_count=True)[2] == act.nnz
    assert np.array_equal(z, z2) and isinstance(act, ActiveSet) and act.shape == cur.shape
    assert np.array_equal(act.to_dense(), masked_surrogate(v, 1.0, 100.0, 0.3))
    assert act.nnz == int(np.sum(np.abs(v - 1.0) < 0.3)) and act.fraction == act.nnz / cur.size
    assert np.array_equal(presynaptic_trace(z, 0.85), R.presyn_trace(z, 0.85))
    act2, ev, counts = lif_layer_events(cur, 0.85, b_th=0.3)
    assert all(np.array_equal(a, b) for a, b in zip(act2[:3], act[:3])) and act2.shape == cur.shape
    assert ev.binary and np.array_equal(ev.to_dense(np.float64), z) and np.array_equal(counts, z.sum(axis=0))


# ----------------------------------------------------------------------------- scalar reference BPTT
def _loop_loss_and_grads(ws, s, labels, beta, beta_out, reg, band=math.inf, theta=1.0, scale=100.0, r_scale=None):
    """Plain python over t, b, j: forward, CE on the max-over-time readout, spike-count
    regularisers, and BPTT with the surrogate 1/(scale|v − θ| + 1)² kept where |v − θ| < band."""
    T, B, _ = s.shape
    r_scale = 1.0 - beta_out if r_scale is None else r_scale  # the read-out's factor on its input
    xs = [np.asarray(s, dtype=np.float64)]
    vs = []
    for w in ws[:-1]:
        n_out, n_in = w.shape
        z, v = np.zeros((T, B, n_out)), np.zeros((T, B, n_out))
        x = xs[-1]
        for b in range(B):
            for j in range(n_out):
                vv, zp = 0.0, 0.0
                for t in range(T):
                    cur = sum(w[j, i] * x[t, b, i] for i in range(n_in))
                    vv = beta * vv + cur - zp * theta
                    zp = 1.0 if vv > theta else 0.0
                    v[t, b, j], z[t, b, j] = vv, zp
        xs.append(z)
        vs.append(v)
    w_out = ws[-1]
    n_cls = w_out.shape[0]
    y = np.zeros((T, B, n_cls))
    for b in range(B):
        for k in range(n_cls):
            yy = 0.0
            for t in range(T):
                yy = beta_out * yy + r_scale * sum(w_out[k, j] * xs[-1][t, b, j] for j in range(w_out.shape[1]))
                y[t, b, k] = yy
    # loss
    loss, dlog = 0.0, np.zeros((B, n_cls))
    for b in range(B):
        logit = [max(y[t, b, k] for t in range(T)) for k in range(n_cls)]
        m = max(logit)
        ez = [math.exp(q - m) for q in logit]
        tot = sum(ez)
        loss += (math.log(tot) + m - logit[labels[b]]) / B
        for k in range(n_cls):
            dlog[b, k] = (ez[k] / tot - (1.0 if k == labels[b] else 0.0)) / B
    dreg = []
    for z in xs[1:]:
        n = z.shape[2]
        d = np.zeros((B, n))
        for b in range(B):
            c = [sum(z[t, b, j] for t in range(T)) for j in range(n)]
            ex = sum(c) / n - reg.upper_target
            if ex > 0:
                loss += reg.upper * ex ** reg.upper_power / B
            for j in range(n):
                lo = max(reg.lower_target - c[j], 0.0)
                loss += reg.lower * lo * lo / n / B
                up = reg.upper * reg.upper_power * ex ** (reg.upper_power - 1) / n if ex > 0 else 0.0
                d[b, j] = (up - 2.0 * reg.lower * lo / n) / B
        dreg.append(d)
    # backward
    grads = [np.zeros(w.shape) for w in ws]
    g = np.zeros((T, B, n_cls))
    for b in range(B):
        for k in range(n_cls):
            t_star = max(range(T), key=lambda t: (y[t, b, k], -t))  # first maximum
            acc = 0.0
            for t in range(T - 1, -1, -1):
                acc = beta_out * acc + (dlog[b, k] if t == t_star else 0.0)
                g[t, b, k] = r_scale * acc
    w_above = w_out
    for layer in range(len(ws) - 1, -1, -1):
        x = xs[layer]
        for j in range(ws[layer].shape[0]):
            for i in range(ws[layer].shape[1]):
                grads[layer][j, i] = sum(g[t, b, j] * x[t, b, i] for t in range(T) for b in range(B))
        if layer == 0:
            break
        w_above = ws[layer]
        v = vs[layer - 1]
        n = v.shape[2]
        gv = np.zeros(v.shape)
        for b in range(B):
            for j in range(n):
                acc = 0.0
                for t in range(T - 1, -1, -1):
                    gz = sum(g[t, b, k] * w_above[k, j] for k in range(w_above.shape[0])) + dreg[layer - 1][b, j]
                    d = abs(v[t, b, j] - theta)
                    sg = 1.0 / (scale * d + 1.0) ** 2 if d < band else 0.0
                    acc = gz * sg + beta * acc
                    gv[t, b, j] = acc
        g = gv
    return loss, grads, xs, vs


REG = SpikeCountReg(upper=0.5, upper_target=0.8, upper_power=2.0, lower=3.0, lower_target=1e-3)


def _tiny(backward, b_th=0.2, reg=REG, seed=7):
    net = SparseSNN((6, 5, 5, 3), dt=DT, tau_mem=_tau(0.85), tau_out=_tau(0.9), b_th=b_th, backward=backward,
                    reg=reg, rng=seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    net.set_weights([rng.normal(0.35, 0.7, w.shape) for w in net.weights])
    s = (rng.random((20, 2, 6)) < 0.35).astype(np.float64)
    return net, s, np.array([0, 2])


@pytest.mark.parametrize("backward", ["dense", "sparse"])
def test_readout_scale(backward):
    """The authors' read-out y_t = β_out y_{t−1} + (1 − β_out) I_t by default; readout_scale 1 gives
    y_t = β_out y_{t−1} + I_t, logits (1 − β_out)^−1 times larger; both backwards match the loop."""
    net, s, labels = _tiny(backward)
    assert net.readout_scale == pytest.approx(1.0 - net.beta_out)
    unit = SparseSNN((6, 5, 5, 3), dt=DT, tau_mem=_tau(0.85), tau_out=_tau(0.9), backward=backward, reg=REG,
                     dtype=np.float64, readout_scale=1.0)
    unit.set_weights(net.weights)
    np.testing.assert_allclose(net.forward(s).logits, (1.0 - net.beta_out) * unit.forward(s).logits, rtol=1e-12)
    band = 0.2 if backward == "sparse" else math.inf
    for model, r in ((net, None), (unit, 1.0)):
        loss, _, grads, _ = model.loss_and_grads(s, labels)
        ref_loss, ref_grads, _, _ = _loop_loss_and_grads(model.weights, s, labels, model.beta, model.beta_out, REG,
                                                         band=band, r_scale=r)
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        for g, ref in zip(grads, ref_grads):
            np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="readout_scale"):
        SparseSNN((6, 5, 5, 3), readout_scale=0.0)


def test_dense_backward_matches_scalar_bptt():
    net, s, labels = _tiny("dense")
    loss, acc, grads, stats = net.loss_and_grads(s, labels)
    ref_loss, ref_grads, xs, vs = _loop_loss_and_grads(net.weights, s, labels, net.beta, net.beta_out, REG)
    counts = [z.sum(axis=0) for z in xs[1:]]
    # the set-up exercises both regularisers and the surrogate on both hidden layers
    assert all((c == 0).any() for c in counts) and any(c.mean(axis=1).max() > REG.upper_target for c in counts)
    assert stats["reg"] > 0 and all(0 < c.mean() for c in counts)
    assert abs(loss - ref_loss) < 1e-10
    for g, r in zip(grads, ref_grads):
        assert np.abs(r).max() > 1e-4
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)
    fwd = net.forward(s)
    for saved, v in zip(fwd.saved, vs):
        np.testing.assert_allclose(saved.v, v, rtol=1e-12, atol=1e-12)


def test_sparse_with_infinite_band_equals_dense():
    net_d, s, labels = _tiny("dense")
    net_s, _, _ = _tiny("sparse", b_th=math.inf)
    ld, ad, gd, sd = net_d.loss_and_grads(s, labels)
    ls, as_, gs, ss = net_s.loss_and_grads(s, labels)
    assert ld == ls and ad == as_
    assert ss["active_fraction"] == [1.0, 1.0]
    for a, b in zip(gd, gs):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("b_th", [0.2, 0.5])
def test_sparse_equals_dense_with_masked_surrogate(b_th):
    net, s, labels = _tiny("sparse", b_th=b_th)
    loss, acc, grads, stats = net.loss_and_grads(s, labels)
    assert all(0.02 < f < 0.9 for f in stats["active_fraction"])  # a real mask
    ref_loss, ref_grads, _, _ = _loop_loss_and_grads(net.weights, s, labels, net.beta, net.beta_out, REG, band=b_th)
    _, full_grads, _, _ = _loop_loss_and_grads(net.weights, s, labels, net.beta, net.beta_out, REG)
    assert abs(loss - ref_loss) < 1e-10
    for g, r, f in zip(grads[:-1], ref_grads[:-1], full_grads[:-1]):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)
        assert np.abs(g - f).max() > 1e-6  # the mask matters
    np.testing.assert_allclose(grads[-1], ref_grads[-1], rtol=1e-10, atol=1e-10)
    # the dense layer function with the band gives the same
    fwd_d = SparseSNN((6, 5, 5, 3), dt=DT, tau_mem=_tau(0.85), backward="dense", dtype=np.float64)
    fwd_d.set_weights(net.weights)
    v1 = fwd_d.forward(s).saved[0].v
    assert np.array_equal(net.forward(s).saved[0].active.to_dense(), masked_surrogate(v1, 1.0, 100.0, b_th))


@pytest.mark.parametrize("backward", ["dense", "sparse"])
def test_float32_close_to_float64(backward):
    net64, s, labels = _tiny(backward)
    net32 = SparseSNN((6, 5, 5, 3), dt=DT, tau_mem=_tau(0.85), tau_out=_tau(0.9), backward=backward, reg=REG,
                      dtype=np.float32)
    net32.set_weights(net64.weights)
    l64, _, g64, _ = net64.loss_and_grads(s, labels)
    l32, _, g32, _ = net32.loss_and_grads(s, labels)
    assert abs(l32 - l64) < 1e-4 * max(1.0, abs(l64))
    for a, b in zip(g64, g32):
        assert b.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=2e-3, atol=2e-3 * np.abs(a).max())


def test_layer_functions_dense_vs_sparse(rng):
    """One hidden layer on its own: dense_layer_backward with the band == sparse_layer_backward."""
    nt, nb, n_in, n, n_lo = 25, 3, 8, 6, 8
    s = (rng.random((nt, nb, n_in)) < 0.3).astype(np.float64)
    w = rng.normal(0.3, 0.7, (n, n_in))
    _, v = lif_layer((s.reshape(-1, n_in) @ w.T).reshape(nt, nb, n), 0.85)
    _, act = lif_layer_active((s.reshape(-1, n_in) @ w.T).reshape(nt, nb, n), 0.85, b_th=0.3)
    _, below = lif_layer_active(_currents(rng, (nt, nb, n_lo), np.float64), 0.85, b_th=0.3)
    gz = rng.normal(0, 1, (nt, nb, n))
    dcount = rng.normal(0, 0.1, (nb, n))
    dw_d, gs_d = dense_layer_backward(gz + dcount[None], v, s, w, beta=0.85, b_th=0.3)
    rows = np.repeat(np.arange(nt * nb), np.diff(act.ptr))
    rows_lo = np.repeat(np.arange(nt * nb), np.diff(below.ptr))
    for inputs in (presynaptic_trace(s, 0.85), spike_events(s), spike_events(s * 0.5)):
        dw_s, gs_s = sparse_layer_backward(act, gz.reshape(-1, n)[rows, act.idx], dcount, inputs, w,
                                           beta=0.85, below=below)
        scale = 0.5 if isinstance(inputs, Events) and not inputs.binary else 1.0
        np.testing.assert_allclose(dw_s, scale * dw_d, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(gs_s, gs_d.reshape(-1, n_in)[rows_lo, below.idx], rtol=1e-11, atol=1e-12)
    assert dense_layer_backward(gz, v, s, w, beta=0.85, input_grad=False)[1] is None
    assert sparse_layer_backward(act, gz.reshape(-1, n)[rows, act.idx], dcount, presynaptic_trace(s, 0.85), w,
                                 beta=0.85)[1] is None
    assert sparse_layer_backward(act, gz.reshape(-1, n)[rows, act.idx], dcount, spike_events(s), w,
                                 beta=0.85)[1] is None


def test_numpy_baseline_matches_network():
    net, s, labels = _tiny("dense")
    loss, _, grads, _ = net.loss_and_grads(s, labels)
    ref_loss, ref_grads, _ = R.dense_network_grads(net.weights, s, labels, beta=net.beta, beta_out=net.beta_out,
                                                   reg=REG, readout_scale=net.readout_scale)
    assert abs(loss - ref_loss) < 1e-12
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------------------- memory, statistics
def test_stored_bytes_accounting():
    rng = np.random.default_rng(0)
    s = latency_encode(rng.random((16, 100)), t_steps=50)
    labels = rng.integers(0, 10, 16)
    out = {}
    for mode in ("dense", "sparse"):
        net = SparseSNN((100, 60, 60, 10), backward=mode, rng=1)
        fwd = net.forward(s)
        _, _, _, stats = net.backward(fwd, labels)
        out[mode] = stats
        assert len(stats["backward_bytes"]) == len(stats["backward_s"]) == 3
        assert all(t >= 0 for t in stats["backward_s"])
        if mode == "dense":
            assert stats["backward_bytes"][:2] == [50 * 16 * (60 + 100) * 4, 50 * 16 * (60 + 60) * 4]
        else:
            # the active set and the event list of the layer's input (no dense trace)
            act = [sv.active for sv in fwd.saved]
            evs = [sv.events for sv in fwd.saved] + [fwd.s_last]
            assert all(ev.binary and ev.ptr.shape == (50 * 16 + 1,) for ev in evs)
            assert stats["backward_bytes"] == [a.ptr.nbytes + a.nnz * 8 + ev.ptr.nbytes + ev.nnz * 4
                                               for a, ev in zip(act, evs)] + [evs[-1].nbytes + fwd.t_star.nbytes]
            assert np.array_equal(fwd.s_last.to_dense(), out["dense_fwd"].s_last)
            assert np.array_equal(fwd.saved[1].events.to_dense(), out["dense_fwd"].saved[1].s)
        out[f"{mode}_fwd"] = fwd
    d, sp = out["dense"], out["sparse"]
    assert d["active_fraction"] == pytest.approx(sp["active_fraction"])
    assert max(sp["active_fraction"]) < 0.05 and min(sp["active_fraction"]) > 0
    assert all(a < b for a, b in zip(sp["backward_bytes"], d["backward_bytes"]))
    # the paper's saving (~30 %) and more: at least 40 % less kept for the backward
    assert sum(sp["backward_bytes"]) < 0.6 * sum(d["backward_bytes"])
    assert sp["backward_bytes"][1] < 0.6 * d["backward_bytes"][1]


# ----------------------------------------------------------------------------- training
def _separable_task(rng, n_per_class=16, n_cls=3, n_in=12, t_steps=25):
    """Class c: inputs 4c .. 4c+3 fire with probability 0.3 per step, the others with 0.02."""
    labels = np.repeat(np.arange(n_cls), n_per_class)
    p = np.full((labels.size, n_in), 0.02)
    for c in range(n_cls):
        p[labels == c, 4 * c:4 * c + 4] = 0.3
    return (rng.random((t_steps,) + p.shape) < p).astype(np.float32), labels


@pytest.mark.parametrize("backward", ["dense", "sparse"])
def test_short_training_run_learns(backward):
    rng = np.random.default_rng(0)
    net = SparseSNN((12, 32, 32, 3), backward=backward, rng=3)
    opt = Adam(lr=0.01)
    s, labels = _separable_task(rng)
    loss0, acc0, _, _ = net.loss_and_grads(s, labels)
    for _ in range(60):
        s, labels = _separable_task(rng)
        net.train_step(s, labels, opt)
    s, labels = _separable_task(rng, n_per_class=50)
    loss1, acc1, _, stats = net.loss_and_grads(s, labels)
    assert loss1 < 0.5 * loss0
    assert acc1 > 0.9 and acc0 < 0.5  # chance is 1/3
    assert stats["dead_layers"] == [] and all(c > 0 for c in stats["mean_count"])


# ----------------------------------------------------------------------------- dead network
def test_dead_network_detection_and_guard():
    rng = np.random.default_rng(0)
    s, labels = _separable_task(rng)
    net = SparseSNN((12, 16, 16, 3), backward="sparse", rng=0)
    assert net.dead_network(s) == []
    net.weights[1][...] = -1.0  # second hidden layer silenced
    assert net.dead_network(s) == [1]
    _, _, grads, stats = net.loss_and_grads(s, labels)
    assert stats["dead_layers"] == [1] and stats["mean_count"][1] == 0
    net.weights[0][...] = -1.0
    assert net.dead_network(s) == [0, 1]
    assert dead_layers([np.zeros((2, 3)), np.full((2, 3), 0.5)]) == [0]
    assert dead_layers([np.full((2, 3), 0.01)], dead_rate=0.05) == [0]
    for mode in ("dense", "sparse"):
        guarded = SparseSNN((12, 16, 16, 3), backward=mode, guard="raise", rng=0)
        guarded.weights[0][...] = -1.0
        with pytest.raises(DeadNetworkError, match=r"hidden layer\(s\) \[0, 1\]"):
            guarded.loss_and_grads(s, labels)
    warn = SparseSNN((12, 16, 16, 3), guard="warn", rng=0)
    warn.weights[1][...] = -1.0
    with pytest.warns(RuntimeWarning, match="silent"):
        warn.loss_and_grads(s, labels)


# ----------------------------------------------------------------------------- hooks, weights
def test_predict_hooks_and_forward_agree():
    rng = np.random.default_rng(1)
    s, _ = _separable_task(rng)
    for mode in ("dense", "sparse"):
        net = SparseSNN((12, 16, 16, 3), backward=mode, rng=0)
        logits = net.forward(s).logits
        assert np.array_equal(net.predict(s), logits)
        calls = []

        def mm(layer, s_flat, net=net):
            calls.append(layer)
            return net.ideal_matmul(layer, s_flat)

        # the hook takes the dense product, the network's own the event-driven one: equal up to the
        # order of the float sums
        np.testing.assert_allclose(net.predict(s, matmul=mm, neurons=net.ideal_neurons), logits, rtol=1e-5, atol=1e-6)
        assert calls == [0, 1, 2]
        np.testing.assert_allclose(net.forward(s, matmul=net.ideal_matmul).logits, logits, rtol=1e-5, atol=1e-6)
        half = net.predict(s, matmul=lambda layer, x, net=net: 0.5 * net.ideal_matmul(layer, x))
        assert not np.array_equal(half, logits)
    with pytest.raises(ValueError, match="matmul output"):
        net.predict(s, matmul=lambda layer, x: np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"neurons output \(layer 0\)"):
        net.predict(s, neurons=lambda layer, cur, spiking: cur)


def test_weights_round_trip(tmp_path):
    net = SparseSNN((12, 16, 16, 3), rng=0)
    path = net.save_weights(tmp_path / "w.npz")
    other = SparseSNN((12, 16, 16, 3), rng=5)
    other.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(net.weights, other.weights))
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="path: expected an .npz with arrays w0..w2"):
        other.load_weights(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        other.set_weights([net.weights[0], np.zeros((2, 2)), net.weights[2]])
    with pytest.raises(ValueError, match="weights: expected 3 arrays"):
        other.set_weights(net.weights[:2])


def test_init_std_is_the_paper_value():
    net = SparseSNN((784, 400, 400, 10), rng=0, dtype=np.float64)
    for w, b in zip(net.weights, (net.beta, net.beta, net.beta_out)):
        assert w.std() == pytest.approx(20 * (1 - b) / math.sqrt(w.shape[1]), rel=0.02)


# ----------------------------------------------------------------------------- input checks
@pytest.mark.parametrize("kwargs, match", [
    ({"sizes": (5, 3)}, "sizes"),
    ({"sizes": (5, 0, 3, 2)}, "sizes"),
    ({"sizes": (5, 2.5, 3, 2)}, "sizes"),
    ({"dt": 0.0}, "dt"),
    ({"tau_mem": -1.0}, "tau_mem"),
    ({"tau_out": float("nan")}, "tau_out"),
    ({"b_th": -0.1}, "b_th: expected a value >= 0"),
    ({"b_th": "wide"}, "b_th: expected a number"),
    ({"backward": "bptt"}, "backward: expected 'dense' or 'sparse'"),
    ({"surrogate_scale": 0.0}, "surrogate_scale"),
    ({"surrogate_scale": math.inf}, "surrogate_scale"),
    ({"init_gain": -1.0}, "init_gain"),
    ({"guard": "ignore"}, "guard: expected one of 'flag', 'warn', 'raise'"),
    ({"dead_rate": -1.0}, "dead_rate"),
    ({"dtype": np.int32}, "dtype"),
    ({"reg": (1, 2)}, "reg"),
])
def test_bad_arguments_raise(kwargs, match):
    kw = {"sizes": (5, 4, 4, 2)}
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SparseSNN(kw.pop("sizes"), **kw)


def test_bad_inputs_raise():
    net = SparseSNN((5, 4, 4, 2), rng=0)
    s = np.zeros((10, 3, 5), np.float32)
    with pytest.raises(ValueError, match=r"s_in: expected input spikes of shape \(T, batch, 5\)"):
        net.forward(np.zeros((10, 3, 4)))
    with pytest.raises(ValueError, match="s_in: expected numeric"):
        net.forward(np.full((10, 3, 5), "a"))
    with pytest.raises(ValueError, match="s_in: expected at least one step"):
        net.predict(np.zeros((0, 3, 5)))
    with pytest.raises(ValueError, match=r"labels: expected 3 integer class labels"):
        net.loss_and_grads(s, [0, 1])
    with pytest.raises(ValueError, match=r"labels: expected values in \[0, 1\]"):
        net.loss_and_grads(s, [0, 1, 2])
    with pytest.raises(ValueError, match="labels: expected 3 integer"):
        net.loss_and_grads(s, [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="cur: expected a float32 or float64 array with 3 dimensions"):
        lif_layer(np.zeros((3, 4)), 0.9)
    with pytest.raises(ValueError, match="cur: expected a float32 or float64"):
        lif_layer_active(np.zeros((3, 4, 2), np.int64), 0.9)


def test_kernel_constants_take_the_array_dtype():
    """_cast (the kernels' constants) returns [a, b, c, 0, 1, d] in the dtype of its first argument."""
    import numpy as np

    from neuroemu._kernels import sparse as K

    for dt in (np.float32, np.float64):
        k = K._cast(np.zeros(1, dt), 0.9, 1.0, 100.0, 0.2)
        assert k.dtype == dt
        np.testing.assert_array_equal(k, np.array([0.9, 1.0, 100.0, 0.0, 1.0, 0.2], dt))


# ----------------------------------------------------------------------------- on the chip
@pytest.mark.parametrize("backward", ["dense", "sparse"])
def test_sparse_rule_on_an_exact_chip_is_the_float_network(backward):
    from neuroemu.chip import Hardware
    from neuroemu.models.snn import SNN
    from neuroemu.rules.base import run_step
    from neuroemu.rules.sparse import SparseBPTT
    from neuroemu.rules.surrogate import Adam

    rng = np.random.default_rng(0)
    s, y = (rng.random((20, 8, 30)) < 0.1).astype(np.float32), rng.integers(0, 4, 8)
    ref = SparseSNN((30, 12, 12, 4), backward=backward, rng=3)
    chip = SNN(SparseSNN((30, 12, 12, 4), rng=3)).build(Hardware.exact(), rng=0)
    rule, opt = SparseBPTT(1e-2, backward=backward), Adam(1e-2)
    rule.bind(chip)
    assert chip.model.net.backward_mode == backward
    for _ in range(3):
        # the chip's tiles compute the dense product, so the float network takes it too (its own
        # event-driven product differs in the order of the float sums)
        loss, _, grads, stats = ref.loss_and_grads(s, y, matmul=ref.ideal_matmul)
        opt.step(ref.weights, grads)
        got = run_step(rule, chip, (s, y))
        assert got["loss"] == loss and got["stats"]["active_fraction"] == stats["active_fraction"]
    for layer, w in zip(chip, ref.weights):
        assert layer.weights().dtype == w.dtype and layer.weights().tobytes() == w.tobytes()
    with pytest.raises(ValueError, match="backward"):
        SparseBPTT(backward="half")


@pytest.mark.parametrize("card, scheme", [("pcm_nandakumar2018", "sign"), ("rram_gong2018", "mixed_precision")])
def test_sparse_rule_trains_a_device_chip_through_a_pulsed_scheme(card, scheme):
    from neuroemu.chip import Hardware
    from neuroemu.models.snn import SNN
    from neuroemu.rules.base import run_step
    from neuroemu.rules.sparse import SparseBPTT

    rng = np.random.default_rng(0)
    s, y = (rng.random((20, 8, 30)) < 0.1).astype(np.float32), rng.integers(0, 4, 8)
    chip = SNN(SparseSNN((30, 12, 12, 4), rng=3)).build(Hardware(card=card, scheme=scheme), rng=1)
    rule = SparseBPTT(0.05, backward="sparse")
    rule.bind(chip)
    w0 = chip.weights()
    assert all(np.isfinite(run_step(rule, chip, (s, y))["loss"]) for _ in range(4))
    assert chip.stats()["pulses"] > 0
    assert any(not np.array_equal(chip.weights()[k], w0[k]) for k in w0)
