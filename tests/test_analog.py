"""Analog MAC ("hagen" mode): kernel == numpy twin, block-wise saturation, noise level, scaling."""

import numpy as np
import pytest

from neuroemu._kernels import analog as K
from neuroemu.hardware.analog import MACParams, analog_matmul, hagen_mac, quantize_inputs, quantize_weights
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


# ------------------------------------------------------------------------------ the MAC as a tile
def test_mac_tile_is_what_make_tile_builds_and_reads_like_hagen_mac():
    from neuroemu.hardware.analog import MACTile
    from neuroemu.hardware.cards import load_card
    from neuroemu.hardware.factory import make_tile

    rng = np.random.default_rng(0)
    tile = make_tile(6, 200, "brainscales2", w_max=0.5, rng=1)
    assert isinstance(tile, MACTile)
    w = rng.uniform(-0.5, 0.5, (6, 200))
    tile.write(w)
    wi = tile.int_weights()
    assert np.abs(wi).max() <= 63 and np.all(wi == np.rint(wi))
    np.testing.assert_allclose(tile.weights(), wi * 0.5 / 63)  # nearest 6-bit level
    assert np.abs(tile.weights() - w).max() <= 0.5 / 63 / 2 + 1e-12
    x = rng.uniform(0, 1, (3, 200)).astype(np.float32)
    y = tile.forward(x)
    # one row by hand: per-sample scaling to 31, the MAC kernel, scaled back
    p = MACParams.from_card(load_card("brainscales2"))
    xq = np.rint(x[:1] * 31 / x[:1].max())
    ref = hagen_mac(xq, wi, MACParams(**{**p.__dict__, "noise_std": 0.0}))
    quiet = make_tile(6, 200, load_card("brainscales2").with_params(mac_noise=0.0), w_max=0.5, rng=1)
    quiet.write(w)
    np.testing.assert_allclose(quiet.forward(x[:1])[0], ref[0] * x[:1].max() / 31 * 0.5 / 63 / 0.002, rtol=1e-6)
    # noisy reads scatter around the exact product by about 2 LSB per block
    assert np.abs(y - x @ tile.weights().T).max() < 3.0
    # spikes: the exact sum of the active rows; backward: the exact transposed product
    s = rng.random((4, 200)) < 0.1
    np.testing.assert_allclose(tile.forward(s), s @ tile.weights().T, atol=1e-5)
    d = rng.standard_normal((2, 6)).astype(np.float32)
    np.testing.assert_allclose(tile.backward(d), d @ tile.weights(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="non-negative"):
        tile.forward(-x)
    assert tile.compensate_drift() == 1.0


def test_mac_tile_more_sends_less_relative_noise():
    from neuroemu.hardware.factory import make_tile

    rng = np.random.default_rng(3)
    w = rng.uniform(-0.05, 0.05, (20, 256))
    x = rng.uniform(0, 1, (200, 256)).astype(np.float32)
    err = []
    for sends in (1, 4):
        t = make_tile(20, 256, "brainscales2", w_max=0.3, num_sends=sends, rng=5)
        t.write(w)
        err.append(np.std(t.forward(x) - x @ t.weights().T))
    assert err[1] < 0.5 * err[0]


def test_mac_tile_errors():
    from neuroemu.hardware.analog import MACTile
    from neuroemu.hardware.crossbar import Tile
    from neuroemu.hardware.factory import make_tile
    from neuroemu.errors import ConfigError

    with pytest.raises(ConfigError, match="make_tile"):
        Tile(2, 2, "brainscales2")
    with pytest.raises(ConfigError, match="analog_chip"):
        MACTile(2, 2, "ideal")
    with pytest.raises(ConfigError, match="num_sends"):
        MACTile(2, 2, num_sends=0)
    with pytest.raises(ConfigError, match="n_devices"):
        make_tile(2, 2, "brainscales2", n_devices=2)
