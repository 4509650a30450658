"""Latency and rate spike encoders: hand-computed spike times, shapes, statistics, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroemu.data.encoders import latency_encode, latency_times, rate_encode


def test_latency_times_hand_computed():
    # t = floor(20 ln(x / (x − 0.2))): x = 1 → floor(20 ln 1.25) = floor(4.46) = 4;
    # x = 0.25 → floor(20 ln 5) = floor(32.19) = 32; x = 0.5 → floor(20 ln(5/3)) = floor(10.2) = 10;
    # x = 0.21 → floor(20 ln 21) = floor(60.9) = 60; x = 0.2 and 0 never spike.
    x = np.array([1.0, 0.25, 0.5, 0.21, 0.2, 0.0])
    np.testing.assert_array_equal(latency_times(x), [4, 32, 10, 60, -1, -1])
    assert latency_times(x).dtype == np.int64


def test_latency_times_cut_at_t_steps_and_parameters():
    x = np.array([1.0, 0.25, 0.21])
    np.testing.assert_array_equal(latency_times(x, t_steps=33), [4, 32, -1])
    np.testing.assert_array_equal(latency_times(x, t_steps=32), [4, -1, -1])
    # tau_eff = 10, theta = 0.5: x = 1 → floor(10 ln 2) = 6; x = 0.5 never
    np.testing.assert_array_equal(latency_times([1.0, 0.5, 0.75], tau_eff=10.0, theta=0.5),
                                  [6, -1, math.floor(10 * math.log(3))])


def test_latency_times_any_shape_and_monotone():
    x = np.linspace(0, 1, 24).reshape(2, 3, 4)
    t = latency_times(x)
    assert t.shape == x.shape
    fired = t.ravel()[t.ravel() >= 0]
    assert np.all(np.diff(fired) <= 0)  # brighter pixels spike no later


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_latency_encode_shape_dtype_and_single_spike(dtype):
    rng = np.random.default_rng(3)
    x = rng.random((5, 7))
    s = latency_encode(x, t_steps=50, dtype=dtype)
    assert s.shape == (50, 5, 7) and s.dtype == dtype
    assert set(np.unique(s)) <= {0, 1}
    counts = s.sum(axis=0)
    assert counts.max() <= 1
    times = latency_times(x, t_steps=50)
    np.testing.assert_array_equal(counts, (times >= 0).astype(counts.dtype))
    b, j = np.nonzero(times >= 0)
    assert np.all(s[times[b, j], b, j] == 1)


def test_latency_encode_1d_is_batch_one():
    s = latency_encode(np.array([1.0, 0.25, 0.0]))
    assert s.shape == (100, 1, 3)
    assert s[4, 0, 0] == 1 and s[32, 0, 1] == 1 and s[:, 0, 2].sum() == 0
    assert s.sum() == 2


def test_rate_encode_reproducible_and_mean_rate():
    x = np.array([[0.0, 0.25, 0.5, 1.0]])
    a = rate_encode(x, t_steps=20000, max_prob=0.2, rng=7)
    b = rate_encode(x, t_steps=20000, max_prob=0.2, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (20000, 1, 4) and a.dtype == np.float32
    rate = a.mean(axis=0)[0]
    p = x[0] * 0.2
    # binomial standard error sqrt(p(1 − p)/T) ≤ 0.003; allow 4 of them
    np.testing.assert_allclose(rate, p, atol=0.012)
    assert rate[0] == 0
    c = rate_encode(x, t_steps=200, rng=8)
    assert not np.array_equal(c, a[:200])


def test_rate_encode_full_probability_and_1d():
    s = rate_encode(np.ones(3), t_steps=10, max_prob=1.0, rng=0, dtype=np.float64)
    assert s.shape == (10, 1, 3) and s.dtype == np.float64 and s.min() == 1


@pytest.mark.parametrize("bad", [np.array([1.5]), np.array([-0.1]), np.array([np.nan]), np.array(["a"])])
def test_bad_intensities(bad):
    with pytest.raises(ValueError, match="x"):
        latency_times(bad)
    with pytest.raises(ValueError, match="x"):
        rate_encode(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="t_steps"):
        latency_encode(np.ones(3), t_steps=0)
    with pytest.raises(ValueError, match="t_steps"):
        rate_encode(np.ones(3), t_steps=2.5)
    with pytest.raises(ValueError, match="tau_eff"):
        latency_times(np.ones(3), tau_eff=0.0)
    with pytest.raises(ValueError, match="theta"):
        latency_times(np.ones(3), theta=1.0)
    with pytest.raises(ValueError, match="max_prob"):
        rate_encode(np.ones(3), max_prob=1.5)
    with pytest.raises(ValueError, match="shape"):
        latency_encode(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="dtype"):
        latency_encode(np.ones(3), dtype=object)
