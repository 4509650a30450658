"""The self-defined-target experiment end to end on tiny synthetic data, and its errors."""

import csv
import json

import pytest
import yaml

from neuroemu.cli import main
from tests.test_spiking_fmnist import tiny_data  # noqa: F401 - the fixture


def config(path, data_dir, **extra):
    cfg = {
        "experiment": "sdt", "seeds": [0], "workers": 1,
        "data": {"dir": str(data_dir), "download": False},
        "sdt": {"k": 2, "gamma": 0.3},
        "bp": {"epochs": 2, "batch_size": 16, "optimizer": "adam", "lr": 1.0e-3, "pretrain_lr": 2e-3},
        "eqprop": {"epochs": 2, "batch_size": 16, "t_free": 10, "t_nudge": 4},
        "semi": {"labels": 40, "pretrain_epochs": 2, "rounds": 1, "batch_size": 8, "unsupervised_lr_factor": 0.5,
                 "unsupervised_lr_start": 0.01, "ramp_rounds": 3},
        "readout": {"epochs": 5, "batch_size": 32},
        "eval": {"batch_size": 40},
        "runs": [{"trainer": "bp", "hidden": [20]}, {"trainer": "eqprop", "hidden": [20]},
                 {"trainer": "none", "hidden": [20]}, {"trainer": "bp", "hidden": [20], "mode": "supervised"},
                 {"trainer": "eqprop", "hidden": [20], "mode": "semi", "sdt": {"k": 1},
                  "eqprop": {"optimizer": "adam", "lr": 1e-3, "pretrain_lr": 2e-3}},
                 {"trainer": "bp", "hidden": [20], "mode": "semi", "sdt": {"k": 1}},
                 {"trainer": "eqprop", "hidden": [20], "card": "rram_gong2018", "scheme": "stochastic"},
                 {"trainer": "bp", "arch": "cnn", "outputs": 30,
                  "bp": {"train_conv": False, "lr": [1e-3, 1e-3, 2e-3], "lr_end": 0.5, "input_dropout": 0.2}},
                 {"trainer": "none", "arch": "cnn", "outputs": 30, "probe": "features", "bp": {"train_conv": False}}],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sdt_end_to_end(tmp_path, tiny_data, capsys, monkeypatch):  # noqa: F811
    from neuroemu import plot

    drawn = {}  # the learning-curve axes by metric
    learning_curves = plot.plot_learning_curves
    monkeypatch.setattr(plot, "plot_learning_curves",
                        lambda rows, **kw: drawn.setdefault(kw["y"], learning_curves(rows, **kw)))
    out = tmp_path / "out"
    assert main(["run", str(config(tmp_path / "cfg.yaml", tiny_data)), "--out", str(out), "--quiet"]) == 0
    assert "direct assoc. %" in capsys.readouterr().out
    rows = {r["run"]: r for r in json.loads((out / "summary.json").read_text())["table"]}
    assert list(rows) == ["bp/784-20/unsupervised", "eqprop/784-20/unsupervised", "none/784-20/unsupervised",
                          "bp/784-20/supervised", "eqprop/784-20/semi", "bp/784-20/semi",
                          "eqprop/784-20/unsupervised/rram_gong2018/stochastic", "bp/cnn/unsupervised",
                          "none/cnn/unsupervised/conv-features"]
    assert rows["none/cnn/unsupervised/conv-features"]["linear_readout"] > 30
    assert rows["bp/784-20/supervised"]["test_acc"] > 30  # ten classes, chance 10 %
    assert {"direct_association", "direct_association_av"} <= set(rows["none/784-20/unsupervised"]) and "pretrain_acc" in rows["eqprop/784-20/semi"]
    assert rows["eqprop/784-20/unsupervised/rram_gong2018/stochastic"]["pulses_per_synapse"] > 0
    text = (out / "RESULTS.md").read_text()
    assert "| eqprop/784-20/semi | semi |" in text and "direct association (av)" in text
    assert "* eqprop/784-20/semi: 40 labels, 2 pre-training epochs (batch 8,\n  lr 0.002), then 1 rounds of one " \
           "unsupervised epoch (lr 0.001 ×\n  0.01, ramped linearly to 0.5 over 3 rounds)" in text
    # operations per update (over all the phases' epochs); none trained: no updates
    energy = {r["run"]: r for r in json.loads((out / "summary.json").read_text())["energy"]}
    assert energy["eqprop/784-20/unsupervised/rram_gong2018/stochastic"]["update"]["pulses"] > 0
    assert energy["bp/784-20/semi"]["update"]["total"] > 0 and energy["none/784-20/unsupervised"]["update"] is None
    assert "## Operations and energy" in (out / "RESULTS.md").read_text()
    assert all((out / "figures" / f).stat().st_size > 1000
               for f in ("training_loss.png", "readouts.png", "semi_test_accuracy.png"))
    rows_csv = list(csv.DictReader(open(out / "metrics.csv")))
    unsup = [r for r in rows_csv if r["run"] == "bp/784-20/unsupervised"]
    assert len(unsup) == 2 and all(0 <= float(r["direct_association"]) <= 1 for r in unsup)  # after every epoch
    assert (out / "figures" / "direct_association.png").stat().st_size > 1000
    ax = drawn["direct_association"]  # fractions in the csv, percent on the axis that says "%"
    shown = max(max(line.get_ydata()) for line in ax.lines)
    assert "(%)" in ax.get_ylabel() and shown == pytest.approx(100 * max(float(r["direct_association"])
                                                                        for r in rows_csv if r["direct_association"]))
    semi = [r for r in rows_csv if r["run"] == "eqprop/784-20/semi"]
    assert [r["phase"] for r in semi] == ["supervised"] * 2 + ["unsupervised", "supervised"]
    assert [bool(r["test_acc"]) for r in semi] == [False, True, False, True]  # after pre-training, each round


def test_sdt_lbfgs_readout(tmp_path, tiny_data, capsys):  # noqa: F811
    out = tmp_path / "out"
    runs = [{"trainer": "bp", "hidden": [20]}, {"trainer": "none", "hidden": [20]}]
    cfg = config(tmp_path / "cfg.yaml", tiny_data, runs=runs,
                 readout={"method": "lbfgs", "l2": [1e-3, 1.0], "validation": 40, "max_iter": 50})
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    rows = {r["run"]: r for r in json.loads((out / "summary.json").read_text())["table"]}
    assert all(10 < r["linear_readout"] <= 100 for r in rows.values())
    text = (out / "RESULTS.md").read_text()
    assert "L-BFGS" in text and "chosen: bp/784-20/unsupervised" in text
    cfg.write_text(cfg.read_text().replace("- 1.0", "- -1.0"))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert "readout.l2: expected an L2 penalty >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("runs,message", [
    ([{"trainer": "eqprop", "arch": "cnn"}], "the cnn is trained by backprop only"),
    ([{"trainer": "none", "mode": "semi"}], "expected mode unsupervised"),
    ([{"trainer": "bp", "probe": "features"}], "expected arch cnn and trainer none, got mlp and bp"),
    ([{"trainer": "bp", "hidden": [3], "sdt": {"k": 5}}], "sdt.k: expected at most the 3 output units"),
    ([{"trainer": "bp", "mode": "semi", "sdt": {"k": 2}}], "expected k 1"),
    ([{"trainer": "bp", "card": "rram_gong2018"}], "only EqProp runs are trained on a chip"),
    ([{"trainer": "bp", "hidden": []}], "hidden: expected a non-empty list"),
    ([{"trainer": "bp", "bp": {"optimizer": "lion"}}], "runs[0].bp.optimizer"),
    ([{"trainer": "bp", "bp": {"lr": [0.1, 0.2]}}], "runs[0].bp.lr: expected a number or a list of 1"),
    ([{"trainer": "bp", "arch": "cnn", "bp": {"lr": [0.1, -0.2, 0.1]}}], "runs[0].bp.lr: expected learning rates > 0"),
    ([{"trainer": "eqprop", "hidden": [5, 5], "eqprop": {"lr": [0.1]}}], "runs[0].eqprop.lr: expected a number or"),
    ([{"trainer": "bp", "mode": "semi", "sdt": {"k": 1}, "hidden": [5, 5], "bp": {"pretrain_lr": [1, 2]}}],
     "runs[0].bp.pretrain_lr: expected a number or a list of 3"),
])
def test_sdt_config_errors(tmp_path, tiny_data, capsys, runs, message):  # noqa: F811
    assert main(["run", str(config(tmp_path / "cfg.yaml", tiny_data, runs=runs)), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_a_diverged_run_is_marked_and_the_others_are_not(tmp_path, tiny_data, capsys):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data,
                 runs=[{"trainer": "bp", "hidden": [20], "mode": "supervised",
                        "bp": {"optimizer": "sgd", "lr": 1000.0}},
                       {"trainer": "none", "hidden": [20]}])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    summary = json.loads((out / "summary.json").read_text())
    d = summary["diverged"]["bp/784-20/supervised@seed0"]
    assert d["at"] == 1 and d["metric"] == "supervised loss" and d["value"] > d["bound"]
    rows = {r["run"]: r for r in summary["table"]}
    assert rows["bp/784-20/supervised"]["diverged"] == 1 and "test_acc" not in rows["bp/784-20/supervised"]
    assert rows["none/784-20/unsupervised"]["diverged"] == 0 and "test_acc" in rows["none/784-20/unsupervised"]
    assert printed[1].split()[1] == "diverged" and printed[1].split()[-1] == "diverged"
    text = (out / "RESULTS.md").read_text()
    assert "| bp/784-20/supervised | supervised | diverged |" in text and "| 1 (diverged) |" in text


def test_unsupervised_factor_ramps_linearly():
    import numpy as np

    from neuroemu.studies.sdt import unsupervised_factor

    flat = {"unsupervised_lr_factor": 0.5, "unsupervised_lr_start": None, "ramp_rounds": 1}
    assert [unsupervised_factor(flat, r) for r in (1, 7)] == [0.5, 0.5]
    ramp = {"unsupervised_lr_factor": 1.0, "unsupervised_lr_start": 0.001, "ramp_rounds": 4}
    got = [unsupervised_factor(ramp, r) for r in (1, 2, 4, 9)]
    np.testing.assert_allclose(got, [0.001, 0.001 + 0.999 / 3, 1.0, 1.0])


def test_a_run_may_take_some_of_the_seeds(tmp_path, tiny_data, capsys):  # noqa: F811
    """A run of which one seed takes hours runs on some of the seeds; its jobs are the same as on all seeds."""
    from neuroemu.config import validate
    from neuroemu.studies import sdt

    runs = [{"trainer": "bp", "hidden": [20]}, {"trainer": "none", "hidden": [20], "seeds": [1]}]
    path = config(tmp_path / "cfg.yaml", tiny_data, seeds=[0, 1], runs=runs)
    cfg = sdt.check(validate(yaml.safe_load(path.read_text()), sdt.SCHEMA, "t"), "t")
    jobs = sdt.jobs(cfg)
    assert [j["id"] for j in jobs] == ["bp/784-20/unsupervised@seed0", "bp/784-20/unsupervised@seed1",
                                       "none/784-20/unsupervised@seed1"]
    assert all("seeds" not in j["run"] for j in jobs)  # a job is one run on one seed, whatever the run's other seeds
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    rows = {r["run"]: r for r in json.loads((out / "summary.json").read_text())["table"]}
    assert (rows["bp/784-20/unsupervised"]["seeds"], rows["none/784-20/unsupervised"]["seeds"]) == (2, 1)
    assert "* seeds 0, 1 (none/784-20/unsupervised on seed 1 only)" in (out / "RESULTS.md").read_text()
    bad = config(tmp_path / "bad.yaml", tiny_data, runs=[{"trainer": "none", "hidden": [20], "seeds": [3]}])
    capsys.readouterr()
    assert main(["run", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "runs[0].seeds: expected some of the config's seeds [0], got [3]" in capsys.readouterr().err


def test_sdt_trials_are_scored_on_held_out_training_images(tmp_path, tiny_data, capsys, monkeypatch):  # noqa: F811
    """Each trained run gets its own learning rate from the same search; a trial never loads the test
    set, trains on the training images less the held-out ones and is scored on those."""
    import neuroemu.data
    from neuroemu.data import load_fashion_mnist
    from neuroemu.tune import run_tune

    loaded = []
    monkeypatch.setattr(neuroemu.data, "load_fashion_mnist",
                        lambda split, **kw: loaded.append(split) or load_fashion_mnist(split, **kw))
    runs = [{"trainer": "eqprop", "hidden": [20]}, {"trainer": "none", "hidden": [20]},
            {"trainer": "eqprop", "hidden": [20], "card": "rram_gong2018", "scheme": "sign"}]
    tune = {"budget": 2, "seeds": [100, 101], "space": {"eqprop.lr": [1e-3, 1e-2]},
            "runs": {"none/784-20/unsupervised": None}, "set": {"data.validation": 40}}
    path = config(tmp_path / "cfg.yaml", tiny_data, runs=runs, tune=tune, eqprop={"epochs": 1, "batch_size": 16,
                                                                                 "t_free": 10, "t_nudge": 4, "lr": 0.03})
    out = tmp_path / "tune"
    summary = run_tune(path, out, workers=1, quiet=True)
    assert set(loaded) == {"train"}  # the test set was never loaded
    # every run unsupervised: scored by the authors' measure, not the linear read-out
    assert json.loads((out / "tune.json").read_text())["metric"] == "direct_association_av"
    assert set(summary["chosen"]) == {"eqprop/784-20/unsupervised", "eqprop/784-20/unsupervised/rram_gong2018/sign"}
    assert all(v["eqprop.lr"] in (1e-3, 1e-2) for v in summary["chosen"].values())
    stored = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(stored) == 2 * 2 + 2  # 2 runs x 2 rates on seed 100, each run's best again on seed 101
    assert all(s["job"]["data"]["validation"] == 40 and s["job"]["seed"] in (100, 101) for s in stored)
    assert all("test_acc" not in s["result"] and 0 <= s["result"]["val_acc"] <= 1 for s in stored)
    # the held-out images are a fixed draw: the trials' read-outs are fitted on the other 200
    assert all(s["result"]["val_acc"] == s["result"]["linear_readout"] for s in stored)

    # the tuned config: each trained run at its own rate, on the reported seed and the test set
    tuned = yaml.safe_load((out / "tuned.yaml").read_text())
    assert "tune" not in tuned and {r.get("eqprop", {}).get("lr") for r in tuned["runs"] if r["trainer"] == "eqprop"} \
        <= {1e-3, 1e-2}
    loaded.clear()
    assert main(["run", str(out / "tuned.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "test" in loaded
    text = (tmp_path / "run" / "RESULTS.md").read_text()
    assert "* runs with learning rates of their own: eqprop/784-20/unsupervised 0.0" in text

    # tuning needs held-out images, and says so before anything runs
    tune.pop("set")
    bad = config(tmp_path / "bad.yaml", tiny_data, runs=runs, tune=tune)
    capsys.readouterr()
    assert main(["tune", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "data.validation: tuning scores its trials on held-out training images" in capsys.readouterr().err


def test_a_run_scored_on_held_out_images_says_so(tmp_path, tiny_data, capsys):  # noqa: F811
    runs = [{"trainer": "bp", "hidden": [20], "mode": "supervised"}, {"trainer": "none", "hidden": [20]}]
    path = config(tmp_path / "cfg.yaml", tiny_data, runs=runs, data={"dir": str(tiny_data), "download": False,
                                                                     "validation": 40})
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    rows = {r["run"]: r for r in json.loads((out / "summary.json").read_text())["table"]}
    assert "test_acc" not in rows["bp/784-20/supervised"] and rows["bp/784-20/supervised"]["val_acc"] > 0
    text = (out / "RESULTS.md").read_text()
    assert "validation accuracy (%)" in text and "* evaluated on 40 training images held out of training" in text
    big = config(tmp_path / "big.yaml", tiny_data, runs=runs, data={"dir": str(tiny_data), "download": False,
                                                                    "train_limit": 100, "validation": 100})
    capsys.readouterr()
    assert main(["run", str(big), "--out", str(tmp_path / "o2")]) == 2
    assert "data.validation: expected fewer than the 100 training images, got 100" in capsys.readouterr().err
