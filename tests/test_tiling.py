"""Tests for layers split over several crossbar tiles (neuroemu.hardware.tiling)."""

from __future__ import annotations

import numpy as np
import pytest

from neuroemu import ConfigError, Periphery, load_card, make_tile
from neuroemu.hardware.schemes import make_scheme
from neuroemu.hardware.tiling import MAX_TILE, TiledLayer, split_sizes

IDEAL = Periphery.ideal()


def quiet_linear():
    """linear_step without any variation or noise: every pulse moves G by exactly dw_min."""
    return load_card("linear_step").with_params(dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, bounds_dtod=0.0,
                                                reset_std=0.0)


def block_shapes(layer):
    return [[s.tile.shape for s in row] for row in layer.blocks]


# ------------------------------------------------------------------------------------------ geometry
def test_split_sizes_follow_aihwkit():
    assert MAX_TILE == (512, 512)
    assert split_sizes(784, 512) == [392, 392]
    assert split_sizes(1000, 512) == [500, 500]
    assert split_sizes(512, 512) == [512]
    assert split_sizes(513, 512) == [257, 256]
    assert split_sizes(1025, 512) == [342, 342, 341]
    assert split_sizes(7, 3) == [3, 2, 2]
    assert split_sizes(5000, None) == [5000]


def test_a_784_to_1000_layer_takes_2x2_tiles():
    layer = TiledLayer(1000, 784, "ideal", rng=0)
    assert layer.shape == (1000, 784) and layer.grid == (2, 2) and len(layer.tiles) == 4
    assert block_shapes(layer) == [[(500, 392), (500, 392)], [(500, 392), (500, 392)]]
    assert layer.forward(np.ones((2, 784), np.float32)).shape == (2, 1000)
    assert layer.backward(np.ones(1000, np.float32)).shape == (784,)


def test_max_tile_per_dimension_and_none():
    assert block_shapes(TiledLayer(7, 11, max_tile=(3, 4))) == [[(3, 4), (3, 4), (3, 3)], [(2, 4), (2, 4), (2, 3)],
                                                                [(2, 4), (2, 4), (2, 3)]]
    assert TiledLayer(7, 11, max_tile=4).grid == (2, 3)
    assert TiledLayer(7, 11, max_tile=(None, 4)).grid == (1, 3)
    assert TiledLayer(600, 600, max_tile=None).grid == (1, 1)


@pytest.mark.parametrize("bad", [0, -1, (512,), (512, 0), "512", True, 2.5, (4, 4, 4)])
def test_bad_max_tile_is_named(bad):
    with pytest.raises(ConfigError, match="max_tile: expected"):
        TiledLayer(4, 4, max_tile=bad)


def test_bad_shapes_are_named():
    layer = TiledLayer(7, 11, max_tile=(3, 4), periphery=IDEAL, rng=0)
    with pytest.raises(ValueError, match=r"TiledLayer \(7, 11\): forward: expected x of shape \(batch, 11\)"):
        layer.forward(np.ones((2, 10)))
    with pytest.raises(ValueError, match=r"backward: expected d of shape \(batch, 7\)"):
        layer.backward(np.ones((2, 11)))
    with pytest.raises(ValueError, match=r"apply: expected dw of shape \(7, 11\)"):
        layer.apply(np.ones((11, 7)))
    with pytest.raises(ValueError, match="different batch sizes"):
        layer.update(np.ones((2, 11)), np.ones((3, 7)), 0.1)
    with pytest.raises(ConfigError, match="in_size: expected an integer >= 1"):
        TiledLayer(3, 0)


def test_nan_is_refused_before_any_block_changes():
    layer = TiledLayer(7, 11, max_tile=(3, 4), periphery=IDEAL, rng=0)
    w0 = layer.weights()
    dw = np.full((7, 11), 0.01)
    dw[-1, -1] = np.nan  # in the last block only
    with pytest.raises(ValueError, match="dw contains NaN"):
        layer.apply(dw)
    x = np.ones((2, 11))
    x[0, -1] = np.inf
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        layer.update(x, np.ones((2, 7)), 0.1)
    np.testing.assert_array_equal(layer.weights(), w0)


# ------------------------------------------------------------------------------------------ reads
def test_ideal_reads_equal_the_matrix_product():
    rng = np.random.default_rng(1)
    layer = TiledLayer(7, 11, "ideal", max_tile=(3, 4), periphery=IDEAL, rng=0)
    layer.write(rng.uniform(-0.8, 0.8, (7, 11)))
    w = layer.weights()
    x = rng.normal(size=(5, 11)).astype(np.float32)
    d = rng.normal(size=(5, 7)).astype(np.float32)
    np.testing.assert_allclose(layer.forward(x), x @ w.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.backward(d), d @ w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.forward(x[0]), x[0] @ w.T, rtol=1e-5, atol=1e-5)
    spikes = rng.random((5, 11)) < 0.4
    np.testing.assert_allclose(layer.forward(spikes), spikes @ w.T, rtol=1e-5, atol=1e-5)
    assert layer.forward(x).dtype == np.float32


def test_each_tile_saturates_its_own_adc():
    per = Periphery(dac_bits=0, adc_bits=0, adc_range=1.0, out_noise=0.0, read_noise=False, noise_management=False,
                   bound_management=0)  # no re-reads: each block clips where its own ADC does
    layer = TiledLayer(2, 8, "ideal", max_tile=(2, 4), periphery=per, rng=0)
    layer.write(0.5)
    w = layer.weights()
    x = np.array([[1, 1, 1, 1, 0.5, 0, 0, 0],    # block 0 reads 2.0 and saturates at 1; block 1 reads 0.25
                  [0.5, 0, 0, 0, 1, 1, 1, 1]],   # the other way round
                 np.float32)
    unclipped = [x[0, 4:] @ w[0, 4:], x[1, :4] @ w[1, :4]]
    assert unclipped[0] == pytest.approx(0.25) and unclipped[1] == pytest.approx(0.25)
    y = layer.forward(x)
    np.testing.assert_allclose(y[0], 1.0 + unclipped[0], rtol=1e-6)
    np.testing.assert_allclose(y[1], 1.0 + unclipped[1], rtol=1e-6)
    one = TiledLayer(2, 8, "ideal", max_tile=None, periphery=per, rng=0)
    one.write(0.5)
    np.testing.assert_array_equal(one.forward(x), 1.0)  # a single tile clips the whole sum


def test_each_tile_normalises_its_own_input_slice():
    """Noise management scales each block's slice by its own max|x| before that block's DAC."""
    per = Periphery(dac_bits=3, adc_bits=0, adc_range=0.0, out_noise=0.0, read_noise=False)
    layer = TiledLayer(1, 8, "ideal", max_tile=(1, 4), periphery=per, rng=0)
    layer.write(0.5)
    x = np.array([[100, 0, 0, 0, 1, 0, 0, 0]], np.float32)
    # one tile: 1/100 of full scale falls below the 3-bit DAC's half step and reads 0; tiled, it is exact
    one = TiledLayer(1, 8, "ideal", max_tile=None, periphery=per, rng=0)
    one.write(0.5)
    w = layer.weights()[0, 0]
    assert one.forward(x)[0, 0] == pytest.approx(100 * w, rel=1e-6)
    assert layer.forward(x)[0, 0] == pytest.approx(101 * w, rel=1e-6)


@pytest.mark.parametrize("n_blocks", [1, 2, 3])
def test_output_noise_adds_up_over_the_tiles_of_a_row(n_blocks):
    sigma = 0.2
    per = Periphery(dac_bits=0, adc_bits=0, adc_range=0.0, out_noise=sigma, read_noise=False, noise_management=False)
    layer = TiledLayer(64, 12, "ideal", max_tile=(64, 12 // n_blocks), periphery=per, rng=3)
    assert layer.grid == (1, n_blocks)
    layer.write(0.0)
    y = layer.forward(np.ones((2000, 12), np.float32)).astype(np.float64)
    # 128 000 samples: the variance estimate has a relative std of sqrt(2/128000) = 0.4 %
    assert y.var() == pytest.approx(n_blocks * sigma**2, rel=0.03)
    assert abs(y.mean()) < 5 * np.sqrt(n_blocks) * sigma / np.sqrt(y.size)


# ------------------------------------------------------------------------------------------ writes and updates
def test_update_and_apply_reach_every_block_exactly_on_ideal_tiles():
    rng = np.random.default_rng(2)
    layer = TiledLayer(7, 11, "ideal", "ideal", max_tile=(3, 4), periphery=IDEAL, rng=0)
    w0 = rng.uniform(-0.3, 0.3, (7, 11))
    layer.write(w0)
    w0 = layer.weights()
    x, d = rng.normal(size=(4, 11)), rng.normal(size=(4, 7))
    layer.update(x, d, 0.01)
    np.testing.assert_allclose(layer.weights(), w0 - 0.01 * d.T @ x, atol=1e-12)
    dw = rng.normal(0, 0.01, (7, 11))
    layer.apply(dw)
    np.testing.assert_allclose(layer.weights(), w0 - 0.01 * d.T @ x + dw, atol=1e-12)


def test_write_with_a_mask_touches_only_the_masked_synapses():
    layer = TiledLayer(7, 11, "ideal", max_tile=(3, 4), periphery=IDEAL, rng=0)
    layer.write(0.1)
    mask = np.zeros((7, 11), bool)
    mask[6, 10] = mask[0, 0] = True
    layer.write(np.full((7, 11), -0.2), mask)
    w = layer.weights()
    np.testing.assert_allclose(w[mask], -0.2, atol=1e-12)
    np.testing.assert_allclose(w[~mask], 0.1, atol=1e-12)


def test_pulses_reach_every_block_and_stats_sum():
    card = quiet_linear()
    layer = TiledLayer(7, 11, card, "mixed_precision", max_tile=(3, 4), periphery=IDEAL, rng=0, weights=0.0)
    assert layer.stats()["writes"] == 0  # the initial programming is not the scheme's
    w0 = layer.weights()
    step = layer.schemes[0].dw_pulse
    layer.apply(np.full((7, 11), 3.2 * step))  # three pulses on every synapse, 0.2 of one stays in the accumulator
    for t in layer.tiles:
        np.testing.assert_array_equal(t.npulse.reshape(t.shape), 3)
    np.testing.assert_allclose(layer.weights() - w0, 3 * step, rtol=1e-9)
    st = layer.stats()
    per = [s.stats() for s in layer.schemes]
    assert st["tiles"] == 9 and st["updates"] == 1 and st["scheme"] == "mixed_precision"
    assert st["pulses"] == sum(p["pulses"] for p in per) == 3 * 77
    assert st["energy_pJ"] == pytest.approx(sum(t.energy() for t in layer.tiles))
    assert st["pulse_limit_hits"] == 0
    layer.write(0.1)
    assert layer.stats()["writes"] == 77
    assert st["accumulator_abs_mean"] == pytest.approx(0.2 * step, rel=1e-6)
    assert isinstance(st["pulses"], int) and isinstance(st["energy_pJ"], float)


def test_coincidence_updates_reach_every_block():
    layer = TiledLayer(7, 11, "linear_step", "stochastic_coincidence", max_tile=(3, 4), rng=0)
    layer.write(0.0)
    rng = np.random.default_rng(4)
    x, d = rng.random((8, 11)).astype(np.float32), rng.normal(size=(8, 7)).astype(np.float32)
    for _ in range(5):
        layer.update(x, d, 0.05)
    assert all(t.npulse.sum() > 0 for t in layer.tiles)
    st = layer.stats()
    assert st["updates"] == 5 and st["pulses"] == sum(int(t.npulse.sum()) for t in layer.tiles)
    # the wanted change is -lr dᵀx: its sign is what the pulses follow on average
    assert np.corrcoef((layer.weights()).ravel(), (-d.T @ x).ravel())[0, 1] > 0.9


def test_tiki_taka_blocks_keep_their_fast_tiles():
    layer = TiledLayer(4, 6, "linear_step", "tiki_taka", scheme_params={"gamma": 0.5}, max_tile=(2, 3), rng=0)
    assert layer.grid == (2, 2) and len(layer.tiles) == 8
    assert layer.tiles[1] is layer.blocks[0][0].fast
    assert layer.name == "tiki_taka" and layer.params["gamma"] == 0.5


def test_refresh_runs_every_block():
    layer = TiledLayer(4, 6, "pcm_nandakumar2018", "mixed_precision", max_tile=(2, 3), periphery=IDEAL, rng=0)
    layer.write(0.0)
    for s in layer.schemes:  # both sides of every pair well above g_min: a common mode to remove
        s.tile.g[:] = 0.8 * s.tile.prm.g_max
        s.tile.mark_changed()
    n = layer.refresh()
    assert n == 24 and layer.stats()["refreshes"] == 24 and layer.stats()["refresh_checks"] == 1


# ------------------------------------------------------------------------------------------ time
def test_advance_and_drift_compensation_per_tile():
    per = Periphery(out_noise=0.0)
    layer = TiledLayer(16, 40, "pcm_joshi2020", max_tile=(16, 20), periphery=per, rng=0)
    w = np.random.default_rng(5).uniform(-1, 1, (16, 40))
    w[:, 20:] *= 0.2  # the second tile holds smaller weights
    layer.write(w)
    x = np.random.default_rng(6).uniform(-1, 1, (64, 40)).astype(np.float32)
    y0 = layer.forward(x)
    np.testing.assert_array_equal(layer.compensate_drift(), 1.0)  # the references, right after programming
    layer.advance(86400.0)
    assert all(t.t == 86400.0 for t in layer.tiles)
    y_drift = layer.forward(x)
    alphas = layer.compensate_drift()
    assert alphas.shape == (1, 2) and (alphas > 1.0).all() and alphas[0, 0] != alphas[0, 1]
    assert [s.tile.alpha for s in layer.schemes] == alphas.ravel().tolist()
    err = lambda y: np.abs(y - y0).mean()  # noqa: E731
    assert err(layer.forward(x)) < 0.5 * err(y_drift)
    with pytest.raises(ValueError, match="dt must be >= 0"):
        layer.advance(-1.0)


# ------------------------------------------------------------------------------------------ randomness
def _exercise(obj, w, rng_data, apply=True):
    """A fixed sequence of operations; returns everything they read."""
    x = rng_data.uniform(-1, 1, (6, 5)).astype(np.float32)
    d = rng_data.normal(0, 0.5, (6, 6)).astype(np.float32)
    out = [obj.forward(x), obj.forward(x[0]), obj.forward(x > 0.3), obj.backward(d)]
    obj.update(x, d, 0.05)
    if apply:
        obj.apply(rng_data.normal(0, 0.02, w.shape))
    out += [obj.forward(x), obj.weights()]
    return out


@pytest.mark.parametrize("write_first", [True, False], ids=["weights", "write"])
@pytest.mark.parametrize("scheme,params", [
    ("ideal", {}), ("digital", {}), ("sign", {}), ("stochastic", {}), ("multi_device", {}),
    ("stochastic_coincidence", {}), ("mixed_precision", {"refresh_every": 1}), ("tiki_taka", {"gamma": 0.3}),
])
def test_one_tile_is_the_untiled_scheme_bit_for_bit(scheme, params, write_first):
    card = "pcm_nandakumar2018"
    w = np.random.default_rng(9).uniform(-0.5, 0.5, (6, 5))
    opts = dict(n_devices=2, periphery=Periphery())
    g = np.random.default_rng(11)
    tile = make_tile(6, 5, card, rng=g, **opts)
    if write_first:  # programmed, then the scheme made (initial weights as a constructor argument)
        tile.write(w)
        ref = make_scheme(scheme, tile, rng=g, **params)
        layer = TiledLayer(6, 5, card, scheme, scheme_params=params, rng=np.random.default_rng(11), weights=w, **opts)
    else:  # the scheme made, then programmed (a write the scheme counts)
        ref = make_scheme(scheme, tile, rng=g, **params)
        tile.write(w)
        layer = TiledLayer(6, 5, card, scheme, scheme_params=params, rng=np.random.default_rng(11), **opts)
        layer.write(w)
    apply = scheme != "stochastic_coincidence"
    for a, b in zip(_exercise(ref, w, np.random.default_rng(1), apply),
                    _exercise(layer, w, np.random.default_rng(1), apply)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ref.tiles, layer.tiles):
        np.testing.assert_array_equal(a.g, b.g)
    st = layer.stats()
    assert st.pop("tiles") == 1
    assert st == ref.stats()


def test_one_tile_with_its_own_scheme_generator_and_drift():
    """The e-prop pattern: the devices from one generator, the schemes' pulses from another."""
    card = "pcm_nandakumar2018"
    w = np.random.default_rng(9).uniform(-0.5, 0.5, (6, 5))
    tile = make_tile(6, 5, card, rng=np.random.default_rng(3))
    tile.write(w)
    ref = make_scheme("stochastic", tile, rng=np.random.default_rng(4))
    layer = TiledLayer(6, 5, card, "stochastic", rng=3, scheme_rng=4)
    layer.write(w)
    x = np.random.default_rng(5).uniform(-1, 1, (3, 5)).astype(np.float32)
    for obj in (ref, layer):
        obj.update(x, np.ones((3, 6), np.float32), 0.3)
    tile.compensate_drift()
    layer.compensate_drift()
    tile.advance(3600.0)
    layer.advance(3600.0)
    assert layer.compensate_drift()[0, 0] == tile.compensate_drift()
    np.testing.assert_array_equal(layer.forward(x), ref.forward(x))


def test_tiled_layers_are_reproducible_from_their_seed():
    def run(seed):
        layer = TiledLayer(7, 11, "linear_step", "stochastic", max_tile=(3, 4), rng=seed)
        layer.write(0.1)
        x = np.linspace(-1, 1, 33, dtype=np.float32).reshape(3, 11)
        layer.update(x, np.ones((3, 7), np.float32), 0.01)
        return layer.forward(x), layer.weights()

    a, b, c = run(0), run(0), run(1)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[1], c[1])
