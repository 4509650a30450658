"""The self-defined-target experiment end to end on tiny synthetic data, and its errors."""

import csv
import json

import pytest
import yaml

from neuroemu.cli import main
from tests.test_spiking_fmnist import tiny_data  # noqa: F401 - the fixture


def config(path, data_dir, **extra):
    semi = extra.pop("semi", {})
    cfg = {
        "experiment": "sdt", "seeds": [0], "workers": 1,
        "data": {"dir": str(data_dir), "download": False},
        "sdt": {"k": 2, "gamma": 0.3},
        "bp": {"epochs": 2, "batch_size": 16, "optimizer": "adam", "lr": 1.0e-3},
        "eqprop": {"epochs": 2, "batch_size": 16, "t_free": 10, "t_nudge": 4},
        "semi": {"labels": 40, "pretrain_epochs": 2, "rounds": 1, "batch_size": 8, "pretrain_lr": 0.002, **semi},
        "readout": {"epochs": 5, "batch_size": 32},
        "eval": {"batch_size": 40},
        "runs": [{"trainer": "bp", "hidden": [20]}, {"trainer": "eqprop", "hidden": [20]},
                 {"trainer": "none", "hidden": [20]}, {"trainer": "bp", "hidden": [20], "mode": "supervised"},
                 {"trainer": "eqprop", "hidden": [20], "mode": "semi", "sdt": {"k": 1}},
                 {"trainer": "eqprop", "hidden": [20], "card": "rram_gong2018", "scheme": "stochastic"},
                 {"trainer": "bp", "arch": "cnn", "outputs": 30,
                  "bp": {"train_conv": False, "lr": [1e-3, 1e-3, 2e-3], "lr_end": 0.5, "input_dropout": 0.2}}],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sdt_end_to_end(tmp_path, tiny_data, capsys):  # noqa: F811
    out = tmp_path / "out"
    assert main(["run", str(config(tmp_path / "cfg.yaml", tiny_data)), "--out", str(out), "--quiet"]) == 0
    assert "direct assoc. %" in capsys.readouterr().out
    rows = {r["run"]: r for r in json.loads((out / "summary.json").read_text())["table"]}
    assert list(rows) == ["bp/784-20/unsupervised", "eqprop/784-20/unsupervised", "none/784-20/unsupervised",
                          "bp/784-20/supervised", "eqprop/784-20/semi",
                          "eqprop/784-20/unsupervised/rram_gong2018/stochastic", "bp/cnn/unsupervised"]
    assert rows["bp/784-20/supervised"]["test_acc"] > 30  # ten classes, chance 10 %
    assert "direct_association" in rows["none/784-20/unsupervised"] and "pretrain_acc" in rows["eqprop/784-20/semi"]
    assert rows["eqprop/784-20/unsupervised/rram_gong2018/stochastic"]["pulses_per_synapse"] > 0
    assert "| eqprop/784-20/semi | semi |" in (out / "RESULTS.md").read_text()
    assert (out / "figures" / "training_loss.png").stat().st_size > 1000
    semi = [r for r in csv.DictReader(open(out / "metrics.csv")) if r["run"] == "eqprop/784-20/semi"]
    assert [r["phase"] for r in semi] == ["supervised"] * 2 + ["unsupervised", "supervised"]
    assert [bool(r["test_acc"]) for r in semi] == [False, True, False, True]  # after pre-training, each round


@pytest.mark.parametrize("runs,message", [
    ([{"trainer": "eqprop", "arch": "cnn"}], "the cnn is trained by backprop only"),
    ([{"trainer": "none", "mode": "semi"}], "expected mode unsupervised"),
    ([{"trainer": "bp", "hidden": [3], "sdt": {"k": 5}}], "sdt.k: expected at most the 3 output units"),
    ([{"trainer": "bp", "mode": "semi", "sdt": {"k": 2}}], "expected k 1"),
    ([{"trainer": "bp", "card": "rram_gong2018"}], "only EqProp runs are trained on a chip"),
    ([{"trainer": "bp", "hidden": []}], "hidden: expected a non-empty list"),
    ([{"trainer": "bp", "bp": {"optimizer": "lion"}}], "runs[0].bp.optimizer"),
    ([{"trainer": "bp", "bp": {"lr": [0.1, 0.2]}}], "runs[0].bp.lr: expected a number or a list of 1"),
    ([{"trainer": "bp", "arch": "cnn", "bp": {"lr": [0.1, -0.2, 0.1]}}], "runs[0].bp.lr: expected learning rates > 0"),
    ([{"trainer": "eqprop", "hidden": [5, 5], "eqprop": {"lr": [0.1]}}], "runs[0].eqprop.lr: expected a number or"),
])
def test_sdt_config_errors(tmp_path, tiny_data, capsys, runs, message):  # noqa: F811
    assert main(["run", str(config(tmp_path / "cfg.yaml", tiny_data, runs=runs)), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_sdt_semi_pretrain_lr_error(tmp_path, tiny_data, capsys):  # noqa: F811
    runs = [{"trainer": "bp", "mode": "semi", "sdt": {"k": 1}, "hidden": [5, 5]}]
    cfg = config(tmp_path / "cfg.yaml", tiny_data, runs=runs, semi={"pretrain_lr": [0.1, 0.2]})
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "semi.pretrain_lr: expected a number or a list of 3" in capsys.readouterr().err


def _cnn_run(**bp):
    from neuroemu.config import validate
    from neuroemu.experiments import sdt

    run = validate({"arch": "cnn", "outputs": 12}, sdt.RUN, "run")
    run["bp"] = validate({"optimizer": "adam", "lr": [1e-3, 2e-3, 3e-3], **bp}, sdt.BP, "bp")
    return run


def test_cnn_geometry_pruning_and_frozen_features():
    import numpy as np

    from neuroemu.experiments.sdt import CNN_FEATURES, _BPNet

    x = np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32)
    net = _BPNet(_cnn_run(), np.random.default_rng(1))  # the authors' geometry, conv layers trained
    assert [o.lr for o, _ in net.opts] == [1e-3, 2e-3, 3e-3] and net.prepare(x, 2) is x
    convs = [layer for layer in net.model if hasattr(layer, "k") and layer.params]
    assert len(convs) == 2 and all(0.4 < np.mean(c.w == 0) < 0.6 for c in convs)  # half of the weights pruned
    net.step(x, lambda y, m: (y == y.max(axis=1, keepdims=True)).astype(y.dtype), lambda n: None)
    assert all(np.array_equal(c.w == 0, m == 0) for c, (_, m) in zip(convs, net.masks))  # still pruned
    net.set_lrs([5e-4, 1e-3, 1.5e-3])
    assert [o.lr for o, _ in net.opts] == [5e-4, 1e-3, 1.5e-3]

    frozen = _BPNet(_cnn_run(train_conv=False), np.random.default_rng(1))
    f = frozen.prepare(x, 2)
    assert f.shape == (3, CNN_FEATURES) and len(frozen.opts) == 1 and frozen.opts[0][0].lr == 3e-3
    np.testing.assert_allclose(frozen.outputs(f, 2), net.__class__(_cnn_run(), np.random.default_rng(1))
                               .outputs(x, 2), rtol=1e-5, atol=1e-6)  # same network, conv part split off
