"""Tests for the weight-update schemes and their kernels (tiny shapes)."""

from __future__ import annotations

import copy
import importlib.util
import math
import warnings
from pathlib import Path

import numba
import numpy as np
import pytest

from neuroemu import ConfigError, Periphery, Tile, load_card
from neuroemu._kernels import update as U
from neuroemu.hardware.schemes import SCHEMES, make_scheme, read_column

from tests.reference import update as RU

IDEAL = Periphery.ideal()
PULSE_SCHEMES = ["sign", "stochastic", "stochastic_coincidence", "multi_device", "mixed_precision", "tiki_taka"]
ALL = ["ideal", "digital", *PULSE_SCHEMES]


def tile(card="ideal", shape=(4, 5), seed=0, **kw):
    kw.setdefault("periphery", IDEAL)
    return Tile(*shape, card, rng=seed, **kw)


def quiet_linear(**changes):
    """linear_step without any variation or noise: every pulse moves G by exactly dw_min."""
    return load_card("linear_step").with_params(dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, bounds_dtod=0.0,
                                                reset_std=0.0, **changes)


# ------------------------------------------------------------------------------------------ registry
def test_registry_names():
    assert set(SCHEMES) == {"ideal", "digital", "sign", "stochastic", "stochastic_coincidence", "multi_device",
                            "mixed_precision", "tiki_taka"}


def test_unknown_scheme_name():
    with pytest.raises(ConfigError, match="expected one of .*mixed_precision.*got 'mixed'"):
        make_scheme("mixed", tile())
    with pytest.raises(ConfigError, match=r"got 'Tiki-Taka' \(did you mean 'tiki_taka'\?\)$"):
        make_scheme("Tiki-Taka", tile())


def test_unknown_param_names_field_and_choices():
    with pytest.raises(ConfigError, match=r"unknown parameter 'epsilom' \(did you mean 'epsilon'\?\); "
                                          "expected one of: aggregate_pulses, epsilon"):
        make_scheme("mixed_precision", tile(), epsilom=0.1)
    with pytest.raises(ConfigError, match="unknown parameter 'epsilon'.*expected one of: \\(none\\)"):
        make_scheme("ideal", tile(), epsilon=0.1)


def test_the_pulse_limit_is_public():
    import neuroemu
    from neuroemu.hardware import schemes

    assert neuroemu.PulseLimitWarning is schemes.PulseLimitWarning and neuroemu.MAX_PULSES == schemes.MAX_PULSES
    assert {"PulseLimitWarning", "MAX_PULSES"} <= set(neuroemu.__all__)


@pytest.mark.parametrize("name, params, field", [
    ("digital", {"epsilon": 0.0}, "epsilon"),
    ("digital", {"epsilon": "0.1"}, "epsilon"),
    ("mixed_precision", {"epsilon": -1.0}, "epsilon"),
    ("sign", {"threshold": float("nan")}, "threshold"),
    ("stochastic_coincidence", {"bl": 0}, "bl"),
    ("stochastic_coincidence", {"bl": 65}, "bl"),
    ("stochastic_coincidence", {"bl": 3.0}, "bl"),
    ("stochastic_coincidence", {"update_management": 1}, "update_management"),
    ("stochastic_coincidence", {"update_bl_management": "yes"}, "update_bl_management"),
    ("tiki_taka", {"transfer_every": 0}, "transfer_every"),
    ("tiki_taka", {"transfer_lr": 0.0}, "transfer_lr"),
    ("tiki_taka", {"gamma": True}, "gamma"),
    ("tiki_taka", {"a_periphery": {"dac_bit": 3}}, "a_periphery"),
    ("multi_device", {"refresh_every": -1}, "refresh_every"),
    ("sign", {"refresh_high": 0.0}, "refresh_high"),
    ("sign", {"refresh_high": 1e3}, "refresh_high"),
    ("mixed_precision", {"max_pulses": 0}, "max_pulses"),
    ("tiki_taka", {"max_pulses": 2.5}, "max_pulses"),
])
def test_bad_param_values(name, params, field):
    with pytest.raises(ConfigError, match=f"scheme '{name}': {field}"):
        make_scheme(name, tile(), **params)


def test_inference_card_takes_only_ideal():
    t = tile("pcm_joshi2020")
    for name in ["digital", *PULSE_SCHEMES]:
        with pytest.raises(ConfigError, match="expected scheme 'ideal'"):
            make_scheme(name, t)
    s = make_scheme("ideal", t, rng=0)
    dw = np.full(t.shape, 0.3)
    s.apply(dw)
    assert abs(s.weights().mean() - 0.3) < 0.1  # programming noise, but the write happened
    assert s.stats()["writes"] == t.n_synapses


def test_coincidence_needs_factors():
    s = make_scheme("stochastic_coincidence", tile())
    with pytest.raises(ConfigError, match="needs the factors"):
        s.apply(np.zeros((4, 5)))


def test_shape_errors():
    s = make_scheme("mixed_precision", tile())
    with pytest.raises(ValueError, match="shape"):
        s.apply(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="x of shape"):
        s.update(np.zeros((2, 4)), np.zeros((2, 4)), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        s.update(np.full((2, 5), np.nan), np.zeros((2, 4)), 0.1)


# ------------------------------------------------------------------------------------------ direction
def _wanted(shape, seed=1):
    """A wanted ΔW pattern: positive on the first half of the synapses, negative on the rest."""
    dw = np.ones(shape)
    dw.reshape(-1)[dw.size // 2:] = -1.0
    return np.random.default_rng(seed).permutation(dw.reshape(-1)).reshape(shape)


@pytest.mark.parametrize("card", ["ideal", "pcm_nandakumar2018"])
@pytest.mark.parametrize("name", ALL)
def test_moves_weights_in_wanted_direction(name, card):
    t = tile(card, shape=(6, 8), seed=3)
    sign = _wanted(t.shape)
    step = t.card.nominal_step / t.scale
    params = {"transfer_lr": 4.0} if name == "tiki_taka" else {}
    s = make_scheme(name, t, rng=4, **params)
    w0 = s.weights()
    if name in ("stochastic_coincidence", "tiki_taka"):
        # rank-one wanted change -lr·dᵀx with d = -sign pattern's row factor, x = column factor
        u, v = np.ones(6), np.ones(8)
        u[:3] = -1.0
        v[4:] = -1.0
        sign = np.outer(u, v)
        x = np.tile(v, (4, 1))
        d = np.tile(-u, (4, 1))
        for _ in range(12):
            s.update(x, d, lr=3 * step)
    else:
        for _ in range(3):
            s.apply(sign * 3.0 * step if name != "digital" else sign * 0.2)
    dw = s.weights() - w0
    assert np.all(np.sign(dw) == sign), (name, card, dw)
    if name != "ideal" and name != "digital":
        assert s.stats()["pulses"] > 0


# ------------------------------------------------------------------------------------------ schemes
def test_ideal_is_exact_and_clipped():
    t = tile()
    s = make_scheme("ideal", t)
    dw = np.linspace(-0.3, 0.3, 20).reshape(4, 5)
    s.apply(dw)
    np.testing.assert_allclose(s.weights(), dw, atol=1e-12)
    s.apply(np.full((4, 5), 5.0))
    np.testing.assert_allclose(s.weights(), t.w_range[1])
    assert s.stats()["pulses"] == 0


def test_digital_quantises_and_keeps_remainder():
    t = tile()
    s = make_scheme("digital", t, epsilon=0.125)
    dw = np.zeros((4, 5))
    dw[0, 0], dw[1, 1], dw[2, 2] = 0.3, -0.2, 0.1
    s.apply(dw)
    w = s.weights()
    assert w[0, 0] == pytest.approx(0.25)  # trunc(0.3/0.125)·0.125
    assert w[1, 1] == pytest.approx(-0.125)  # trunc towards zero
    assert w[2, 2] == 0.0 and s.chi[2, 2] == pytest.approx(0.1)
    s.apply(dw)  # χ = 0.05 + 0.3 = 0.35 -> 0.25 more; χ(2,2) = 0.2 -> 0.125
    w = s.weights()
    assert w[0, 0] == pytest.approx(0.5)
    assert w[2, 2] == pytest.approx(0.125)
    assert s.chi[0, 0] == pytest.approx(0.1)
    assert s.stats()["transfers"] == 5


def test_sign_threshold():
    t = tile(shape=(1, 4))
    step = t.card.nominal_step / t.scale
    s = make_scheme("sign", t, threshold=0.4 * step)
    s.apply(np.array([[0.39 * step, 0.41 * step, -10 * step, 100 * step]]))
    n = t.npulse.reshape(t.shape)
    np.testing.assert_array_equal(n, [[0, 1, 1, 1]])
    np.testing.assert_allclose(s.weights(), [[0.0, step, -step, step]], atol=1e-12)
    assert make_scheme("sign", tile()).params["threshold"] == pytest.approx(0.5 * step)


def test_stochastic_expectation():
    t = tile(shape=(100, 100), seed=1)
    step = t.card.nominal_step / t.scale
    s = make_scheme("stochastic", t, rng=2)
    s.apply(np.full(t.shape, 0.3 * step))
    n = s.stats()["pulses"]
    sd = np.sqrt(1e4 * 0.3 * 0.7)
    assert abs(n - 3000) < 5 * sd
    assert s.weights().mean() == pytest.approx(0.3 * step, rel=5 * sd / 3000)
    s.apply(np.full(t.shape, -2.0 * step))  # probability clipped to 1: every synapse gets one pulse
    assert s.stats()["pulses"] == n + 10000


def test_multi_device_round_robin():
    t = tile("linear_step", shape=(2, 3), n_devices=4)
    step = t.card.nominal_step / t.scale
    s = make_scheme("multi_device", t)
    dw = np.zeros(t.shape)
    dw[0, 0] = 8.2 * step  # 8 pulses, remainder dropped
    s.apply(dw)
    per_dev = t.npulse.reshape(1, 4, *t.shape)[0, :, 0, 0]
    np.testing.assert_array_equal(per_dev, [2, 2, 2, 2])
    dw[0, 0] = -3.0 * step  # the arbitration counter continues where it stopped
    s.apply(dw)
    np.testing.assert_array_equal(t.npulse.reshape(1, 4, *t.shape)[0, :, 0, 0], [3, 3, 3, 2])
    assert s.stats()["pulses"] == 11
    assert t.npulse.sum() == 11


def test_multi_device_pcm_sides():
    t = tile("pcm_nandakumar2018", shape=(1, 2), n_devices=2)
    step = t.card.nominal_step / t.scale
    s = make_scheme("multi_device", t)
    s.apply(np.array([[4.0 * step, -3.0 * step]]))
    n = t.npulse.reshape(2, 2, 1, 2)
    np.testing.assert_array_equal(n[0, :, 0, 0], [2, 2])  # potentiation: SETs on G+
    np.testing.assert_array_equal(n[1, :, 0, 1], [2, 1])  # depression: SETs on G-
    assert n[1, :, 0, 0].sum() == 0 and n[0, :, 0, 1].sum() == 0


def test_mixed_precision_keeps_remainder():
    t = tile(shape=(2, 2))
    step = t.card.nominal_step / t.scale
    s = make_scheme("mixed_precision", t)
    dw = np.zeros(t.shape)
    dw[1, 0] = 0.3 * step
    for i in range(3):
        s.apply(dw)
        assert s.stats()["pulses"] == 0
    s.apply(dw)
    assert s.stats()["pulses"] == 1 and t.npulse.sum() == 1
    assert s.weights()[1, 0] == pytest.approx(step)
    assert s.chi[2] == pytest.approx(0.2 * step)


@pytest.mark.parametrize("name, how, card, excess", [
    ("multi_device", "apply", "linear_step", "the rest is dropped"),
    ("mixed_precision", "apply", "pcm_nandakumar2018", "the rest stays in the accumulator"),
    ("mixed_precision", "update", "linear_step", "the rest stays in the accumulator"),
    ("tiki_taka", "apply", "rram_gong2018", "the rest is dropped"),
    ("tiki_taka", "update", "linear_step", "not applied"),
    ("stochastic_coincidence", "update", "linear_step", "not applied"),
])
def test_pulse_limit_clips_and_warns_once(name, how, card, excess):
    """An update wanting far more pulses than max_pulses gets max_pulses per synapse, one
    PulseLimitWarning (with the numbers and the way out) and a count in stats()."""
    from neuroemu.hardware.schemes import MAX_PULSES, PulseLimitWarning

    t = tile(card, shape=(3, 4))
    extra = {"transfer_every": 10**6} if name == "tiki_taka" else {}  # A alone (transfers: test_tiki_taka_...)
    s = make_scheme(name, t, rng=0, max_pulses=5, **extra)
    assert make_scheme(name, tile(card, shape=(3, 4)), rng=0).params["max_pulses"] == MAX_PULSES
    target = s.fast if name == "tiki_taka" else t
    step = target.card.nominal_step / target.scale
    x = np.ones((3, 4))
    d = np.ones((3, 3))

    def absurd():  # about 120 pulses per synapse wanted
        if how == "apply":
            s.apply(np.full(t.shape, 120.0 * step))
        else:
            s.update(x, d, -40.0 * step)

    with warnings.catch_warnings():
        warnings.simplefilter("error", PulseLimitWarning)  # a modest update never warns
        (s.apply(np.full(t.shape, 2.0 * step)) if how == "apply" else s.update(x[:1], d[:1], -0.1 * step))
    before = target.npulse.reshape(-1, t.n_synapses).sum(axis=0).copy()
    with pytest.warns(PulseLimitWarning) as caught:
        absurd()
        absurd()
    assert len(caught) == 1  # once per scheme
    message = str(caught[0].message)
    assert f"scheme '{name}'" in message and "max_pulses = 5" in message and excess in message
    assert "pulses on one synapse" in message and "Δw_pulse" in message and "lower it" in message
    wanted = int(message.split(" wanted ")[1].split()[0])
    assert wanted >= 60 if how == "update" else wanted == 120
    if how == "update":
        assert "learning rate" in message
    per_synapse = target.npulse.reshape(-1, t.n_synapses).sum(axis=0) - before
    assert per_synapse.max() <= 2 * 5  # two updates, at most 5 pulses each
    assert s.stats()["pulse_limit_hits"] == 2 * t.n_synapses
    if name == "mixed_precision":  # what the limit held back waits in the accumulator
        assert s.chi.min() > 200 * step


def test_mixed_precision_update_matches_apply():
    rng = np.random.default_rng(0)
    x = rng.random((3, 5)).astype(np.float32)
    d = rng.normal(size=(3, 4)).astype(np.float32)
    a = make_scheme("mixed_precision", tile(seed=1), rng=2, epsilon=0.01)
    b = make_scheme("mixed_precision", tile(seed=1), rng=2, epsilon=0.01)
    a.update(x, d, 0.05)
    b.apply(-0.05 * (d.T.astype(np.float64) @ x.astype(np.float64)))
    np.testing.assert_allclose(a.weights(), b.weights(), atol=0.0101)
    np.testing.assert_allclose(a.chi, b.chi, atol=1e-6)


def test_tiki_taka_transfers_into_slow_tile():
    c = tile("linear_step", shape=(3, 4), seed=5)
    step = c.card.nominal_step / c.scale
    s = make_scheme("tiki_taka", c, rng=6, transfer_every=2)
    assert s.fast is not c and s.fast.shape == c.shape and s.fast.card is c.card
    x = np.ones((2, 4))
    d = -np.ones((2, 3))
    w_c0 = c.weights()
    for _ in range(40):
        s.update(x, d, lr=2 * step)
    st = s.stats()
    assert st["transfers"] == 20 and st["pulses_transfer"] > 0
    assert st["pulses"] == st["pulses_fast"] + st["pulses_transfer"]
    assert (c.weights() - w_c0).mean() > 5 * step  # C learned through the transfers
    np.testing.assert_array_equal(s.weights(), c.weights())  # gamma = 0: C alone
    g = make_scheme("tiki_taka", tile("linear_step", shape=(3, 4), seed=5), rng=6, gamma=0.5)
    g.update(x, d, lr=2 * step)
    np.testing.assert_allclose(g.weights(), g.slow.weights() + 0.5 * g.fast.weights())
    np.testing.assert_allclose(g.forward(np.eye(4)), g.weights().T, atol=1e-6)


def test_tiki_taka_transfer_is_unbiased():
    """Repeated transfers of a fixed A move C by transfer_lr·A per transfer on average, also where that
    is a fraction of one pulse of C (truncation would transfer nothing there)."""
    card = quiet_linear(dw_min=1e-4)  # fine steps: 1000 transfers stay inside C's range
    c = tile(card, shape=(8, 1), seed=0)
    s = make_scheme("tiki_taka", c, rng=1, transfer_lr=0.5)
    step = s.dw_pulse
    wanted = np.array([0.05, 0.1, 0.35, 0.5, 0.9, -0.2, -0.65, 1.3])  # pulses of C per transfer
    s.fast.write((wanted * step / 0.5)[:, None])
    a = s.fast.weights()[:, 0]
    w0 = c.weights()[:, 0]
    n = 1000
    for _ in range(n):
        s.apply(np.zeros(c.shape))  # nothing on A; one column transfer each
    np.testing.assert_array_equal(s.fast.weights()[:, 0], a)  # A keeps what it holds
    got = (c.weights()[:, 0] - w0) / n  # weight moved per transfer
    want = 0.5 * a
    frac = np.abs(want / step) % 1.0
    se = np.sqrt(frac * (1.0 - frac) / n) * step  # one Bernoulli pulse per transfer on top of floor(|r|)
    assert np.all(np.abs(got - want) < 5 * se + 1e-12), (got / step, want / step)
    assert s.stats()["transfers"] == n and s.stats()["pulses_transfer"] == pytest.approx(np.abs(wanted).sum() * n,
                                                                                          rel=0.05)


def test_tiki_taka_small_transfers_are_applied():
    """The case of the issue: an 8x8 linear_step tile, 300 updates, transfer_lr 0.003 wants about a tenth
    of a pulse per entry and transfer; the transfers happen, about as often as wanted."""
    t = tile("linear_step", shape=(8, 8), seed=0)  # exact reads: the wanted counts are known
    s = make_scheme("tiki_taka", t, rng=1, transfer_lr=0.003)
    rng = np.random.default_rng(2)
    wanted = 0.0
    for i in range(300):
        s.update(rng.random((4, 8)), rng.normal(0, 0.5, (4, 8)), 0.005)  # then column i % 8 is transferred
        wanted += np.abs(0.003 * s.fast.weights()[:, i % 8] / s.dw_pulse).sum()
    a_max = np.abs(s.fast.weights()).max()
    assert 0.003 * a_max / s.dw_pulse < 1.0  # every entry asked for less than a pulse: truncation sent none
    st = s.stats()
    assert st["transfers"] == 300 and wanted > 150
    assert abs(st["pulses_transfer"] - wanted) < 5 * np.sqrt(wanted)


def test_tiki_taka_transfer_obeys_the_pulse_limit():
    from neuroemu.hardware.schemes import PulseLimitWarning

    c = tile("linear_step", shape=(3, 4), seed=5)
    s = make_scheme("tiki_taka", c, rng=6, transfer_lr=1e4, max_pulses=3, transfer_columns=4)
    with pytest.warns(PulseLimitWarning, match="lower transfer_lr"):
        s.update(np.ones((2, 4)), -np.ones((2, 3)), lr=1e-3)
    assert s.stats()["pulses_transfer"] <= 3 * c.n_synapses and s.stats()["pulse_limit_hits"] > 0
    assert c.npulse.reshape(-1, c.n_synapses).sum(axis=0).max() <= 3


def test_tiki_taka_apply_and_overrides():
    c = tile("pcm_nandakumar2018", shape=(3, 4))
    s = make_scheme("tiki_taka", c, rng=1, a_card="linear_step", a_w_max=0.5)
    assert s.fast.card.name == "linear_step" and s.fast.w_range[1] == pytest.approx(0.5)
    step_a = s.fast.card.nominal_step / s.fast.scale
    s.apply(np.full(c.shape, 2.5 * step_a))
    assert 2 * 12 <= s.stats()["pulses_fast"] <= 3 * 12
    assert s.stats()["transfers"] == 1


# ------------------------------------------------------------------------------------------ pulse size
def test_pulse_steps_assumed_against_first_pulse():
    """PCM: the schemes assume 0.75 µS a pulse; a fresh device's first SET moves it by the step law at
    RESET (P = e^(-1/2.6), G = 0.1 µS: mean 1.82 µS, sd 1.73 µS), floored at g_min: about 1.95 µS."""
    card = load_card("pcm_nandakumar2018")
    p = card.params
    g0, pp = p["reset_mean"], math.exp(-1.0 / p["decay_pulses"])
    mu = p["mean_g"] * g0 + p["mean_0"] + p["mean_p"] * pp
    sd = p["std_g"] * g0 + p["std_0"] + p["std_p"] * pp
    assert mu == pytest.approx(1.82, abs=0.01) and p["g_min"] == g0  # a device at RESET sits on the floor
    z = mu / sd  # E[max(ΔG, 0)] for ΔG ~ N(mu, sd²)
    floored = mu * 0.5 * math.erfc(-z / math.sqrt(2)) + sd * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    for name in PULSE_SCHEMES:
        st = make_scheme(name, tile(card), rng=0).stats()["pulse_steps"]
        assert st["assumed_uS"] == 0.75
        assert st["first_uS"] == pytest.approx(floored, abs=5 * sd / math.sqrt(20000))  # ≈ 1.95 µS
        assert st["first_down_uS"] == st["first_uS"]  # depression: a SET on the other device
        assert st["first_uS"] > 2.5 * st["assumed_uS"]
    assert "pulse_steps" not in make_scheme("digital", tile(card)).stats()
    mp = make_scheme("mixed_precision", tile(card), epsilon=0.05)
    assert mp.pulse_steps()["assumed_uS"] == pytest.approx(0.05 * mp.tile.scale)  # ε in µS
    # bidirectional cards: up and down from the mid-range RESET state
    lin = make_scheme("multi_device", tile("linear_step")).pulse_steps()
    assert lin["first_uS"] == pytest.approx(0.001, rel=0.02) == lin["first_down_uS"]
    tt = make_scheme("tiki_taka", tile("pcm_nandakumar2018"), a_card="rram_gong2018").pulse_steps()
    assert tt["assumed_uS"] == 0.75 and tt["a_assumed_uS"] == 0.00135
    assert tt["a_first_uS"] > 0.00135 and tt["a_first_down_uS"] > 1.3 * tt["a_first_uS"]  # exp. step, asymmetric


# ------------------------------------------------------------------------------------------ refresh
def test_refresh_via_scheme_counts_and_keeps_weights():
    t = tile("pcm_nandakumar2018", shape=(3, 4), seed=2)
    step = t.card.nominal_step / t.scale
    s = make_scheme("multi_device", t, rng=3, refresh_every=3, refresh_high=3.0)
    up = np.full(t.shape, 6.0 * step)
    up[0] = 0.0
    s.apply(up)  # G+ high on rows 1, 2
    s.apply(-up * 4 / 6)  # and G- too on the same synapses: a common mode to remove
    w_before = s.weights()
    g_before = t.conductances()[:, 0]
    due = (g_before.max(axis=0) >= 3.0) & (g_before.min(axis=0) - t.prm.g_min >= t.card.nominal_step)
    assert due[1:].sum() >= 6 and not due[0].any()
    s.apply(np.zeros(t.shape))  # third update: the policy runs
    st = s.stats()
    assert st["refresh_checks"] == 1 and st["refreshes"] == due.sum()
    g_after = t.conductances()[:, 0]
    assert (g_after.min(axis=0)[due] < 0.5).all()  # one side of each refreshed pair back near RESET
    # the weight survives, within one re-programming SET step (a fresh device's first step is
    # 1.8 ± 1.7 µS: program-and-verify stops when it lands within half a pulse or overshoots)
    err = np.abs(s.weights() - w_before)
    assert err.max() < 6.0 / t.scale and err[due].mean() < 2.5 / t.scale
    np.testing.assert_array_equal(s.weights()[~due], w_before[~due])
    assert st["energy_pJ"] > 0


def test_refresh_on_bidirectional_tile_is_noop():
    s = make_scheme("sign", tile("linear_step"), refresh_every=1)
    s.apply(np.full((4, 5), 1.0))
    assert s.stats()["refreshes"] == 0 and s.stats()["refresh_checks"] == 1


# ------------------------------------------------------------------------------------------ reproducible
@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_result(name):
    def run():
        t = tile("pcm_nandakumar2018", shape=(5, 6), seed=11)
        s = make_scheme(name, t, rng=12)
        rng = np.random.default_rng(13)
        for _ in range(3):
            x = rng.random((4, 6))
            d = rng.normal(size=(4, 5))
            s.update(x, d, 0.5)
        return t.g.copy(), s.stats()

    (g1, s1), (g2, s2) = run(), run()
    np.testing.assert_array_equal(g1, g2)
    assert s1 == s2


# ------------------------------------------------------------------------------------------ kernels
def test_binomial_and_floyd_kernels_match_twin():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 65))
        p = float(rng.choice([rng.random(), rng.random() * 0.05, 1.0, 0.0, 0.5]))
        u = float(rng.random())
        k = U.binomial_inv(u, n, p)
        assert k == RU.binomial_inv(u, n, p)
        kp = int(rng.integers(0, 2**63))
        m = U.floyd_mask(np.uint64(kp), 32 * 7, k, n)
        assert int(m) == RU.floyd_mask(kp, 32 * 7, k, n)
        assert bin(int(m)).count("1") == k and int(m) < 2**n


def test_ipow_and_floyd_step_kernels_match_twin():
    rng = np.random.default_rng(3)
    for q in rng.random(50):
        for n in (0, 1, 2, 7, 31, 64, 127):
            assert U.ipow(q, n) == RU.ipow(q, n)  # the same multiplications in the same order
    for _ in range(300):
        i = int(rng.integers(0, 64))
        mask = int(rng.integers(0, 2**63)) & ((1 << i) - 1)  # Floyd's steps only set bits below i
        f = int(rng.integers(0, 2**32))
        got = int(U._floyd_step(np.uint64(mask), np.uint64(f), i))
        assert got == RU.floyd_step(mask, f, i)
        assert bin(got).count("1") == bin(mask).count("1") + 1


def test_absmax_and_grow_helpers():
    rng = np.random.default_rng(4)
    for n in range(20):  # below, at and above the 8-wide unrolled part
        for dtype in (np.float32, np.float64):
            v = rng.normal(size=n).astype(dtype)
            assert U._absmax(v) == np.abs(v.astype(np.float64)).max(initial=0.0)
    a = np.arange(5, dtype=np.int32)
    for need, size in [(3, 10), (7, 10), (23, 23)]:
        out = U._grow(a, need)
        assert out.dtype == a.dtype and out.size == size
        np.testing.assert_array_equal(out[:5], a)


@pytest.mark.parametrize("bl", [1, 2, 3, 4, 31, 64])
def test_masks_kernel_matches_twin(bl):
    rng = np.random.default_rng(bl)
    v = np.concatenate([rng.random(60) * 0.2, -rng.random(20), np.zeros(5), [1.0, -3.0]])
    v = rng.permutation(v)
    kout = np.empty(v.size, np.uint8)
    mout = np.empty(v.size, np.uint64)
    lst = np.empty(v.size, np.int64)
    ku, kp = np.uint64(RU.key(6, 0)), np.uint64(RU.key(6, 1))
    m = U._masks(v, 0.6, bl, ku, kp, kout, mout, lst)
    want = RU.draw_masks(v, 0.6, bl, int(ku), int(kp))
    listed = [j for j, w in enumerate(want) if w]
    assert 0 < len(listed) < v.size
    np.testing.assert_array_equal(lst[:m], listed)
    for j in listed:
        assert int(mout[j]) == want[j] and kout[j] == bin(want[j]).count("1")


def test_binomial_distribution():
    rng = np.random.default_rng(1)
    u = rng.random(20000)
    for n, p in [(31, 0.05), (31, 0.8), (7, 0.3)]:
        k = np.array([U.binomial_inv(v, n, p) for v in u])
        assert k.mean() == pytest.approx(n * p, abs=5 * np.sqrt(n * p * (1 - p) / u.size))
        assert k.var() == pytest.approx(n * p * (1 - p), rel=0.06)


def test_floyd_positions_uniform():
    counts = np.zeros(31)
    for j in range(6000):
        m = int(U.floyd_mask(np.uint64(12345), 32 * j, 2, 31))
        counts += [(m >> t) & 1 for t in range(31)]
    expected = 2 * 6000 / 31
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_fast_mask_path_matches_scalar_path():
    rng = np.random.default_rng(2)
    v = np.concatenate([rng.random(500) * 0.2, rng.random(100), np.zeros(20), [1.0, -0.7]])
    for bl in (1, 2, 3, 4, 8, 31, 64):  # BL_b of BL management is often below 4
        kout = np.empty(v.size, np.uint8)
        mout = np.empty(v.size, np.uint64)
        ku, kp = np.uint64(RU.key(9, 0)), np.uint64(RU.key(9, 1))
        U._draw_fast(v, 0.3, bl, ku, kp, kout, mout)
        want = RU.draw_masks(v, 0.3, bl, int(ku), int(kp))
        fast = kout != U._SLOW
        assert fast.sum() > v.size // 2
        assert (kout[fast] == min(bl, 2 if bl != 3 else 1)).any()  # the most slots the fast path fills
        for j in np.flatnonzero(fast):
            assert int(mout[j]) == want[j] and kout[j] == bin(want[j]).count("1")


def _state(t):
    return [a.copy() for a in (t.g, t.p, t.tprog, t.npulse, t.up, t.down, t.lo, t.hi, t.stuck, t.nu)]


@pytest.mark.parametrize("card, n_dev, bl, balance, bl_manage, dtype", [
    ("linear_step", 1, 31, True, False, np.float32),  # one bidirectional device: coincidence_apply's short path
    ("linear_step", 1, 31, True, True, np.float32),
    ("linear_step", 2, 5, False, False, np.float64),
    ("pcm_nandakumar2018", 1, 31, True, False, np.float64),
    ("pcm_nandakumar2018", 3, 64, True, True, np.float32),
    ("stuck", 1, 16, True, True, np.float64),
    ("write_noise", 1, 31, True, True, np.float64),  # the pulses act on the persistent conductance p
    ("quantized", 1, 31, True, False, np.float64),
])
@pytest.mark.parametrize("cap", [2**62, 3])  # no limit; a limit that clips many synapses
@pytest.mark.parametrize("agg", [False, True])
def test_coincidence_kernel_matches_twin(card, n_dev, bl, balance, bl_manage, dtype, cap, agg):
    """Both branches of ``coincidence_apply`` against the twin: with the limit, rows over it pulse
    through ``_coincidence_pulse``; without it, through its body written out (and the short path of
    one bidirectional device); with aggregation (linear_step on one device, with and without write
    noise), the rows within the limit through ``_row_aggregated``."""
    if card == "stuck":
        card = load_card("rram_gong2018").with_params(p_stuck_off=0.2, p_stuck_on=0.1)
    elif card == "write_noise":
        card = load_card("linear_step").with_params(write_noise_std=20.0)
    t = tile(card, shape=(6, 9), n_devices=n_dev, seed=4)
    t.t = 3.5
    rng = np.random.default_rng(5)
    x = rng.random((5, 9)) * (rng.random((5, 9)) < 0.7)
    x[:, 0] = -0.6  # negative inputs
    x[2] = 0.0  # an all-zero sample
    d = rng.normal(size=(5, 6)) * 0.3
    dw = 0.01
    if bl_manage:  # samples of very different sizes: trains from 1 slot up to bl
        d *= np.array([[3.0], [0.02], [1.0], [0.2], [100.0]])
        lr = 0.05
    else:
        lr = 1.0 * dw * bl  # A·B = 1: p > 1/2 and K > 2 somewhere (the scalar path)
    x, d = x.astype(dtype), d.astype(dtype)
    arb_k = np.zeros(t.n_synapses, np.int64) if n_dev > 1 else np.empty(0, np.int64)
    arb_r = arb_k.copy()
    sk, sr = _state(t), _state(t)
    bidir = not t.differential
    dev = (n_dev, bidir, t.law, t.prm)
    mode = (lr, dw, balance, bl_manage, bl)
    res_k = U.coincidence_update(x, d, *mode, cap, 77, 78, *sk, arb_k, *dev, t.t, agg)
    res_r = RU.coincidence_update(x, d, *mode, cap, 77, 78, *sr, arb_r, *dev, t.t, agg)
    assert res_k[:3] == res_r[:3] and res_k[0] > 20
    np.testing.assert_array_equal(res_k[3], res_r[3])
    n_k, n_over, most, bls = res_k
    assert bls[2] == 0 and (bls[[0, 1, 3, 4]] == bl).all() != bl_manage
    if bl_manage:
        assert bls[1] < 4 and bls[4] == bl  # a short train, and one clipped at bl
    for a, b in zip(sk, sr):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(arb_k, arb_r)
    assert sk[3].sum() == n_k
    per_synapse = (sk[3] - t.npulse).reshape(-1, t.n_synapses).sum(axis=0)
    assert per_synapse.max() <= cap
    if cap < bl:  # the limit acted: the synapses that wanted more got exactly cap
        assert 0 < n_over <= np.count_nonzero(per_synapse == cap) and most > cap
    else:
        assert (n_over, most) == (0, 0)
    # the two halves on their own: the drawn lists, then applying the same lists
    coff, cols, rstart, events, bls_d = U.coincidence_draw(x, d, *mode, 77)
    drawn = RU.coincidence_draw(x, d, *mode, 77)
    for a, b in zip((coff, cols[:coff[-1]], rstart, events, bls_d), drawn):  # cols is a buffer: its used part
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(bls_d, bls)
    sa, sb = _state(t), _state(t)
    arb_a, arb_b = np.zeros_like(arb_k), np.zeros_like(arb_k)
    res_a = U.coincidence_apply(coff, cols, rstart, events, 9, cap, *sa, arb_a, *dev, 78, t.t, agg)
    res_b = RU.coincidence_apply(*drawn[:4], 9, cap, *sb, arb_b, *dev, 78, t.t, agg)
    assert res_a == res_b == res_k[:3]
    for a, b, c in zip(sa + [arb_a], sb + [arb_b], sk + [arb_k]):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_sample_factors_kernel_matches_twin_and_aihwkit():
    """BL and the factors of one sample: aihwkit's BL management (BL = min(ceil(lr·x_max·d_max/Δw), bl),
    x_max and d_max floored at Δw²) and update management (A·B = lr/(Δw·BL), balanced)."""
    rng = np.random.default_rng(6)
    for _ in range(300):
        xm, dm, lr = 10.0 ** rng.uniform(-7, 1, 3)
        dw = 10.0 ** rng.uniform(-4, -1)
        bl = int(rng.integers(1, 65))
        for balance, manage in [(False, False), (True, False), (True, True)]:
            got = U.sample_factors(xm, dm, lr, dw, balance, manage, bl)
            assert got == RU.sample_factors(xm, dm, lr, dw, balance, manage, bl)
            n, a, b = got
            assert a * b == pytest.approx(lr / (dw * n))  # E[ΔW] = -lr·x·d
            if not manage:
                assert n == bl and (a == b or balance)
                continue
            xr, dr = max(xm, dw * dw), max(dm, dw * dw)
            assert n == min(math.ceil(lr * xr * dr / dw), bl) and a * dr == pytest.approx(b * xr)
            if n < bl:  # a short train: neither side is clipped
                assert a * dr <= 1.0 + 1e-12
    # a small product: one slot, both sides at probability sqrt(0.1)
    n, a, b = U.sample_factors(0.5, 0.02, 0.01, 0.001, True, True, 31)
    assert n == 1 and a * 0.02 == pytest.approx(math.sqrt(0.1)) and b * 0.5 == pytest.approx(math.sqrt(0.1))
    assert U.sample_factors(0.5, 0.02, 10.0, 0.001, True, True, 31)[0] == 31  # a large one (100): clipped at bl


@pytest.mark.parametrize("bl_management, update_management", [(True, True), (False, True), (False, False)])
def test_coincidence_expected_change(bl_management, update_management):
    """E[ΔW] = -lr·dᵀx on a linear device without noise (each pulse is exactly Δw_pulse), in every
    update mode; with BL management (the default) the trains are as short as the samples allow."""
    t = tile(quiet_linear(), shape=(6, 7), seed=0)
    step = t.card.nominal_step / t.scale
    modes = {"update_bl_management": bl_management, "update_management": update_management}
    s = make_scheme("stochastic_coincidence", t, rng=1, **modes)
    assert make_scheme("stochastic_coincidence", tile()).params["update_bl_management"]  # aihwkit's default
    rng = np.random.default_rng(2)
    x = rng.random((3, 7))
    x[:, 0] = 0.0
    x[:, 1] *= -1
    d = rng.normal(size=(3, 6))
    lr = 0.4 * step
    w0 = s.weights()
    n_rep = 400
    for _ in range(n_rep):
        s.update(x, d, lr)
    got = s.weights() - w0
    want = -n_rep * lr * d.T @ x
    # pulse counts are sums of Bernoulli trials: sd ≈ sqrt(mean number of pulses)·Δw_pulse
    sd = np.sqrt(n_rep * lr * np.abs(d).T @ np.abs(x) / step) * step + 1e-12
    z = (got - want) / sd
    assert np.abs(z).max() < 5.0
    assert np.abs(z.mean()) < 5.0 / np.sqrt(z.size)
    np.testing.assert_array_equal(got[:, 0], 0.0)
    st = s.stats()
    assert st["pulses"] == t.npulse.sum()
    assert st["update_mode"] == {**modes, "bl": 31}
    # lr·x_max·d_max/Δw_pulse = 0.4·x_max·d_max per sample: a train of a few slots instead of 31
    wanted_bl = np.ceil(0.4 * np.abs(x).max(axis=1) * np.abs(d).max(axis=1))
    assert st["bl_mean"] == (pytest.approx(wanted_bl.mean()) if bl_management else 31)
    assert wanted_bl.max() < 4


def test_bl_management_needs_update_management():
    with pytest.raises(ConfigError, match="update_management: false needs update_bl_management: false"):
        make_scheme("stochastic_coincidence", tile(), update_management=False)
    with pytest.raises(ConfigError, match="scheme 'tiki_taka': update_management"):
        make_scheme("tiki_taka", tile(), update_management=False)
    s = make_scheme("tiki_taka", tile(), update_management=False, update_bl_management=False)
    assert s.stats()["update_mode"]["update_bl_management"] is False and s.stats()["bl_mean"] == 0.0


def test_pulse_sparse_and_accumulate_match_twins():
    for card, n_dev in [("pcm_nandakumar2018", 2), ("rram_gong2018", 1), ("quantized", 3)]:
        t = tile(card, shape=(4, 6), n_devices=n_dev, seed=8)
        rng = np.random.default_rng(9)
        ks = np.flatnonzero(rng.random(24) < 0.6)
        counts = rng.integers(-5, 6, ks.size)
        arb = np.zeros(24, np.int64) if n_dev > 1 else np.empty(0, np.int64)
        a1, a2 = arb.copy(), arb.copy()
        s1, s2 = _state(t), _state(t)
        n1 = U.pulse_sparse(ks, counts.astype(np.int64), a1, *s1, 24, n_dev, not t.differential, t.law, t.prm, 3, 1.0)
        n2 = RU.pulse_sparse(ks, counts, a2, *s2, 24, n_dev, not t.differential, t.law, t.prm, 3, 1.0)
        assert n1 == n2 == np.abs(counts).sum()
        for a, b in zip(s1 + [a1], s2 + [a2]):
            np.testing.assert_array_equal(a, b)
        chi1 = rng.normal(size=24) * 0.1
        chi2 = chi1.copy()
        dw = rng.normal(size=24).astype(np.float32)
        eps = 0.07
        r1 = U.accumulate_pulse(chi1, dw, -0.3, eps, 2**62, a1, *s1, n_dev, not t.differential, t.law, t.prm, 4, 2.0)
        r2 = RU.accumulate_pulse(chi2, dw, -0.3, eps, 2**62, a2, *s2, n_dev, not t.differential, t.law, t.prm, 4, 2.0)
        assert r1 == r2 and r1[0] > 0 and r1[1:] == (0, 0)
        np.testing.assert_array_equal(chi1, chi2)
        assert np.abs(chi1).max() < eps
        for a, b in zip(s1 + [a1], s2 + [a2]):
            np.testing.assert_array_equal(a, b)
        # a limit of 2 pulses: the synapses wanting more get 2, the rest stays in the accumulator
        before = chi1.copy()
        r1 = U.accumulate_pulse(chi1, dw, 1.0, eps, 2, a1, *s1, n_dev, not t.differential, t.law, t.prm, 5, 3.0)
        r2 = RU.accumulate_pulse(chi2, dw, 1.0, eps, 2, a2, *s2, n_dev, not t.differential, t.law, t.prm, 5, 3.0)
        assert r1 == r2
        wanted = np.trunc((before + dw.astype(np.float64)) / eps)
        assert r1[1] == np.count_nonzero(np.abs(wanted) > 2) > 0 and r1[2] == np.abs(wanted).max()
        assert r1[0] == np.minimum(np.abs(wanted), 2).sum()
        np.testing.assert_array_equal(chi1, chi2)
        np.testing.assert_allclose(chi1, before + dw - np.clip(wanted, -2, 2) * eps, atol=1e-12)
        for a, b in zip(s1 + [a1], s2 + [a2]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("card, n_dev, write_noise", [("linear_step", 1, 0.0), ("linear_step", 3, 0.0),
                                                      ("linear_step", 2, 20.0), ("rram_gong2018", 1, None)])
def test_aggregated_pulse_sparse_and_accumulate_match_twins(card, n_dev, write_noise):
    """pulse_sparse and accumulate_pulse with aggregation against their twins: round-robin devices take
    their share of a synapse's pulses as one step each; devices near a bound take them one by one; a
    card whose steps depend on the state (rram) is the same with and without aggregation."""
    c = load_card(card) if write_noise is None else load_card(card).with_params(write_noise_std=write_noise)
    t = tile(c, shape=(4, 6), n_devices=n_dev, seed=8)
    t.g[:5] = t.hi[:5]  # at the top: several up pulses there must go one by one
    t.p[:] = t.g
    rng = np.random.default_rng(9)
    ks = np.flatnonzero((rng.random(24) < 0.8) | (np.arange(24) < 5))
    counts = rng.integers(-9, 10, ks.size)
    counts[:5] = 7  # synapses 0-4: up pulses on the devices near the top
    arb = np.zeros(24, np.int64) if n_dev > 1 else np.empty(0, np.int64)
    a1, a2, a3 = arb.copy(), arb.copy(), arb.copy()
    s1, s2, s3 = _state(t), _state(t), _state(t)
    bidir = not t.differential
    n1 = U.pulse_sparse(ks, counts.astype(np.int64), a1, *s1, 24, n_dev, bidir, t.law, t.prm, 3, 1.0, True)
    n2 = RU.pulse_sparse(ks, counts, a2, *s2, 24, n_dev, bidir, t.law, t.prm, 3, 1.0, True)
    n3 = U.pulse_sparse(ks, counts.astype(np.int64), a3, *s3, 24, n_dev, bidir, t.law, t.prm, 3, 1.0, False)
    assert n1 == n2 == n3 == np.abs(counts).sum()
    for a, b in zip(s1 + [a1], s2 + [a2]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(s1[3], s3[3])  # the same pulse counts per device
    np.testing.assert_array_equal(a1, a3)
    if card == "rram_gong2018":
        np.testing.assert_array_equal(s1[0], s3[0])
    else:
        assert not np.array_equal(s1[0], s3[0])  # a different random stream ...
        one = np.zeros(s1[0].size, bool)  # ... except on devices that took a single pulse (same bits)
        one[s1[3] - t.npulse == 1] = True
        np.testing.assert_array_equal(s1[0][one], s3[0][one])
        near = np.zeros(s1[0].size, bool)  # and on those near the bound, which take them one by one
        near[:5] = True
        np.testing.assert_array_equal(s1[0][near], s3[0][near])
    chi1 = rng.normal(size=24) * 0.1
    chi2 = chi1.copy()
    dw = (rng.normal(size=24) * 0.5).astype(np.float32)
    eps = t.card.nominal_step / t.scale
    for cap in (2**62, 4):
        r1 = U.accumulate_pulse(chi1, dw, -0.3, eps, cap, a1, *s1, n_dev, bidir, t.law, t.prm, 4, 2.0, True)
        r2 = RU.accumulate_pulse(chi2, dw, -0.3, eps, cap, a2, *s2, n_dev, bidir, t.law, t.prm, 4, 2.0, True)
        assert r1 == r2 and r1[0] > 0
        np.testing.assert_array_equal(chi1, chi2)
        for a, b in zip(s1 + [a1], s2 + [a2]):
            np.testing.assert_array_equal(a, b)


def test_aggregated_coincidences_near_a_bound_go_one_by_one():
    """Devices whose walk could reach a bound take their coincidences one at a time: the same bits as
    without aggregation; the others one step each (the twin decides the same way)."""
    t = tile("linear_step", shape=(6, 9), seed=4)
    t.g[::2] = t.hi[::2] - 0.002  # within a few steps of the top
    rng = np.random.default_rng(5)
    x = rng.random((6, 9))
    d = -np.abs(rng.normal(size=(6, 6)))  # ΔW = -lr·dᵀx > 0: up pulses
    mode = (0.5, 0.01, True, False, 31)
    res = []
    states = []
    for agg, twin in ((True, False), (True, True), (False, False)):
        st = _state(t)
        fn = RU.coincidence_update if twin else U.coincidence_update
        res.append(fn(x, d, *mode, 2**62, 7, 8, *st, np.empty(0, np.int64), 1, True, t.law, t.prm, 1.0, agg)[:3])
        states.append(st)
    assert res[0] == res[1] == res[2]
    for a, b in zip(states[0], states[1]):
        np.testing.assert_array_equal(a, b)
    n = states[0][3] - t.npulse
    assert (n[::2] > 1).sum() > 10  # many pulses on devices near the bound
    np.testing.assert_array_equal(states[0][0][::2], states[2][0][::2])
    many = np.flatnonzero(n > 1)
    many = many[many % 2 == 1]
    assert many.size > 10 and not np.array_equal(states[0][0][many], states[2][0][many])


def _final_states(agg, n_up, n_dn, trials, g0, seed):
    """Final conductances of ``trials`` identical linear_step devices (one per row, one column) after
    one update of n_up up and n_dn down coincidence pulses (interleaved), with or without aggregation."""
    card = load_card("linear_step").with_params(dw_min_dtod=0.0, up_down_dtod=0.0, bounds_dtod=0.0, reset_std=0.0)
    t = Tile(trials, 1, card, rng=0, periphery=IDEAL)
    t.g[:] = g0
    signs = [1] * n_up + [-1] * n_dn
    signs = signs[::2] + signs[1::2]  # ups and downs mixed
    # one event per pulse, each with the one column (x > 0): the row's event sign is -sign of the pulse
    coff = np.arange(len(signs) + 1, dtype=np.int64)
    cols = np.zeros(len(signs), np.int32)
    events = np.tile(np.array([e if s < 0 else ~e for e, s in enumerate(signs)], np.int32), trials)
    rstart = np.arange(trials + 1, dtype=np.int64) * len(signs)
    st = _state(t)
    U.coincidence_apply(coff, cols, rstart, events, 1, 2**62, *st, np.empty(0, np.int64), 1, True, t.law, t.prm,
                        seed, 1.0, agg)
    assert (st[3] == len(signs)).all()
    return st[0], t


@pytest.mark.parametrize("n_up, n_dn", [(7, 0), (0, 5), (6, 4)])
def test_aggregated_pulses_have_the_law_of_single_pulses(n_up, n_dn):
    """The aggregated path against the per-pulse path over 40000 seeded trials: final states with the
    same mean and variance (tolerances from the sample size: 6 standard errors) and the same
    distribution (two-sample KS test), both at the exact law n_up·up − n_dn·down ± σ·sqrt(n)·step."""
    from scipy import stats

    trials = 40000
    g_agg, t = _final_states(True, n_up, n_dn, trials, 0.6, seed=11)
    g_one, _ = _final_states(False, n_up, n_dn, trials, 0.6, seed=12)
    step = t.up[0]
    assert (t.up == step).all() and (t.down == step).all()
    mean = 0.6 + (n_up - n_dn) * step
    sd = t.prm.dw_std * step * math.sqrt(n_up + n_dn)
    for g in (g_agg, g_one):
        assert abs(g.mean() - mean) < 6 * sd / math.sqrt(trials)
        assert abs(g.var() / sd**2 - 1.0) < 6 * math.sqrt(2.0 / trials)
    se = sd * math.sqrt(2.0 / trials)
    assert abs(g_agg.mean() - g_one.mean()) < 6 * se
    assert abs(g_agg.var() / g_one.var() - 1.0) < 6 * 2.0 / math.sqrt(trials)
    assert stats.ks_2samp(g_agg, g_one).pvalue > 1e-4
    assert not np.array_equal(g_agg, g_one)


#: Digests of (g, p, tprog, npulse) of every tile after six updates of a scheme (see
#: _stored_run), recorded with the code before aggregated pulses existed: with aggregate_pulses off
#: every scheme gives these bits; with it on, only the cases marked True (linear_step on one device
#: per side) change.
STORED_RUNS = [
    ("stochastic_coincidence", "linear_step", 1, {}, "68e4165a0e00e5ca", 38666, True),
    ("stochastic_coincidence", "linear_step", 1, {"update_bl_management": False, "bl": 9}, "96c5a650fb61dae7", 26707,
     True),
    ("stochastic_coincidence", "linear_step", 2, {}, "d2b3069cb8e4b9d8", 67136, False),
    ("stochastic_coincidence", "rram_gong2018", 1, {}, "08661aeab8291ae4", 46778, False),
    ("tiki_taka", "linear_step", 1, {}, "ec5d16674a2ffcf2", 41103, True),
    ("mixed_precision", "linear_step", 1, {}, "9c4452aa714d9480", 19979, True),
    ("mixed_precision", "linear_step", 3, {}, "f3b710b2317dc5cc", 61221, True),
    ("multi_device", "linear_step", 2, {}, "8c666de7b6e0bab0", 40553, True),
    ("mixed_precision", "pcm_nandakumar2018", 2, {}, "223e08a838af34ce", 605, False),
]


def _stored_run(name, card, n_dev, **params):
    import hashlib

    t = Tile(12, 20, card, rng=3, n_devices=n_dev, periphery=IDEAL)
    s = make_scheme(name, t, rng=4, **params)
    rng = np.random.default_rng(5)
    for _ in range(6):
        x = rng.random((8, 20)) * (rng.random((8, 20)) < 0.6)
        d = rng.normal(size=(8, 12)) * 0.5
        s.update(x, d, 0.05)
    h = hashlib.sha256()
    for tl in s.tiles:
        for a in (tl.g, tl.p, tl.tprog, tl.npulse):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16], int(s.stats()["pulses"])


@pytest.mark.parametrize("name, card, n_dev, params, digest, pulses, changes", STORED_RUNS)
def test_per_pulse_results_are_those_of_earlier_releases(name, card, n_dev, params, digest, pulses, changes):
    """aggregate_pulses: false gives the stored bits; on, only aggregating cases differ (a Tiki-Taka
    run may then issue a few more or fewer transfer pulses: it reads A, which changed)."""
    assert _stored_run(name, card, n_dev, **params) == (digest, pulses)  # the default: off
    on = _stored_run(name, card, n_dev, aggregate_pulses=True, **params)
    assert (on[0] != digest) == changes
    if name != "tiki_taka":
        assert on[1] == pulses


def test_aggregate_pulses_param():
    s = make_scheme("mixed_precision", tile("linear_step"))
    assert s.params["aggregate_pulses"] is False
    assert "aggregate_pulses" in s.PARAMS or "aggregate_pulses" in s.params
    with pytest.raises(ConfigError, match="aggregate_pulses: expected true or false"):
        make_scheme("stochastic_coincidence", tile("linear_step"), aggregate_pulses=1)
    from neuroemu.hardware.schemes import _PULSED

    doc = _PULSED["aggregate_pulses"].doc
    assert "exact in distribution" in doc and "aggregate_pulses: false" in doc


def test_kernels_do_not_depend_on_the_thread_count():
    """The update kernels give the same bits at 1 and 2 threads (the setting of neuroemu.threads)."""
    from neuroemu import threads

    out = []
    for n in (1, 2):
        with threads.limit(n):
            t = tile("linear_step", shape=(30, 40), seed=2)
            rng = np.random.default_rng(3)
            x = rng.random((16, 40))
            d = rng.normal(size=(16, 30))
            st = _state(t)
            for agg in (False, True):
                U.coincidence_update(x, d, 0.05, 0.01, True, True, 31, 1000, 5, 6, *st, np.empty(0, np.int64), 1,
                                     True, t.law, t.prm, 1.0, agg)
                U.accumulate_pulse(np.zeros(t.n_synapses), rng.normal(size=t.n_synapses), 0.05, 0.01, 1000,
                                   np.empty(0, np.int64), *st, 1, True, t.law, t.prm, 7, 2.0, agg)
            out.append(st)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("card, n_dev", [("pcm_nandakumar2018", 2), ("linear_step", 1)])
def test_prefetch_span_reaches_llvm_and_changes_nothing(card, n_dev):
    """The ``prefetch`` intrinsic is a hint: _prefetch_span compiles to prefetch calls and moves no data."""
    t = tile(card, shape=(3, 40), n_devices=n_dev)
    st = _state(t)
    before = [a.copy() for a in st]
    m, n_planes, pcm = t.n_synapses, t.n_side * n_dev, t.law == U.PCM_SET
    for arb in (np.zeros(m, np.int64), np.empty(0, np.int64)):
        U._prefetch_span(*st, arb, pcm, 0, m, m, n_planes)
        U._prefetch_span(*st, arb, pcm, 37, 83, m, n_planes)
        assert not arb.any()
    for a, b in zip(st, before):
        np.testing.assert_array_equal(a, b)
    fresh = numba.njit(U._prefetch_span.py_func)  # uncached: numba shows no IR of cached code
    for sig in U._prefetch_span.signatures:
        fresh.compile(sig)
        assert "call void @llvm.prefetch" in fresh.inspect_llvm(sig)  # a call survives optimisation


@pytest.mark.parametrize("card", ["pcm_nandakumar2018", "linear_step", "ideal"])
def test_column_read_matches_forward(card):
    t = Tile(5, 7, card, rng=3, n_devices=2)  # default (noisy) periphery
    t.pulse(np.random.default_rng(0).integers(-3, 4, t.shape))
    t.advance(100.0)
    w, v = np.empty(5), np.empty(5)
    w2, v2 = np.empty(5), np.empty(5)
    args = (t.g, t.tprog, t.nu, t.t, t.n_side, t.n_devices, t.prm.g_mid, 1.0 / t.scale, t.read_law, t.prm)
    U.column_weights(*args, 4, 7, w, v)
    RU.column_weights(*args, 4, 7, w2, v2)
    np.testing.assert_array_equal(w, w2)
    np.testing.assert_array_equal(v, v2)
    probe = copy.deepcopy(t.rng)
    seed = int(probe.integers(0, 2**63 - 1))
    e = np.zeros((1, 7), np.float32)
    e[0, 4] = 1.0
    np.testing.assert_array_equal(read_column(t, 4, seed), t.forward(e)[0])


# ------------------------------------------------------------------------------------------ benchmark
def test_benchmark_smoke(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_update.py"
    spec = importlib.util.spec_from_file_location("bench_update", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.main(["--quick", "--size", "64", "32", "--batch", "8", "--repeat", "2"])
    assert {r["scheme"] for r in rows} >= {"float32 SGD", "stochastic_coincidence", "mixed_precision", "tiki_taka"}
    for r in rows:
        assert r["ms"] > 0 and r["ratio"] > 0
    printed = capsys.readouterr().out
    assert "where the time of one stochastic_coincidence update on linear_step goes" in printed
    assert "one normal per pulse (the step noise)" in printed


def test_bad_card_param_is_config_error():
    with pytest.raises(ConfigError, match="scheme 'tiki_taka': a_card: .*no such device card"):
        make_scheme("tiki_taka", tile(), a_card="pcm_nobody1999")
    with pytest.raises(ConfigError, match="a_card: expected a card that takes pulses"):
        make_scheme("tiki_taka", tile(), a_card="pcm_joshi2020")
