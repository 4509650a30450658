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
    chip = model.build(Hardware.ideal(), 1)
    assert [layer.name for layer in chip] == ["conv1", "conv2", "layer1"] and chip["conv2"].shape == (128, 288)
    rule = _sdt_rule(TargetBackprop([1e-3, 1e-3, 1e-2], optimizer="adam"), 8)
    rule.bind(chip)
    before = chip.weights()
    x = np.random.default_rng(0).random((6, 1, 28, 28)).astype(np.float32)
    metrics = run_step(rule, chip, TargetBatch(x, None, 1))
    assert np.isfinite(metrics["loss"]) and rule.target.h.any()  # homeostasis moved
    after = chip.weights()
    for name in ("conv1", "conv2", "layer1"):
        assert not np.array_equal(after[name], before[name])
    pruned = model.masks["conv1"] == 0
    assert pruned.any() and not after["conv1"][pruned].any()


def test_backprop_on_a_float_chip_is_the_float32_optimiser_step():
    from neuroemu import nn
    from neuroemu.chip import Hardware
    from neuroemu.models.convnet import clip_mlp
    from neuroemu.rules.base import run_step
    from neuroemu.rules.sdt import TargetBackprop, TargetBatch

    chip = clip_mlp([784, 10], rng=0).build(Hardware.ideal(), 1)
    ref = clip_mlp([784, 10], rng=0).net  # the same network in float
    x = _batch().x
    d = np.eye(10, dtype=np.float32)[np.arange(12) % 10]
    rule = TargetBackprop(0.05)
    rule.bind(chip)
    run_step(rule, chip, TargetBatch(x, d, 1))
    _, g = nn.mse_loss(ref.forward(x), d)
    ref.backward(g, input_grad=False)
    nn.SGD(0.05).step(ref[0].params, ref[0].grads)
    np.testing.assert_array_equal(chip["layer1"].weights().astype(np.float32), ref[0].w)
    np.testing.assert_array_equal(chip["layer1"].bias, ref[0].b)


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
        _sdt_rule(EqProp(0.1), 16).bind(clip_mlp([784, 16], rng=0).build(Hardware.ideal(), 0))
    with pytest.raises(RuleError, match="backward"):
        _sdt_rule(TargetBackprop(0.1), 16).bind(EqPropModel([784, 16], rng=0).build(Hardware.ideal(), 0))
    with pytest.raises(RuleError, match="backward"):
        TargetBackprop(0.1).bind(MLP([784, 16]).build(rng=0))
    with pytest.raises(RuleError, match="differentiable"):
        Backprop(0.1).bind(EqPropModel([784, 16], rng=0).build(Hardware.ideal(), 0))


def test_an_interrupted_sdt_job_resumes_mid_run(tmp_path, monkeypatch):
    """An unsupervised EqProp job on a PCM chip killed after its first epoch goes on from its
    checkpoint when run again, to the same result."""
    from neuroemu import train
    from neuroemu.runner import CHECKPOINT_ENV
    from neuroemu.studies import resolve_data, sdt
    from tests.synthetic import write_tiny_fashion_mnist

    data = write_tiny_fashion_mnist(tmp_path / "fmnist", 120, 40)
    _, cfg = resolve_data({"experiment": "sdt", "seeds": [0], "workers": 1, "data": {"dir": str(data), "download": False},
                           "eqprop": {"epochs": 3, "batch_size": 20, "t_free": 6, "t_nudge": 2},
                           "readout": {"epochs": 1, "batch_size": 40}, "eval": {"batch_size": 40},
                           "runs": [{"trainer": "eqprop", "hidden": [12], "card": "pcm_nandakumar2018",
                                     "scheme": "sign", "w_max": 0.25}]}, "test:")
    job = sdt.jobs(cfg)[0]

    def timeless(result):
        return {k: v for k, v in result.items() if k != "train_time_s"}

    straight = timeless(sdt.run_job(job))
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "runs"))
    save, epochs = train.Trainer._save, []

    def save_then_die(self):
        save(self)
        epochs.append(self.done)
        if self.done == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train.Trainer, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        sdt.run_job(job)
    assert train.checkpoint_path(job["id"]).is_file()
    resumed = timeless(sdt.run_job(job))
    assert epochs == [1, 2, 3] and len(straight["curve"]) == 3
    assert resumed == straight and not train.checkpoint_path(job["id"]).exists()
