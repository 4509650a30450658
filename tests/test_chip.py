"""The chip model, the rule interface and the trainer (neuroemu.chip, neuroemu.rules.base, neuroemu.train)."""

import numpy as np
import pytest

from neuroemu.chip import Hardware, Update, build_chip
from neuroemu.data.classification import ClassificationTask, accuracy
from neuroemu.errors import ConfigError
from neuroemu.hardware import Periphery, load_card, make_scheme
from neuroemu.models.mlp import MLP
from neuroemu.rules.backprop import Backprop
from neuroemu.rules.base import Rule, RuleError, run_step
from neuroemu.train import Protocol, Trainer


def _data(n=240, n_in=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, n_in)).astype(np.float32)
    y = (x[:, : n_in // 2].sum(1) > x[:, n_in // 2:].sum(1)).astype(int)
    return x, y


def _task(seed=2, batch=20):
    x, y = _data()
    return ClassificationTask(x[:160], y[:160], batch_size=batch, rng=np.random.default_rng(seed),
                              held_out={"test": (x[160:], y[160:]), "val": (x[:40], y[:40])})


def _hw(**kw):
    base = dict(card="pcm_nandakumar2018", scheme="mixed_precision", periphery=Periphery())
    return Hardware(**{**base, **kw})


def test_build_chip_draws_each_layer_then_its_tile_then_its_scheme_from_one_generator():
    """A chip is the hand-built loop: per layer, initial weights, tile and scheme in that order."""
    hw = _hw()
    chip = MLP([12, 8, 3]).build(hw, rng=np.random.default_rng(5))
    g = np.random.default_rng(5)
    for (n_in, n_out), layer in zip([(12, 8), (8, 3)], chip):
        bound = np.sqrt(1.0 / n_in)
        w = g.uniform(-bound, bound, (n_out, n_in))
        tile = hw.tile(n_out, n_in, g)
        tile.write(w)
        scheme = make_scheme(hw.scheme, tile, rng=g)
        np.testing.assert_array_equal(layer.weights(), scheme.weights())
        assert layer.bias.dtype == np.float32 and not layer.bias.any()
    assert list(chip.layers) == ["layer1", "layer2"] and chip.n_synapses == 12 * 8 + 8 * 3


def test_update_goes_through_the_layers_scheme_and_bias_is_exact():
    chip = MLP([4, 3]).build(Hardware.ideal(w_max=4.0), rng=0)
    before = chip.weights()["layer1"]
    dw = np.full((3, 4), 0.25)
    chip.apply(Update("layer1", dw=dw, db=np.array([1.0, 2.0, 3.0])))
    np.testing.assert_allclose(chip["layer1"].weights(), before + dw, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(chip["layer1"].bias, [1, 2, 3])
    x, d = np.ones((2, 4)), np.ones((2, 3))
    chip.apply(Update("layer1", x=x, d=d, lr=0.1))  # ΔW = −lr·dᵀx = −0.2 everywhere
    np.testing.assert_allclose(chip["layer1"].weights(), before + dw - 0.2, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="x, d and lr"):
        Update("layer1", x=x, d=d)
    with pytest.raises(KeyError, match="no layer 'nope'"):
        chip.apply(Update("nope", dw=dw))


def test_a_pcm_chip_counts_pulses_and_drifts():
    chip = MLP([12, 8, 3]).build(_hw(scheme="sign"), rng=1)
    x, y = _data(40)
    metrics = run_step(Backprop(0.5), chip, (x[:20], y[:20] % 3))
    assert np.isfinite(metrics["loss"]) and 0 <= metrics["acc"] <= 1
    st = chip.stats(per_layer=True)
    assert st["pulses"] > 0 and st["energy_pJ"] > 0 and set(st["layers"]) == {"layer1", "layer2"}
    assert st["pulses"] == sum(s["pulses"] for s in st["layers"].values())
    w0 = chip.weights()["layer1"]
    chip.advance(1e5)
    assert chip.time == 1e5 and not np.array_equal(chip.weights()["layer1"], w0)  # PCM drift


def test_deploy_programs_the_trained_weights_once_and_copies_the_biases():
    chip = MLP([12, 8, 3]).build(Hardware.ideal(), rng=1)
    chip["layer2"].bias[:] = [0.5, -0.5, 0.25]
    exact = chip.deploy(Hardware.ideal(w_max=2.0), rng=3)
    for name, w in chip.weights().items():
        np.testing.assert_allclose(exact[name].weights(), w, rtol=0, atol=1e-6)
    deployed = chip.deploy(Hardware(card="pcm_joshi2020", periphery=Periphery.ideal()), rng=3)
    assert deployed.hardware.scheme == "ideal" and deployed.model is chip.model
    np.testing.assert_array_equal(deployed["layer2"].bias, chip["layer2"].bias)
    assert deployed["layer2"].bias is not chip["layer2"].bias
    for name, w in chip.weights().items():  # programming noise, but the same weights
        assert np.corrcoef(deployed[name].weights().ravel(), w.ravel())[0, 1] > 0.9


def test_hardware_from_config_names_the_field_of_a_mistake():
    hw = Hardware.from_config({"card": "pcm_nandakumar2018", "scheme": "sign", "periphery": {"dac_bits": 5},
                               "n_devices": 2, "bits": 4}, "runs[0].chip")
    assert hw.periphery.dac_bits == 5 and hw.n_devices == 2 and hw.card.levels == 16
    with pytest.raises(ConfigError, match=r"runs\[0\].chip.sheme: unknown field.*scheme"):
        Hardware.from_config({"sheme": "sign"}, "runs[0].chip")
    with pytest.raises(ConfigError, match=r"chip.scheme: expected one of"):
        Hardware.from_config({"scheme": "magic"})
    with pytest.raises(ConfigError, match=r"chip.periphery.dac: unknown field"):
        Hardware.from_config({"periphery": {"dac": 3}})
    with pytest.raises(ConfigError, match="programmed by target"):
        Hardware.from_config({"card": "pcm_joshi2020", "scheme": "sign"})
    with pytest.raises(ConfigError, match="levels or bits"):
        Hardware.from_config({"card": "rram_gong2018", "levels": 8, "bits": 3})


class _Recurrentist(Rule):
    requires = frozenset({"recurrent", "spiking"})


def test_a_rule_refuses_a_network_it_has_no_meaning_on():
    chip = MLP([4, 2]).build(rng=0)
    with pytest.raises(RuleError, match="needs a network that is recurrent, spiking.*MLP.*feedforward"):
        Trainer(chip, _Recurrentist(), _task(), Protocol(epochs=1))


def test_a_nan_loss_stops_the_run_before_any_update_reaches_the_devices():
    chip = MLP([12, 8, 2]).build(_hw(), rng=0)
    task = _task()
    task.x = task.x.copy()
    task.x[:] = np.nan
    w0 = chip.weights()
    result = Trainer(chip, Backprop(0.1), task, Protocol(epochs=2), progress=False).run()
    assert result.diverged == {"at": 1, "metric": "loss", "value": "nan", "bound": None}
    assert result.final == {} and result.rows == []
    for name, w in chip.weights().items():
        np.testing.assert_array_equal(w, w0[name])
    assert chip.stats()["pulses"] == 0


def test_trainer_rows_final_and_delays():
    chip = MLP([12, 8, 2]).build(_hw(), rng=0)
    protocol = Protocol(epochs=3, seconds_per_update=0.5, delays=[10.0, 100.0], drift_compensation=True)
    result = Trainer(chip, Backprop(0.2), _task(), protocol, progress=False).run()
    assert [r["epoch"] for r in result.rows] == [1, 2, 3]
    row = result.rows[-1]
    for key in ("train_loss", "train_acc", "test_acc", "val_acc", "pulses", "refreshes", "energy_pJ",
                "layer1.g_mean_uS", "layer2.pulses"):
        assert key in row, key
    assert list(result.final) == ["val_acc", "test_acc"] and list(result.after) == [10.0, 100.0]
    assert result.chip is chip and chip.time == pytest.approx(3 * 8 * 0.5 + 100.0)
    assert result.recorder.rows()[0]["step"] == 0 and [r["step"] for r in result.recorder.rows()] == [0, 1, 2, 3]
    # the accuracy is what the chip computes
    assert 0 <= result.final["test_acc"] <= 1


def _trained(checkpoint=None, seed=0):
    chip = MLP([12, 8, 2]).build(_hw(), rng=seed)
    protocol = Protocol(epochs=4, seconds_per_update=0.5, delays=[50.0], drift_compensation=True)
    return Trainer(chip, Backprop(0.2), _task(), protocol, checkpoint=checkpoint, key={"seed": seed},
                   progress=False).run()


def test_an_interrupted_run_resumes_from_its_checkpoint_with_the_same_result(tmp_path, monkeypatch):
    from tests.checkpoints import Interrupted, stop_after_checkpoint

    straight = _trained()
    ckpt = tmp_path / "job.ckpt"
    with stop_after_checkpoint(monkeypatch, 2), pytest.raises(Interrupted):
        _trained(ckpt)
    assert ckpt.is_file()
    with stop_after_checkpoint(monkeypatch, -1) as saved:
        resumed = _trained(ckpt)
    assert saved == [3, 4] and not ckpt.exists()  # resumed at epoch 3; removed when the run ends
    assert resumed.rows == straight.rows and resumed.final == straight.final and resumed.after == straight.after
    # a checkpoint of another run (key) is not resumed
    with stop_after_checkpoint(monkeypatch, 2), pytest.raises(Interrupted):
        _trained(ckpt, seed=1)
    with stop_after_checkpoint(monkeypatch, -1) as saved:
        again = _trained(ckpt)
    assert saved == [1, 2, 3, 4] and again.rows == straight.rows


def test_accuracy_reads_the_chip_in_batches():
    chip = MLP([12, 2]).build(rng=0)
    x, y = _data(50)
    logits, _ = chip.forward(x)
    assert accuracy(chip, x, y, batch=7) == pytest.approx(float((logits.argmax(1) == y).mean()))


def test_backprop_with_adam_takes_the_adam_step_of_the_gradient():
    from neuroemu.rules.surrogate import Adam

    chip = MLP([6, 3]).build(Hardware.ideal(w_max=8.0), rng=0)
    x, y = _data(10, n_in=6)
    w0 = chip["layer1"].weights().copy()
    logits, _ = chip.forward(x)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(10), y] -= 1
    g = (p / 10).T @ x
    ref = w0.copy()
    Adam(0.01).step([ref], [g])
    run_step(Backprop(0.01, optimizer="adam"), chip, (x, y))
    np.testing.assert_allclose(chip["layer1"].weights(), ref, rtol=0, atol=1e-5)


def test_card_and_hardware_pickle():
    import pickle

    card = load_card("pcm_nandakumar2018")
    assert pickle.loads(pickle.dumps(card)) == card
    hw = _hw(scheme_params={"epsilon": 0.1})
    back = pickle.loads(pickle.dumps(hw))
    assert back == hw and dict(back.scheme_params) == {"epsilon": 0.1}


def test_an_interrupted_study_job_resumes_mid_run(tmp_path, monkeypatch):
    """A crossbar_mlp job killed after its first epoch goes on from its checkpoint when run again."""
    from neuroemu.studies import crossbar_mlp, resolve_data
    from tests.checkpoints import resumes_identically
    from tests.synthetic import write_tiny_fashion_mnist

    data = write_tiny_fashion_mnist(tmp_path / "fmnist", 200, 50)
    _, cfg = resolve_data({"experiment": "crossbar_mlp", "seeds": [0], "workers": 1,
                           "data": {"dir": str(data), "download": False},
                           "model": {"hidden": [16]}, "train": {"epochs": 3, "batch_size": 50, "lr": 0.1},
                           "eval": {"delays": [60.0]},
                           "runs": [{"card": "pcm_nandakumar2018", "scheme": "mixed_precision"}]}, "test:")
    job = crossbar_mlp.jobs(cfg)[0]
    resumed = resumes_identically(monkeypatch, tmp_path, crossbar_mlp.run_job, job, done=1,
                                  clean=lambda r: {k: v for k, v in r.items() if k != "train_time_s"})
    assert [m["epoch"] for m in resumed["metrics"]] == [1, 2, 3]


def test_an_exact_chip_is_plain_arrays_in_their_dtype():
    chip = MLP([4, 3]).build(Hardware.exact(), rng=0)
    w = chip["layer1"].weights()
    assert chip.tiles() == {} and chip.n_synapses == 12 and chip["layer1"].shape == (3, 4)
    x = np.random.default_rng(1).random((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(chip["layer1"].forward(x), x @ w.T)
    w32 = w.astype(np.float32)
    f32 = build_chip(MLP([4, 3]), Hardware.exact(), weights={"layer1": w32})
    dw = np.full((3, 4), 0.1, np.float32)
    f32.apply(Update("layer1", dw=dw))
    np.testing.assert_array_equal(f32["layer1"].weights(), w32 + dw)
    assert f32["layer1"].weights().dtype == np.float32 and f32.stats()["pulses"] == 0
    f32.advance(10.0)
    f32.compensate_drift()
    assert Hardware.from_config({"scheme": "exact"}).scheme == "exact"
    with pytest.raises(ConfigError, match="float chip without devices"):
        Hardware.from_config({"card": "rram_gong2018", "scheme": "exact"})


def test_deploy_per_layer_hardware_and_generators():
    chip = MLP([12, 8, 3]).build(Hardware.ideal(w_max=4.0), rng=1)
    seen = []

    def hardware(w):
        seen.append(w.shape)
        return Hardware(card="pcm_nandakumar2018", w_max=float(np.abs(w).max()), periphery=Periphery.ideal())

    rngs = [np.random.default_rng(5), np.random.default_rng(6)]
    on = chip.deploy(hardware, rngs, compensate_drift=True)
    assert seen == [(8, 12), (3, 8)] and [layer.tile.card.name for layer in on] == ["pcm_nandakumar2018"] * 2
    again = chip.deploy(hardware, [np.random.default_rng(5), np.random.default_rng(6)], compensate_drift=True)
    for name in chip.layers:  # the same generators, the same devices
        np.testing.assert_array_equal(on[name].tile.conductances(), again[name].tile.conductances())
    one_seed = chip.deploy(hardware, 7)  # one generator from the seed, not a fresh copy of it per layer
    assert one_seed["layer1"].tile.rng.random() != one_seed["layer2"].tile.rng.random()


def test_a_task_can_end_training_after_an_evaluation():
    class StopAtTwo(ClassificationTask):
        stop = False

        def evaluate(self, chip, stage, last=None):
            out = super().evaluate(chip, stage, last)
            self.stop = self.stop or (stage == "epoch" and len(self.seen) == 1)
            self.seen.append(stage)
            return out

    x, y = _data()
    task = StopAtTwo(x[:160], y[:160], batch_size=20, rng=2, held_out={"test": (x[160:], y[160:])})
    task.seen = []
    result = Trainer(MLP([12, 8, 2]).build(_hw(), rng=0), Backprop(0.2), task, Protocol(epochs=5, delays=[10.0]),
                     progress=False).run()
    assert [r["epoch"] for r in result.rows] == [1, 2] and task.seen == ["epoch", "epoch", "final", "delay"]
