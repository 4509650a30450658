"""Neuron kernels against their numpy twins, hand-calculated reference traces, and API checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroemu.hardware import neurons as N
from neuroemu._kernels import neurons as K
from tests.reference import neurons as R

DTYPES = [np.float32, np.float64]


def _params(model, reset_mode, refr):
    common = dict(v_th=1.0, v_reset=-0.2, reset_mode=float(reset_mode), refractory_steps=float(refr))
    if model == "lif":
        return N.LIFParams(0.8, **common)
    if model == "cuba":
        return N.CubaParams(0.8, 0.6, **common)
    return N.ALIFParams(0.8, 0.9, 0.5, **common)


def _state0(shape, dtype, rng):
    v = rng.normal(0, 0.5, shape).astype(dtype)
    z = (rng.random(shape) < 0.3).astype(dtype)
    r = rng.integers(0, 3, shape).astype(np.int32)
    a = rng.random(shape).astype(dtype)
    i = rng.normal(0, 0.3, shape).astype(dtype)
    return v, z, r, a, i


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", ["lif", "cuba", "alif"])
@pytest.mark.parametrize("reset_mode", [0, 1])
@pytest.mark.parametrize("refr", [0, 2])
def test_sequence_kernel_matches_twin(dtype, model, reset_mode, refr, rng):
    p = N._dyn(_params(model, reset_mode, refr))
    xs = rng.normal(0.4, 0.6, (12, 3, 5)).astype(dtype)
    st = _state0((3, 5), dtype, rng)
    ks = [s.copy() for s in st]
    zs, vs, as_ = (np.empty_like(xs) for _ in range(3))
    K.neuron_sequence(xs, p, *ks, zs, vs, as_)
    rz, rv, ra, rst = R.neuron_sequence(xs, p, *st)
    np.testing.assert_array_equal(zs, rz)
    np.testing.assert_array_equal(vs, rv)
    np.testing.assert_array_equal(as_, ra)
    for k_arr, r_arr in zip(ks, rst):
        np.testing.assert_array_equal(k_arr, r_arr)
    assert vs.dtype == dtype and zs.sum() > 0  # something spiked: the comparison is not vacuous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", ["lif", "cuba", "alif"])
@pytest.mark.parametrize("reset_mode", [0, 1])
def test_step_kernel_matches_twin_and_sequence(dtype, model, reset_mode, rng):
    p = N._dyn(_params(model, reset_mode, 1))
    xs = rng.normal(0.4, 0.6, (9, 2, 4)).astype(dtype)
    st = _state0((2, 4), dtype, rng)
    ks = [s.copy() for s in st]
    rs = list(st)
    zs = np.empty_like(xs)
    for t in range(xs.shape[0]):
        K.neuron_step(xs[t], p, *ks)
        rs = list(R.neuron_step(xs[t], p, *rs))
        for k_arr, r_arr in zip(ks, rs):
            np.testing.assert_array_equal(k_arr, r_arr)
        zs[t] = ks[1]
    sq = [s.copy() for s in st]
    szs, svs, sas = (np.empty_like(xs) for _ in range(3))
    K.neuron_sequence(xs, p, *sq, szs, svs, sas)
    np.testing.assert_array_equal(szs, zs)
    for k_arr, s_arr in zip(ks, sq):
        np.testing.assert_array_equal(k_arr, s_arr)


@pytest.mark.parametrize("dtype", DTYPES)
def test_readout_kernels_match_twin(dtype, rng):
    xs = rng.normal(0, 1, (7, 3, 2)).astype(dtype)
    y0 = rng.normal(0, 1, (3, 2)).astype(dtype)
    y, ys = y0.copy(), np.empty_like(xs)
    K.readout_sequence(xs, 0.9, y, ys)
    rys, ry = R.readout_sequence(xs, 0.9, y0)
    np.testing.assert_array_equal(ys, rys)
    np.testing.assert_array_equal(y, ry)
    y2 = y0.copy()
    for t in range(7):
        K.readout_step(xs[t], 0.9, y2)
        np.testing.assert_array_equal(y2, rys[t])


# ------------------------------------------------------------------ public wrappers
@pytest.mark.parametrize("dtype", DTYPES)
def test_public_sequence_equals_looped_step(dtype, rng):
    xs = rng.normal(0.5, 0.7, (10, 4, 6)).astype(dtype)
    for step, seq, p in [(N.lif_step, N.lif_sequence, _params("lif", 0, 1)),
                         (N.cuba_step, N.cuba_sequence, _params("cuba", 1, 0)),
                         (N.alif_step, N.alif_sequence, _params("alif", 0, 2))]:
        out = seq(xs, p)
        zs, final = out[0], out[-1]
        state = None
        for t in range(xs.shape[0]):
            z, state = step(state, p, xs[t])
            np.testing.assert_array_equal(z, zs[t])
            np.testing.assert_array_equal(state.v, out[1][t])
        for a, b in zip(state, final):
            np.testing.assert_array_equal(a, b)
        assert zs.dtype == dtype and zs.sum() > 0
    ys, fin = N.readout_sequence(xs, N.ReadoutParams(0.7))
    st = None
    for t in range(xs.shape[0]):
        y, st = N.readout_step(st, N.ReadoutParams(0.7), xs[t])
        np.testing.assert_array_equal(y, ys[t])
    np.testing.assert_array_equal(st.y, fin.y)


def test_sequence_continues_from_state(rng):
    xs = rng.normal(0.5, 0.7, (10, 2, 3))
    p = _params("alif", 1, 1)
    z, v, a, _ = N.alif_sequence(xs, p)
    _, _, _, mid = N.alif_sequence(xs[:4], p)
    z2, v2, a2, _ = N.alif_sequence(xs[4:], p, mid)
    np.testing.assert_array_equal(z[4:], z2)
    np.testing.assert_array_equal(v[4:], v2)
    np.testing.assert_array_equal(a[4:], a2)


def test_inputs_and_state_not_modified(rng):
    xs = rng.normal(0.5, 0.7, (5, 2, 3))
    x0 = xs.copy()
    st = N.LIFState.zeros(2, 3, np.float64)
    z, new = N.lif_step(st, N.LIFParams(0.9), xs[0] + 2)
    assert np.all(st.v == 0) and np.all(new.v > 0) and z is not new.z
    N.lif_sequence(xs, N.LIFParams(0.9), st)
    np.testing.assert_array_equal(xs, x0)
    assert np.all(st.v == 0)


# ------------------------------------------------------------------ hand-calculated traces
@pytest.mark.parametrize("dtype", DTYPES)
def test_trace_lif_subtract_reset(dtype):
    # alpha 0.5, v_th 1: v(t+1) = 0.5 v(t) + I(t+1) - z(t)
    I = [0.6, 0.6, 0.6, 0.0, 1.5, 0.2, 2.0, 0.0]
    v_exp = [0.6, 0.9, 1.05, -0.475, 1.2625, -0.16875, 1.915625, -0.0421875]
    z_exp = [0, 0, 1, 0, 1, 0, 1, 0]
    z, v, _ = N.lif_sequence(np.array(I, dtype)[:, None, None], N.LIFParams(0.5, 1.0))
    np.testing.assert_allclose(v[:, 0, 0], v_exp, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(z[:, 0, 0], z_exp)


@pytest.mark.parametrize("dtype", DTYPES)
def test_trace_lif_reset_to_value_refractory(dtype):
    # alpha 0.5, v_th 1, v_reset 0.2, 2 refractory steps: after a spike v(t+1) = 0.5*0.2 + 0,
    # then 0.05 (input ignored), then normal updates.
    p = N.LIFParams(0.5, 1.0, v_reset=0.2, reset_mode=1, refractory_steps=2)
    I = np.array([[1.2, 0.7]] * 8, dtype)[:, None, :]
    z, v, _ = N.lif_sequence(I, p)
    np.testing.assert_allclose(v[:, 0, 0], [1.2, 0.1, 0.05, 1.225, 0.1, 0.05, 1.225, 0.1], rtol=1e-6)
    np.testing.assert_array_equal(z[:, 0, 0], [1, 0, 0, 1, 0, 0, 1, 0])
    np.testing.assert_allclose(v[:, 0, 1], [0.7, 1.05, 0.1, 0.05, 0.725, 1.0625, 0.1, 0.05], rtol=1e-6)
    np.testing.assert_array_equal(z[:, 0, 1], [0, 1, 0, 0, 0, 1, 0, 0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_trace_refractory_blocks_spike_above_threshold(dtype):
    # subtract reset, 1 refractory step: v = 5 spikes; next v = 2.5 - 1 = 1.5 > 1 but refractory
    p = N.LIFParams(0.5, 1.0, refractory_steps=1)
    I = np.array([5.0, 0.0, 0.5, 3.0, 0.0, 0.0], dtype)[:, None, None]
    z, v, _ = N.lif_sequence(I, p)
    np.testing.assert_allclose(v[:, 0, 0], [5.0, 1.5, 1.25, -0.375, -0.1875, -0.09375], rtol=1e-6)
    np.testing.assert_array_equal(z[:, 0, 0], [1, 0, 1, 0, 0, 0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_trace_cuba(dtype):
    # alpha = beta_syn = 0.5, v_th 1 (strict: v = 1.0 does not spike); one input pulse of 2
    I = np.array([2, 0, 0, 0, 0, 0], dtype)[:, None, None]
    z, v, st = N.cuba_sequence(I, N.CubaParams(0.5, 0.5, 1.0))
    np.testing.assert_array_equal(v[:, 0, 0], np.array([2.0, 1.0, 1.0, 0.75, 0.5, 0.3125], dtype))
    np.testing.assert_array_equal(z[:, 0, 0], [1, 0, 0, 0, 0, 0])
    assert st.i[0, 0] == 0.0625


@pytest.mark.parametrize("dtype", DTYPES)
def test_trace_alif_threshold_adaptation(dtype):
    # alpha = rho = 0.5, beta_adapt 1, v_th 1, constant input 1.5; A = 1 + a, a(t+1) = 0.5 a + z(t)
    I = np.full((7, 1, 1), 1.5, dtype)
    z, v, a, _ = N.alif_sequence(I, N.ALIFParams(0.5, 0.5, 1.0, 1.0))
    np.testing.assert_array_equal(v[:, 0, 0], np.array(
        [1.5, 1.25, 2.125, 1.5625, 2.28125, 1.640625, 2.3203125], dtype))
    np.testing.assert_array_equal(a[:, 0, 0], np.array([0, 1, 0.5, 1.25, 0.625, 1.3125, 0.65625], dtype))
    np.testing.assert_array_equal(z[:, 0, 0], [1, 0, 1, 0, 1, 0, 1])  # plain LIF would fire at 1.25
    z_lif, _, _ = N.lif_sequence(I, N.LIFParams(0.5, 1.0))
    assert z_lif[:, 0, 0].sum() > z[:, 0, 0].sum()


@pytest.mark.parametrize("dtype", DTYPES)
def test_trace_readout(dtype):
    I = np.array([1, 0, 2, 0, 0, -1], dtype)[:, None, None]
    y, st = N.readout_sequence(I, N.ReadoutParams(0.5))
    np.testing.assert_array_equal(y[:, 0, 0], np.array([1, 0.5, 2.25, 1.125, 0.5625, -0.71875], dtype))
    assert st.y[0, 0] == dtype(-0.71875)


def test_rate_units():
    x = np.array([-1.0, 0.0, 0.25, 1.0, 2.5], np.float32)
    np.testing.assert_array_equal(N.hard_sigmoid(x), [0, 0, 0.25, 1, 1])
    np.testing.assert_array_equal(N.relu(x), [0, 0, 0.25, 1, 2.5])
    assert N.hard_sigmoid(x).dtype == np.float32


def test_params_from_tau():
    p = N.lif_params_from_tau(1e-3, 10e-3, refractory=2e-3)
    assert p.alpha == pytest.approx(math.exp(-0.1)) and p.refractory_steps == 2.0
    c = N.cuba_params_from_tau(1e-3, 20e-3, 5e-3)
    assert c.alpha == pytest.approx(math.exp(-0.05)) and c.beta_syn == pytest.approx(math.exp(-0.2))
    a = N.alif_params_from_tau(1e-3, 20e-3, 200e-3, 1.8)
    assert a.rho == pytest.approx(math.exp(-1e-3 / 0.2)) and a.beta_adapt == 1.8
    assert N.readout_params_from_tau(1e-3, 30e-3).alpha_out == pytest.approx(math.exp(-1 / 30))
    assert N.decay(1e-3, math.inf) == 1.0
    with pytest.raises(ValueError, match="dt > 0"):
        N.decay(0.0, 1e-3)


# ------------------------------------------------------------------ bad input
def test_bad_shapes_and_types_raise():
    p = N.LIFParams(0.9)
    with pytest.raises(ValueError, match=r"\(T, batch, n\)"):
        N.lif_sequence(np.zeros((3, 4)), p)
    with pytest.raises(ValueError, match=r"\(batch, n\)"):
        N.lif_step(None, p, np.zeros(4))
    with pytest.raises(ValueError, match="float32 or float64"):
        N.lif_sequence(np.zeros((3, 2, 4), np.int64), p)
    with pytest.raises(ValueError, match=r"LIFState.v: expected shape \(2, 4\)"):
        N.lif_sequence(np.zeros((3, 2, 4)), p, N.LIFState.zeros(2, 5, np.float64))
    with pytest.raises(ValueError, match="does not match the input dtype"):
        N.lif_step(N.LIFState.zeros(2, 4, np.float32), p, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="expected LIFParams"):
        N.lif_sequence(np.zeros((3, 2, 4)), N.CubaParams(0.9, 0.5))
    with pytest.raises(ValueError, match="reset_mode"):
        N.lif_sequence(np.zeros((3, 2, 4)), N.LIFParams(0.9, reset_mode=2))
    with pytest.raises(ValueError, match="refractory_steps"):
        N.lif_sequence(np.zeros((3, 2, 4)), N.LIFParams(0.9, refractory_steps=1.5))
    with pytest.raises(ValueError, match="expected ALIFState"):
        N.alif_step(N.LIFState.zeros(2, 4), N.ALIFParams(0.9, 0.9, 1.0), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"ReadoutState.y: expected shape"):
        N.readout_sequence(np.zeros((3, 2, 4)), N.ReadoutParams(0.9), N.ReadoutState(np.zeros((2, 3))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nt", [1, 2, 9])
def test_plain_lif_fast_path_matches_twin(dtype, nt, rng):
    # plain LIF with no refractory counters running takes the branch-free path of the kernel
    p = N._dyn(N.LIFParams(0.8, 1.0))
    xs = rng.normal(0.4, 0.6, (nt, 3, 5)).astype(dtype)
    v, z, r, a, i = _state0((3, 5), dtype, rng)
    st = (v, z, np.zeros_like(r), np.zeros_like(a), np.zeros_like(i))
    ks = [s.copy() for s in st]
    zs, vs = np.empty_like(xs), np.empty_like(xs)
    K.neuron_sequence(xs, p, *ks, zs, vs, np.zeros((0, 0, 0), dtype))
    rz, rv, _, rst = R.neuron_sequence(xs, p, *st)
    np.testing.assert_array_equal(zs, rz)
    np.testing.assert_array_equal(vs, rv)
    for k_arr, r_arr in zip(ks, rst):
        np.testing.assert_array_equal(k_arr, r_arr)


@pytest.mark.parametrize("dtype", DTYPES)
def test_private_kernels_match_twin(dtype, rng):
    """The kernel's building blocks, called directly: _scalars packs the parameters in order,
    _update is one element of the twin's step, _plain_lif is the twin's sequence for plain LIF."""
    p = N._dyn(N.ALIFParams(0.9, rho=0.95, beta_adapt=0.2, refractory_steps=1.0))
    s = K._scalars(p, np.zeros(1, dtype))
    assert s.dtype == dtype
    np.testing.assert_array_equal(s, np.array([p.alpha, p.v_th, p.v_reset, p.beta_syn, p.rho, p.beta_adapt, 0, 1],
                                              dtype))
    T = np.dtype(dtype).type
    for _ in range(20):
        x, v, a, i = (T(u) for u in rng.normal(0.5, 0.8, 4))
        z = T(rng.integers(0, 2))
        r = np.int32(rng.integers(0, 3))
        got = K._update(x, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], p.reset_mode != 0.0,
                        np.int32(p.refractory_steps), v, z, r, a, i)
        arr = [np.array([[q]]) for q in (v, z, r, a, i)]
        ref = R.neuron_step(np.array([[x]], dtype), p, *arr)
        for g_, r_ in zip(got, ref):
            assert g_ == r_.item()
    plain = N._dyn(N.LIFParams(0.8, 1.0))
    xs = rng.normal(0.4, 0.6, (6, 2, 3)).astype(dtype)
    zero = np.zeros((2, 3), dtype)
    v, z, a, i = (zero.copy() for _ in range(4))
    zs, vs = np.empty_like(xs), np.empty_like(xs)
    K._plain_lif(xs, T(plain.alpha), T(plain.v_th), T(0), T(1), v, z, a, i, zs, vs)
    rz, rv, _, _ = R.neuron_sequence(xs, plain, zero, zero, np.zeros((2, 3), np.int32), zero, zero)
    np.testing.assert_array_equal(zs, rz)
    np.testing.assert_array_equal(vs, rv)
