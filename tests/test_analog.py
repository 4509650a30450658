"""Analog MAC ("hagen" mode): kernel == numpy twin, block-wise saturation, noise level, scaling."""

import numpy as np
import pytest

from neuroemu._kernels import analog as K
from neuroemu.analog import MACParams, analog_matmul, hagen_mac, quantize_inputs, quantize_weights
from tests.reference import analog as R


@pytest.mark.parametrize("n_in, block", [(5, 128), (300, 128), (37, 8)])
@pytest.mark.parametrize("noise", [0.0, 2.0])
def test_kernel_matches_twin(n_in, block, noise):
    rng = np.random.default_rng(n_in)
    x = rng.integers(0, 32, (4, n_in)).astype(np.float64)
    x[:, ::3] = 0.0
    w_rows = rng.integers(-63, 64, (n_in, 6)).astype(np.float64)
    out = np.empty((4, 6))
    K.hagen_mac(x, w_rows, 0.01, noise, block, -128.0, 127.0, 99, out)
    np.testing.assert_array_equal(out, R.hagen_mac(x, w_rows, 0.01, noise, block, -128.0, 127.0, 99))


def test_noise_free_blocks_are_floored_and_clamped_separately():
    p = MACParams(noise_std=0.0, block=2)
    x = np.array([[31.0, 31.0, 31.0, 31.0]])
    w = np.array([[63.0, 63.0, -63.0, -63.0], [1.0, 0.0, 0.0, 0.0]])
    y = hagen_mac(x, w, p)
    # block sums 3906 and -3906 -> 0.002*3906 = 7.812 -> floor 7, and -7.812 -> floor -8
    assert y[0, 0] == 7 + (-8)
    assert y[0, 1] == np.floor(0.002 * 31)
    big = hagen_mac(x, w, MACParams(noise_std=0.0, gain=0.5, block=2))
    assert big[0, 0] == 127 + (-128)  # each block saturates on its own, before the digital sum


def test_output_is_clamped_to_8_bit():
    p = MACParams(noise_std=0.0, gain=1.0)
    y = hagen_mac(np.full((1, 300), 31.0), np.full((2, 300), 63.0) * np.array([[1], [-1]]), p)
    assert y.tolist() == [[127.0, -128.0]]


def test_noise_is_2_lsb_per_block():
    p = MACParams()
    x = np.full((20000, 100), 10.0)
    w = np.full((1, 100), 20.0)  # 0.002 * 20000 = 40 LSB: well inside the range
    y = hagen_mac(x, w, p, rng=0)[:, 0]
    assert abs(y.std() - 2.0) < 0.05
    assert abs(y.mean() - (40.0 - 0.5)) < 0.05  # floor removes half an LSB on average


def test_same_seed_same_result_and_validation():
    x = np.random.default_rng(0).integers(0, 32, (3, 10)).astype(float)
    w = np.random.default_rng(1).integers(-63, 64, (4, 10)).astype(float)
    np.testing.assert_array_equal(hagen_mac(x, w, rng=5), hagen_mac(x, w, rng=5))
    with pytest.raises(ValueError, match="inputs"):
        hagen_mac(x - 1, w)
    with pytest.raises(ValueError, match="weights"):
        hagen_mac(x, w * 2)
    with pytest.raises(ValueError, match="non-negative"):
        quantize_inputs(-x)


def test_analog_matmul_approximates_the_float_product():
    rng = np.random.default_rng(3)
    x = rng.random((64, 128))
    w = rng.normal(0, 0.1, (10, 128))
    xq, sx = quantize_inputs(x)
    wq, sw = quantize_weights(w)
    assert xq.max() == 31 and np.abs(wq).max() == 63
    y = analog_matmul(x, w, MACParams(noise_std=0.0), num_sends=4, rng=0)
    ref = x @ w.T
    lsb = sx * sw / (0.002 * 4)
    assert np.abs(y - ref).max() < 2 * lsb + 0.05 * np.abs(ref).max()
