"""e-prop: kernels == numpy twins, e-prop == BPTT with stopped gradients (golden), e-prop vs full
BPTT, a small learning run, read-noise hooks and argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroemu._kernels import eprop as K
from neuroemu.rules.eprop import (
    EpropConfig,
    EpropNetwork,
    Trace,
    adapt_feedback,
    eprop_gradients,
    readout,
    simulate,
    task_loss,
)
from tests.reference import eprop as R


def _cfg(**kw) -> EpropConfig:
    """A small, busy network: fast membrane, low threshold, strong adaptation."""
    base = dict(dt=1e-3, tau_m=20e-3, tau_out=15e-3, tau_a=40e-3, beta=0.3, v_th=0.5)
    base.update(kw)
    return EpropConfig(**base)


def _problem(seed, t=15, b=2, n_in=3, n_rec=4, n_out=2, p_in=0.4, in_mean=0.2, in_gain=0.2, rec_gain=0.3):
    rng = np.random.default_rng(seed)
    x = (rng.random((t, b, n_in)) < p_in).astype(np.float64)
    w_in = rng.normal(in_mean, in_gain, (n_rec, n_in))
    w_rec = rng.normal(0.0, rec_gain, (n_rec, n_rec))
    w_out = rng.normal(0.0, 1.0, (n_out, n_rec))
    b_out = rng.normal(0.0, 0.1, n_out)
    return rng, x, w_in, w_rec, w_out, b_out


def _kernel_sim(cfg, i_in, w_rec, var, seed):
    nt, nb, n = i_in.shape
    out = [np.empty((nt, nb, n)) for _ in range(4)]
    K.simulate(np.ascontiguousarray(i_in), np.ascontiguousarray(w_rec), var, np.int64(seed), cfg.alpha, cfg.rho,
               cfg.beta, cfg.v_th, cfg.gamma, np.int64(cfg.n_ref), np.int64(cfg.n_alif), *out)
    return out


# ------------------------------------------------------------------------------ kernels == twins
@pytest.mark.parametrize("n_alif, n_ref", [(0, 0), (3, 0), (6, 2), (2, 1)])
@pytest.mark.parametrize("noisy", [False, True])
def test_simulate_matches_twin(seed, n_alif, n_ref, noisy):
    cfg = _cfg(n_alif=n_alif, n_ref=n_ref)
    rng = np.random.default_rng(7)
    n = 6
    i_in = rng.normal(0.25, 0.4, (40, 2, n))
    w_rec = rng.normal(0.0, 0.5, (n, n))
    var = rng.uniform(0.0, 0.2, (n, n)) if noisy else np.zeros((0, 0))
    got = _kernel_sim(cfg, i_in, w_rec, var, seed)
    ref = R.simulate(i_in, w_rec, var, seed, cfg.alpha, cfg.rho, cfg.beta, cfg.v_th, cfg.gamma, cfg.n_ref, cfg.n_alif)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)
    z = got[0]
    assert 0.05 < z.mean() < 0.8  # the comparison covers spikes, resets and (with noise) many draws
    if n_ref:  # no two spikes closer than n_ref + 1 steps
        for k in range(1, n_ref + 1):
            assert not np.any(z[k:] * z[:-k])
    # the public wrapper runs the same kernel
    tr = simulate(cfg, i_in, w_rec, var_rec=var if noisy else None, seed=seed)
    np.testing.assert_array_equal(tr.v, ref[1])


@pytest.mark.parametrize("n_alif", [0, 2, 5])
@pytest.mark.parametrize("reg", [False, True])
def test_accumulate_matches_twin(n_alif, reg):
    rng = np.random.default_rng(n_alif + 10 * reg)
    nt, nb, n_pre, n_post = 30, 2, 4, 5
    s = (rng.random((nt, nb, n_pre)) < 0.3).astype(np.float64)
    psi = np.where(rng.random((nt, nb, n_post)) < 0.3, 0.0, rng.random((nt, nb, n_post)))
    ls = np.where(rng.random((nt, nb, n_post)) < 0.2, 0.0, rng.normal(size=(nt, nb, n_post)))
    creg = rng.normal(size=n_post) if reg else np.zeros(n_post)
    args = (0.9, 0.8, 0.95, 0.4, n_alif)
    out = np.zeros((n_post, n_pre))
    K.accumulate(s, psi, ls, creg, *args[:4], np.int64(n_alif), out)
    np.testing.assert_array_equal(out, R.accumulate(s, psi, ls, creg, *args))
    assert np.abs(out).max() > 0


# ------------------------------------------------------------------------------ independent reference
def _ref_forward(cfg, x, w_in, w_rec):
    """Scalar forward pass of the network (loops over t, b, j; nothing shared with the kernels)."""
    nt, nb, n_in = x.shape
    n = w_in.shape[0]
    first_alif = n - cfg.n_alif
    z = np.zeros((nt, nb, n))
    v = np.zeros((nt, nb, n))
    a = np.zeros((nt, nb, n))
    psi = np.zeros((nt, nb, n))
    for b in range(nb):
        vv = [0.0] * n
        aa = [0.0] * n
        zprev = [0.0] * n
        ref_left = [0] * n
        for t in range(nt):
            znew = [0.0] * n
            for j in range(n):
                cur = sum(w_in[j, i] * x[t, b, i] for i in range(n_in))
                cur += sum(w_rec[j, i] * zprev[i] for i in range(n) if i != j)
                vv[j] = cfg.alpha * vv[j] + cur - zprev[j] * cfg.v_th
                if j >= first_alif:
                    aa[j] = cfg.rho * aa[j] + zprev[j]
                thr = cfg.v_th + cfg.beta * aa[j]
                if ref_left[j] > 0:
                    ref_left[j] -= 1
                    p = 0.0
                else:
                    if vv[j] > thr:
                        znew[j] = 1.0
                        ref_left[j] = cfg.n_ref
                    p = cfg.gamma / cfg.v_th * max(0.0, 1.0 - abs(vv[j] - thr) / cfg.v_th)
                v[t, b, j], a[t, b, j], psi[t, b, j], z[t, b, j] = vv[j], aa[j], p, znew[j]
            zprev = znew
    return z, v, a, psi


def _ref_bptt(cfg, x, w_in, w_rec, w_out, b_out, target, mask, *, fb=None, full=False):
    """Hand-written reverse-mode BPTT of E + E_reg with ψ standing for dz/dv and the reset
    z_j(t−1)·v_th not differentiated. full=False also stops the gradient through the recurrent
    spikes z_i(t−1) entering other neurons (kept: own v, own a, readout); full=True keeps it.
    fb: (n_rec, n_out) matrix replacing W_outᵀ on the path from the readout back to z (random
    feedback). Returns (grads dict, trace)."""
    z, v, a, psi = _ref_forward(cfg, x, w_in, w_rec)
    nt, nb, n_in = x.shape
    n = w_in.shape[0]
    n_out = w_out.shape[0]
    first_alif = n - cfg.n_alif
    back = w_out.T if fb is None else fb
    # forward readout (scalar) and the loss derivative dE/dy
    y = np.zeros((nt, nb, n_out))
    for b in range(nb):
        yt = [0.0] * n_out
        for t in range(nt):
            for k in range(n_out):
                yt[k] = cfg.kappa * yt[k] + sum(w_out[k, j] * z[t, b, j] for j in range(n))
                y[t, b, k] = yt[k] + b_out[k]
    dy = np.zeros_like(y)
    for t in range(nt):
        for b in range(nb):
            m = mask[t, b]
            if cfg.loss == "mse":
                for k in range(n_out):
                    dy[t, b, k] = m * (y[t, b, k] - target[t, b, k])
            else:
                mx = max(y[t, b])
                ex = [math.exp(y[t, b, k] - mx) for k in range(n_out)]
                s = sum(ex)
                for k in range(n_out):
                    dy[t, b, k] = m * (ex[k] / s - (1.0 if k == target[t, b] else 0.0))
    rate = z.mean(axis=(0, 1)) / cfg.dt
    dreg = [cfg.c_reg * (rate[j] - cfg.f_target) / (nt * nb * cfg.dt) for j in range(n)]
    g_in = np.zeros_like(w_in)
    g_rec = np.zeros_like(w_rec)
    g_out = np.zeros_like(w_out)
    g_b = np.zeros(n_out)
    for b in range(nb):
        gyt = [0.0] * n_out  # adjoint of the filtered readout state ỹ(t)
        gv_next = [0.0] * n
        ga_next = [0.0] * n
        for t in range(nt - 1, -1, -1):
            for k in range(n_out):
                gyt[k] = dy[t, b, k] + cfg.kappa * gyt[k]
                g_b[k] += dy[t, b, k]
                for j in range(n):
                    g_out[k, j] += gyt[k] * z[t, b, j]
            gv = [0.0] * n
            ga = [0.0] * n
            for j in range(n):
                gz = sum(back[j, k] * gyt[k] for k in range(n_out)) + dreg[j]
                if j >= first_alif:
                    gz += ga_next[j]  # a_j(t+1) = ρ a_j(t) + z_j(t)
                if full:
                    gz += sum(gv_next[q] * w_rec[q, j] for q in range(n) if q != j)
                gv[j] = gz * psi[t, b, j] + cfg.alpha * gv_next[j]
                if j >= first_alif:
                    ga[j] = -cfg.beta * gz * psi[t, b, j] + cfg.rho * ga_next[j]
            for j in range(n):
                for i in range(n_in):
                    g_in[j, i] += gv[j] * x[t, b, i]
                if t > 0:
                    for i in range(n):
                        if i != j:
                            g_rec[j, i] += gv[j] * z[t - 1, b, i]
            gv_next, ga_next = gv, ga
    return {"w_in": g_in, "w_rec": g_rec, "w_out": g_out, "b_out": g_b}, (z, v, a, psi)


def _eprop(cfg, x, w_in, w_rec, w_out, b_out, target, mask, fb=None):
    tr = simulate(cfg, x @ w_in.T, w_rec)
    y = readout(cfg, tr.z, w_out, b_out)
    return eprop_gradients(cfg, x, tr, y, target, w_out.T if fb is None else fb, mask=mask), tr


def _targets(cfg, rng, nt, nb, n_out):
    if cfg.loss == "mse":
        return rng.normal(0.0, 1.0, (nt, nb, n_out))
    return rng.integers(0, n_out, (nt, nb))


# ------------------------------------------------------------------------------ golden test
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("c_reg", [0.0, 1e-4])
@pytest.mark.parametrize("n_ref", [0, 2])
def test_eprop_equals_stopped_gradient_bptt(loss, c_reg, n_ref):
    cfg = _cfg(n_alif=2, loss=loss, c_reg=c_reg, f_target=100.0, n_ref=n_ref)
    rng, x, w_in, w_rec, w_out, b_out = _problem(3)
    nt, nb = x.shape[:2]
    target = _targets(cfg, rng, nt, nb, w_out.shape[0])
    mask = (rng.random((nt, nb)) < 0.7).astype(np.float64)
    got, tr = _eprop(cfg, x, w_in, w_rec, w_out, b_out, target, mask)
    ref, (z, v, a, psi) = _ref_bptt(cfg, x, w_in, w_rec, w_out, b_out, target, mask)
    # the independent forward pass agrees with the kernel (same spikes, same ψ up to rounding)
    np.testing.assert_array_equal(tr.z, z)
    np.testing.assert_allclose(tr.psi, psi, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tr.a, a, rtol=0, atol=1e-12)
    # the problem exercises what it should: spikes, ψ > 0, ALIF adaptation, non-trivial gradients
    assert 0.1 < z.mean() < 0.7 and (psi > 0).mean() > 0.3 and a[..., 2:].max() > 0.5
    assert np.all(z.sum(axis=(0, 1)) > 0)
    for name in ("w_in", "w_rec", "w_out", "b_out"):
        scale = np.abs(ref[name]).max()
        assert scale > 1e-3, name
        np.testing.assert_allclose(got[name], ref[name], rtol=0, atol=1e-10 * scale, err_msg=name)
    if c_reg:
        rate = z.mean(axis=(0, 1)) / cfg.dt
        assert got["loss_reg"] == pytest.approx(0.5 * c_reg * np.sum((rate - 100.0) ** 2))
        assert got["loss_reg"] > 0.01 * got["loss_task"]  # the regulariser matters in this comparison


def test_eprop_with_random_feedback_equals_bptt_with_that_feedback():
    cfg = _cfg(n_alif=2)
    rng, x, w_in, w_rec, w_out, b_out = _problem(5)
    target = _targets(cfg, rng, *x.shape[:2], w_out.shape[0])
    mask = np.ones(x.shape[:2])
    fb = rng.normal(size=(w_in.shape[0], w_out.shape[0]))
    got, _ = _eprop(cfg, x, w_in, w_rec, w_out, b_out, target, mask, fb=fb)
    ref, _ = _ref_bptt(cfg, x, w_in, w_rec, w_out, b_out, target, mask, fb=fb)
    sym, _ = _eprop(cfg, x, w_in, w_rec, w_out, b_out, target, mask)
    for name in ("w_in", "w_rec"):
        np.testing.assert_allclose(got[name], ref[name], rtol=0, atol=1e-10 * np.abs(ref[name]).max())
        assert not np.allclose(got[name], sym[name])


def test_lif_only_and_all_alif_networks_match_bptt():
    for n_alif in (0, 4):
        cfg = _cfg(n_alif=n_alif, c_reg=1e-3)
        rng, x, w_in, w_rec, w_out, b_out = _problem(11)
        target = _targets(cfg, rng, *x.shape[:2], w_out.shape[0])
        mask = np.ones(x.shape[:2])
        got, _ = _eprop(cfg, x, w_in, w_rec, w_out, b_out, target, mask)
        ref, _ = _ref_bptt(cfg, x, w_in, w_rec, w_out, b_out, target, mask)
        for name in ("w_in", "w_rec", "w_out"):
            np.testing.assert_allclose(got[name], ref[name], rtol=0, atol=1e-10 * np.abs(ref[name]).max())


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_full_bptt_differs_from_eprop_but_points_the_same_way(loss):
    cfg = _cfg(n_alif=2, loss=loss)
    rng, x, w_in, w_rec, w_out, b_out = _problem(21, t=25, rec_gain=0.4)
    target = _targets(cfg, rng, *x.shape[:2], w_out.shape[0])
    mask = np.ones(x.shape[:2])
    got, _ = _eprop(cfg, x, w_in, w_rec, w_out, b_out, target, mask)
    full, _ = _ref_bptt(cfg, x, w_in, w_rec, w_out, b_out, target, mask, full=True)
    ep = np.concatenate([got["w_in"].ravel(), got["w_rec"].ravel()])
    bp = np.concatenate([full["w_in"].ravel(), full["w_rec"].ravel()])
    cos = ep @ bp / (np.linalg.norm(ep) * np.linalg.norm(bp))
    assert np.linalg.norm(ep - bp) > 1e-3 * np.linalg.norm(bp)  # the recurrent path matters here
    assert cos > 0.5
    np.testing.assert_allclose(got["w_out"], full["w_out"], rtol=1e-12, atol=1e-12)  # W_out: exact either way


# ------------------------------------------------------------------------------ learning
def _sine_run(lr, seed=2, n_updates=100):
    cfg = EpropConfig()  # the pattern-generation defaults: τ_m = τ_out = 30 ms, v_th = 0.03
    rng = np.random.default_rng(seed)
    nt = 100
    x = (rng.random((nt, 1, 10)) < 0.1).astype(np.float64)  # 10 frozen Poisson inputs at 100 Hz
    target = np.sin(2 * np.pi * np.arange(nt) / nt)[:, None, None]
    net = EpropNetwork.init(cfg, 10, 20, 1, rng=seed + 1, out_gain=0.1)
    w_out0 = net.w_out.copy()
    losses = []
    for _ in range(n_updates):
        g = net.gradients(x, target)
        losses.append(g["loss"])
        net.apply(g, lr)
    assert np.all(np.diag(net.w_rec) == 0) and np.all(np.isfinite(losses))
    return losses, net, w_out0


def test_network_learns_a_sine():
    losses, _, _ = _sine_run({"w_in": 1e-6, "w_rec": 1e-6, "w_out": 1e-4, "b_out": 1e-4})
    assert losses[-1] < losses[0] / 2, (losses[0], losses[-1])
    # e-prop alone (readout frozen): the input and recurrent weights carry the learning
    frozen, net, w_out0 = _sine_run({"w_in": 2e-6, "w_rec": 2e-6})
    assert np.array_equal(net.w_out, w_out0)
    assert frozen[-1] < frozen[0] / 2, (frozen[0], frozen[-1])


# ------------------------------------------------------------------------------ hooks and details
def test_autapse_gradient_is_zero_and_diagonal_is_ignored():
    cfg = _cfg(n_alif=2)
    rng, x, w_in, w_rec, w_out, b_out = _problem(2)
    target = _targets(cfg, rng, *x.shape[:2], w_out.shape[0])
    got, tr = _eprop(cfg, x, w_in, w_rec, w_out, b_out, target, None)
    assert np.all(np.diag(got["w_rec"]) == 0) and np.abs(got["w_rec"]).max() > 0
    w2 = w_rec.copy()
    np.fill_diagonal(w2, 100.0)
    np.testing.assert_array_equal(simulate(cfg, x @ w_in.T, w2).v, tr.v)


def test_read_noise_is_seeded_output_referred_and_scaled():
    cfg = EpropConfig(v_th=1.0)
    nt = 4000
    i_in = np.zeros((nt, 1, 3))
    i_in[:, 0, 0] = 10.0  # neuron 0 spikes at every step
    w_rec = np.zeros((3, 3))
    var = np.zeros((3, 3))
    var[1, 0] = 0.01 ** 2  # neuron 1 hears neuron 0 through one noisy device; neuron 2 hears nobody noisy
    var[2, 1] = 5.0  # ... from neuron 1, which never spikes
    tr = simulate(cfg, i_in, w_rec, var_rec=var, seed=4)
    assert tr.z[:, 0, 0].all() and not tr.z[:, 0, 1:].any()
    v1 = tr.v[:, 0, 1]
    noise = (v1[2:] - cfg.alpha * v1[1:-1]) / 0.01  # draws of steps 2.. (step 0 sees no spike yet)
    assert abs(noise.std() - 1.0) < 0.05 and abs(noise.mean()) < 0.05
    assert v1[0] == 0.0 and np.all(tr.v[:, 0, 2] == 0.0)
    np.testing.assert_array_equal(simulate(cfg, i_in, w_rec, var_rec=var, seed=4).v, tr.v)
    assert not np.array_equal(simulate(cfg, i_in, w_rec, var_rec=var, seed=5).v, tr.v)
    quiet = simulate(cfg, i_in, w_rec, var_rec=None, seed=4)
    assert np.all(quiet.v[:, 0, 1] == 0.0)
    np.testing.assert_array_equal(simulate(cfg, i_in, w_rec, var_rec=np.zeros((0, 0))).v, quiet.v)


def test_readout_accepts_precomputed_currents():
    cfg = _cfg()
    rng, x, w_in, w_rec, w_out, b_out = _problem(4)
    z = simulate(cfg, x @ w_in.T, w_rec).z
    y = readout(cfg, z, w_out, b_out)
    np.testing.assert_array_equal(readout(cfg, z @ w_out.T, b_out=b_out), y)
    ref = np.zeros_like(y)
    state = np.zeros(w_out.shape[0])
    for t in range(z.shape[0]):
        state = cfg.kappa * state + z[t] @ w_out.T
        ref[t] = state + b_out
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)


def test_losses_and_label_forms():
    cfg = _cfg(loss="ce")
    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 2, 3))
    lab = np.array([2, 0])
    l1, e1 = task_loss(cfg, y, lab)
    l2, e2 = task_loss(cfg, y, np.tile(lab, (5, 1)))
    onehot = np.zeros((5, 2, 3))
    onehot[:, 0, 2] = onehot[:, 1, 0] = 1.0
    l3, e3 = task_loss(cfg, y, onehot)
    assert l1 == l2 == pytest.approx(l3)
    np.testing.assert_allclose(e1, e3)
    p = np.exp(y) / np.exp(y).sum(axis=2, keepdims=True)
    assert l1 == pytest.approx(-np.sum(np.log(p[:, 0, 2])) - np.sum(np.log(p[:, 1, 0])))
    mask = np.zeros(5)
    mask[-1] = 1.0
    lm, em = task_loss(cfg, y, lab, mask)
    assert np.all(em[:-1] == 0) and lm == pytest.approx(-np.log(p[-1, 0, 2]) - np.log(p[-1, 1, 0]))
    lmse, emse = task_loss(_cfg(), y, np.zeros_like(y))
    assert lmse == pytest.approx(0.5 * np.sum(y ** 2)) and np.array_equal(emse, y)


def test_adaptive_feedback_follows_w_out():
    b = np.ones((4, 2))
    g = np.arange(8.0).reshape(2, 4)
    np.testing.assert_allclose(adapt_feedback(b, g, 0.1), b - 0.1 * g.T)
    np.testing.assert_allclose(adapt_feedback(b, g, 0.1, weight_decay=0.5), b - 0.1 * (g.T + 0.5 * b))
    cfg = _cfg()
    net = EpropNetwork.init(cfg, 3, 4, 2, feedback="adaptive", rng=0)
    rng = np.random.default_rng(1)
    x = (rng.random((20, 1, 3)) < 0.5).astype(float)
    grads = net.gradients(x, rng.normal(size=(20, 1, 2)))
    gap = net.b_feedback - net.w_out.T
    net.apply(grads, 0.05)
    with pytest.raises(ValueError, match="lr"):
        net.apply(grads, {"w_input": 1.0})
    np.testing.assert_allclose(net.b_feedback - net.w_out.T, gap)  # both took the same step
    sym = EpropNetwork.init(cfg, 3, 4, 2, rng=0)
    assert sym.b_feedback is None and np.array_equal(sym.feedback_matrix(), sym.w_out.T)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="tau_m"):
        EpropConfig(tau_m=0.0)
    with pytest.raises(ValueError, match="loss"):
        EpropConfig(loss="hinge")
    with pytest.raises(ValueError, match="n_ref"):
        EpropConfig(n_ref=-1)
    with pytest.raises(ValueError, match="n_alif"):
        EpropConfig(n_alif=1.5)
    with pytest.raises(ValueError, match="c_reg"):
        EpropConfig(c_reg=-1.0)
    cfg = _cfg()
    i_in = np.zeros((5, 1, 3))
    with pytest.raises(ValueError, match="w_rec"):
        simulate(cfg, i_in, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="i_in"):
        simulate(cfg, np.zeros((5, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="var_rec"):
        simulate(cfg, i_in, np.zeros((3, 3)), var_rec=-np.ones((3, 3)))
    with pytest.raises(ValueError, match="seed"):
        simulate(cfg, i_in, np.zeros((3, 3)), seed=-1)
    with pytest.raises(ValueError, match="n_alif"):
        simulate(_cfg(n_alif=4), i_in, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        simulate(cfg, i_in + np.nan, np.zeros((3, 3)))
    tr = simulate(cfg, i_in, np.zeros((3, 3)))
    y = np.zeros((5, 1, 2))
    x = np.zeros((5, 1, 4))
    with pytest.raises(ValueError, match="feedback"):
        eprop_gradients(cfg, x, tr, y, y, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="x"):
        eprop_gradients(cfg, x[:4], tr, y, y, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="target"):
        eprop_gradients(cfg, x, tr, y, y[:, :, :1], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="mask"):
        eprop_gradients(cfg, x, tr, y, y, np.zeros((3, 2)), mask=np.ones((4, 1)))
    with pytest.raises(ValueError, match="trace"):
        eprop_gradients(cfg, x, tuple(tr), y, y, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="labels"):
        task_loss(_cfg(loss="ce"), y, np.array([5]))
    with pytest.raises(ValueError, match="labels"):
        task_loss(_cfg(loss="ce"), y, np.array([0.5]))
    with pytest.raises(ValueError, match="feedback"):
        EpropNetwork.init(cfg, 3, 4, 2, feedback="mirror")
    with pytest.raises(ValueError, match="b_feedback"):
        EpropNetwork(cfg, np.zeros((4, 3)), np.zeros((4, 4)), np.zeros((2, 4)), feedback="random")
    with pytest.raises(ValueError, match="lr"):
        adapt_feedback(np.zeros((4, 2)), np.zeros((2, 4)), 0.0)
    assert isinstance(tr, Trace)


# ------------------------------------------------------------------------------ options of Demirag et al.'s code
def _grads(cfg, seed=3):
    rng, x, w_in, w_rec, w_out, b_out = _problem(seed)
    target = _targets(cfg, rng, *x.shape[:2], w_out.shape[0])
    fb = rng.normal(size=(w_in.shape[0], w_out.shape[0]))
    return _eprop(cfg, x, w_in, w_rec, w_out, b_out, target, np.ones(x.shape[:2]), fb=fb)


def test_gradient_clamp_bounds_each_entry_and_leaves_the_rest():
    free, _ = _grads(_cfg(n_alif=2))
    assert free["clipped"] == 0
    bound = 0.5 * np.abs(free["w_in"]).max()
    bound_out = 0.5 * np.abs(free["w_out"]).max()
    got, _ = _grads(_cfg(n_alif=2, grad_clip=bound, grad_clip_out=bound_out))
    n = 0
    for name, b in (("w_in", bound), ("w_rec", bound), ("w_out", bound_out), ("b_out", bound_out)):
        assert np.abs(got[name]).max() <= b
        np.testing.assert_array_equal(got[name], np.clip(free[name], -b, b), err_msg=name)
        n += int(np.count_nonzero(np.abs(free[name]) > b))
    assert got["clipped"] == n and n > 0
    assert np.any(np.abs(got["w_in"]) == bound)  # the clamp acted on the input gradient
    assert got["loss"] == free["loss"]  # the clamp acts on the gradient, not on the loss
    # one bound at a time: the read-out clamp leaves the input and recurrent gradients alone
    only_out, _ = _grads(_cfg(n_alif=2, grad_clip_out=bound_out))
    np.testing.assert_array_equal(only_out["w_in"], free["w_in"])
    np.testing.assert_array_equal(only_out["w_out"], got["w_out"])


def test_signal_regulariser_is_a_constant_added_to_the_learning_signal():
    """reg_form "signal" (the authors' code): L_j(t) += c_reg (f_j − f_target) at every step. The same
    gradient comes from a network without regulariser given one more read-out unit whose error is 1 at
    every step and whose feedback weights are c_reg (f − f_target)."""
    c_reg, f_target = 2e-3, 100.0
    cfg = _cfg(n_alif=2, c_reg=c_reg, f_target=f_target, reg_form="signal")
    rng, x, w_in, w_rec, w_out, b_out = _problem(7)
    nt, nb = x.shape[:2]
    target = rng.normal(size=(nt, nb, w_out.shape[0]))
    fb = rng.normal(size=(w_in.shape[0], w_out.shape[0]))
    got, tr = _eprop(cfg, x, w_in, w_rec, w_out, b_out, target, np.ones((nt, nb)), fb=fb)
    rate = tr.z.mean(axis=(0, 1)) / cfg.dt
    y = readout(cfg, tr.z, w_out, b_out)
    y2 = np.concatenate([y, np.zeros((nt, nb, 1))], axis=2)
    t2 = np.concatenate([target, -np.ones((nt, nb, 1))], axis=2)  # error y − y* = 1
    fb2 = np.concatenate([fb, (c_reg * (rate - f_target))[:, None]], axis=1)
    ref = eprop_gradients(_cfg(n_alif=2), x, tr, y2, t2, fb2)
    for name in ("w_in", "w_rec"):
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-12, atol=1e-12 * np.abs(ref[name]).max())
    assert np.abs(got["w_in"] - _grads(_cfg(n_alif=2), seed=7)[0]["w_in"]).max() > 0  # the regulariser acted
    loss_form, _ = _eprop(_cfg(n_alif=2, c_reg=c_reg, f_target=f_target), x, w_in, w_rec, w_out, b_out, target,
                          np.ones((nt, nb)), fb=fb)
    assert got["loss_reg"] == loss_form["loss_reg"] > 0  # reported the same way in both forms
    np.testing.assert_array_equal(got["w_out"], loss_form["w_out"])  # the read-out has no regulariser


def test_feedback_gain_scales_the_random_matrix_only():
    cfg = _cfg()
    a = EpropNetwork.init(cfg, 5, 6, 2, feedback="random", rng=4)
    b = EpropNetwork.init(cfg, 5, 6, 2, feedback="random", rng=4, fb_gain=2.0)
    np.testing.assert_array_equal(b.b_feedback, 2.0 * a.b_feedback)
    for name in ("w_in", "w_rec", "w_out"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("field, value", [("grad_clip", 0.0), ("grad_clip", -1.0), ("grad_clip", float("nan")),
                                          ("grad_clip", True), ("grad_clip_out", 0), ("grad_clip_out", "100"),
                                          ("reg_form", "filtered")])
def test_bad_option_values_name_the_option(field, value):
    with pytest.raises(ValueError, match=f"EpropConfig.{field}"):
        EpropConfig(**{field: value})
    EpropConfig(grad_clip=math.inf, grad_clip_out=100)  # inf: no clamp


# ------------------------------------------------------------------------------ the rule and the model on a chip
def _rsnn(cfg=None, *, readout_bias=True, n_in=6, n_rec=8, n_out=2):
    from neuroemu.models.rsnn import RSNN

    cfg = cfg or _cfg(v_th=0.3, n_alif=3)
    return RSNN(n_in, n_rec, n_out, cfg, in_gain=2.0, rec_gain=1.0, out_gain=1.0, readout_bias=readout_bias)


def _sequences(seed=0, t=40, b=2, n_in=6, n_out=2):
    from neuroemu.data.tasks import Task

    rng = np.random.default_rng(seed)
    x = (rng.random((t, b, n_in)) < 0.3).astype(np.float32)
    target = np.sin(np.linspace(0, 6, t))[:, None, None] * np.ones((1, b, n_out))
    return Task(x, target.astype(np.float32), np.ones((t, b), np.float32), None, 1e-3, "test")


def test_eprop_refuses_a_network_it_has_no_meaning_on():
    from neuroemu.chip import LayerSpec
    from neuroemu.models import Model
    from neuroemu.models.mlp import MLP
    from neuroemu.rules.base import RuleError
    from neuroemu.rules.eprop import Eprop

    with pytest.raises(RuleError, match="recurrent, sequence, spiking"):
        Eprop(1e-3).bind(MLP([4, 3]).build())

    class Other(Model):  # recurrent and spiking, but without e-prop's dynamics
        traits = frozenset({"recurrent", "spiking", "sequence"})

        def layers(self):
            return [LayerSpec("w", 3, 3)]

        def init_weights(self, spec, rng):
            return np.zeros((3, 3))

    with pytest.raises(RuleError, match="e-prop dynamics"):
        Eprop(1e-3).bind(Other().build())
    with pytest.raises(RuleError, match="b_feedback"):
        Eprop(1e-3, feedback="random", b_feedback=np.ones((3, 2))).bind(_rsnn().build(rng=0))


@pytest.mark.parametrize("kw, fragment", [
    ({"loss": "hinge"}, "EpropConfig.loss"),
    ({"feedback": "fixed"}, "Eprop.feedback"),
    ({"lr_out": -1.0}, "Eprop.lr_out"),
    ({"feedback": "symmetric", "b_feedback": np.ones((8, 2))}, "b_feedback"),
])
def test_eprop_options_fail_when_the_rule_is_made(kw, fragment):
    from neuroemu.rules.eprop import Eprop

    with pytest.raises(ValueError, match=fragment):
        Eprop(1e-3, **kw)
    with pytest.raises(TypeError, match="unknown option 'lrr'"):
        Eprop(1e-3, lrr=1.0)


def test_rsnn_on_a_float_chip_is_the_float_network_and_eprop_takes_its_step():
    """On Hardware.ideal() the model runs the network of EpropNetwork and the rule's updates are
    EpropNetwork's gradient step (symmetric feedback)."""
    from neuroemu.chip import Hardware
    from neuroemu.rules.base import run_step
    from neuroemu.rules.eprop import Eprop

    model = _rsnn()
    chip = model.build(Hardware.ideal(w_max=10.0), rng=0)
    w = chip.weights()
    net = EpropNetwork(model.cfg, w["input"], w["recurrent"], w["output"])
    task = _sequences()
    (trace, y), (trace_f, y_f) = chip.forward(task.x), net.forward(task.x)
    np.testing.assert_array_equal(trace.z, trace_f.z)
    np.testing.assert_allclose(y, y_f, rtol=1e-5, atol=1e-6)  # the tile reads in float32
    rule = Eprop(1e-4, 1e-3)
    rule.bind(chip)
    measured = run_step(rule, chip, task)
    assert measured["loss"] == pytest.approx(task_loss(model.cfg, y_f, task.target, task.mask)[0], rel=1e-5)
    assert measured["clipped"] == 0 and measured["rate_hz"] == pytest.approx(trace_f.z.mean() / 1e-3)
    net.apply(net.gradients(task.x, task.target, task.mask), {"w_in": 1e-4, "w_rec": 1e-4, "w_out": 1e-3,
                                                              "b_out": 1e-3})
    after = chip.weights()
    for name, want in (("input", net.w_in), ("recurrent", net.w_rec), ("output", net.w_out)):
        np.testing.assert_allclose(after[name], want, rtol=1e-4, atol=1e-6)
        assert np.abs(after[name] - w[name]).max() > 1e-4  # a real step
    np.testing.assert_allclose(chip["output"].bias, net.b_out, rtol=1e-4, atol=1e-6)


def test_eprop_with_adam_takes_adams_steps_on_the_eprop_gradients():
    """optimizer="adam": each update is Adam's step (written out here) on EpropNetwork's gradient, one
    Adam at lr for the input and recurrent weights and one at lr_out for the read-out; the moments
    carry over from step to step and through a pickled (checkpointed) rule."""
    import pickle

    from neuroemu.chip import Hardware
    from neuroemu.rules.base import run_step
    from neuroemu.rules.eprop import Eprop

    model = _rsnn()
    chip = model.build(Hardware.ideal(w_max=10.0), rng=0)
    rule = Eprop(2e-3, 5e-3, optimizer="adam")
    rule.bind(chip)
    w = chip.weights()
    params = {"w_in": w["input"], "w_rec": w["recurrent"], "w_out": w["output"], "b_out": chip["output"].bias.copy()}
    lrs = {"w_in": 2e-3, "w_rec": 2e-3, "w_out": 5e-3, "b_out": 5e-3}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    s = {k: np.zeros_like(v) for k, v in params.items()}
    task = _sequences()
    for t in (1, 2, 3):
        if t == 3:
            rule = pickle.loads(pickle.dumps(rule))
        net = EpropNetwork(model.cfg, *(chip.weights()[k] for k in ("input", "recurrent", "output")),
                           b_out=chip["output"].bias.copy())
        grads = net.gradients(task.x, task.target, task.mask)
        run_step(rule, chip, task)
        for k in params:
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            s[k] = 0.999 * s[k] + 0.001 * grads[k] ** 2
            step = -lrs[k] * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(s[k] / (1 - 0.999 ** t)) + 1e-8)
            if k == "w_rec":
                np.fill_diagonal(step, 0.0)
            params[k] = params[k] + step
        after = chip.weights()
        for name, k in (("input", "w_in"), ("recurrent", "w_rec"), ("output", "w_out")):
            np.testing.assert_allclose(after[name], params[k], rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(chip["output"].bias, params["b_out"], rtol=1e-4, atol=2e-5)
    assert np.abs(after["input"] - w["input"]).max() > 3e-3  # three real steps
    with pytest.raises(ValueError, match="Eprop.optimizer"):
        Eprop(1e-3, optimizer="rmsprop")


@pytest.mark.parametrize("card", ["pcm_nandakumar2018", "rram_gong2018"])
@pytest.mark.parametrize("scheme", ["ideal", "sign", "mixed_precision"])
def test_eprop_trains_a_pulsed_chip_through_its_scheme(card, scheme):
    from neuroemu.chip import Hardware
    from neuroemu.hardware import Periphery
    from neuroemu.rules.base import run_step
    from neuroemu.rules.eprop import Eprop

    params = {"threshold": 1e-4} if scheme == "sign" else {}
    hw = Hardware(card=card, scheme=scheme, scheme_params=params,
                  periphery=Periphery(dac_bits=0, adc_bits=0, adc_range=0.0, out_noise=0.0))
    chip = _rsnn(readout_bias=False).build(hw, rng=1)
    assert chip["output"].bias is None
    rule = Eprop(1e-4, 1e-5, feedback="adaptive", fb_gain=1.0, rng=2)
    rule.bind(chip)
    b0, before = rule.feedback.copy(), chip.weights()
    task = _sequences(1)
    for _ in range(3):
        measured = run_step(rule, chip, task)
        assert np.isfinite(measured["nmse"])
    after = chip.weights()
    np.testing.assert_array_equal(np.diag(after["recurrent"]), np.diag(before["recurrent"]))  # no autapses
    assert any(np.any(after[k] != before[k]) for k in after)
    assert not np.array_equal(rule.feedback, b0)  # adaptive: B took W_out's steps
    if scheme != "ideal":
        assert chip.stats()["pulses"] > 0
