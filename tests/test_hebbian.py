"""Hebbian rules: the batched (FastHebb) update equals the sum of per-sample updates for every rule,
fully connected and convolutional; the rules learn what they should (Oja: the first principal
component; soft-WTA: cluster centres); errors are clear."""

import itertools

import numpy as np
import pytest

from neuroemu.hardware.crossbar import Periphery
from neuroemu.hardware.factory import make_tile
from neuroemu.errors import ConfigError
from neuroemu.rules.hebbian import HebbianConv, HebbianDense, HebbianRule, responses, similarity
from neuroemu.hardware.schemes import make_scheme

SETTINGS = [("swta", "mean"), ("swta", "sum"), ("swta", "responses"), ("kwta", "mean"), ("kwta", "responses"),
            ("hpca", "mean"), ("hpca", "sum"), ("oja", "mean"), ("oja", "sum")]


def loop_update(rule: HebbianRule, w, x):
    """The per-sample equations, one sample and one unit at a time (plain Python), summed."""
    n, k = len(x), len(w)
    dw = np.zeros_like(w)
    act = np.zeros((n, k))
    for s in range(n):
        xs = x[s]
        if rule.competitive:
            sims = np.zeros(k)
            for i in range(k):
                cos = xs @ w[i] / (np.linalg.norm(xs) * np.linalg.norm(w[i]))
                sims[i] = {"dot": xs @ w[i], "cosine": cos, "raised_cosine": ((1 + cos) / 2) ** 2}[rule.sim]
            if rule.rule == "swta":
                e = np.exp((sims - sims.max()) / rule.temperature)
                act[s] = e / e.sum()
            else:
                act[s, np.argsort(-sims, kind="stable")[:rule.k]] = 1.0
        else:
            y = w @ xs
            act[s] = np.maximum(y, 0) if rule.rule == "hpca" else y
    for s in range(n):
        xs, a = x[s], act[s]
        for i in range(k):
            if rule.weighting == "mean":
                c = 1.0 / n
            elif rule.weighting == "sum":
                c = 1.0
            else:
                c = 1.0 / abs(act[:, i]).sum()
            if rule.competitive:
                dw[i] += rule.lr * c * a[i] * (xs - w[i])
            elif rule.rule == "hpca":
                back = sum(a[j] * w[j] for j in range(i + 1))
                dw[i] += rule.lr * c * a[i] * (xs - back)
            else:
                dw[i] += rule.lr * c * a[i] * (xs - a[i] * w[i])
    return dw


@pytest.mark.parametrize("rule,weighting", SETTINGS)
def test_batched_equals_sum_of_per_sample_updates_dense(rule, weighting):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 11))
    w = rng.standard_normal((6, 11)) * 0.5
    r = HebbianRule(rule, lr=0.3, k=2, weighting=weighting, temperature=0.5)
    dw = r.update(w, x)
    np.testing.assert_allclose(dw, loop_update(r, w, x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r.per_sample(w, x).sum(axis=0), dw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r.per_sample_sum(w, x, chunk=8), dw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r.per_sample_loop(w, x), dw, rtol=1e-10, atol=1e-12)
    assert np.abs(dw).max() > 1e-3


@pytest.mark.parametrize("rule,weighting", SETTINGS)
def test_batched_equals_sum_of_per_sample_updates_conv(rule, weighting):
    """A conv layer's update is the sum over images × positions of every patch's own update."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 7, 6))
    layer = HebbianConv(2, 5, 3, HebbianRule(rule, lr=0.2, k=2, weighting=weighting, temperature=0.5), rng=2,
                        dtype=np.float64)
    pats = [x[n, :, i:i + 3, j:j + 3].ravel() for n, i, j in itertools.product(range(3), range(5), range(4))]
    np.testing.assert_allclose(layer.patches(x), np.array(pats))
    dw = layer.wanted(x)
    np.testing.assert_allclose(dw, loop_update(layer.rule, layer.w, np.array(pats)), rtol=1e-10, atol=1e-12)
    maps = layer.forward(x)
    assert maps.shape == (3, 5, 5, 4)
    np.testing.assert_allclose(maps[1, 3, 2, 1], layer.w[3] @ x[1, :, 2:5, 1:4].ravel())


@pytest.mark.parametrize("sim", ["dot", "cosine", "raised_cosine"])
def test_similarities_and_responses(sim):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((9, 4)), rng.standard_normal((5, 4))
    s = similarity(w, x, sim)
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    want = {"dot": x @ w.T, "cosine": cos, "raised_cosine": ((1 + cos) / 2) ** 2}[sim]
    np.testing.assert_allclose(s, want, rtol=1e-12)
    r = responses(s, "swta", temperature=0.02)
    np.testing.assert_allclose(r.sum(axis=1), 1.0)
    assert np.all(r.argmax(axis=1) == s.argmax(axis=1))
    hard = responses(s, "kwta", k=2)
    assert np.all(hard.sum(axis=1) == 2) and np.all(hard[np.arange(9), s.argmax(axis=1)] == 1)
    ties = responses(np.array([[0.5, 0.9, 0.9, 0.1]]), "kwta", k=1)
    np.testing.assert_array_equal(ties, [[0, 1, 0, 0]])  # ties: the lower index
    np.testing.assert_array_equal(responses(np.array([[0.5, 0.9, 0.9, 0.1]]), "kwta", k=2), [[0, 1, 1, 0]])
    many = np.random.default_rng(4).integers(0, 4, (200, 9)).astype(float)  # many ties
    for k in (2, 3, 5):
        want = np.zeros_like(many)
        np.put_along_axis(want, np.argsort(-many, axis=1, kind="stable")[:, :k], 1.0, axis=1)
        np.testing.assert_array_equal(responses(many, "kwta", k=k), want)


def test_oja_finds_the_first_principal_component():
    rng = np.random.default_rng(4)
    cov = np.diag([4.0, 1.0, 0.5, 0.25])
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    x = rng.multivariate_normal(np.zeros(4), q @ cov @ q.T, size=20000)
    layer = HebbianDense(4, 1, HebbianRule("oja", lr=0.01, weighting="mean"), rng=5, dtype=np.float64)
    layer.fit(x, epochs=3, batch_size=10, rng=6)
    w = layer.w[0]
    assert np.linalg.norm(w) == pytest.approx(1.0, abs=0.05)
    assert abs(w @ q[:, 0]) > 0.99


def test_sanger_finds_the_leading_components_in_order():
    """HPCA on data whose projections onto the components are non-negative (so the ReLU is inactive)."""
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    z = np.abs(rng.standard_normal((30000, 5))) * np.array([3.0, 1.5, 0.5, 0.3, 0.2])
    x = z @ q.T
    w0 = q[:, :2].T + 0.1 * rng.standard_normal((2, 5))  # start near the positive orthant of the components
    layer = HebbianDense(5, 2, HebbianRule("hpca", lr=0.005, weighting="mean"), rng=8, dtype=np.float64)
    layer.w = w0
    layer.fit(x, epochs=2, batch_size=10, rng=9)
    # each unit aligns with one direction, the first with the dominant one, and the two are orthonormal
    g = layer.w @ layer.w.T
    np.testing.assert_allclose(g, np.eye(2), atol=0.1)
    assert abs(layer.w[0] @ q[:, 0]) > 0.9


def test_soft_wta_learns_the_cluster_centres():
    rng = np.random.default_rng(10)
    centres = np.eye(6)[:3] * 3.0
    x = centres[rng.integers(0, 3, 6000)] + 0.2 * rng.standard_normal((6000, 6))
    layer = HebbianDense(6, 3, HebbianRule("swta", lr=0.5, weighting="responses", temperature=0.02), rng=11,
                         dtype=np.float64)
    layer.fit(x, epochs=2, batch_size=32, rng=12)
    dist = np.linalg.norm(layer.w[:, None, :] - centres[None], axis=2)
    assert sorted(dist.argmin(axis=1)) == [0, 1, 2]  # one unit per cluster
    assert dist.min(axis=1).max() < 0.2


def test_fit_through_an_ideal_scheme_matches_exact_updates():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((256, 8))
    exact = HebbianDense(8, 4, HebbianRule("swta", lr=0.1, weighting="responses", temperature=0.5), rng=14,
                         dtype=np.float64)
    chip = HebbianDense(8, 4, exact.rule, rng=14, dtype=np.float64)
    tile = make_tile(4, 8, "ideal", w_max=4.0, periphery=Periphery.ideal(), rng=0)
    tile.write(chip.w)
    rate = chip.fit(x, epochs=2, batch_size=32, rng=15, scheme=make_scheme("ideal", tile, rng=0))
    exact.fit(x, epochs=2, batch_size=32, rng=15)
    assert rate > 0
    np.testing.assert_allclose(chip.w, exact.w, atol=1e-6)  # the tile stores conductances


def test_hebbian_errors():
    with pytest.raises(ConfigError, match="rule: expected one of swta, kwta, hpca, oja"):
        HebbianRule("bcm")
    with pytest.raises(ConfigError, match="'responses' needs a competitive rule"):
        HebbianRule("oja", weighting="responses")
    with pytest.raises(ConfigError, match="temperature"):
        HebbianRule(temperature=0.0)
    with pytest.raises(ConfigError, match="k: expected at most the 3 units"):
        HebbianRule("kwta", k=4).update(np.ones((3, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"x: expected a float array of shape \(N, 2\)"):
        HebbianRule().update(np.ones((3, 2)), np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"wx: expected shape \(5, 3\)"):
        HebbianRule().update(np.ones((3, 2)), np.ones((5, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="HebbianConv: expected images"):
        HebbianConv(1, 2, 3, HebbianRule()).wanted(np.ones((2, 2, 8, 8), np.float32))
