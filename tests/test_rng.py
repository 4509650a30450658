"""Counter-based RNG kernels: agreement with the numpy twin, and statistical quality."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from neuroemu._kernels import rng as K
from tests.reference import rng as R

U64 = np.uint64
MAX_U64 = 2**64 - 1


# ---------------------------------------------------------------------------- kernel == twin
@pytest.mark.parametrize("z", [0, 1, 2, 0x9E3779B97F4A7C15, 2**63, MAX_U64, 123456789])
def test_mix64_matches_twin_and_splitmix64(z):
    assert int(K.mix64(U64(z))) == int(R.mix64(z))
    # Independent scalar check with Python big ints (SplitMix64 finaliser, Steele et al. 2014).
    m = 2**64
    x = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 % m
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB % m
    assert int(K.mix64(U64(z))) == x ^ (x >> 31)


def test_known_splitmix64_output():
    # SplitMix64 with state 0: first output is mix64(0 + golden) = 0xE220A8397B1DCDAF.
    assert int(K.mix64(U64(0x9E3779B97F4A7C15))) == 0xE220A8397B1DCDAF


def test_key_hash_uniform_match_twin(seed):
    for a in (0, 1, 7, 2**40 + 3):
        k = K.key(seed, a)
        assert int(k) == int(R.key(seed, a))
        for b in (0, 1, 5, 2**33):
            assert int(K.hash_k(U64(k), b)) == int(R.hash_k(int(k), b))
            assert int(K.hash_k(int(k) - 2**64 if int(k) >= 2**63 else int(k), b)) == int(R.hash_k(int(k), b))
            assert K.uniform_k(U64(k), b) == R.uniform_k(int(k), b)
            assert K.uniform(seed, a, b) == R.uniform(seed, a, b)


def test_twin_is_vectorised(seed):
    a = np.arange(5)[:, None]
    b = np.arange(7)[None, :]
    u = R.uniform(seed, a, b)
    z = R.normal(seed, a, b)
    assert u.shape == z.shape == (5, 7)
    for i in range(5):
        for j in range(7):
            assert u[i, j] == K.uniform(seed, i, j)
            assert z[i, j] == K.normal(seed, i, j)


def test_normals_match_twin_bit_for_bit(seed):
    n = 20000  # about 240 draws take the rejection path, some of them the tail
    out = K.normals(seed, 3, np.empty(n))
    ref = R.normals(seed, 3, n)
    np.testing.assert_array_equal(out, ref)
    iz, hz = R._split(R.hash_k(R.key(seed, 3), np.arange(n)))
    slow = ~(np.abs(hz) < K.ZIG_K[iz])
    assert slow.sum() > 100 and (slow & (iz == 0)).any()  # both rejection branches were exercised


def test_normal_scalar_matches_twin_on_rejection_path():
    # Find elements whose first hash is rejected, in the tail layer and in a wedge.
    k = int(K.key(99, 0))
    b = np.arange(50000)
    iz, hz = R._split(R.hash_k(k, b))
    slow = ~(np.abs(hz) < K.ZIG_K[iz])
    tail = b[slow & (iz == 0)][:5]
    wedge = b[slow & (iz > 0)][:20]
    assert tail.size and wedge.size
    for j in np.concatenate([tail, wedge]):
        assert K.normal(99, 0, int(j)) == R.normal(99, 0, int(j))
    # tail draws really lie beyond R
    assert all(abs(R.normal(99, 0, int(j))) >= K.ZIG_R for j in tail)


def test_negative_and_large_seeds_wrap_like_uint64():
    for seed in (-1, -(2**63), 2**63 - 1):
        assert K.uniform(seed, 0, 0) == R.uniform(seed, 0, 0)
        assert K.normal(seed, 4, 9) == R.normal(seed, 4, 9)


# ---------------------------------------------------------------------------- ziggurat tables
def test_ziggurat_tables_are_equal_area_layers():
    """Recheck Marsaglia & Tsang's tables from their definition (not from the code that made them):
    x_i = w_i·2^31, f_i = exp(-x_i²/2), every layer has area V and the base strip R·f(R) + tail = V."""
    v = 9.91256303526217e-3
    x = K.ZIG_W[1:] * 2.0**31  # x_1 < x_2 < ... < x_127 = R (layer edges, top to bottom)
    f = K.ZIG_F[1:]
    np.testing.assert_allclose(f, np.exp(-0.5 * x * x), rtol=1e-12)
    assert np.all(np.diff(x) > 0)
    assert x[-1] == pytest.approx(K.ZIG_R, rel=1e-12)
    # rectangle between heights f(x_{i+1}) and f(x_i) has width x_{i+1}; the top one x_1 (1 - f(x_1))
    areas = np.concatenate([[x[0] * (1.0 - f[0])], x[1:] * (f[:-1] - f[1:])])
    np.testing.assert_allclose(areas, v, rtol=1e-6)
    tail = math.sqrt(math.pi / 2) * math.erfc(K.ZIG_R / math.sqrt(2))
    assert K.ZIG_R * math.exp(-0.5 * K.ZIG_R**2) + tail == pytest.approx(v, rel=1e-6)
    # accept thresholds: k_i / 2^31 = x_{i-1}/x_i (i >= 2), k_0 / 2^31 = R f(R) / V
    np.testing.assert_allclose(K.ZIG_K[2:] / 2.0**31, x[:-1] / x[1:], atol=2**-30)
    assert K.ZIG_K[0] / 2.0**31 == pytest.approx(K.ZIG_R * math.exp(-0.5 * K.ZIG_R**2) / v, abs=2**-30)
    assert K.ZIG_K[1] == 0


# ---------------------------------------------------------------------------- statistical quality
@pytest.fixture(scope="module")
def normal_sample():
    return K.normals(2024, 0, np.empty(1_000_000))


def test_normal_moments(normal_sample):
    z = normal_sample
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.std() - 1.0) < 5 * math.sqrt(0.5 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)


def test_normal_passes_ks(normal_sample):
    p = stats.kstest(normal_sample[:200_000], "norm").pvalue
    assert p > 1e-3


def test_normal_tail_fraction(normal_sample):
    """Draws beyond the ziggurat's R = 3.4426 come only from the rejection path's tail sampler."""
    z = normal_sample
    expected = 2 * stats.norm.sf(K.ZIG_R)
    frac = np.mean(np.abs(z) > K.ZIG_R)
    sd = math.sqrt(expected * (1 - expected) / z.size)
    assert abs(frac - expected) < 5 * sd
    # and beyond 4.5 (deep tail)
    e45 = 2 * stats.norm.sf(4.5)
    assert abs(np.mean(np.abs(z) > 4.5) - e45) < 5 * math.sqrt(e45 / z.size) + 1 / z.size
    # both tails are populated symmetrically
    assert abs((z > K.ZIG_R).sum() - (z < -K.ZIG_R).sum()) < 5 * math.sqrt(expected * z.size)


def test_normal_histogram_chi2(normal_sample):
    edges = np.concatenate([[-np.inf], np.linspace(-4, 4, 81), [np.inf]])
    obs, _ = np.histogram(normal_sample, edges)
    exp = np.diff(stats.norm.cdf(edges)) * normal_sample.size
    chi2 = ((obs - exp) ** 2 / exp).sum()
    assert stats.chi2.sf(chi2, df=len(obs) - 1) > 1e-3


def test_uniform_range_and_moments(seed):
    u = R.uniform(seed, 5, np.arange(200_000))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / u.size)
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_uniform_maximum_is_below_one():
    assert R.uniform_k(0, 0) < 1.0
    # the largest possible hash gives (2^53 - 1)/2^53 < 1
    assert float(U64(MAX_U64) >> U64(11)) * R.INV53 < 1.0


def test_same_key_same_value_different_keys_different_streams():
    assert K.normal(3, 4, 5) == K.normal(3, 4, 5)
    assert K.uniform(3, 4, 5) == K.uniform(3, 4, 5)
    a = K.normals(1, 0, np.empty(1000))
    b = K.normals(1, 1, np.empty(1000))
    c = K.normals(2, 0, np.empty(1000))
    assert not np.any(a == b) and not np.any(a == c)
    # streams are uncorrelated
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.15 and abs(np.corrcoef(a, c)[0, 1]) < 0.15
    # consecutive elements of one stream are uncorrelated
    z = K.normals(7, 0, np.empty(100_000))
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / math.sqrt(z.size)


def test_keys_do_not_collide_between_neighbouring_seeds_and_streams():
    seeds = np.arange(50)[:, None]
    streams = np.arange(50)[None, :]
    k = R.key(seeds, streams).reshape(-1)
    assert np.unique(k).size == k.size
