"""Device physics kernels against their numpy twins, and the Nandakumar et al. 2018 PCM statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from neuroemu._kernels import device as K
from neuroemu.hardware.cards import load_card
from neuroemu.hardware.crossbar import device_params
from tests.reference import device as R
from tests.reference import rng as RR

# Transcendental functions: numpy's SIMD exp/log/pow (twin) vs libm (numba) may differ by an ulp.
RTOL_TRANSCENDENTAL = 1e-12


def params(card_name: str, **changes) -> K.DeviceParams:
    card = load_card(card_name)
    return device_params(card)._replace(**{k: float(v) for k, v in changes.items()})


class State:
    """Random device state of a small tile: n_side sides × n_dev devices × m synapses."""

    def __init__(self, prm, n_side, n_dev, m, rng, *, p_stuck=0.0, spread=True):
        size = n_side * n_dev * m
        self.n_side, self.n_dev, self.m = n_side, n_dev, m
        self.g = rng.uniform(prm.g_min, prm.g_max, size)
        self.p = rng.uniform(0.0, 1.0, size)
        self.tprog = rng.uniform(0.0, 5.0, size)
        self.npulse = rng.integers(0, 3, size).astype(np.int64)
        self.nreset = np.zeros(size, np.int64)
        f = rng.uniform(0.7, 1.3, size) if spread else np.ones(size)
        self.up = 0.05 * (prm.g_max - prm.g_min) * f
        self.down = 0.04 * (prm.g_max - prm.g_min) * f[::-1]
        half = 0.5 * (prm.g_max - prm.g_min)
        spread_lo = rng.uniform(0.8, 1.1, size) if spread else np.ones(size)
        spread_hi = rng.uniform(0.8, 1.1, size) if spread else np.ones(size)
        self.lo = np.maximum(prm.g_mid - half * spread_lo, 0.0)
        self.hi = prm.g_mid + half * spread_hi
        self.g = np.clip(self.g, self.lo, self.hi)
        u = rng.random(size)
        self.stuck = np.where(u < p_stuck / 2, 1, np.where(u < p_stuck, 2, 0)).astype(np.int8)
        self.nu = np.zeros(size)  # no drift: pulse arithmetic stays bit-identical to the twin

    def args(self):
        return self.g, self.p, self.tprog, self.npulse, self.up, self.down, self.lo, self.hi, self.stuck, self.nu


CASES = {
    # name: (card, law, bidirectional, parameter changes)
    "pcm_set": ("pcm_nandakumar2018", K.PCM_SET, False, {}),
    "constant": ("linear_step", K.CONSTANT, True, {}),
    "soft_bounds": ("linear_step", K.SOFT_BOUNDS, True, {}),
    "exp_step": ("rram_gong2018", K.EXP_STEP, True, {}),
    "ideal": ("ideal", K.CONSTANT, True, {}),
    "quantized": ("quantized", K.CONSTANT, True, {}),
}


def _pulse_both(case, seed, *, n_dev, levels, p_stuck, with_start, rng):
    card, law, bidir, changes = CASES[case]
    prm = params(card, **changes)
    if levels is not None:
        prm = prm._replace(levels=float(levels))
    n_side = 1 if bidir else 2
    m = 23
    st = State(prm, n_side, n_dev, m, rng, p_stuck=p_stuck)
    counts = rng.integers(-6, 7, m).astype(np.int32)
    counts[:3] = (0, 9, -9)
    start = rng.integers(0, 2 * n_dev, m).astype(np.int32) if with_start else np.empty(0, np.int32)
    ref = R.pulse_tile(*st.args(), counts, start, n_dev, bidir, law, prm, seed, 7.5)
    K.pulse_tile(*st.args(), counts, start, n_dev, bidir, law, prm, seed, 7.5)
    return st, ref, law, counts, prm


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("n_dev", [1, 3])
def test_pulse_tile_matches_twin(case, n_dev, seed, rng):
    for levels in (None, 9):  # the card's own levels (quantized: 15), then a 9-level grid
        for with_start in (False, True):
            st, ref, law, counts, prm = _pulse_both(case, seed, n_dev=n_dev, levels=levels, p_stuck=0.2,
                                                    with_start=with_start, rng=rng)
            g, p, tprog, npulse = ref
            if law == K.EXP_STEP and prm.levels == 0:
                np.testing.assert_allclose(st.g, g, rtol=RTOL_TRANSCENDENTAL, atol=0)
            else:  # same arithmetic in the same order: bit for bit (with levels too)
                np.testing.assert_array_equal(st.g, g)
            np.testing.assert_array_equal(st.p, p)
            np.testing.assert_array_equal(st.tprog, tprog)
            np.testing.assert_array_equal(st.npulse, npulse)


def test_pulse_tile_semantics(rng):
    """Direct checks of what the twin encodes: counts, sides, round-robin, stuck, bounds."""
    prm = params("pcm_nandakumar2018")
    n_dev, m = 3, 4
    st = State(prm, 2, n_dev, m, rng, spread=False)
    st.g[:] = 1.0
    st.stuck[:] = 0
    st.stuck[(1 * n_dev + 2) * m + 3] = 1  # side 1, device 2, synapse 3
    npulse0 = st.npulse.copy()
    g0 = st.g.copy()
    counts = np.array([0, 4, -2, -5], np.int32)
    start = np.array([0, 1, 2, 0], np.int32)
    K.pulse_tile(*st.args(), counts, start, n_dev, False, K.PCM_SET, prm, 5, 3.0)
    dn = (st.npulse - npulse0).reshape(2, n_dev, m)
    np.testing.assert_array_equal(dn[:, :, 0], 0)
    np.testing.assert_array_equal(dn[0, :, 1], [1, 2, 1])  # 4 pulses from device 1: 1,2,0,1
    np.testing.assert_array_equal(dn[1, :, 1], 0)
    np.testing.assert_array_equal(dn[1, :, 2], [1, 0, 1])  # SET-only depression: side 1, from device 2
    np.testing.assert_array_equal(dn[0, :, 2], 0)
    np.testing.assert_array_equal(dn[1, :, 3], [2, 2, 1])
    stuck_idx = (1 * n_dev + 2) * m + 3
    assert st.g[stuck_idx] == g0[stuck_idx] and st.tprog[stuck_idx] == 3.0
    moved = (st.npulse != npulse0)
    moved[stuck_idx] = False
    assert np.all(st.g[moved] != g0[moved]) and np.all(st.g[~moved & (st.npulse == npulse0)] == 1.0)
    assert np.all((st.g >= prm.g_min) & (st.g <= prm.g_max))
    np.testing.assert_array_equal(st.tprog[st.npulse != npulse0], 3.0)


def test_pulse_laws_direction_and_bounds(rng):
    m = 200
    for case in ("constant", "soft_bounds", "exp_step", "ideal"):
        card, law, _, _ = CASES[case]
        prm = params(card, dw_std=0.0, write_noise=0.0)  # no cycle-to-cycle or write noise: every pulse
        # moves in its direction
        for sign in (1, -1):
            st = State(prm, 1, 1, m, rng)
            g0 = st.g.copy()
            K.pulse_tile(*st.args(), np.full(m, 3 * sign, np.int32), np.empty(0, np.int32), 1, True, law, prm, 1, 0.0)
            d = st.g - g0
            assert np.all(sign * d >= 0), case
            assert np.all((st.g >= st.lo) & (st.g <= st.hi)), case
            at_bound = st.g == (st.hi if sign > 0 else st.lo)
            assert np.all(sign * d[~at_bound] > 0), case
    # soft bounds: the up step shrinks linearly to zero at the upper bound
    prm = params("linear_step", dw_std=0.0)
    st = State(prm, 1, 1, 3, rng, spread=False)
    st.g[:] = [prm.g_mid, 0.5 * (prm.g_mid + prm.g_max), prm.g_max]
    g0 = st.g.copy()
    K.pulse_tile(*st.args(), np.ones(3, np.int32), np.empty(0, np.int32), 1, True, K.SOFT_BOUNDS, prm, 1, 0.0)
    np.testing.assert_allclose(st.g - g0, st.up * np.array([1.0, 0.5, 0.0]), rtol=1e-12)


def test_levels_rounding_is_on_grid_and_unbiased():
    prm = params("ideal", levels=5.0)  # grid 0, 0.5, 1, 1.5, 2
    x = np.full(100_000, 0.8)
    out = R.round_levels(x, prm, 3, np.arange(x.size), 0)
    assert set(np.unique(out)) == {0.5, 1.0}
    assert abs(out.mean() - 0.8) < 5 * 0.5 * math.sqrt(0.6 * 0.4 / x.size)
    # the kernel's pulses land on the grid too, even on devices whose bounds reach beyond [g_min, g_max]
    st = State(prm, 1, 1, 50, np.random.default_rng(0))
    st.hi[:25] = prm.g_max + 0.4  # a device-to-device spread of the bounds can put hi above g_max
    st.g[:] = 1.0
    st.g[:25] = prm.g_max
    K.pulse_tile(*st.args(), np.full(50, 3, np.int32), np.empty(0, np.int32), 1, True, K.CONSTANT, prm, 2, 0.0)
    assert set(np.unique(st.g)) <= {0.0, 0.5, 1.0, 1.5, 2.0}
    assert set(np.unique(st.g[25:])) > {1.0}


def test_round_levels_matches_twin(seed, rng):
    prm = params("quantized")
    assert prm.levels > 1
    g = rng.uniform(prm.g_min - 0.1, prm.g_max + 0.1, 200)  # beyond the grid too (clipped to its ends)
    keys = rng.integers(0, 2**40, g.size)
    for m in (0, 5):
        k = np.array([K._round_levels(a, prm, seed, int(b), m) for a, b in zip(g, keys)])
        np.testing.assert_array_equal(k, R.round_levels(g, prm, seed, keys, m))


def test_reset_devices_matches_twin(seed, rng):
    for card in ("pcm_nandakumar2018", "linear_step"):
        prm = params(card)
        st = State(prm, 2, 2, 11, rng, p_stuck=0.3)
        index = np.concatenate([4 + rng.choice(st.g.size - 4, 20, replace=False), [3, 3]]).astype(np.int64)
        ref = R.reset_devices(st.g, st.p, st.tprog, st.nreset, st.lo, st.hi, st.stuck, index, prm, seed, 9.0)
        g_before = st.g.copy()
        K.reset_devices(st.g, st.p, st.tprog, st.nreset, st.lo, st.hi, st.stuck, index, prm, seed, 9.0)
        for a, b in zip((st.g, st.p, st.tprog, st.nreset), ref):
            np.testing.assert_array_equal(a, b)
        stuck = st.stuck != 0
        np.testing.assert_array_equal(st.g[stuck], g_before[stuck])
        assert st.nreset[3] == 2
        fresh = np.zeros(st.g.size, bool)
        fresh[index] = True
        fresh &= ~stuck
        near = np.abs(st.g[fresh] - prm.reset_mean) < 6 * prm.reset_std + 1e-12
        assert np.all(near | (st.g[fresh] == st.lo[fresh]) | (st.g[fresh] == st.hi[fresh]))
        assert near.any()


def test_drift_factor_matches_twin_and_law():
    prm = params("pcm_nandakumar2018")
    ages = np.array([0.0, 1.0, 38.6, 38.7, 100.0, 3600.0, 3.15e7])
    nus = np.array([0.0, 0.04, 0.1])
    for nu in nus:
        k = np.array([K.drift_factor(nu, a, prm) for a in ages])
        np.testing.assert_allclose(k, R.drift_factor(nu, ages, prm), rtol=RTOL_TRANSCENDENTAL, atol=0)
    k = np.array([K.drift_factor(0.04, a, prm) for a in ages])
    np.testing.assert_array_equal(k[:3], 1.0)  # no drift before t0 = 38.6 s
    np.testing.assert_allclose(k[3:], (ages[3:] / 38.6) ** -0.04, rtol=1e-12)
    # inference PCM: t_offset = t0 = 20 s, G(t) = G ((t + 20)/20)^-ν from t = 0
    prm = params("pcm_joshi2020")
    np.testing.assert_allclose([K.drift_factor(0.06, a, prm) for a in ages],
                               ((ages + 20.0) / 20.0) ** -0.06, rtol=1e-12)


@pytest.mark.parametrize("card,law", [("pcm_nandakumar2018", K.READ_LINEAR), ("pcm_joshi2020", K.READ_1F)])
def test_read_std_matches_twin(card, law, rng):
    prm = params(card)
    g = rng.uniform(0.0, prm.g_max, 50)
    gd = g * rng.uniform(0.5, 1.0, 50)
    age = rng.uniform(0.0, 1e6, 50)
    k = np.array([K.read_std(a, b, c, law, prm) for a, b, c in zip(g, gd, age)])
    r = R.read_std(g, gd, age, law, prm)
    if law == K.READ_LINEAR:
        np.testing.assert_array_equal(k, r)
        np.testing.assert_allclose(r, 0.03 * gd + 0.13, rtol=1e-15)  # Nandakumar: 0.03 G + 0.13 µS
    else:
        np.testing.assert_allclose(k, r, rtol=RTOL_TRANSCENDENTAL, atol=0)
        q = np.minimum(0.0088 / np.maximum(g / 25.0, 1e-3) ** 0.65, 0.2)  # papers.md §1b form
        expect = gd * q * np.sqrt(np.log((age + 20.0 + 250e-9) / (2 * 250e-9)))
        np.testing.assert_allclose(r, expect, rtol=1e-12)


@pytest.mark.parametrize("card,law", [("pcm_nandakumar2018", K.READ_LINEAR), ("pcm_joshi2020", K.READ_1F),
                                      ("linear_step", K.READ_LINEAR)])
@pytest.mark.parametrize("noisy", [False, True])
def test_read_devices_matches_twin(card, law, noisy, seed, rng):
    prm = params(card)
    if card == "linear_step":
        prm = prm._replace(read_rel=0.05, read_abs=0.01)
    st = State(prm, 2, 2, 9, rng)
    nu = np.where(rng.random(st.g.size) < 0.3, 0.0, rng.uniform(0.02, 0.1, st.g.size)) \
        if card != "linear_step" else np.zeros(st.g.size)
    t = 200.0
    out = K.read_devices(st.g, st.tprog, nu, t, law, prm, seed, noisy, np.empty_like(st.g))
    ref = R.read_devices(st.g, st.tprog, nu, t, law, prm, seed, noisy)
    if card == "linear_step":  # no drift, linear read law: plain arithmetic
        np.testing.assert_array_equal(out, ref)
    else:
        np.testing.assert_allclose(out, ref, rtol=RTOL_TRANSCENDENTAL, atol=1e-15)
    if not noisy:
        assert np.all(out >= 0.0)  # drift never makes a conductance negative; read noise may


@pytest.mark.parametrize("n_side,n_dev", [(1, 1), (1, 3), (2, 1), (2, 4)])
@pytest.mark.parametrize("card,law", [("pcm_nandakumar2018", K.READ_LINEAR), ("pcm_joshi2020", K.READ_1F),
                                      ("linear_step", K.READ_LINEAR)])
def test_tile_weights_matches_twin(n_side, n_dev, card, law, rng):
    prm = params(card)
    st = State(prm, n_side, n_dev, 13, rng)
    drift = card != "linear_step"
    nu = rng.uniform(0.0, 0.1, st.g.size) if drift else np.zeros(st.g.size)
    w, var = np.empty(13), np.empty(13)
    args = (st.g, st.tprog, nu, 500.0, n_side, n_dev, prm.g_mid, 1 / 3.7, law, prm)
    K.tile_weights(*args, w, var)
    rw, rv = R.tile_weights(*args)
    if drift:
        np.testing.assert_allclose(w, rw, rtol=RTOL_TRANSCENDENTAL, atol=1e-14)
        np.testing.assert_allclose(var, rv, rtol=RTOL_TRANSCENDENTAL, atol=0)
    else:
        np.testing.assert_array_equal(w, rw)
        np.testing.assert_array_equal(var, rv)
    # definition: (Σ G⁺ − Σ G⁻)/scale or (Σ G − n g_ref)/scale
    gd = R.read_devices(st.g, st.tprog, nu, 500.0, law, prm, 0, False).reshape(n_side, n_dev, 13).sum(axis=1)
    expect = (gd[0] - gd[1]) if n_side == 2 else gd[0] - n_dev * prm.g_mid
    np.testing.assert_allclose(w, expect / 3.7, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_side,n_dev", [(1, 3), (2, 2)])
@pytest.mark.parametrize("card,law", [("pcm_joshi2020", K.READ_1F), ("linear_step", K.READ_LINEAR)])
def test_synapse_weight_matches_twin(n_side, n_dev, card, law, rng):
    """synapse_weight(k) is synapse k of tile_weights in µS (inv_scale = 1)."""
    prm = params(card)
    st = State(prm, n_side, n_dev, 7, rng)
    drift = card != "linear_step"
    nu = rng.uniform(0.0, 0.1, st.g.size) if drift else np.zeros(st.g.size)
    rw, rv = R.tile_weights(st.g, st.tprog, nu, 500.0, n_side, n_dev, prm.g_mid, 1.0, law, prm)
    for k in range(7):
        w, v = K.synapse_weight(st.g, st.tprog, nu, 500.0, k, 7, n_side, n_dev, prm.g_mid, law, prm)
        if drift:
            np.testing.assert_allclose([w, v], [rw[k], rv[k]], rtol=RTOL_TRANSCENDENTAL, atol=1e-14)
        else:
            assert (w, v) == (rw[k], rv[k])


def test_program_inference_matches_twin(seed, rng):
    card = load_card("pcm_joshi2020")
    p = card.params
    prm = device_params(card)
    gt = np.concatenate([[0.0, 1e-9, 25.0], rng.uniform(0, 25.0, 40)])
    coef = np.array([p["nu_mu_a"], p["nu_mu"], p["nu_mu_lo"], p["nu_mu_hi"],
                     p["nu_sig_a"], p["nu_sig"], p["nu_sig_lo"], p["nu_sig_hi"]])
    args = (gt, prm, p["prog_c0"], p["prog_c1"], p["prog_c2"], p["g_max"] / p["prog_ref"], coef, seed)
    g_out, nu_out = np.empty_like(gt), np.empty_like(gt)
    K.program_inference(*args, g_out, nu_out)
    rg, rnu = R.program_inference(*args)
    np.testing.assert_array_equal(g_out, rg)  # only arithmetic on the programming path
    np.testing.assert_allclose(nu_out, rnu, rtol=RTOL_TRANSCENDENTAL, atol=0)  # log(ĝ) in ν
    assert np.all(g_out >= 0) and np.all(nu_out >= 0)


def test_program_inference_statistics():
    """σ_prog and the ν distribution of Joshi et al. 2020 (papers.md §1b) on many devices."""
    card = load_card("pcm_joshi2020")
    p = card.params
    prm = device_params(card)
    n = 40_000
    coef = np.array([p["nu_mu_a"], p["nu_mu"], p["nu_mu_lo"], p["nu_mu_hi"],
                     p["nu_sig_a"], p["nu_sig"], p["nu_sig_lo"], p["nu_sig_hi"]])
    for gt in (10.0, 20.0):
        g_out, nu_out = np.empty(n), np.empty(n)
        K.program_inference(np.full(n, gt), prm, p["prog_c0"], p["prog_c1"], p["prog_c2"], 1.0, coef, 11,
                            g_out, nu_out)
        gh = gt / 25.0
        sig = 0.26348 + 1.9650 * gh - 1.1731 * gh**2
        assert abs(g_out.mean() - gt) < 5 * sig / math.sqrt(n)
        assert abs(g_out.std() / sig - 1) < 5 / math.sqrt(2 * n)
        mu = min(max(-0.0155 * math.log(gh) + 0.0244, 0.049), 0.1)
        sn = min(max(-0.0125 * math.log(gh) - 0.0059, 0.008), 0.045)
        assert abs(nu_out.mean() - mu) < 5 * sn / math.sqrt(n)  # |μ + σξ| ≈ μ + σξ here (μ ≫ σ)
        assert abs(nu_out.std() / sn - 1) < 0.03


# ---------------------------------------------------------------------------- Nandakumar et al. 2018
N_DEV = 100_000
G_MIN, G_MAX = 0.1, 12.0


def _published_mc(n_pulses: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Independent Monte Carlo of the published model (papers.md §1), plain numpy Generator noise.

    Fresh device: G ~ N(0.1, 0.01) µS (clipped to the bounds), P = 1. Each SET pulse:
    P ← P e^{-1/2.6}; ΔG ~ N(−0.084 G + 0.880 + 1.40 P, 0.091 G + 0.260 + 2.15 P); G ← clip(G + ΔG).
    """
    g = np.clip(rng.normal(0.1, 0.01, N_DEV), G_MIN, G_MAX)
    p = np.ones(N_DEV)
    out = []
    for _ in range(n_pulses):
        p = p * math.exp(-1 / 2.6)
        g = np.clip(g + rng.normal(-0.084 * g + 0.880 + 1.40 * p, 0.091 * g + 0.260 + 2.15 * p), G_MIN, G_MAX)
        out.append((g.mean(), g.std()))
    return out


def _fresh_devices(prm, seed):
    n = N_DEV
    g, p, tprog = np.empty(n), np.empty(n), np.empty(n)
    nreset = np.zeros(n, np.int64)
    lo, hi = np.full(n, prm.g_min), np.full(n, prm.g_max)
    stuck = np.zeros(n, np.int8)
    K.reset_devices(g, p, tprog, nreset, lo, hi, stuck, np.arange(n, dtype=np.int64), prm, seed, 0.0)
    return g, p, tprog, np.zeros(n, np.int64), np.zeros(n), np.zeros(n), lo, hi, stuck, np.zeros(n)


def test_nandakumar_pulse_statistics_match_published_model():
    prm = params("pcm_nandakumar2018")
    n_pulses = 20
    expected = _published_mc(n_pulses, np.random.default_rng(7))
    state = _fresh_devices(prm, seed=100)
    g = state[0]
    assert abs(g.mean() - (0.1 + 0.01 * stats.norm.pdf(0))) < 1e-4  # N(0.1, 0.01) clipped at 0.1
    ones = np.ones(N_DEV, np.int32)
    got = []
    for i in range(n_pulses):  # one pulse per call, a fresh kernel seed each time
        K.pulse_tile(*state, ones, np.empty(0, np.int32), 1, False, K.PCM_SET, prm, 1000 + i, 0.0)
        got.append((g.mean(), g.std()))
    for n, ((m_k, s_k), (m_r, s_r)) in enumerate(zip(got, expected), 1):
        # two independent samples of 1e5: the difference of means has sd √2 σ/√N, of stds ≈ σ/√N
        tol_m = 6 * math.sqrt(2) * s_r / math.sqrt(N_DEV)
        tol_s = 6 * s_r / math.sqrt(N_DEV) * 1.5  # 1.5: clipped, skewed distribution (kurtosis margin)
        assert abs(m_k - m_r) < tol_m, (n, m_k, m_r)
        assert abs(s_k - s_r) < tol_s, (n, s_k, s_r)
    # published orders of magnitude: ~2 µS after one pulse on a fresh device, saturating below G_max
    assert 1.5 < got[0][0] < 2.5
    assert got[-1][0] > got[4][0] > got[0][0] and got[-1][0] < G_MAX
    assert np.all(state[1] == pytest.approx(math.exp(-n_pulses / 2.6)))  # P = e^{-n/2.6}


@pytest.mark.parametrize("g0", [0.1, 3.0, 8.0])
def test_first_pulse_mean_and_std_unclipped(g0):
    """Without the bounds the first SET step is N(0.880 + 1.40 e^{-1/2.6} − 0.084 G0,
    0.260 + 2.15 e^{-1/2.6} + 0.091 G0) exactly."""
    prm = params("pcm_nandakumar2018")
    n = N_DEV
    g = np.full(n, g0)
    p = np.ones(n)
    lo, hi = np.full(n, -1e9), np.full(n, 1e9)
    K.pulse_tile(g, p, np.zeros(n), np.zeros(n, np.int64), np.zeros(n), np.zeros(n), lo, hi,
                 np.zeros(n, np.int8), np.zeros(n), np.ones(n, np.int32), np.empty(0, np.int32), 1, False, K.PCM_SET, prm, 3, 0.0)
    e = math.exp(-1 / 2.6)
    mean = 0.880 + 1.40 * e - 0.084 * g0
    sd = 0.260 + 2.15 * e + 0.091 * g0
    dg = g - g0
    assert abs(dg.mean() - mean) < 5 * sd / math.sqrt(n)
    assert abs(dg.std() / sd - 1) < 5 / math.sqrt(2 * n)


def test_first_pulse_mean_with_bounds_is_censored_normal():
    """With the bounds, E[G1] is the mean of a normal censored to [0.1, 12] µS (analytic)."""
    prm = params("pcm_nandakumar2018")
    n, g0 = N_DEV, 0.1
    g = np.full(n, g0)
    K.pulse_tile(g, np.ones(n), np.zeros(n), np.zeros(n, np.int64), np.zeros(n), np.zeros(n),
                 np.full(n, G_MIN), np.full(n, G_MAX), np.zeros(n, np.int8), np.zeros(n), np.ones(n, np.int32),
                 np.empty(0, np.int32), 1, False, K.PCM_SET, prm, 4, 0.0)
    e = math.exp(-1 / 2.6)
    mu = g0 + 0.880 + 1.40 * e - 0.084 * g0
    sd = 0.260 + 2.15 * e + 0.091 * g0
    a, b = (G_MIN - mu) / sd, (G_MAX - mu) / sd
    N = stats.norm
    expect = G_MIN * N.cdf(a) + G_MAX * N.sf(b) + mu * (N.cdf(b) - N.cdf(a)) + sd * (N.pdf(a) - N.pdf(b))
    assert abs(g.mean() - expect) < 5 * sd / math.sqrt(n)
    assert abs(np.mean(g == G_MIN) - N.cdf(a)) < 5 * math.sqrt(N.cdf(a) / n)


@pytest.mark.parametrize("card", ["pcm_nandakumar2018", "linear_step"])
def test_pulse_acts_on_the_drifted_conductance(card, rng):
    """A device programmed at t_p and pulsed at t starts its step from G·((t - t_p)/t0)^-ν, then its
    drift clock restarts: kernel and twin agree, and the step is taken from the drifted value."""
    prm = params(card, t0=10.0, t_offset=0.0)
    st = State(prm, 1, 1, 40, rng)
    st.tprog[:] = 0.0
    st.nu = np.full(st.g.size, 0.05)
    t = 1000.0  # 100 t0 after programming: G is 0.79 of its programmed value
    counts = np.ones(st.m, np.int32)
    g_before = st.g.copy()
    ref = R.pulse_tile(*st.args(), counts, np.empty(0, np.int32), 1, True, K.CONSTANT, prm, 9, t)
    K.pulse_tile(*st.args(), counts, np.empty(0, np.int32), 1, True, K.CONSTANT, prm, 9, t)
    np.testing.assert_allclose(st.g, ref[0], rtol=RTOL_TRANSCENDENTAL)  # pow: libm vs numpy
    assert np.all(st.tprog == t)
    drifted = g_before * 100.0 ** -0.05
    noise = 1.0 + prm.dw_std * RR.normal(9, np.arange(st.g.size), 0)
    expect = np.clip(drifted + st.up * noise, st.lo, st.hi)
    np.testing.assert_allclose(st.g, expect, rtol=1e-12)


# ---------------------------------------------------------------------------- write noise
WRITE_NOISE_CASES = {"constant": ("linear_step", K.CONSTANT), "soft_bounds": ("linear_step", K.SOFT_BOUNDS),
                     "exp_step": ("rram_gong2018", K.EXP_STEP)}


def _write_noise_state(prm, n_dev, m, rng):
    st = State(prm, 1, n_dev, m, rng)
    st.p = st.g.copy()  # persistent conductances
    st.g = st.p + prm.write_noise * rng.standard_normal(st.g.size)  # apparent = persistent + an offset
    return st


@pytest.mark.parametrize("case", list(WRITE_NOISE_CASES))
@pytest.mark.parametrize("levels", [0, 9])
def test_write_noise_pulses_match_twin(case, levels, seed, rng):
    card, law = WRITE_NOISE_CASES[case]
    prm = params(card, write_noise=0.07, levels=levels)
    st = _write_noise_state(prm, 2, 23, rng)
    counts = rng.integers(-6, 7, 23).astype(np.int32)
    start = rng.integers(0, 4, 23).astype(np.int32)
    ref = R.pulse_tile(*st.args(), counts, start, 2, True, law, prm, seed, 7.5)
    K.pulse_tile(*st.args(), counts, start, 2, True, law, prm, seed, 7.5)
    exact = law != K.EXP_STEP or levels
    for a, b in zip((st.g, st.p, st.tprog, st.npulse), ref):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=RTOL_TRANSCENDENTAL, atol=1e-15)


def test_write_noise_law(rng):
    """Pulses step the persistent conductance p (clipped, on the levels); a read sees p plus
    write_noise·ξ with ξ keyed by (seed ^ salt, device, pulse number) of the device's last pulse."""
    prm = params("linear_step", dw_std=0.0, write_noise=0.05, levels=0.0)
    m = 300
    st = _write_noise_state(prm, 1, m, rng)
    p0, g0 = st.p.copy(), st.g.copy()
    counts = rng.integers(-3, 4, m).astype(np.int32)
    K.pulse_tile(*st.args(), counts, np.empty(0, np.int32), 1, True, K.CONSTANT, prm, 5, 1.0)
    moved = counts != 0
    expect_p = np.clip(p0 + np.sign(counts) * np.abs(counts) * np.where(counts > 0, st.up, st.down), st.lo, st.hi)
    np.testing.assert_allclose(st.p[moved], expect_p[moved], rtol=0, atol=1e-12)
    last = np.abs(counts) - 1
    xi = RR.normal(5 ^ K._WRITE_SALT, np.arange(m), last)
    np.testing.assert_array_equal(st.g[moved], st.p[moved] + 0.05 * xi[moved])
    np.testing.assert_array_equal(st.g[~moved], g0[~moved])  # untouched devices keep their offset
    np.testing.assert_array_equal(st.p[~moved], p0[~moved])
    # stochastic levels: the persistent state is on the grid, the apparent one is not
    prm = params("linear_step", write_noise=0.05, levels=7.0)
    st = _write_noise_state(prm, 1, m, rng)
    K.pulse_tile(*st.args(), np.full(m, 2, np.int32), np.empty(0, np.int32), 1, True, K.CONSTANT, prm, 6, 1.0)
    q = (st.p - prm.g_min) / ((prm.g_max - prm.g_min) / 6)
    np.testing.assert_allclose(q, np.rint(q), atol=1e-9)
    assert abs(np.std(st.g - st.p) / 0.05 - 1) < 0.15


def test_reset_with_write_noise_matches_twin(seed, rng):
    prm = params("rram_gong2018")
    assert prm.write_noise == pytest.approx(75 * 0.00135)
    st = _write_noise_state(prm, 1, 40, rng)
    st.stuck[:3] = 1
    index = np.arange(40, dtype=np.int64)
    ref = R.reset_devices(st.g, st.p, st.tprog, st.nreset, st.lo, st.hi, st.stuck, index, prm, seed, 2.0)
    g_stuck = st.g[:3].copy()
    K.reset_devices(st.g, st.p, st.tprog, st.nreset, st.lo, st.hi, st.stuck, index, prm, seed, 2.0)
    for a, b in zip((st.g, st.p, st.tprog, st.nreset), ref):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(st.g[:3], g_stuck)
    free = np.arange(3, 40)
    np.testing.assert_array_equal(st.g[free], st.p[free] + prm.write_noise * RR.normal(seed ^ K._WRITE_SALT, free, 0))
    assert np.all(np.abs(st.p[free] - prm.reset_mean) < 6 * prm.reset_std)


def test_scheme_pulse_paths_carry_the_write_noise(seed, rng):
    """The schemes' sparse pulse kernel goes through the same pulse law: with write noise it gives what
    pulse_tile gives (same keys), persistent and apparent conductances alike."""
    from neuroemu._kernels import update as U

    prm = params("rram_gong2018")
    st = _write_noise_state(prm, 1, 30, rng)
    other = _write_noise_state(prm, 1, 30, rng)
    for name in ("g", "p", "tprog", "npulse", "up", "down", "lo", "hi", "stuck", "nu"):
        setattr(other, name, getattr(st, name).copy())
    counts = rng.integers(-4, 5, 30).astype(np.int32)
    K.pulse_tile(*st.args(), counts, np.empty(0, np.int32), 1, True, K.EXP_STEP, prm, seed, 3.0)
    ks = np.flatnonzero(counts).astype(np.int64)
    U.pulse_sparse(ks, counts[ks].astype(np.int64), np.empty(0, np.int32), *other.args(), 30, 1, True, K.EXP_STEP,
                   prm, seed, 3.0)
    np.testing.assert_array_equal(other.g, st.g)
    np.testing.assert_array_equal(other.p, st.p)


# ------------------------------------------------------------------------------ aggregated pulses
def test_steps_add_up_only_for_constant_steps_without_levels():
    assert K.steps_add_up(K.CONSTANT, params("linear_step"))
    assert K.steps_add_up(K.CONSTANT, params("linear_step", write_noise=0.1))
    assert not K.steps_add_up(K.CONSTANT, params("quantized"))  # a level grid: rounding at every pulse
    assert not K.steps_add_up(K.EXP_STEP, params("rram_gong2018"))
    assert not K.steps_add_up(K.SOFT_BOUNDS, params("linear_step"))
    assert not K.steps_add_up(K.PCM_SET, params("pcm_nandakumar2018"))


@pytest.mark.parametrize("write_noise", [0.0, 0.02])
def test_pulse_n_and_walk_clear_match_twin(write_noise, rng):
    prm = params("linear_step", write_noise=write_noise)
    for _ in range(400):
        g, p = rng.uniform(0.0, 1.2, 2)
        up, down = rng.uniform(0.0005, 0.002, 2)
        lo, hi = rng.uniform(0.0, 0.3), rng.uniform(0.9, 1.2)
        n_up, n_dn = (int(v) for v in rng.integers(0, 40, 2))
        if n_up + n_dn == 0:
            n_up = 1
        nu = float(rng.choice([0.0, 0.05]))
        seed, key, m = (int(v) for v in rng.integers(0, 2**31, 3))
        got = K.pulse_n(g, p, up, down, lo, hi, n_up, n_dn, prm, seed, key, m)
        assert got == R.pulse_n(g, p, up, down, lo, hi, n_up, n_dn, prm, seed, key, m)
        assert K.walk_clear(g, p, up, down, lo, hi, n_up, n_dn, nu, prm) == \
            R.walk_clear(g, p, up, down, lo, hi, n_up, n_dn, nu, prm)


@pytest.mark.parametrize("write_noise", [0.0, 0.02])
def test_one_aggregated_pulse_is_the_single_pulse(write_noise, rng):
    """pulse_n of one pulse is pulse_one's arithmetic with the same keys: the same bits, at a bound too."""
    prm = params("linear_step", write_noise=write_noise)
    for _ in range(300):
        g, p = rng.uniform(0.0, 1.2, 2)
        up, down = rng.uniform(0.0005, 0.3, 2)  # large steps: some pulses clip at a bound
        lo, hi = 0.1, 1.1
        seed, key, m = (int(v) for v in rng.integers(0, 2**31, 3))
        for sign, (a, b) in ((1, (1, 0)), (-1, (0, 1))):
            assert K.pulse_n(g, p, up, down, lo, hi, a, b, prm, seed, key, m) == \
                K.pulse_one(K.CONSTANT, g, p, up, down, lo, hi, sign, prm, seed, key, m)


def test_walk_clear_margin_and_drift():
    """The walk must fit with WALK_MARGIN standard deviations of its noise to spare, on both sides; a
    device drifting already at age 0 (t_offset > t0) never aggregates."""
    prm = params("linear_step")
    sd = prm.dw_std * math.sqrt(3 * 0.01**2 + 2 * 0.01**2)
    need_up = 3 * 0.01 + K.WALK_MARGIN * sd
    need_dn = 2 * 0.01 + K.WALK_MARGIN * sd
    lo, hi = 0.0, 1.0
    assert K.walk_clear(hi - need_up - 1e-9, 0.0, 0.01, 0.01, lo, hi, 3, 2, 0.0, prm)
    assert not K.walk_clear(hi - need_up + 1e-9, 0.0, 0.01, 0.01, lo, hi, 3, 2, 0.0, prm)
    assert K.walk_clear(lo + need_dn + 1e-9, 0.0, 0.01, 0.01, lo, hi, 3, 2, 0.0, prm)
    assert not K.walk_clear(lo + need_dn - 1e-9, 0.0, 0.01, 0.01, lo, hi, 3, 2, 0.0, prm)
    drifting = prm._replace(t0=1.0, t_offset=2.0)
    assert K.walk_clear(0.5, 0.0, 0.01, 0.01, lo, hi, 3, 2, 0.0, drifting)  # ν = 0: no drift
    assert not K.walk_clear(0.5, 0.0, 0.01, 0.01, lo, hi, 3, 2, 0.05, drifting)
    # the bound on reaching a bound that the margin buys (Lévy's inequality, both sides)
    assert 4 * stats.norm.sf(K.WALK_MARGIN) < 3e-15
