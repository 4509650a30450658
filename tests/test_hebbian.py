"""Hebbian rules: the batched (FastHebb) update equals the sum of per-sample updates for every rule,
fully connected and convolutional; the rules learn what they should (Oja: the first principal
component; soft-WTA: cluster centres), in float and through update schemes on device chips (the
Hebbian layer models, the Hebbian rule and the trainer); errors are clear."""

import itertools

import numpy as np
import pytest

from neuroemu.chip import Hardware
from neuroemu.errors import ConfigError
from neuroemu.models.hebbian import LAYER, ConvLayer, DenseLayer
from neuroemu.models.mlp import MLP
from neuroemu.rules.base import RuleError, run_step
from neuroemu.rules.hebbian import Hebbian, HebbianRule, Unlabelled, responses, similarity
from neuroemu.train import Protocol, Trainer

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
    model = ConvLayer(2, 5, 3, dtype=np.float64)
    chip = model.build(Hardware.exact(), 2)
    rule = HebbianRule(rule, lr=0.2, k=2, weighting=weighting, temperature=0.5)
    pats = [x[n, :, i:i + 3, j:j + 3].ravel() for n, i, j in itertools.product(range(3), range(5), range(4))]
    np.testing.assert_allclose(model.samples(x), np.array(pats))
    w = chip[LAYER].weights().copy()
    run_step(Hebbian(core=rule), chip, x)
    np.testing.assert_allclose(chip[LAYER].weights() - w, loop_update(rule, w, np.array(pats)), rtol=1e-9, atol=1e-12)
    maps = chip.forward(x)
    assert maps.shape == (3, 5, 5, 4)
    w = chip[LAYER].weights()
    np.testing.assert_allclose(maps[1, 3, 2, 1], w[3] @ x[1, :, 2:5, 1:4].ravel())


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


def train(model, rule, x, *, epochs, batch_size, rng, hardware=None, weights=None, chip_rng=0):
    """The rule trained on the model (exact float weights, or on ``hardware``) by the trainer."""
    if hardware is None:
        chip = model.build(Hardware.exact(), chip_rng, weights=weights)
    else:
        chip = model.build(hardware, chip_rng, weights=weights)
    return Trainer(chip, Hebbian(core=rule), Unlabelled(x, batch_size, rng), Protocol(epochs=epochs),
                   observe_start=False, progress=False).run().chip


def test_oja_finds_the_first_principal_component():
    rng = np.random.default_rng(4)
    cov = np.diag([4.0, 1.0, 0.5, 0.25])
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    x = rng.multivariate_normal(np.zeros(4), q @ cov @ q.T, size=20000)
    chip = train(DenseLayer(4, 1, dtype=np.float64), HebbianRule("oja", lr=0.01, weighting="mean"), x, epochs=3,
                 batch_size=10, rng=6, chip_rng=5)
    w = chip[LAYER].weights()[0]
    assert np.linalg.norm(w) == pytest.approx(1.0, abs=0.05)
    assert abs(w @ q[:, 0]) > 0.99


def test_sanger_finds_the_leading_components_in_order():
    """HPCA on data whose projections onto the components are non-negative (so the ReLU is inactive)."""
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    z = np.abs(rng.standard_normal((30000, 5))) * np.array([3.0, 1.5, 0.5, 0.3, 0.2])
    x = z @ q.T
    w0 = q[:, :2].T + 0.1 * rng.standard_normal((2, 5))  # start near the positive orthant of the components
    chip = train(DenseLayer(5, 2, dtype=np.float64), HebbianRule("hpca", lr=0.005, weighting="mean"), x, epochs=2,
                 batch_size=10, rng=9, weights={LAYER: w0})
    w = chip[LAYER].weights()
    # each unit aligns with one direction, the first with the dominant one, and the two are orthonormal
    np.testing.assert_allclose(w @ w.T, np.eye(2), atol=0.1)
    assert abs(w[0] @ q[:, 0]) > 0.9


def clusters(n=6000, seed=10):
    rng = np.random.default_rng(seed)
    centres = np.eye(6)[:3] * 3.0
    return centres, centres[rng.integers(0, 3, n)] + 0.2 * rng.standard_normal((n, 6))


def test_soft_wta_learns_the_cluster_centres():
    centres, x = clusters()
    chip = train(DenseLayer(6, 3, dtype=np.float64), HebbianRule("swta", lr=0.5, weighting="responses",
                                                                 temperature=0.02), x, epochs=2, batch_size=32,
                 rng=12, chip_rng=11)
    w = chip[LAYER].weights()
    dist = np.linalg.norm(w[:, None, :] - centres[None], axis=2)
    assert sorted(dist.argmin(axis=1)) == [0, 1, 2]  # one unit per cluster
    assert dist.min(axis=1).max() < 0.2


def test_an_ideal_chip_learns_what_exact_float_weights_learn():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((256, 8))
    rule = HebbianRule("swta", lr=0.1, weighting="responses", temperature=0.5)
    model = DenseLayer(8, 4, dtype=np.float64)
    w0 = {LAYER: model.init_weights(model.layers()[0], np.random.default_rng(14))}
    exact = train(model, rule, x, epochs=2, batch_size=32, rng=15, weights=w0)
    ideal = train(model, rule, x, epochs=2, batch_size=32, rng=15, weights=w0, hardware=Hardware.ideal(w_max=4.0))
    np.testing.assert_allclose(ideal[LAYER].weights(), exact[LAYER].weights(), atol=1e-6)  # float64 conductances
    assert np.abs(exact[LAYER].weights() - w0[LAYER]).max() > 0.1


@pytest.mark.parametrize("card,scheme", [("pcm_nandakumar2018", "sign"), ("pcm_nandakumar2018", "stochastic"),
                                         ("pcm_nandakumar2018", "mixed_precision"), ("rram_gong2018", "sign"),
                                         ("rram_gong2018", "mixed_precision"), ("ideal", "ideal")])
def test_the_rule_trains_a_layer_on_devices_through_any_scheme(card, scheme):
    """The wanted ΔW as pulses (or an exact write): the weights move the way the rule wants."""
    _, x = clusters(1024)
    hw = Hardware(card=card, scheme=scheme, w_max=4.0)
    chip = DenseLayer(6, 3).build(hw, 0)
    w0 = chip[LAYER].weights()
    trained = Trainer(chip, Hebbian("swta", lr=0.5, weighting="responses", temperature=0.05),
                      Unlabelled(x.astype(np.float32), 32, 1), Protocol(epochs=1), progress=False).run()
    w = trained.chip[LAYER].weights()
    assert np.isfinite(w).all() and np.abs(w - w0).max() > 0.05
    assert trained.chip.stats()["pulses"] > 0 or scheme == "ideal"
    wanted = HebbianRule("swta", lr=0.5, weighting="responses", temperature=0.05).update(w0, x)
    if (card, scheme) != ("rram_gong2018", "sign"):  # one pulse a batch: RRAM's up/down asymmetry dominates
        assert np.sum((w - w0) * wanted) > 0  # the weights went the way the rule wanted


def test_the_rule_refuses_a_network_it_has_no_meaning_on():
    with pytest.raises(RuleError, match="needs a network that is single_layer.*MLP"):
        Hebbian().bind(MLP([4, 3]).build(Hardware.ideal(), 0))
    with pytest.raises(RuleError, match="k = 4 winners, but the layer has 3 units"):
        Hebbian("kwta", k=4).bind(DenseLayer(2, 3).build(Hardware.exact(), 0))
    assert "conv" in ConvLayer(1, 2, 3).traits and "conv" not in DenseLayer(4, 2).traits


@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")  # the inf input, on purpose
def test_a_nan_update_stops_the_run_at_that_batch():
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    x[40] = np.inf
    result = Trainer(DenseLayer(4, 2).build(Hardware.exact(), 0), Hebbian("oja", lr=0.1), Unlabelled(x, 16, 1),
                     Protocol(epochs=2, watch="max_w", diverge_factor=np.inf), progress=False).run()
    assert result.diverged["at"] == 1 and result.diverged["value"] in ("nan", "inf") and result.final == {}


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
    with pytest.raises(ValueError, match="ConvLayer: expected images"):
        ConvLayer(1, 2, 3).samples(np.ones((2, 2, 8, 8), np.float32))
