"""LIF sampling (Petrovici et al. 2016; Kungl et al. 2019): the sampling kernel against its numpy
twin, the activation calibration, the Boltzmann mapping, the sampled Boltzmann machine, the
Boltzmann-machine rule and the noise network."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neuroemu import boltzmann as B
from neuroemu._kernels import sampling as K
from neuroemu.chip import Hardware
from neuroemu.errors import ConfigError
from neuroemu.hardware.sampling import (Activation, NoiseNetwork, Sampler, SamplingNeurons, calibrate_activation,
                                        free_membrane, synaptic_weights)
from neuroemu.models.sampling import sampling_network
from neuroemu.rules.base import RuleError, run_step
from neuroemu.rules.boltzmann import Boltzmann, Clamped, Moments
from tests.reference import sampling as ref


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


# ------------------------------------------------------------------------------------ kernel vs twin
N, CHAINS, N_REF, DT = 6, 3, 5, 0.1


def kernel_case(conductance: bool, seed: int, renewing: bool = True):
    """A small network that exercises every branch: signed weights, Poisson background on some
    neurons only, membrane noise on others, free/off/on clamps, some neurons refractory or with a
    spike in flight at the start, rails that clip."""
    g = np.random.default_rng(seed % 2**32)
    kind = "coba" if conductance else "cuba"
    neurons = SamplingNeurons.ideal(N, kind, dt=DT)
    par = neurons.par(3.0, neurons.w_bg * 3.0)
    par[K.P_LE, [1, 4]] = 0.0  # no excitatory background on 1 and 4
    par[K.P_LI, [2, 4]] = 0.0  # no inhibitory background on 2 and 4
    par[K.P_XE], par[K.P_XI] = np.exp(-par[K.P_LE]), np.exp(-par[K.P_LI])
    par[K.P_NOISE, [0, 3, 4]] = 0.3  # membrane noise on some neurons
    w_scale = 0.004 if conductance else 0.3
    w = g.normal(0.0, w_scale, (N, N))
    w[g.random((N, N)) < 0.2] = 0.0
    np.fill_diagonal(w, 0.0)
    wt = np.ascontiguousarray(w.T)
    leak = np.ascontiguousarray(-50.5 + g.normal(0.0, 1.0, (CHAINS, N)))
    clamp = -np.ones((CHAINS, N), np.int8)
    clamp[0, 5], clamp[1, 2], clamp[1, 3], clamp[2, 0] = 1, 0, 1, 0
    v = np.ascontiguousarray(-52.0 + 3.0 * g.random((CHAINS, N)))
    ge = np.ascontiguousarray(0.02 * g.random((CHAINS, N)))
    gi = np.ascontiguousarray(0.02 * g.random((CHAINS, N)))
    r = np.zeros((CHAINS, N), np.int32)
    r[0, 1], r[2, 3] = 3, N_REF
    fired = np.zeros((CHAINS, N), np.uint8)
    fired[1, 0] = fired[2, 5] = 1
    v_lo, v_hi = -54.0, -45.0
    since = g.integers(1, 40, (CHAINS, N)).astype(np.int64)
    gap = g.integers(1, 40, (CHAINS, N)).astype(np.int64)
    gap[0, 0] = 10 ** 9  # never spiked before
    renew = np.array([renewing, renewing, 0, renewing, renewing, 1], np.uint8)  # per presynaptic neuron
    return (DT, conductance, par, leak, wt, clamp, v_lo, v_hi, N_REF, seed, renew), (v, ge, gi, r, fired, since, gap)


def run_kernel(steps, t0, every, args, state):
    v, ge, gi, r, fired, since, gap = (a.copy() for a in state)
    rec = np.zeros((steps // every, CHAINS, N), np.uint8)
    counts = np.zeros((CHAINS, N), np.int64)
    K.sampling_run(steps, t0, every, *args, v, ge, gi, r, fired, since, gap, rec, counts)
    return v, ge, gi, r, fired, since, gap, rec, counts


@pytest.mark.parametrize("renewing", [True, False], ids=["renewing", "mixed"])
@pytest.mark.parametrize("seed", [0, 2**62 + 7])
@pytest.mark.parametrize("conductance", [True, False], ids=["coba", "cuba"])
def test_kernel_matches_twin(conductance, seed, renewing):
    args, state = kernel_case(conductance, seed, renewing)
    steps, t0, every = 201, 17, 3
    got = run_kernel(steps, t0, every, args, state)
    want = ref.sampling_run(steps, t0, every, *args, *state)
    v, ge, gi, r, fired, since, gap, rec, counts = got
    assert counts.sum() > 20 and 0 < rec.mean() < 1  # the case is alive, not silent or saturated
    assert (counts[:, 4] > 0).any() or (counts[:, 1] > 0).any()
    np.testing.assert_array_equal(rec, want[7])
    np.testing.assert_array_equal(counts, want[8])
    np.testing.assert_array_equal(r, want[3])
    np.testing.assert_array_equal(fired, want[4])
    np.testing.assert_array_equal(since, want[5])
    np.testing.assert_array_equal(gap, want[6])
    for a, b in zip((v, ge, gi), want[:3]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # clamps: 0 never fires, 1 fires whenever not refractory
    assert counts[1, 2] == 0 and counts[2, 0] == 0
    assert counts[0, 5] >= steps // N_REF - 1 and counts[1, 3] >= steps // N_REF - 1


@pytest.mark.parametrize("conductance", [True, False], ids=["coba", "cuba"])
def test_kernel_split_run_is_the_whole_run(conductance):
    """Keyed random numbers: two calls (the second from t0 + 90) give exactly one call's result."""
    args, state = kernel_case(conductance, 99)
    whole = run_kernel(201, 40, 3, args, state)
    first = run_kernel(90, 40, 3, args, state)
    second = run_kernel(111, 130, 3, args, first[:7])
    for a, b in zip(whole[:7], second[:7]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole[7], np.concatenate([first[7], second[7]]))
    np.testing.assert_array_equal(whole[8], first[8] + second[8])
    # and a different start step draws different numbers
    other = run_kernel(201, 41, 3, args, state)
    assert not np.array_equal(other[0], whole[0])



@pytest.mark.parametrize("n_threads", [1, 2])
def test_kernel_result_does_not_depend_on_the_thread_count(n_threads):
    """The chains run in parallel (prange); each chain's result is the serial one bit for bit."""
    from neuroemu import threads

    for conductance in (True, False):
        args, state = kernel_case(conductance, 5)
        with threads.limit(1):
            want = run_kernel(201, 17, 3, args, state)
        with threads.limit(n_threads):
            got = run_kernel(201, 17, 3, args, state)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


# The serial kernel's spikes for two cases (sha256 of r, fired, since, gap, rec, counts; 16 hex digits),
# recorded before the kernel ran its chains in parallel: the parallel kernel reproduces them.
SERIAL_DIGESTS = {(True, 0, True): "94423377963731ea", (False, 2**62 + 7, False): "e8d532652195369e"}


@pytest.mark.parametrize("case", list(SERIAL_DIGESTS), ids=["coba", "cuba-mixed"])
def test_kernel_reproduces_the_serial_kernel(case):
    import hashlib

    from neuroemu import threads

    args, state = kernel_case(*case)
    with threads.limit(threads.available()):
        out = run_kernel(201, 17, 3, args, state)
    h = hashlib.sha256()
    for a in out[3:]:
        h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest()[:16] == SERIAL_DIGESTS[case]


def test_sampler_runs_are_the_same_at_one_and_two_threads():
    from neuroemu import threads

    neurons = SamplingNeurons.analog(8, "brainscales2", rng=0)
    sampler = Sampler(neurons, 8)
    w, b = B.random_bm(8, rng=2)
    runs = []
    for n in (1, 2):
        with threads.limit(n):
            runs.append(sampler.sample(0.2 * w, -52.0 + b, 100.0, chains=5, burn_in_ms=10.0, rng=3))
    np.testing.assert_array_equal(runs[0].states, runs[1].states)
    np.testing.assert_array_equal(runs[0].counts, runs[1].counts)


# ------------------------------------------------------------------------------------ activation
# A single sampling neuron, calibrated with a short sweep, then sampled at three leak potentials.
# Tolerance: the on-fraction of a run of total length T has a binomial error with an effective
# sample count of T/τ_ref, shrunk by a factor 4 for the bursts that correlate successive refractory
# periods (the spread between chains measured here is ~2× the plain binomial one); the fitted
# curve carries the error of its own sweep (POINTS points of CAL_MS each, the same effective
# count), reduced by √(2/POINTS) at the fitted points. The test allows 4 standard deviations of
# the two combined: ≈ 0.07 at p = ½.
POINTS, CAL_MS, RUN_MS, RUN_CHAINS = 12, 8000.0, 20000.0, 4


def activation_tolerance(p, tau_ref):
    sd_run = np.sqrt(p * (1 - p) / (RUN_CHAINS * RUN_MS / tau_ref / 4))
    sd_fit = np.sqrt(p * (1 - p) / (CAL_MS / tau_ref / 4)) * np.sqrt(2 / POINTS)
    return 4 * np.hypot(sd_run, sd_fit)


def single_neuron(kind):
    if kind == "analog":
        return SamplingNeurons.analog(1, "brainscales2", rng=0, calibrate=True, calibration_rng=1)
    return SamplingNeurons.ideal(1, kind)


@pytest.mark.parametrize("kind", ["coba", "cuba", "analog"])
def test_activation_predicts_on_fraction(kind):
    neurons = single_neuron(kind)
    sampler = Sampler(neurons, 1)
    act, sweep = calibrate_activation(sampler, points=POINTS, duration_ms=CAL_MS, rng=1)
    assert sweep["leaks"].shape == sweep["p_on"].shape == (POINTS, 1)
    assert act.alpha[0] > 0
    if kind != "analog":
        assert abs(act.v_p05[0] - neurons.v_th[0]) < 2.0  # mV: the ideal neuron's half-activation sits at threshold
    for b in (-1.0, 0.0, 1.0):
        e_l = act.leak([b])
        run = sampler.sample(np.zeros((1, 1)), e_l, RUN_MS, chains=RUN_CHAINS, every_ms=1.0, rng=3)
        p = float(act.p_on(e_l)[0])
        assert p == pytest.approx(sigmoid(b))
        assert run.on_fraction().mean() == pytest.approx(p, abs=activation_tolerance(p, neurons.tau_ref)), b


# ------------------------------------------------------------------------------------ mapping
@pytest.fixture(scope="module")
def coba_bm():
    return sampling_network(4, neurons="coba", calibration_ms=2000.0, duration_ms=500.0, seed=0, rng=1)


def bm_chip(model, w, b):
    chip = model.build(Hardware.exact(), rng=0, weights={"W": np.array(w, np.float64)})
    chip["W"].bias[:] = b
    return chip


def test_independent_units_sample_sigmoid_of_bias(coba_bm):
    b = np.array([-1.5, -0.5, 0.5, 1.2])
    chip = bm_chip(coba_bm, np.zeros((4, 4)), b)
    run = coba_bm.sample(chip, duration_ms=10000.0, chains=4)
    assert run.states.shape == (10000, 4, 4)
    # 40 s of sampling per unit: tolerance as for the single neuron (≈ 0.07 at p = ½, smaller at the ends)
    tol = activation_tolerance(sigmoid(b), 10.0)
    np.testing.assert_array_less(np.abs(run.on_fraction().mean(axis=0) - sigmoid(b)), tol)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_bm_is_sampled_and_a_broken_mapping_is_worse(coba_bm, seed):
    w, b = B.random_bm(4, seed)
    p = B.exact_distribution(w, b)
    dkl = {}
    for factor in (1.0, 3.0):
        run = coba_bm.sample(bm_chip(coba_bm, factor * w, b), duration_ms=5000.0, chains=4)  # 2e4 ms in all
        dkl[factor] = B.sampled_dkl(p, run.states.reshape(-1, 4))
    assert dkl[1.0] < 0.2
    assert dkl[3.0] > 3 * dkl[1.0]


def test_sampling_bm_mask_and_reproducibility():
    mask = np.ones((3, 3), bool)
    mask[0, 2] = mask[2, 0] = False
    model = sampling_network(3, calibration_ms=1000.0, mask=mask, seed=0, rng=5)
    w = np.full((3, 3), 0.7)
    chip = bm_chip(model, w, 0.0)
    w_read, _ = model.parameters(chip)
    assert w_read[0, 2] == w_read[2, 0] == 0 and np.all(np.diag(w_read) == 0) and w_read[0, 1] == 0.7
    a = model.sample(chip, duration_ms=200.0)
    model.noise = np.random.default_rng(5)
    b = model.sample(chip, duration_ms=200.0)
    np.testing.assert_array_equal(a.states, b.states)


# ------------------------------------------------------------------------------------ synaptic weights
W_SIGNED = np.array([[0.0, 1.0, -2.0], [0.5, 0.0, 0.0], [-1.0, 3.0, 0.0]])


def psp_area(c_m, g_tot, tau_syn, tau_ref, amplitude):
    """∫₀^τ_ref v(t) dt of C dv/dt = −g_tot·v + amplitude·exp(−t/τ_syn), v(0) = 0 (numerically)."""
    from scipy.integrate import solve_ivp

    def f(t, y):
        dv = (-g_tot * y[0] + amplitude * np.exp(-t / tau_syn)) / c_m
        return [dv, y[0]]

    sol = solve_ivp(f, (0.0, tau_ref), [0.0, 0.0], rtol=1e-10, atol=1e-13)
    return sol.y[1, -1]


def test_synaptic_weights_conductance_based():
    neurons = SamplingNeurons.ideal(3, "coba")
    act = Activation(np.array([-50.5, -51.0, -50.0]), np.array([0.7, 0.8, 0.9]))
    rate = 3.0
    ws = synaptic_weights(W_SIGNED, act, neurons, rate)
    np.testing.assert_array_equal(np.sign(ws), np.sign(W_SIGNED))
    assert np.all(ws[W_SIGNED == 0] == 0)
    mu, g_tot = free_membrane(neurons, act.v_p05, rate)
    p = neurons.nominal
    # an excitatory synapse divided by E_e − ū, an inhibitory one by ū − E_i: same row, same scale
    scale_e = ws[2, 1] / W_SIGNED[2, 1] * (p["e_exc"] - mu[2])
    scale_i = ws[2, 0] / W_SIGNED[2, 0] * (mu[2] - p["e_inh"])
    assert scale_e == pytest.approx(scale_i, rel=1e-12)
    assert ws[0, 1] / W_SIGNED[0, 1] * (p["e_exc"] - mu[0]) == pytest.approx(
        ws[0, 2] / W_SIGNED[0, 2] * (mu[0] - p["e_inh"]), rel=1e-12)
    # proportional to α
    ws2 = synaptic_weights(W_SIGNED, Activation(act.v_p05, 2 * act.alpha), neurons, rate)
    np.testing.assert_allclose(ws2, 2 * ws, rtol=1e-12)
    # the PSP (conductance × driving force at ū, in the high-conductance state) has over τ_ref the
    # area α·(g_l/g_tot)·W·τ_ref of the Boltzmann machine's rectangular interaction
    for (k, j) in ((2, 1), (2, 0), (0, 2)):
        drive = (p["e_exc"] if ws[k, j] > 0 else p["e_inh"]) - mu[k]
        area = psp_area(p["c_m"], g_tot[k], p["tau_syn"], neurons.tau_ref, abs(ws[k, j]) * drive)
        want = act.alpha[k] * p["g_l"] / g_tot[k] * W_SIGNED[k, j] * neurons.tau_ref
        assert area == pytest.approx(want, rel=1e-6)


def test_synaptic_weights_current_based():
    neurons = SamplingNeurons.ideal(3, "cuba")
    act = Activation(np.array([-50.5, -51.0, -50.0]), np.array([0.7, 0.8, 0.9]))
    ws = synaptic_weights(W_SIGNED, act, neurons, 3.0)
    ratio = ws[W_SIGNED != 0] / W_SIGNED[W_SIGNED != 0]
    rows = np.nonzero(W_SIGNED)[0]
    for k in range(3):  # one factor per post-synaptic neuron
        np.testing.assert_allclose(ratio[rows == k], ratio[rows == k][0], rtol=1e-12)
    assert np.all(ratio > 0) and np.all(ws[W_SIGNED == 0] == 0)
    np.testing.assert_allclose(synaptic_weights(W_SIGNED, Activation(act.v_p05, 3 * act.alpha), neurons, 3.0),
                               3 * ws, rtol=1e-12)
    p = neurons.nominal
    area = psp_area(p["c_m"], p["g_l"], p["tau_syn"], neurons.tau_ref, ws[0, 1])
    assert area == pytest.approx(act.alpha[0] * W_SIGNED[0, 1] * neurons.tau_ref, rel=1e-6)


# ------------------------------------------------------------------------------------ boltzmann utilities
def test_exact_distribution_is_brute_force():
    w, b = B.random_bm(3, 4)
    assert np.allclose(w, w.T) and np.all(np.diag(w) == 0)
    p = B.exact_distribution(w, b)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    brute = np.zeros(8)
    for z in itertools.product((0, 1), repeat=3):
        z = np.array(z, float)
        brute[int(sum(int(z[i]) << i for i in range(3)))] = np.exp(0.5 * z @ w @ z + b @ z)
    np.testing.assert_allclose(p, brute / brute.sum(), rtol=1e-12)


def test_moments_of_a_product_distribution():
    b = np.array([-1.0, 0.3, 2.0, 0.0])
    mean, corr = B.moments(B.exact_distribution(np.zeros((4, 4)), b), 4)
    s = sigmoid(b)
    np.testing.assert_allclose(mean, s, rtol=1e-12)
    want = np.outer(s, s)
    np.fill_diagonal(want, s)
    np.testing.assert_allclose(corr, want, rtol=1e-12)


def test_states_and_state_index_round_trip():
    z = B.states(5)
    assert z.shape == (32, 5) and z.dtype == np.uint8
    np.testing.assert_array_equal(B.state_index(z), np.arange(32))
    np.testing.assert_array_equal(B.states(5)[B.state_index(z[[3, 17, 31]])], z[[3, 17, 31]])
    with pytest.raises(ValueError):
        B.states(0)


def test_dkl_and_sampled_dkl():
    w, b = B.random_bm(4, 2)
    p = B.exact_distribution(w, b)
    assert B.dkl(p, p) == 0.0
    assert B.dkl(p, np.full(16, 1 / 16)) > 0
    # samples drawn exactly from p: the estimate's bias is ≈ (16 − 1)/(2·1e5) ≈ 1e-4
    g = np.random.default_rng(0)
    z = B.states(4)[g.choice(16, 100_000, p=p)]
    assert 0 <= B.sampled_dkl(p, z) < 1e-3
    np.testing.assert_allclose(B.state_histogram(z), p, atol=0.01)
    # states never visited: finite, and large
    one = np.zeros((100, 4), np.uint8)
    d = B.sampled_dkl(p, one)
    assert np.isfinite(d) and d > 1.0
    np.testing.assert_allclose(B.sample_moments(z)[0], B.moments(p, 4)[0], atol=0.01)


# ------------------------------------------------------------------------------------ the rule
def test_boltzmann_rule_learns_a_target():
    w, b = B.random_bm(4, 5)
    p = B.exact_distribution(w, b)
    mean, corr = B.moments(p, 4)
    model = sampling_network(4, neurons="coba", calibration_ms=2000.0, seed=0, rng=1)
    chip = bm_chip(model, np.zeros((4, 4)), 0.0)

    def distance():
        return B.sampled_dkl(p, model.sample(chip, duration_ms=5000.0, chains=4).states.reshape(-1, 4))

    before = distance()
    rule = Boltzmann(lr=1.0, chains=4, duration_ms=500.0)
    rule.bind(chip)
    for _ in range(30):
        metrics = run_step(rule, chip, Moments(mean, corr))
    assert set(metrics) == {"loss", "lr"} and metrics["lr"] < 1.0
    after = distance()
    assert after < 0.1 and after < before / 4, (before, after)
    w_learned, _ = model.parameters(chip)
    np.testing.assert_allclose(w_learned, w_learned.T, atol=1e-6)


def test_boltzmann_rule_on_a_non_sampling_chip():
    from neuroemu.models.mlp import MLP

    chip = MLP([3, 2]).build(Hardware.ideal(), rng=0)
    with pytest.raises(RuleError, match="sampling"):
        Boltzmann().bind(chip)


def test_boltzmann_rule_rejects_a_wrong_batch(coba_bm):
    chip = bm_chip(coba_bm, np.zeros((4, 4)), 0.0)
    with pytest.raises(TypeError, match="Moments or Clamped"):
        run_step(Boltzmann(duration_ms=50.0), chip, np.zeros((2, 4)))


def test_boltzmann_rule_clamped_hidden_units_and_mask():
    mask = np.zeros((4, 4), bool)
    mask[:2, 2:] = mask[2:, :2] = True  # visible ↔ hidden only (a restricted machine)
    model = sampling_network(4, calibration_ms=1000.0, mask=mask, seed=0, rng=2)
    w0 = np.zeros((4, 4))
    w0[0, 1] = w0[1, 0] = 0.25  # a weight outside the mask: the rule must leave it alone
    chip = bm_chip(model, w0, 0.0)
    patterns = np.array([[1, 0], [1, 1], [0, 1]], np.uint8)
    # clamped units follow their pattern exactly
    clamp = -np.ones((3, 4), np.int8)
    clamp[:, :2] = patterns
    run = model.sample(chip, clamp, duration_ms=100.0)
    np.testing.assert_array_equal(run.states[:, :, :2], np.broadcast_to(patterns, (len(run.states), 3, 2)))
    rule = Boltzmann(lr=0.5, chains=2, duration_ms=200.0, data_ms=200.0)
    for _ in range(2):
        run_step(rule, chip, Clamped(patterns, np.array([0, 1])))
    w = chip["W"].weights()
    np.testing.assert_array_equal(w[~mask], w0[~mask])
    assert np.abs(w[mask]).max() > 0
    assert np.abs(chip["W"].bias).max() > 0


# ------------------------------------------------------------------------------------ errors
def test_config_errors():
    with pytest.raises(ConfigError, match="need 4 neurons"):
        Sampler(SamplingNeurons.ideal(3), 4)
    with pytest.raises(ConfigError, match="need 13 neurons"):
        Sampler(SamplingNeurons.ideal(3), 3, NoiseNetwork(size=10, in_degree=2, recurrent=2))
    with pytest.raises(ConfigError, match="'tau_mem'"):
        SamplingNeurons.ideal(2, tau_mem=1.0)
    with pytest.raises(ConfigError, match="kind"):
        SamplingNeurons.ideal(2, "hh")
    with pytest.raises(ConfigError, match="tau_ref"):
        SamplingNeurons.ideal(2, tau_ref=0.04)  # shorter than the step of 0.1 ms
    with pytest.raises(ConfigError, match="mapping"):
        sampling_network(2, mapping="exact")
    with pytest.raises(ConfigError, match="background"):
        sampling_network(2, background="white")
    with pytest.raises(ConfigError, match="background.rate"):
        sampling_network(2, background={"rate": 3.0})
    with pytest.raises(ConfigError, match="in_degree"):
        Sampler(SamplingNeurons.ideal(12), 2, NoiseNetwork(size=10, in_degree=11))
    with pytest.raises(ValueError, match="shape"):
        Sampler(SamplingNeurons.ideal(2), 2).sample(np.zeros((3, 3)), [-50.0, -50.0], 10.0)


# ------------------------------------------------------------------------------------ noise network
def noise_sampler(n, seed):
    bg = NoiseNetwork(size=40, in_degree=10, recurrent=8, seed=seed)
    return Sampler(SamplingNeurons.ideal(n + 40, "coba"), n, bg)


def test_noise_network_background():
    n = 3
    sampler = noise_sampler(n, 1)
    activity = sampler.noise_activity(duration_ms=500.0, rng=0)
    assert activity["rate_hz"] > 0 and np.isfinite(activity["rate_hz"])
    w_syn = np.zeros((n, n))
    leak = np.full(n, -50.5)
    a = sampler.sample(w_syn, leak, 500.0, chains=2, rng=4)
    b = noise_sampler(n, 1).sample(w_syn, leak, 500.0, chains=2, rng=4)
    np.testing.assert_array_equal(a.states, b.states)
    assert a.states.shape == (5000, 2, n) and a.counts.sum() > 0
    assert sampler.sample(w_syn, leak, 100.0, rng=4, record_all=True).states.shape[-1] == n + 40
    wiring = sampler.weights(w_syn)
    assert wiring.shape == (n + 40, n + 40)
    assert not np.array_equal(wiring, noise_sampler(n, 2).weights(w_syn))
    assert (wiring[n:, :n] > 0).sum(axis=0).tolist() == [10] * n  # in_degree excitatory inputs per sampler
    assert (wiring[n:, :n] < 0).sum(axis=0).tolist() == [10] * n


@pytest.mark.parametrize("renewing", [True, False])
def test_renewing_synapses_hold_a_burst_at_its_weight(renewing):
    """A presynaptic neuron held on fires every τ_ref: with renewing synapses the postsynaptic
    conductance right after each arrival is the weight itself; additive ones pile up to
    w/(1 − exp(−τ_ref/τ_syn))."""
    neurons = SamplingNeurons.ideal(2, "coba", dt=DT)
    par = neurons.par(0.0, 0.0)  # no background
    n_ref = neurons.n_ref
    w = 0.01
    wt = np.array([[0.0, w], [0.0, 0.0]])  # 0 -> 1
    clamp = np.array([[1, 0]], np.int8)
    state = [np.full((1, 2), -60.0), np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2), np.int32),
             np.zeros((1, 2), np.uint8), np.full((1, 2), 10 ** 9, np.int64), np.full((1, 2), 10 ** 9, np.int64)]
    rec, counts = np.zeros((0, 1, 2), np.uint8), np.zeros((1, 2), np.int64)
    steps = 20 * n_ref + 2  # the arrival of the 21st spike of neuron 0 happens on the last step
    K.sampling_run(steps, 0, steps + 1, DT, True, par, np.full((1, 2), -65.0), wt, clamp, -1e9, 1e9, n_ref, 0,
                   np.array([renewing, renewing], np.uint8), *state, rec, counts)
    ge = state[1][0, 1] / par[K.P_DE, 1]  # undo the decay that follows the arrival in the same step
    pile = w / (1 - np.exp(-neurons.tau_ref / neurons.tau_syn[1]))
    assert ge == pytest.approx(w if renewing else pile, rel=1e-6)


@pytest.mark.parametrize("lam", [0.05, 0.5, 3.0])
def test_poisson_draw_matches_twin_and_its_law(lam):
    """The kernel's keyed Poisson draw equals its numpy twin element by element, and its counts
    follow Poisson(λ): mean and variance λ within 5 standard errors over 20 000 draws."""
    from neuroemu._kernels.rng import key
    from tests.reference import rng as R

    k = key(11, 3)
    b = np.arange(20_000)
    got = np.array([K.poisson_k(k, int(i), lam, np.exp(-lam)) for i in b])
    np.testing.assert_array_equal(got, ref.poisson(R.key(11, 3), b, lam))
    se = np.sqrt(lam / len(b))
    assert abs(got.mean() - lam) < 5 * se
    assert abs(got.var() - lam) < 5 * np.sqrt((lam + 2 * lam ** 2) / len(b))
