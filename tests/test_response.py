"""Device statistics measured through tiles, against the published equations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuroemu.hardware.cards import load_card
from neuroemu.hardware import response
from neuroemu.errors import CardError, NeuroemuError
from neuroemu.hardware.response import drift_curve, programmed_vs_target, pulse_response, read_noise_curve

PCM = "pcm_nandakumar2018"


def nandakumar_monte_carlo(pulses: int, devices: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy Monte Carlo of the PCM SET model (papers.md §1, Nandakumar et al. 2018).

    RESET: G ~ N(0.1, 0.01) µS clipped to [0.1, 12], P = 1. Each SET pulse: P ← P·exp(-1/2.6);
    ΔG ~ N(-0.084 G + 0.880 + 1.40 P, 0.091 G + 0.260 + 2.15 P); G ← clip(G + ΔG, 0.1, 12).
    """
    rng = np.random.default_rng(seed)
    g = np.clip(rng.normal(0.1, 0.01, devices), 0.1, 12.0)
    p = np.ones(devices)
    mean, std = [], []
    for _ in range(pulses):
        p = p * np.exp(-1.0 / 2.6)
        mu = -0.084 * g + 0.880 + 1.40 * p
        sd = 0.091 * g + 0.260 + 2.15 * p
        g = np.clip(g + mu + sd * rng.standard_normal(devices), 0.1, 12.0)
        mean.append(g.mean())
        std.append(g.std())
    return np.array(mean), np.array(std)


def test_pcm_pulse_response_matches_published_equations():
    r = pulse_response(PCM, pulses=20, devices=20000, seed=0)
    assert r["card"] == PCM and r["unit"] == "uS"
    assert r["pulses"] == list(range(1, 21))
    assert len(r["mean"]) == len(r["std"]) == 20
    ref_mean, ref_std = nandakumar_monte_carlo(20, 400_000, seed=12345)
    np.testing.assert_allclose(r["mean"], ref_mean, rtol=0.01)
    np.testing.assert_allclose(r["std"], ref_std, rtol=0.03)
    # The RESET state the pulses start from.
    assert r["initial_mean"] == pytest.approx(0.1 + 0.01 / np.sqrt(2 * np.pi), abs=0.001)
    json.dumps(r)


def test_pulse_response_is_reproducible():
    a = pulse_response(PCM, pulses=5, devices=500, seed=3)
    b = pulse_response(PCM, pulses=5, devices=500, seed=3)
    c = pulse_response(PCM, pulses=5, devices=500, seed=4)
    assert a == b
    assert a["mean"] != c["mean"]


def test_pulse_response_refuses_inference_cards():
    with pytest.raises(CardError, match="programmed by target, not by pulses"):
        pulse_response("pcm_joshi2020")


def test_pulse_response_bidirectional_directions():
    # ideal card: RESET at mid-range (1 µS), every pulse moves exactly dw_min = 0.001 µS.
    up = pulse_response("ideal", pulses=4, devices=10)
    down = pulse_response("ideal", pulses=4, devices=10, direction="down")
    np.testing.assert_allclose(up["mean"], 1.0 + 0.001 * np.arange(1, 5), rtol=0, atol=1e-12)
    np.testing.assert_allclose(down["mean"], 1.0 - 0.001 * np.arange(1, 5), rtol=0, atol=1e-12)
    assert max(up["std"]) < 1e-12
    # Constant-step RRAM spec: mean step dw_min, 30 % device-to-device and cycle-to-cycle spread.
    r = pulse_response("linear_step", pulses=50, devices=4000)
    assert r["mean"][-1] - r["initial_mean"] == pytest.approx(50 * 0.001, rel=0.03)
    assert r["std"][-1] > r["std"][0]
    with pytest.raises(ValueError, match="only SETs"):
        pulse_response(PCM, direction="down")
    with pytest.raises(ValueError, match="pulses"):
        pulse_response(PCM, pulses=0)


def test_pulse_response_at_scale_rises_and_saturates():
    r = pulse_response(PCM, pulses=20, devices=100_000, seed=0)
    mean = np.array(r["mean"])
    assert len(mean) == 20 and np.all(np.diff(mean) > 0)  # SET pulses only raise the mean conductance
    steps = np.diff(np.concatenate([[r["initial_mean"]], mean]))
    assert steps[-1] < 0.5 * steps[0]  # and each step is smaller than the last: the state-dependent step law


def test_pcm_drift_curve_follows_power_law_after_t0():
    g0 = [2.0, 8.0]
    times = [1000.0, 1.0, 10.0, 38.0, 100.0, 1e5]  # any order
    r = drift_curve(PCM, g0, times, devices=50)
    assert r["times"] == times and r["g0"] == g0
    mean = np.array(r["mean"])
    t = np.array(times)
    expected = np.where(t > 38.6, (np.maximum(t, 38.6) / 38.6) ** -0.04, 1.0)
    np.testing.assert_allclose(mean, np.outer(g0, expected), rtol=1e-12)
    assert np.all(mean[:, t < 38.6] == np.array(g0)[:, None])  # flat before t0
    assert np.max(r["std"]) < 1e-9  # written exactly, one ν for all devices


def test_drift_curve_inference_card_and_flat_card():
    r = drift_curve("pcm_joshi2020", [10.0], [0.0, 3600.0], devices=2000)
    m = r["mean"][0]
    assert m[0] == pytest.approx(10.0, rel=0.02)  # programming noise is zero-mean
    assert 0.6 < m[1] / m[0] < 0.9  # ν ≈ 0.05 over (3620/20)
    assert r["std"][0][0] > 0.3  # programming noise
    flat = drift_curve("linear_step", [0.3], [1.0, 1e6], devices=20)
    assert flat["mean"][0][0] == flat["mean"][0][1]
    with pytest.raises(ValueError, match="times"):
        drift_curve(PCM, [1.0], [-1.0])


def test_pcm_read_noise_is_linear_in_g():
    g = [1.0, 4.0, 8.0, 11.0]
    r = read_noise_curve(PCM, g, reads=20000, seed=1)
    np.testing.assert_allclose(r["g"], g, rtol=1e-12)
    np.testing.assert_allclose(r["std"], 0.03 * np.array(g) + 0.13, rtol=0.03)
    np.testing.assert_allclose(r["model_std"], 0.03 * np.array(g) + 0.13, rtol=1e-12)
    assert read_noise_curve("ideal", [0.5, 1.5], reads=10)["std"] == [0.0, 0.0]


def test_programmed_vs_target():
    tg = np.linspace(-1.2, 1.2, 25)
    ideal = programmed_vs_target("ideal", tg)
    np.testing.assert_allclose(ideal["programmed"], np.clip(tg, -1, 1), atol=1e-12)
    assert ideal["w_range"] == [-1.0, 1.0]
    q = programmed_vs_target("quantized", tg)
    levels = np.array(q["programmed"]) * 7  # 4 bits: 15 levels, step 1/7
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)
    assert np.max(np.abs(np.array(q["programmed"]) - np.clip(tg, -1, 1))) <= 0.5 / 7 + 1e-9
    j = programmed_vs_target("pcm_joshi2020", np.linspace(-0.8, 0.8, 200))
    err = np.array(j["programmed"]) - np.array(j["target"])
    assert 0.005 < np.sqrt(np.mean(err**2)) < 0.1
    v = programmed_vs_target(PCM, [0.3, -0.3], method="verify", max_pulses=3)
    assert v["method"] == "verify" and np.all(np.abs(v["programmed"]) > 0)
    with pytest.raises(CardError):
        programmed_vs_target("pcm_joshi2020", [0.1], method="verify")


def test_accepts_card_objects():
    card = load_card(PCM)
    assert pulse_response(card, pulses=2, devices=5) == pulse_response(PCM, pulses=2, devices=5)


def test_pulse_response_refuses_what_does_not_fit_in_memory(monkeypatch):
    monkeypatch.setattr(response, "available_memory", lambda: 8 * 10**9)
    with pytest.raises(NeuroemuError, match=r"2000000000 devices need ~256.0 GB; at most 62499975 devices fit "
                                            r"in the available memory \(8.0 GB\)"):
        pulse_response("linear_step", devices=2_000_000_000)
    with pytest.raises(NeuroemuError, match=r"2000000000 devices need ~512.0 GB"):  # a differential pair per device
        pulse_response(PCM, devices=2_000_000_000)
    with pytest.raises(NeuroemuError, match=r"10000000000 pulses need ~1600.0 GB"):
        pulse_response("linear_step", pulses=10**10, devices=1)
    assert response.response_memory(load_card("linear_step"), 20, 10**6) < 8 * 10**9


def test_available_memory_is_known_here():
    assert response.available_memory() > 10**8
