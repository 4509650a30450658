"""Equilibrium propagation: the relaxation kernels against their numpy twin, the β → 0 limit of the
update against finite differences of the loss at the free fixed point, the free phase's fixed point
and monotone energy, a short training run, reproducibility and input checks."""

from __future__ import annotations

import numpy as np
import pytest

from neuroemu._kernels import eqprop as K
from neuroemu.errors import ConfigError
from neuroemu.rules.eqprop import (
    EqPropConfig,
    EqPropNetwork,
    cost,
    energy,
    energy_grad,
    init_params,
    readout,
    relax,
)
from tests.reference import eqprop as R

DTYPES = (np.float32, np.float64)


def _tol(dtype):
    return {"rtol": 1e-6, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def _residual(ws, bs, x, s, output):
    """Largest entry of the projected gradient s − clip(s − ∂E/∂s, 0, 1) (zero at a fixed point)."""
    return max(float(np.abs(si - np.clip(si - gi, 0, 1)).max())
               for si, gi in zip(s, energy_grad(ws, bs, x, s, output=output)))


# ----------------------------------------------------------------------------- kernels == twin
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_layer_step_matches_twin(rng, dtype, mode):
    s = rng.random((5, 7)).astype(dtype)
    fw, bw, aux = (rng.normal(0.5, 1.0, (5, 7)).astype(dtype) for _ in range(3))
    bias = rng.normal(0, 0.3, 7).astype(dtype)
    for b, w in ((bias, bw), (None, None), (bias, None), (None, bw)):
        got = s.copy()
        K.layer_step(got, fw, np.empty(0, dtype) if b is None else b, np.empty((0, 0), dtype) if w is None else w,
                     0.3, 0.7, mode, aux)
        want = R.layer_step(s, fw, b, w, 0.3, 0.7, mode, aux)
        np.testing.assert_allclose(got, want, **_tol(dtype))
        assert got.dtype == dtype and 0 < np.mean((got > 0) & (got < 1)) < 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", ["mse", "xent"])
@pytest.mark.parametrize("sizes", [(6, 5), (6, 5, 4, 3)], ids=["1layer", "3layers"])
def test_relax_matches_twin(rng, dtype, output, sizes):
    sizes = sizes + (3,) if output == "xent" else sizes
    ws, bs = init_params(sizes, output=output, rng=rng, dtype=dtype)
    ws = [w * 2 for w in ws]  # some units saturate at 0 or 1
    nl = len(ws) - (output == "xent")
    x = rng.random((7, sizes[0])).astype(dtype)
    d = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], 7)]
    zeros = [np.zeros((7, n), dtype) for n in sizes[1:nl + 1]]
    s0 = relax(ws, bs, x, steps=30, dt=0.2, output=output)
    r0 = R.relax(x, ws[:nl], bs[:nl], zeros, 30, 0.2)
    mode = 2 if output == "xent" else 1
    sb = relax(ws, bs, x, s0, steps=12, dt=0.2, beta=-0.6, target=d, output=output)
    rb = R.relax(x, ws[:nl], bs[:nl], r0, 12, 0.2, -0.6, mode, d, ws[-1] if mode == 2 else None,
                 bs[-1] if mode == 2 else None)
    sat = 0
    for a, b, c, e in zip(s0, r0, sb, rb):
        assert a.dtype == c.dtype == dtype
        np.testing.assert_allclose(a, b, **_tol(dtype))
        np.testing.assert_allclose(c, e, **_tol(dtype))
        sat += np.count_nonzero((c == 0) | (c == 1))
    assert sat > 0 and not all(np.array_equal(a, c) for a, c in zip(s0, sb))  # nudging moved the states
    # the twin's naive form (bottom drive recomputed every step) is the same computation
    for a, b in zip(r0, R.relax(x, ws[:nl], bs[:nl], zeros, 30, 0.2, hoist=False)):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- β → 0: EqProp = gradient
def _case(sizes, output, gain, seed):
    """Float64 network, 3 inputs, labels; ``gain`` scales the state layers' init (bigger: more
    units saturate at 0 or 1)."""
    g = np.random.default_rng(seed)
    ws, bs = init_params(sizes, output=output, rng=g, dtype=np.float64)
    nl = len(ws) - (output == "xent")
    for i in range(nl):
        ws[i] *= gain
        bs[i] = 0.5 + 0.1 * g.standard_normal(bs[i].shape) if gain < 1 else bs[i]
    return ws, bs, g.random((3, sizes[0])), g.integers(0, sizes[-1], 3)


SLOW = {"steps": 2000, "dt": 0.1}  # relaxation to machine precision (contraction ~0.9 per step)


def _loss(ws, bs, x, d, output):
    s = relax(ws, bs, x, output=output, **SLOW)
    return float(np.mean(cost(readout(ws, bs, s, output=output), d, output=output))), s


def _fd_grad(ws, bs, x, d, output, eps=1e-6):
    """Central finite differences of the mean loss at the free fixed point, re-relaxed from zero
    for every perturbed parameter; returns the gradients of [weights..., biases...]."""
    out = []
    for p in list(ws) + list(bs):
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            lp = _loss(ws, bs, x, d, output)[0]
            p[idx] = old - eps
            lm = _loss(ws, bs, x, d, output)[0]
            p[idx] = old
            g[idx] = (lp - lm) / (2 * eps)
        out.append(g)
    return out


def _ep_grad(sizes, ws, bs, x, d, output, nudge, beta):
    """−ΔW/η of the rule at lr = 1 (the gradient it estimates)."""
    cfg = EqPropConfig(dt=SLOW["dt"], t_free=SLOW["steps"], t_nudge=SLOW["steps"], beta=beta, nudge=nudge,
                       output=output)
    net = EqPropNetwork(sizes, config=cfg, dtype=np.float64)
    net.weights[:] = [w.copy() for w in ws]
    net.biases[:] = [b.copy() for b in bs]
    dws, dbs, _ = net.wanted_update(x, d, lr=1.0)
    return [-a for a in dws + dbs]


def _rel(a, b):
    a, b = np.concatenate([q.ravel() for q in a]), np.concatenate([q.ravel() for q in b])
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("sizes, output, gain", [
    ((5, 4, 3), "mse", 0.8),
    ((4, 5, 4, 3), "mse", 0.8),
    ((4, 5, 4, 3), "mse", 2.5),   # many units saturated at 0 or 1
    ((5, 6, 4, 3), "xent", 2.5),
], ids=["5-4-3", "4-5-4-3", "4-5-4-3-saturated", "5-6-4-xent3"])
def test_update_tends_to_minus_gradient(sizes, output, gain):
    ws, bs, x, d = _case(sizes, output, gain, seed=3)
    nl = len(ws) - (output == "xent")
    _, s = _loss(ws, bs, x, d, output)
    assert _residual(ws, bs, x, s, output) < 1e-12
    # saturation is handled consistently when no unit sits at a bound's edge: the drive of every
    # unit is at least 1e-3 away from 0 and 1, much more than the perturbations below move it
    hs = [si - gi for si, gi in zip(s, energy_grad(ws, bs, x, s, output=output))]
    assert min(float(np.min(np.minimum(np.abs(h), np.abs(h - 1)))) for h in hs) > 1e-3
    n_sat = sum(int(np.count_nonzero((si == 0) | (si == 1))) for si in s)
    assert n_sat > (10 if gain > 1 else 0)

    fd = _fd_grad(ws, bs, x, d, output)
    # the energy layers' weights and biases (the read-out of "xent" learns by its plain gradient)
    part = list(range(nl)) + list(range(len(ws), len(ws) + nl))
    fd_e = [fd[i] for i in part]
    err = {}
    for nudge, beta in (("symmetric", 1e-4), ("symmetric", 1e-3), ("one_sided", 1e-3)):
        ep = _ep_grad(sizes, ws, bs, x, d, output, nudge, beta)
        err[nudge, beta] = _rel([ep[i] for i in part], fd_e)
        if output == "xent":
            assert _rel([ep[nl], ep[-1]], [fd[nl], fd[-1]]) < 1e-8  # read-out: plain gradient
    assert err["symmetric", 1e-4] < 1e-6            # measured 9e-10 .. 2e-8 (O(β²) bias + finite differences)
    assert err["one_sided", 1e-3] < 5e-3            # measured 1.5e-4 .. 1.4e-3 (O(β) bias)
    # the ±β estimate removes the first-order bias: at the same β it is far closer
    assert err["symmetric", 1e-3] < 0.01 * err["one_sided", 1e-3]


def test_symmetric_is_mean_of_opposite_one_sided(rng):
    sizes = (6, 5, 4)
    ws, bs = init_params(sizes, rng=rng, dtype=np.float64)
    x, d = rng.random((5, 6)), rng.random((5, 4))
    ups = []
    for nudge, beta in (("symmetric", 0.3), ("one_sided", 0.3), ("random_sign", 0.3)):
        net = EqPropNetwork(sizes, config=EqPropConfig(beta=beta, nudge=nudge), dtype=np.float64)
        net.weights[:], net.biases[:] = ws, bs
        for seed in range(20):  # a seed that draws −β
            dws, dbs, info = net.wanted_update(x, d, rng=seed)
            if nudge != "random_sign" or info["beta"] < 0:
                break
        assert info["beta"] == (-beta if nudge == "random_sign" else beta)
        ups.append(dws + dbs)
    for s, p, m in zip(*ups):
        np.testing.assert_allclose(s, 0.5 * (p + m), rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------- dynamics
@pytest.mark.parametrize("output", ["mse", "xent"])
def test_free_phase_descends_energy_to_fixed_point(rng, output):
    sizes = (6, 8, 5, 4) if output == "mse" else (6, 8, 5, 3)
    ws, bs = init_params(sizes, output=output, rng=rng, dtype=np.float64)
    x = rng.random((4, 6))
    s = relax(ws, bs, x, steps=0, dt=0.1, output=output)
    e = [energy(ws, bs, x, s, output=output)]
    for _ in range(1000):
        s = relax(ws, bs, x, s, steps=1, dt=0.1, output=output)
        e.append(energy(ws, bs, x, s, output=output))
    e = np.array(e)
    assert np.all(np.diff(e, axis=0) <= 1e-13) and np.all(e[-1] < e[0] - 1e-3)
    assert _residual(ws, bs, x, s, output) < 1e-10
    # one call of 1000 steps is the same trajectory; a fixed point stays put
    s_one = relax(ws, bs, x, steps=1000, dt=0.1, output=output)
    for a, b in zip(s, s_one):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)
    for a, b in zip(s, relax(ws, bs, x, s, steps=50, dt=0.1, output=output)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_nudged_phase_descends_total_energy(rng):
    sizes = (6, 8, 4)
    ws, bs = init_params(sizes, rng=rng, dtype=np.float64)
    x, d = rng.random((4, 6)), rng.random((4, 4))
    beta = 0.5
    s = relax(ws, bs, x, steps=300, dt=0.1)

    def total(st):
        return energy(ws, bs, x, st) + beta * cost(readout(ws, bs, st), d)

    f = [total(s)]
    for _ in range(800):
        s = relax(ws, bs, x, s, steps=1, dt=0.1, beta=beta, target=d)
        f.append(total(s))
    assert np.all(np.diff(np.array(f), axis=0) <= 1e-13) and np.all(f[-1] < f[0])
    g = energy_grad(ws, bs, x, s)
    g[-1] = g[-1] + beta * (s[-1] - d)
    assert max(float(np.abs(si - np.clip(si - gi, 0, 1)).max()) for si, gi in zip(s, g)) < 1e-10


# ----------------------------------------------------------------------------- network
def _blobs(rng, n):
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 8)) + np.where(y[:, None] == 1, 0.8, -0.8)
    return x, y


@pytest.mark.parametrize("output", ["mse", "xent"])
def test_train_step_learns_blobs_reproducibly(output):
    def run(seed):
        rng = np.random.default_rng(seed)
        xt, yt = _blobs(rng, 512)
        xe, ye = _blobs(rng, 256)
        net = EqPropNetwork((8, 16, 2), config=EqPropConfig(output=output), rng=seed)
        acc0 = float(np.mean(net.predict(xe).argmax(1) == ye))
        for _ in range(40):
            i = rng.integers(0, 512, 32)
            info = net.train_step(xt[i], yt[i], 0.2)
        return net, acc0, float(np.mean(net.predict(xe).argmax(1) == ye)), info

    net, acc0, acc, info = run(0)
    assert acc0 < 0.85 and acc > 0.9, (acc0, acc)
    assert {"loss", "accuracy", "beta"} <= set(info) and 0 <= info["accuracy"] <= 1 and info["loss"] > 0
    assert all(w.dtype == np.float32 for w in net.weights + net.biases)
    net2, _, acc2, _ = run(0)
    assert acc2 == acc
    for a, b in zip(net.weights + net.biases, net2.weights + net2.biases):
        assert np.array_equal(a, b)


def test_train_step_applies_wanted_update_and_reads_external_weights(rng):
    cfg = EqPropConfig(nudge="random_sign", output="xent")
    net = EqPropNetwork((6, 5, 3), config=cfg, rng=1)
    x, y = rng.random((8, 6)), rng.integers(0, 3, 8)
    before = [w.copy() for w in net.weights + net.biases]
    dws, dbs, info = net.wanted_update(x, y, rng=7, lr=[0.1, 0.2])
    assert all(np.array_equal(a, b) for a, b in zip(before, net.weights + net.biases))  # not applied
    external = net.weights[0].astype(np.float64)  # e.g. read from a crossbar tile
    net.weights[0] = external
    keep = external.copy()
    info2 = net.train_step(x, y, [0.1, 0.2], rng=7)
    assert info2["loss"] == info["loss"] and info2["beta"] == info["beta"]
    for a, b, c in zip(net.weights + net.biases, before, dws + dbs):
        np.testing.assert_array_equal(a, b + c)
        assert a.dtype == np.float32
    assert np.array_equal(external, keep)  # the caller's array was not written
    # the output read from externally assigned weights
    net.weights[0] = np.zeros((5, 6))
    net.biases[0] = np.full(5, 0.5)
    p = net.predict(x)
    np.testing.assert_allclose(p, np.broadcast_to(p[0], p.shape), rtol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)


def test_free_and_nudged_methods(rng):
    net = EqPropNetwork((6, 5, 4), config=EqPropConfig(t_free=60, t_nudge=20), rng=2, dtype=np.float64)
    x, d = rng.random((3, 6)), rng.random((3, 4))
    s0 = net.free(x)
    assert [a.shape for a in s0] == [(3, 5), (3, 4)]
    np.testing.assert_array_equal(net.predict(x), s0[-1])
    s1 = net.free(x, s0=s0)  # continuing from given states: further along the same trajectory
    np.testing.assert_array_equal(s1[0], relax(net.weights, net.biases, x, steps=120, dt=0.2)[0])
    sb = net.nudged(x, s0, d, 0.5)
    assert np.linalg.norm(sb[-1] - d) < np.linalg.norm(s0[-1] - d)  # pulled towards the target
    assert np.array_equal(s0[0], net.free(x)[0])  # the given states were not modified


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, field", [
    ({"nudge": "both"}, "nudge"), ({"output": "ce"}, "output"), ({"beta": 0.0}, "beta"), ({"beta": -0.1}, "beta"),
    ({"beta": float("nan")}, "beta"), ({"dt": 0.0}, "dt"), ({"dt": -0.2}, "dt"), ({"dt": 1.5}, "dt"),
    ({"t_free": 0}, "t_free"), ({"t_nudge": 2.5}, "t_nudge"), ({"t_free": True}, "t_free"),
])
def test_config_errors(kwargs, field):
    with pytest.raises(ConfigError, match=f"EqPropConfig.{field}"):
        EqPropConfig(**kwargs)


def test_input_errors(rng):
    with pytest.raises(ConfigError, match="sizes"):
        EqPropNetwork((5,))
    with pytest.raises(ConfigError, match="sizes"):
        EqPropNetwork((5, 3), config=EqPropConfig(output="xent"))
    with pytest.raises(ConfigError, match="config"):
        EqPropNetwork((5, 3), config={"beta": 0.1})
    net = EqPropNetwork((5, 4, 3), rng=0)
    x = rng.random((2, 5))
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, 5\), got \(2, 6\)"):
        net.predict(rng.random((2, 6)))
    with pytest.raises(ValueError, match=r"x: expected shape"):
        net.free(rng.random(5))
    with pytest.raises(ValueError, match=r"target: expected shape \(2, 3\)"):
        net.wanted_update(x, rng.random((2, 4)))
    with pytest.raises(ValueError, match=r"target: expected shape \(2, 3\)"):
        net.train_step(x, np.array([0, 1, 2]), 0.1)
    with pytest.raises(ValueError, match=r"target: expected labels in \[0, 3\)"):
        net.train_step(x, np.array([0, 3]), 0.1)
    with pytest.raises(ConfigError, match="lr"):
        net.train_step(x, np.array([0, 1]), [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"s0\[1\]: expected shape \(2, 3\)"):
        net.free(x, s0=[np.zeros((2, 4)), np.zeros((2, 2))])
    with pytest.raises(ConfigError, match="beta"):
        net.nudged(x, net.free(x), np.array([0, 1]), float("inf"))
    net.weights[1] = np.zeros((3, 5))
    with pytest.raises(ValueError, match=r"weights\[1\]: expected shape \(n_out, 4\), got \(3, 5\)"):
        net.predict(x)
    ws, bs = init_params((5, 4, 3), rng=0)
    with pytest.raises(ValueError, match="target: a nudged phase"):
        relax(ws, bs, x, steps=3, dt=0.2, beta=0.1)
    with pytest.raises(ConfigError, match="dt"):
        relax(ws, bs, x, steps=3, dt=0.0)


def test_target_may_be_defined_by_the_free_output():
    """A callable target sees the free-phase output and its answer is the nudging target."""
    net = EqPropNetwork((6, 5, 4), config=EqPropConfig(nudge="one_sided"), rng=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((3, 6))
    seen = []

    def target(out):
        seen.append(out.copy())
        return np.eye(4)[np.argmax(out, axis=1)]

    dws, dbs, info = net.wanted_update(x, target)
    np.testing.assert_allclose(seen[0], net.predict(x))
    want = net.wanted_update(x, np.eye(4)[np.argmax(seen[0], axis=1)])
    for a, b in zip(dws + dbs, want[0] + want[1]):
        np.testing.assert_allclose(a, b)
