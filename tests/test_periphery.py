"""Periphery kernels (DAC, ADC, sparse spike MVM) against their numpy twins."""

from __future__ import annotations

import numpy as np
import pytest

from neuroemu._kernels import periphery as K
from tests.reference import periphery as R

F32 = np.float32


def _x(rng, n=6, m=9):
    x = rng.normal(0, 2.0, (n, m)).astype(F32)
    x[1] = 0.0  # a zero row
    x[2, 3] = 7.5  # a large value
    x[3] = np.abs(x[3])
    return x


@pytest.mark.parametrize("bits", [0, 1, 2, 4, 7])
@pytest.mark.parametrize("nm", [True, False])
def test_dac_matches_twin(bits, nm, rng):
    levels = 2**bits - 2 if bits else 0
    x = _x(rng)
    out, scale = np.empty_like(x), np.empty(x.shape[0], F32)
    K.dac(x, levels, nm, out, scale)
    r_out, r_scale = R.dac(x, levels, nm)
    np.testing.assert_array_equal(out, r_out)
    np.testing.assert_array_equal(scale, r_scale)
    assert scale[1] == 1.0 and np.all(out[1] == 0.0)  # zero row: scale 1, output 0
    if nm:
        np.testing.assert_array_equal(scale, np.where(np.abs(x).max(1) == 0, 1, np.abs(x).max(1)))
    else:
        np.testing.assert_array_equal(scale, 1.0)


def test_dac_grid_and_clipping(rng):
    x = np.array([[-3.0, -1.0, -0.5, -0.26, 0.0, 0.1, 0.25, 0.26, 0.9, 2.0]], F32)
    out, scale = np.empty_like(x), np.empty(1, F32)
    K.dac(x, 2**3 - 2, False, out, scale)  # 3 bits: 6 steps of 1/3 over [-1, 1]
    np.testing.assert_allclose(out[0], [-1, -1, -2 / 3, -1 / 3, 0, 0, 1 / 3, 1 / 3, 1, 1], rtol=1e-6)
    # aihwkit default: 7 bits, step 2/126 over ±1 after noise management
    x = rng.uniform(-5, 5, (4, 100)).astype(F32)
    out, scale = np.empty_like(x), np.empty(4, F32)
    K.dac(x, 2**7 - 2, True, out, scale)
    k = out * 63
    np.testing.assert_allclose(k, np.rint(k), atol=1e-4)
    assert np.all(np.abs(out * scale[:, None] - x) <= scale[:, None] / 126 * (1 + 1e-5))
    assert np.all(np.abs(out).max(axis=1) == 1.0)


@pytest.mark.parametrize("bits", [0, 3, 9])
@pytest.mark.parametrize("bound", [0.0, 1.5, 12.0])
@pytest.mark.parametrize("noise", ["none", "out", "var"])
def test_adc_matches_twin(bits, bound, noise, seed, rng):
    levels = 2**bits - 2 if bits else 0
    y = rng.normal(0, 2.0, (7, 5)).astype(F32)
    y[0, 0] = 30.0
    y[1, :] = -30.0
    scale = rng.uniform(0.5, 2.0, 7).astype(F32)
    out_noise = 0.0 if noise == "none" else 0.3
    var = rng.uniform(0, 0.5, y.shape).astype(F32) if noise == "var" else np.empty((0, 0), F32)
    yk = y.copy()
    clipped = np.full(7, 5, np.int8)
    K.adc(yk, scale, var, out_noise, levels, bound, seed, clipped)
    r_y, r_clipped = R.adc(y, scale, var, out_noise, levels, bound, seed)
    np.testing.assert_array_equal(yk, r_y)
    np.testing.assert_array_equal(clipped, r_clipped)
    if bound > 0:
        assert clipped[0] == clipped[1] == 1
        assert np.all(np.abs(yk) <= F32(bound) * scale[:, None])
        np.testing.assert_array_equal(yk[1], -F32(bound) * scale[1])
    else:
        assert not clipped.any()
    if noise == "none" and levels and bound:
        q = yk / scale[:, None] / (2 * bound / levels)
        np.testing.assert_allclose(q, np.rint(q), atol=1e-3)


def test_adc_noise_statistics():
    n, m = 4000, 8
    y = np.zeros((n, m), F32)
    var = np.full((n, m), 0.5**2, F32)
    K.adc(y, np.full(n, 2.0, F32), var, 0.3, 0, 0.0, 77, np.zeros(n, np.int8))
    sd = y.std() / 2.0
    assert abs(sd - np.sqrt(0.3**2 + 0.25)) < 0.02  # total std sqrt(out_noise² + var), times scale 2
    assert abs(y.mean()) < 0.05


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spike_mvm_matches_twin(dtype, rng):
    active = rng.random((5, 17)) < 0.3
    active[0] = False  # no spikes at all
    active[1] = True
    w = rng.normal(0, 1, (17, 6)).astype(dtype)
    out = K.spike_mvm(active, w, np.full((5, 6), np.nan, dtype))
    ref = R.spike_mvm(active, w)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out[0], 0.0)
    # against a dense product (different summation order: float tolerance)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, active.astype(dtype) @ w, rtol=rtol, atol=rtol * 10)


@pytest.mark.parametrize("shape", [(0, 5), (3, 0)])
def test_empty_shapes(shape):
    x = np.zeros(shape, F32)
    out, scale = np.empty_like(x), np.full(shape[0], 7, F32)
    K.dac(x, 126, True, out, scale)
    r_out, r_scale = R.dac(x, 126, True)
    np.testing.assert_array_equal(out, r_out)
    np.testing.assert_array_equal(scale, r_scale)
    np.testing.assert_array_equal(scale, 1.0)
    y = np.zeros(shape, F32)
    clipped = np.full(shape[0], 3, np.int8)
    K.adc(y, np.ones(shape[0], F32), np.empty((0, 0), F32), 0.06, 510, 12.0, 1, clipped)
    r_y, r_clipped = R.adc(np.zeros(shape, F32), np.ones(shape[0], F32), np.empty((0, 0), F32), 0.06, 510, 12.0, 1)
    np.testing.assert_array_equal(y, r_y)
    np.testing.assert_array_equal(clipped, r_clipped)
    np.testing.assert_array_equal(clipped, 0)


def test_dac_denormal_row_gives_no_nan():
    """A row of float32 denormals (e.g. backprop errors of a confident network): 1/max|x| would
    overflow to inf and 0·inf give NaN; such rows pass unscaled."""
    x = np.zeros((3, 5), np.float32)
    x[0, 1] = np.float32(1e-44)
    x[1] = np.array([0.5, -1.0, 0.25, 0.0, 0.0], np.float32)
    out, scale = np.empty_like(x), np.empty(3, np.float32)
    K.dac(x, 126, True, out, scale)
    assert np.isfinite(out).all()
    assert scale[0] == 1.0 and scale[2] == 1.0 and scale[1] == 1.0
    ref_out, ref_scale = R.dac(x, 126, True)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(scale, ref_scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.bool_])
def test_read_count_kernels_match_twins(dtype):
    from neuroemu._kernels.periphery import count_nonzero, only_pm_one
    from tests.reference import periphery as twin

    g = np.random.default_rng(0)
    for x in (g.normal(size=(5, 7)) * (g.random((5, 7)) < 0.3), np.sign(g.normal(size=(4, 6))) * (g.random((4, 6)) < 0.5),
              np.zeros((3, 2)), np.eye(4)[:, ::-1]):
        x = x.astype(dtype)
        assert only_pm_one(x) == twin.only_pm_one(x)
        assert count_nonzero(x) == twin.count_nonzero(x)
