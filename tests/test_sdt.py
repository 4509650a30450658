"""Self-defined targets: k-WTA after the homeostatic shift, homeostasis equalises the winning rates
(activity converges to k/N on a stationary stream), dropout correction, direct association."""

import numpy as np
import pytest

from neuroemu.errors import ConfigError
from neuroemu.rules.sdt import DirectAssociation, SelfDefinedTarget


def test_target_is_k_wta_of_the_shifted_outputs():
    sdt = SelfDefinedTarget(5, k=2, gamma=0.5)
    sdt.h[:] = [0.0, 0.0, 10.0, 0.0, 0.0]
    y = np.array([[0.1, 0.9, 0.95, 0.3, 0.2], [0.5, 0.5, 0.9, 0.1, 0.4]])
    d = sdt(y)
    np.testing.assert_array_equal(d, [[0, 1, 0, 1, 0], [1, 1, 0, 0, 0]])  # unit 2 handicapped; ties: lower index
    np.testing.assert_allclose(sdt.h, [0, 0, 10, 0, 0] + 0.5 * (d.mean(axis=0) - 2 / 5))
    sdt.reset()
    assert not sdt.h.any()


@pytest.mark.parametrize("k,dropout", [(1, 0.0), (3, 0.0), (2, 0.3)])
def test_homeostasis_equalises_winning_rates_on_a_stationary_stream(k, dropout):
    """Units with very different mean outputs: without homeostasis a few always win; with it every
    unit's winning rate converges to k/N (k / present units under output dropout)."""
    n, rng = 8, np.random.default_rng(0)
    bias = np.linspace(0, 2, n)
    sdt = SelfDefinedTarget(n, k=k, gamma=0.05, output_dropout=dropout)
    wins, seen = np.zeros(n), np.zeros(n)
    for step in range(4000):
        y = bias + 0.3 * rng.standard_normal((32, n))
        m = sdt.mask(32, rng)
        d = sdt(y, m)
        if step >= 2000:
            present = np.ones_like(d) if m is None else m
            wins += d.sum(axis=0)
            seen += present.sum(axis=0)
        if m is not None:
            assert np.all(d[m == 0] == 0)  # dropped units never win
    # with dropout a present unit competes among about (1 − p) N units
    np.testing.assert_allclose(wins / seen, k / (n * (1 - dropout)), atol=0.02)
    first = SelfDefinedTarget(n, k=k, gamma=0.0).winners(bias + 0.3 * rng.standard_normal((500, n)))
    assert first.mean(axis=0)[0] < 0.01  # without homeostasis the low unit never wins


def test_smoothing_and_errors():
    d = SelfDefinedTarget(4, k=1, smoothing=0.2)(np.array([[0.0, 1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(d, [[0.05, 0.85, 0.05, 0.05]])
    with pytest.raises(ConfigError, match=r"k: expected an integer in \[1, 4\]"):
        SelfDefinedTarget(4, k=5)
    with pytest.raises(ConfigError, match="output_dropout"):
        SelfDefinedTarget(4, output_dropout=1.0)
    with pytest.raises(ValueError, match=r"y: expected outputs of shape \(batch, 4\)"):
        SelfDefinedTarget(4)(np.zeros((2, 3)))


def test_direct_association():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    unit_of_class = np.array([4, 0, 2])  # class c drives unit unit_of_class[c]
    out = 0.1 * rng.random((300, 5))
    out[np.arange(300), unit_of_class[labels]] += 1.0
    da = DirectAssociation(3).fit(out, labels)
    assert da.unit_class[4] == 0 and da.unit_class[0] == 1 and da.unit_class[2] == 2
    assert da.accuracy(out, labels) == 1.0
    with pytest.raises(ValueError, match="labels: expected integers in"):
        DirectAssociation(3).fit(out, labels + 5)
    with pytest.raises(ValueError, match="not fitted"):
        DirectAssociation(3).predict(out)
    with pytest.raises(ValueError, match="mode"):
        DirectAssociation(3, mode="mean")


def test_direct_association_modes():
    """wins: labels by wins, the most active unit decides; av / max (the authors' read-outs): labels by
    the highest mean response, silent units unlabelled; av averages each class's units."""
    out = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]], float)
    labels = np.array([0, 0, 1, 1])
    sample = np.array([[0.9, 0.0, 0.5, 2.0]])
    wins, av, mx = (DirectAssociation(2, mode=m).fit(out, labels) for m in ("wins", "av", "max"))
    assert wins.unit_class.tolist() == [0, 0, 1, 0]
    assert av.unit_class.tolist() == mx.unit_class.tolist() == [0, 0, 1, -1]
    assert wins.predict(sample).tolist() == [0]  # unit 3 is the most active, labelled 0
    assert av.predict(sample).tolist() == [1]  # class 0: mean(0.9, 0) = 0.45 < class 1: 0.5
    assert mx.predict(sample).tolist() == [0]  # the silent unit 3 is left out; unit 0 wins
    for da in (wins, av, mx):
        assert da.accuracy(out, labels) == 1.0


# ----------------------------------------------------------------------------- the rules on a chip
def _batch(n=12, n_in=784, seed=0):
    from neuroemu.rules.sdt import TargetBatch

    return TargetBatch(np.random.default_rng(seed).random((n, n_in)).astype(np.float32), None, 1)


def _sdt_rule(inner, n_out, k=2):
    from neuroemu.rules.sdt import SelfDefinedTargets

    return SelfDefinedTargets(inner, SelfDefinedTarget(n_out, k=k, gamma=0.3, output_dropout=0.2), rng=1)


def test_backprop_to_self_defined_targets_changes_the_trained_layers_and_keeps_pruned_weights_at_zero():
    from neuroemu.chip import Hardware
    from neuroemu.models.convnet import sdt_cnn
    from neuroemu.rules.base import run_step
    from neuroemu.rules.sdt import TargetBackprop, TargetBatch

    model = sdt_cnn(8, prune=0.5, rng=0)
    chip = model.build(Hardware.exact(), 1)
    assert [layer.name for layer in chip] == ["conv1", "conv2", "layer1"] and chip["conv2"].shape == (128, 288)
    rule = _sdt_rule(TargetBackprop([1e-3, 1e-3, 1e-2], optimizer="adam"), 8)
    rule.bind(chip)
    before = {name: w.copy() for name, w in chip.weights().items()}  # an exact chip's weights are its arrays
    x = np.random.default_rng(0).random((6, 1, 28, 28)).astype(np.float32)
    metrics = run_step(rule, chip, TargetBatch(x, None, 1))
    assert np.isfinite(metrics["loss"]) and rule.target.h.any()  # homeostasis moved
    after = chip.weights()
    for name in ("conv1", "conv2", "layer1"):
        assert not np.array_equal(after[name], before[name])
    pruned = model.masks["conv1"] == 0
    assert pruned.any() and not after["conv1"][pruned].any()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_backprop_on_an_exact_chip_is_the_float32_optimiser_step(optimizer):
    """Even steps large enough to diverge: the chip holds what the optimiser makes of the weights in place."""
    from neuroemu import nn
    from neuroemu.chip import Hardware
    from neuroemu.models.convnet import clip_mlp
    from neuroemu.rules.base import run_step
    from neuroemu.rules.sdt import TargetBackprop, TargetBatch
    from neuroemu.rules.surrogate import Adam

    lr = 1000.0 if optimizer == "sgd" else 0.5
    chip = clip_mlp([784, 10], rng=0).build(Hardware.exact(), 1)
    ref = clip_mlp([784, 10], rng=0).net  # the same network in float
    opt = nn.SGD(lr) if optimizer == "sgd" else Adam(lr=lr)
    rule = TargetBackprop(lr, optimizer=optimizer)
    rule.bind(chip)
    for step in range(3):
        x, d = _batch(seed=step).x, np.eye(10, dtype=np.float32)[(np.arange(12) + step) % 10]
        run_step(rule, chip, TargetBatch(x, d, 1))
        _, g = nn.mse_loss(ref.forward(x), d)
        ref.backward(g, input_grad=False)
        opt.step(ref[0].params, ref[0].grads)
        assert chip["layer1"].weights().dtype == np.float32
        np.testing.assert_array_equal(chip["layer1"].weights(), ref[0].w)
        np.testing.assert_array_equal(chip["layer1"].bias, ref[0].b)
    assert np.abs(ref[0].w).max() > 1  # beyond any tile's range


def test_eqprop_on_an_exact_chip_is_the_network_step():
    from neuroemu.chip import Hardware
    from neuroemu.models.eqprop import EqPropModel
    from neuroemu.rules.base import run_step
    from neuroemu.rules.eqprop import EqProp, EqPropConfig, EqPropNetwork
    from neuroemu.rules.sdt import TargetBatch

    cfg = EqPropConfig(t_free=8, t_nudge=3)
    chip = EqPropModel([784, 16, 10], config=cfg, rng=0).build(Hardware.exact(), 1)
    ref = EqPropNetwork([784, 16, 10], config=cfg, rng=0)
    rule = EqProp([50.0, 50.0], rng=3)
    rule.bind(chip)
    for step in range(3):
        x, d = _batch(seed=step).x, np.eye(10, dtype=np.float32)[(np.arange(12) + step) % 10]
        run_step(rule, chip, TargetBatch(x, d, 1))
        ref.train_step(x, d, [50.0, 50.0], rng=3)
        for name, w, b in zip(("layer1", "layer2"), ref.weights, ref.biases):
            np.testing.assert_array_equal(chip[name].weights(), w)
            np.testing.assert_array_equal(chip[name].bias, b)


def test_eqprop_with_adam_steps_the_contrastive_estimate():
    """optimizer adam: the rate-1 contrastive estimate is the negative gradient of an Adam step per
    weight matrix (its first step is lr·sign of the estimate), and the rates can change between steps."""
    from neuroemu.chip import Hardware
    from neuroemu.models.eqprop import EqPropModel
    from neuroemu.rules.base import run_step
    from neuroemu.rules.eqprop import EqProp, EqPropConfig, EqPropNetwork
    from neuroemu.rules.sdt import TargetBatch
    from neuroemu.rules.surrogate import Adam

    cfg = EqPropConfig(t_free=8, t_nudge=3)
    chip = EqPropModel([784, 16, 10], config=cfg, rng=0).build(Hardware.exact(), 1)
    ref = EqPropNetwork([784, 16, 10], config=cfg, rng=0)
    rule = EqProp([1e-3, 2e-3], rng=3, optimizer="adam")
    rule.bind(chip)
    adams = [Adam(lr=1e-3), Adam(lr=2e-3)]
    for step in range(3):
        if step == 2:
            rule.lrs = [5e-4, 1e-3]
            for a, r in zip(adams, rule.lrs):
                a.lr = r
        x, d = _batch(seed=step).x, np.eye(10, dtype=np.float32)[(np.arange(12) + step) % 10]
        w_before = [w.copy() for w in ref.weights]
        run_step(rule, chip, TargetBatch(x, d, 1))
        dws, dbs, _ = ref.wanted_update(x, d, 3, lr=1.0)
        for i, (a, dw, db) in enumerate(zip(adams, dws, dbs)):
            cw, cb = a.change([-dw, -db], like=[dw, db])
            if step == 0:
                big = np.abs(dw) > 1e-4
                np.testing.assert_allclose(cw[big], 1e-3 * (i + 1) * np.sign(dw[big]), rtol=1e-3)
            ref.weights[i], ref.biases[i] = ref.weights[i] + cw, ref.biases[i] + cb
        for name, w, b, w0 in zip(("layer1", "layer2"), ref.weights, ref.biases, w_before):
            np.testing.assert_allclose(chip[name].weights(), w, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(chip[name].bias, b, rtol=1e-5, atol=1e-7)
            assert not np.array_equal(w, w0)
    with pytest.raises(ConfigError, match="optimizer"):
        EqProp(0.1, optimizer="rmsprop")


@pytest.mark.parametrize("card,scheme", [("pcm_nandakumar2018", "sign"), ("pcm_nandakumar2018", "mixed_precision"),
                                         ("rram_gong2018", "stochastic"), ("ideal", "ideal")])
def test_self_defined_targets_run_on_device_chips(card, scheme):
    from neuroemu.chip import Hardware
    from neuroemu.hardware.crossbar import Periphery
    from neuroemu.models.convnet import clip_mlp
    from neuroemu.models.eqprop import EqPropModel
    from neuroemu.rules.base import run_step
    from neuroemu.rules.eqprop import EqProp, EqPropConfig
    from neuroemu.rules.sdt import TargetBackprop

    hw = Hardware(card=card, scheme=scheme, w_max=0.25, periphery=Periphery.device_reads())
    for model, inner in ((EqPropModel([784, 16], config=EqPropConfig(t_free=8, t_nudge=3), rng=0), EqProp(0.05, rng=2)),
                         (clip_mlp([784, 16], rng=0), TargetBackprop(0.5))):
        chip = model.build(hw, 1)
        rule = _sdt_rule(inner, 16)
        rule.bind(chip)
        w0 = chip.weights()
        for step in range(3):
            assert np.isfinite(run_step(rule, chip, _batch(seed=step))["loss"])
        assert not np.array_equal(chip.weights()["layer1"], w0["layer1"])
        if card != "ideal":
            assert chip.stats()["pulses"] > 0


def test_a_rule_refuses_a_network_it_has_no_meaning_on():
    from neuroemu.chip import Hardware
    from neuroemu.models.convnet import clip_mlp
    from neuroemu.models.eqprop import EqPropModel
    from neuroemu.models.mlp import MLP
    from neuroemu.rules.backprop import Backprop
    from neuroemu.rules.base import RuleError
    from neuroemu.rules.eqprop import EqProp
    from neuroemu.rules.sdt import TargetBackprop

    with pytest.raises(RuleError, match="energy"):
        _sdt_rule(EqProp(0.1), 16).bind(clip_mlp([784, 16], rng=0).build(Hardware.exact(), 0))
    with pytest.raises(RuleError, match="backward"):
        _sdt_rule(TargetBackprop(0.1), 16).bind(EqPropModel([784, 16], rng=0).build(Hardware.exact(), 0))
    with pytest.raises(RuleError, match="backward"):
        TargetBackprop(0.1).bind(MLP([784, 16]).build(rng=0))
    with pytest.raises(RuleError, match="differentiable"):
        Backprop(0.1).bind(EqPropModel([784, 16], rng=0).build(Hardware.exact(), 0))


@pytest.mark.parametrize("run,done", [
    ({"trainer": "eqprop", "hidden": [12], "card": "pcm_nandakumar2018", "scheme": "sign", "w_max": 0.25}, 1),
    ({"trainer": "bp", "hidden": [12], "mode": "semi", "sdt": {"k": 1}}, 2),  # in the first round
])
def test_an_interrupted_sdt_job_resumes_mid_run(tmp_path, monkeypatch, run, done):
    """An unsupervised EqProp job on a PCM chip, and a semi-supervised job (pre-training, then
    rounds of an unsupervised and a supervised epoch), killed after an epoch go on from their
    checkpoint when run again, to the same result."""
    from neuroemu.studies import resolve_data, sdt
    from tests.checkpoints import resumes_identically
    from tests.synthetic import write_tiny_fashion_mnist

    data = write_tiny_fashion_mnist(tmp_path / "fmnist", 120, 40)
    _, cfg = resolve_data({"experiment": "sdt", "seeds": [0], "workers": 1, "data": {"dir": str(data), "download": False},
                           "eqprop": {"epochs": 3, "batch_size": 20, "t_free": 6, "t_nudge": 2},
                           "bp": {"batch_size": 20, "optimizer": "adam", "lr": 1e-3},
                           "semi": {"labels": 30, "pretrain_epochs": 1, "rounds": 2, "batch_size": 10},
                           "readout": {"epochs": 1, "batch_size": 40}, "eval": {"batch_size": 40},
                           "runs": [run]}, "test:")
    job = sdt.jobs(cfg)[0]
    resumed = resumes_identically(monkeypatch, tmp_path, sdt.run_job, job, done=done,
                                  clean=lambda r: {k: v for k, v in r.items() if k != "train_time_s"})
    phases = ["supervised", "unsupervised", "supervised", "unsupervised", "supervised"] if "mode" in run else \
        ["unsupervised"] * 3
    assert [c["phase"] for c in resumed["curve"]] == phases
