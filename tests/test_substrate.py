"""Neuron substrates: the analog neuron kernel == its numpy twin, an ideal chip == the ideal neurons,
same seed == same chip, mismatch and noise as the card says, spiking layers on any tile."""

import numpy as np
import pytest

from neuroemu._kernels import analog as K
from neuroemu.hardware.cards import load_card
from neuroemu.hardware.crossbar import Periphery
from neuroemu.hardware.factory import make_tile
from neuroemu.errors import ConfigError
from neuroemu.hardware.neurons import CubaParams, cuba_sequence
from neuroemu.hardware.substrate import PARAMETERS, AnalogNeurons, IdealNeurons, SpikingLayer, chip_targets
from neuroemu.hardware.factory import make_substrate
from tests.reference import analog as R

CARD = load_card("brainscales2")
QUIET = CARD.with_params(**{k: 0.0 for k in ("leak_mismatch", "reset_mismatch", "threshold_mismatch",
                                              "tau_mem_mismatch", "tau_syn_mismatch", "gain_mismatch",
                                              "volt_slope_mismatch", "membrane_noise", "threshold_noise")},
                         volt_per_code=0.25)  # the targets 80 and 125 LSB are then whole codes


@pytest.mark.parametrize("spiking", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_neuron_kernel_matches_twin(spiking, dtype):
    rng = np.random.default_rng(1)
    nt, nb, n = 30, 3, 7
    xs = (rng.random((nt, nb, n)) < 0.3).astype(dtype) * rng.uniform(0, 1.5, (nt, nb, n)).astype(dtype)
    leak, reset = rng.uniform(70, 90, n), rng.uniform(60, 90, n)
    th = rng.uniform(110, 130, (nb, n))
    alpha, beta = rng.uniform(0.8, 0.95, n), rng.uniform(0.7, 0.95, n)
    gscale, noise = rng.uniform(30, 60, n), np.where(np.arange(n) % 2, 0.7, 0.0)
    v0 = rng.uniform(60, 140, (nb, n))
    i0 = rng.uniform(0, 5, (nb, n))
    r0 = rng.integers(0, 3, (nb, n)).astype(np.int32)
    v, i, r = v0.copy(), i0.copy(), r0.copy()
    zs, vs, is_ = np.empty(xs.shape, dtype), np.empty(xs.shape), np.empty(xs.shape)
    K.neuron_sequence(xs, leak, reset, th, alpha, beta, gscale, noise, 2, 0.0, 255.0, spiking, 42, v, i, r, zs, vs,
                      is_)
    ref = R.neuron_sequence(xs, leak, reset, th, alpha, beta, gscale, noise, 2, 0.0, 255.0, spiking, 42, v0, i0, r0)
    for got, want in zip((zs, vs, is_, v, i, r), ref):
        np.testing.assert_array_equal(got, want)  # the same arithmetic in the same order: bit for bit
    assert zs.sum() > 0 if spiking else zs.sum() == 0
    # membranes written normalised, in float32: the twin's float64 values rounded
    v, i, r = v0.copy(), i0.copy(), r0.copy()
    vs32 = np.empty(xs.shape, np.float32)
    K.neuron_sequence(xs, leak, reset, th, alpha, beta, gscale, noise, 2, 0.0, 255.0, spiking, 42, v, i, r, zs,
                      vs32, np.empty((0, 0, 0)), 80.0, 45.0)
    ref = R.neuron_sequence(xs, leak, reset, th, alpha, beta, gscale, noise, 2, 0.0, 255.0, spiking, 42, v0, i0, r0,
                            80.0, 45.0)
    np.testing.assert_array_equal(vs32, ref[1].astype(np.float32))
    np.testing.assert_array_equal(v, ref[3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_run_membranes_are_the_normalised_simulate_membranes(dtype):
    """run() has the kernel write (v − leak) / gap in the currents' dtype: the same numbers as
    normalising simulate()'s float64 membranes afterwards; membranes=False records none and changes
    nothing else."""
    chip = AnalogNeurons(37, "brainscales2", rng=3)
    x = np.random.default_rng(2).uniform(0, 0.4, (25, 5, 37)).astype(dtype)
    z, v = chip.simulate(x, rng=9)
    zr, vr = chip.run(x, rng=9)
    assert z.sum() > 0 and zr.dtype == vr.dtype == dtype and v.dtype == np.float64
    np.testing.assert_array_equal(zr, z)
    np.testing.assert_array_equal(vr, ((v - chip.targets["v_leak"]) / chip.gap).astype(dtype))
    z2, none = chip.simulate(x, rng=9, membranes=False)
    z3, none3, i3 = chip.simulate(x, rng=9, membranes=False, record_current=True)
    zr2, none2 = chip.run(x, rng=9, membranes=False)
    assert none is None and none2 is None and none3 is None and i3.shape == x.shape
    for a in (z2, z3, zr2):
        np.testing.assert_array_equal(a, z)
    ideal = IdealNeurons.from_card(37)
    zi, vi = ideal.run(x)
    zi2, vi2 = ideal.run(x, membranes=False)
    assert vi2 is None
    np.testing.assert_array_equal(zi2, zi)


@pytest.mark.parametrize("threads", [1, 2])
def test_neuron_kernel_does_not_depend_on_threads(threads):
    """The parallel kernel (samples over threads) gives the same bits at any thread count, with and
    without recording the membrane and current, and equals its twin on a larger batch."""
    from neuroemu import threads as T

    rng = np.random.default_rng(4)
    nt, nb, n = 40, 9, 33
    xs = (rng.random((nt, nb, n)) < 0.3) * rng.uniform(0, 1.5, (nt, nb, n)).astype(np.float32)
    xs = xs.astype(np.float32)
    leak, reset, th = rng.uniform(70, 90, n), rng.uniform(60, 90, n), rng.uniform(110, 130, (nb, n))
    alpha, beta, gscale = rng.uniform(0.8, 0.95, n), rng.uniform(0.7, 0.95, n), rng.uniform(30, 60, n)
    noise = rng.uniform(0.2, 1.0, n)
    v0, i0, r0 = rng.uniform(60, 140, (nb, n)), rng.uniform(0, 5, (nb, n)), rng.integers(0, 3, (nb, n)).astype(np.int32)

    def run(k, record):
        v, i, r = v0.copy(), i0.copy(), r0.copy()
        zs = np.empty(xs.shape, np.float32)
        vs, is_ = (np.empty(xs.shape), np.empty(xs.shape)) if record else (np.empty((0, 0, 0)),) * 2
        with T.limit(k):
            K.neuron_sequence(xs, leak, reset, th, alpha, beta, gscale, noise, 3, 0.0, 255.0, True, 5, v, i, r, zs,
                              vs, is_)
        return zs, vs, is_, v, i, r

    one, many = run(1, True), run(threads, True)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(run(threads, False)[3:] + run(threads, False)[:1], one[3:] + one[:1]):
        np.testing.assert_array_equal(a, b)  # recording or not does not change the dynamics
    ref = R.neuron_sequence(xs, leak, reset, th, alpha, beta, gscale, noise, 3, 0.0, 255.0, True, 5, v0, i0, r0)
    for got, want in zip(many, ref):
        np.testing.assert_array_equal(got, want)


def test_ideal_chip_equals_ideal_neurons():
    """Without mismatch and noise, an analog chip is the ideal CUBA neuron of its targets (reset = leak)."""
    rng = np.random.default_rng(2)
    x = (rng.random((80, 4, 16)) < 0.2) * rng.uniform(0, 0.6, (80, 4, 16))
    chip = AnalogNeurons(16, QUIET, rng=0)
    ideal = IdealNeurons.from_card(16, QUIET)
    assert ideal.params.refractory_steps == 2 and ideal.params.v_reset == 0.0
    for spiking in (True, False):
        xs = x if spiking else 0.2 * x  # without spikes, stay below the upper rail
        z1, v1 = chip.run(xs, spiking=spiking, rng=1)
        z2, v2 = ideal.run(xs, spiking=spiking)
        np.testing.assert_allclose(v1, v2, atol=1e-5)
        np.testing.assert_array_equal(z1, z2)
        assert z1.sum() > 20 if spiking else z1.sum() == 0
    assert chip.chip_time() == pytest.approx(160e-6) and chip.biological_time() == pytest.approx(0.16)


def test_ideal_neurons_are_the_kernel():
    x = np.random.default_rng(0).uniform(0, 0.5, (20, 2, 3)).astype(np.float32)
    ideal = IdealNeurons(3, dt=1e-3, tau_mem=10e-3, tau_syn=5e-3, v_reset=0.0, refractory=2e-3)
    z, v = ideal.run(x)
    zr, vr, _ = cuba_sequence(x, CubaParams(np.exp(-0.1), np.exp(-0.2), 1.0, 0.0, 1.0, 2.0))
    np.testing.assert_array_equal(z, zr)
    np.testing.assert_array_equal(v, vr)


def test_same_seed_same_chip_bit_for_bit():
    a, b, c = AnalogNeurons(64, rng=7), AnalogNeurons(64, rng=7), AnalogNeurons(64, rng=8)
    for k in PARAMETERS:
        np.testing.assert_array_equal(a.value(k), b.value(k))
        assert not np.array_equal(a.value(k), c.value(k))
    x = np.random.default_rng(0).uniform(0, 0.4, (50, 2, 64))
    za, va = a.run(x, rng=3)
    zb, vb = b.run(x, rng=3)
    np.testing.assert_array_equal(za, zb)
    np.testing.assert_array_equal(va, vb)
    _, vc = a.run(x, rng=4)
    assert not np.array_equal(va, vc)  # temporal noise differs between trials


def test_mismatch_and_noise_follow_the_card():
    chip = AnalogNeurons(512, rng=0)
    s = chip.spread()
    p = CARD.params
    for k, key in (("v_leak", "leak_mismatch"), ("v_th", "threshold_mismatch")):
        assert s[k] == pytest.approx(np.hypot(p[key], p["volt_slope_mismatch"] * CARD.params[k]), rel=0.15)
    for k in ("tau_mem", "tau_syn", "gain"):
        assert s[k] == pytest.approx(p[f"{k}_mismatch"], rel=0.15)
    # stationary membrane noise at rest has the card's std
    _, v = chip.simulate(np.zeros((400, 4, 512)), spiking=False, rng=1)
    resid = v[100:] - chip.value("v_leak")
    assert resid.std() == pytest.approx(p["membrane_noise"], rel=0.1)


def test_membrane_rails_and_refractory_clamp():
    chip = AnalogNeurons(4, QUIET, rng=0)
    z, v = chip.simulate(np.full((30, 1, 4), 50.0), spiking=False)
    assert v.max() == CARD.params["v_max"]
    z, v = chip.simulate(np.zeros((30, 1, 4)), spiking=False)
    _, v = chip.simulate(-np.full((30, 1, 4), 50.0), spiking=False)
    assert v.min() == CARD.params["v_min"]
    z, v = chip.simulate(np.full((20, 1, 4), 0.5), spiking=True, refractory_steps=5)
    first = int(np.argmax(z[:, 0, 0]))
    assert z[:, 0, 0].sum() >= 2
    np.testing.assert_array_equal(v[first + 1:first + 6, 0, 0], chip.value("v_reset")[0])


def test_spiking_layer_composes_any_tile_with_any_substrate():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (8, 30))
    s = (rng.random((40, 5, 30)) < 0.1).astype(np.float32)
    ideal_tile = make_tile(8, 30, "ideal", periphery=Periphery.ideal(), rng=0)
    ideal_tile.write(w)
    ref = IdealNeurons.from_card(8)
    z0, v0 = SpikingLayer(ideal_tile, ref)(s)
    np.testing.assert_allclose(v0, cuba_sequence((s.reshape(-1, 30) @ ideal_tile.weights().T).reshape(40, 5, 8)
                                                 .astype(np.float32), ref.params)[1], atol=1e-5)
    _, u0 = SpikingLayer(ideal_tile, ref, spiking=False)(s)
    for card in ("pcm_nandakumar2018", "rram_gong2018", "brainscales2"):
        # RRAM's write noise (σ 0.1 weight units at this w_max) would blur these small weights: off
        # here, where the composition is under test
        spec = load_card(card).with_params(write_noise_std=0.0) if card == "rram_gong2018" else card
        tile = make_tile(8, 30, spec, rng=1)
        tile.write(np.clip(w, *tile.w_range))
        for sub in (make_substrate("ideal", 8), make_substrate("analog", 8, rng=2)):
            z, v = SpikingLayer(tile, sub)(s, rng=3)
            assert z.shape == v.shape == (40, 5, 8)
            assert abs(z.sum() - z0.sum()) < 0.2 * z0.sum()
            # integrating (read-out) neurons: the same membranes, seen through imperfect hardware
            _, u = SpikingLayer(tile, sub, spiking=False)(s, rng=3)
            if sub.kind == "ideal":
                assert np.corrcoef(u.ravel(), u0.ravel())[0, 1] > 0.98, card
            else:  # compare within the analog membrane's rails
                inside = (u0 > -1.5) & (u0 < 3.5)
                assert np.corrcoef(u[inside], u0[inside])[0, 1] > 0.7, card
    with pytest.raises(ConfigError, match="outputs"):
        SpikingLayer(ideal_tile, IdealNeurons.from_card(3))
    with pytest.raises(ValueError, match="spikes of shape"):
        SpikingLayer(ideal_tile, ref)(s[:, :, :5])


def test_substrate_errors():
    with pytest.raises(ConfigError, match="analog_chip"):
        AnalogNeurons(4, "ideal")
    with pytest.raises(ConfigError, match="512 neurons"):
        AnalogNeurons(600)
    with pytest.raises(ConfigError, match="substrate"):
        make_substrate("digital", 4)
    with pytest.raises(ValueError, match="currents of shape"):
        AnalogNeurons(4, rng=0).run(np.zeros((3, 4)))


def test_targets_override_the_card():
    """Overridden targets set the cells' nominal codes; without mismatch the chip is again the ideal neuron."""
    t = {"tau_syn": 5e-6, "refractory": 0.0}
    assert chip_targets(QUIET, t)["tau_syn"] == 5e-6 and chip_targets(QUIET)["tau_syn"] == pytest.approx(10e-6)
    chip = AnalogNeurons(8, QUIET, rng=0, targets=t)
    ideal = make_substrate("ideal", 8, QUIET, targets=t)
    assert chip.refractory_steps == 0 and ideal.params.refractory_steps == 0
    assert ideal.params.beta_syn == pytest.approx(np.exp(-1 / 5))
    np.testing.assert_allclose(chip.value("tau_syn"), 5e-6)
    x = (np.random.default_rng(3).random((60, 2, 8)) < 0.2) * 0.7
    z1, v1 = chip.run(x, rng=1)
    z2, v2 = ideal.run(x)
    np.testing.assert_allclose(v1, v2, atol=1e-5)
    np.testing.assert_array_equal(z1, z2)
    assert z1.sum() > 5


def test_target_override_errors():
    with pytest.raises(ConfigError, match="targets.tau: unknown"):
        chip_targets(CARD, {"tau": 1e-6})
    with pytest.raises(ConfigError, match=r"targets.tau_syn: expected a value in \[2.9\d*e-06"):
        AnalogNeurons(4, CARD, targets={"tau_syn": 1e-6})  # faster than code 1022 gives
    with pytest.raises(ConfigError, match="targets.v_th: expected a threshold above the leak"):
        IdealNeurons.from_card(4, CARD, targets={"v_th": 70.0})
