"""The FastHebb semi-supervised experiment end to end on tiny synthetic data, and its errors."""

import json

import numpy as np
import pytest
import yaml

from neuroemu.cli import main
from neuroemu.studies.fasthebb import label_subset
from tests.test_spiking_fmnist import tiny_data  # noqa: F401 - the fixture


def config(path, data_dir, **extra):
    cfg = {
        "experiment": "fasthebb", "seeds": [0], "workers": 1,
        "data": {"dir": str(data_dir), "download": False},
        "zca": {"fit_images": 240, "eps": 1.0},  # few images: strong regularisation
        "layer": {"units": 8, "kernel": 5, "pool": 2},
        "readout": {"epochs": 3, "min_steps": 30, "batch_size": 32},
        "backprop": {"epochs": 2, "min_steps": 20, "batch_size": 32},
        "labels": [0.25, 1.0],
        "eval": {"batch_size": 40},
        "runs": [{"features": "hebbian"}, {"features": "random"}, {"features": "backprop"},
                 {"features": "hebbian", "card": "pcm_nandakumar2018", "scheme": "stochastic"}],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_fasthebb_end_to_end(tmp_path, tiny_data, capsys):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, hebbian={"epochs": 2})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert "labels 0.25" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["run"]: r for r in summary["table"]}
    assert list(rows) == ["hebbian", "random", "backprop", "hebbian/pcm_nandakumar2018/stochastic"]
    assert rows["hebbian"]["acc_1"] > 50  # ten classes: chance is 10 %
    assert rows["hebbian"]["images_per_s"] > 0 and "images_per_s" not in rows["backprop"]
    assert rows["hebbian/pcm_nandakumar2018/stochastic"]["pulses_per_synapse"] > 0
    assert rows["hebbian/pcm_nandakumar2018/stochastic"]["acc_1"] > 50
    chip = json.loads((out / "runs" / "hebbian_pcm_nandakumar2018_stochastic_seed0.json").read_text())["result"]
    assert np.asarray(chip["filters"]).shape == (8, 25) and chip["pulses"] > 0
    assert chip["g_hist"]["steps"] == [0, 2]  # as written, and after the last Hebbian epoch
    text = (out / "RESULTS.md").read_text()
    assert "| hebbian/pcm_nandakumar2018/stochastic | pcm_nandakumar2018 | stochastic |" in text
    # operations: Hebbian updates on the chip, and the feature layer's inference per test image
    assert chip["ops"]["energy_per_update_pJ"]["pulses"] > 0 and chip["ops"]["energy_per_inference_pJ"]["total"] > 0
    energy = {r["run"]: r for r in summary["energy"]}
    assert set(energy) == {"hebbian", "random", "hebbian/pcm_nandakumar2018/stochastic"}  # backprop: no chip
    assert energy["random"]["update"] is None and energy["random"]["inference"]["total"] > 0
    assert "## Operations and energy" in text
    for name in ("accuracy_vs_labels", "filters", "conductances", "pulses_per_device"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000


def test_fasthebb_dense_layer_and_overrides(tmp_path, tiny_data):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, runs=[{"features": "hebbian"}, {"features": "backprop"}])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "layer.kind=dense",
                 "--set", "layer.units=20", "--set", "hebbian.rule=hpca", "--set", "hebbian.weighting=mean",
                 "--set", "labels=[1.0]"]) == 0
    rows = {r["run"]: r for r in json.loads((out / "summary.json").read_text())["table"]}
    assert set(rows["hebbian"]) >= {"acc_1"} and "acc_0.25" not in rows["hebbian"]
    assert not (out / "figures" / "filters.png").exists()


def test_label_subsets_are_class_balanced():
    y = np.repeat(np.arange(10), 100)
    idx = label_subset(y, 0.1, np.random.default_rng(0))
    assert len(idx) == 100 and np.all(np.bincount(y[idx]) == 10)
    assert len(label_subset(y, 1.0, np.random.default_rng(0))) == 1000


@pytest.mark.parametrize("extra,message", [
    ({"runs": [{"features": "random", "card": "pcm_nandakumar2018"}]}, "only hebbian features are learned on a chip"),
    ({"runs": [{"features": "hebbian", "card": "pcm_nandakumar2018", "scheme": "magic"}]}, "scheme: expected one of"),
    ({"runs": [{"features": "hebbian", "card": "pcm_joshi2020", "scheme": "sign"}]}, "programmed by target"),
    ({"hebbian": {"rule": "kwta", "k": 9}}, "hebbian.k: expected at most layer.units"),
    ({"hebbian": {"rule": "oja", "weighting": "responses"}}, "needs a competitive rule"),
    ({"labels": [0.0, 1.0]}, "label fractions in (0, 1]"),
    ({"layer": {"units": 8, "kernel": 5, "pool": 25}}, "layer.pool: expected at most the feature-map side 24"),
    ({"runs": [{"features": "hebbian"}, {"features": "hebbian"}]}, "clashes"),
])
def test_fasthebb_config_errors(tmp_path, tiny_data, capsys, extra, message):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, **extra)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_a_run_may_name_its_own_seeds(tmp_path, tiny_data):  # noqa: F811
    from neuroemu.studies import resolve

    cfg = config(tmp_path / "cfg.yaml", tiny_data, seeds=[0, 1, 2],
                 runs=[{"features": "hebbian"}, {"features": "backprop", "seeds": [4]}])
    module, resolved = resolve(cfg)
    ids = [j["id"] for j in module.jobs(resolved)]
    assert ids == ["hebbian@seed0", "hebbian@seed1", "hebbian@seed2", "backprop@seed4"]
    assert all("seeds" not in j["run"] for j in module.jobs(resolved))  # not part of a job: adding seeds reruns nothing


def test_a_diverged_read_out_is_marked(tmp_path, tiny_data, capsys):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, runs=[{"features": "random"}],
                 readout={"epochs": 3, "min_steps": 30, "batch_size": 32, "lr": 1000.0})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    summary = json.loads((out / "summary.json").read_text())
    d = summary["diverged"]["random@seed0"]
    assert d["metric"] == "read-out loss (labels 0.25)" and d["bound"] == pytest.approx(5 * np.log(10))
    row = summary["table"][0]
    assert row["diverged"] == 1 and not any(k.startswith("acc_") for k in row)
    assert printed[1].split()[1:] == ["diverged", "diverged", "diverged"]
    assert "| random | - | - | 1 (diverged) | diverged | diverged |" in (out / "RESULTS.md").read_text()


def test_an_interrupted_hebbian_job_resumes_mid_run(tmp_path, tiny_data, monkeypatch):  # noqa: F811
    """A job on a PCM tile killed after its first Hebbian epoch goes on from its checkpoint when run
    again, and ends with the result of a run never interrupted."""
    from neuroemu.studies import fasthebb, resolve
    from tests.checkpoints import resumes_identically

    cfg = config(tmp_path / "cfg.yaml", tiny_data, hebbian={"epochs": 3}, labels=[1.0],
                 runs=[{"features": "hebbian", "card": "pcm_nandakumar2018", "scheme": "stochastic"}])
    _, resolved = resolve(cfg)
    job = fasthebb.jobs(resolved)[0]

    resumed = resumes_identically(monkeypatch, tmp_path, fasthebb.run_job, job, done=1, clean=lambda r: {
        k: v for k, v in r.items() if k not in ("train_time_s", "hebbian_time_s", "images_per_s")})
    assert resumed["g_hist"]["steps"] == [0, 3] and resumed["pulses"] > 0
