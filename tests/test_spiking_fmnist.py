"""The spiking Fashion-MNIST experiment end to end on tiny synthetic data, and its config errors."""

import json

import numpy as np
import pytest
import yaml

from neuroemu.cli import main
from neuroemu.data.fashion_mnist import write_idx


@pytest.fixture
def tiny_data(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "fmnist"
    d.mkdir()
    for split, n in (("train", 240), ("t10k", 80)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = np.zeros((n, 28, 28), np.uint8)
        for k in range(n):  # one bright row block per class: learnable from spike latencies
            x[k, 2 * y[k]:2 * y[k] + 3, :] = 255
        x = np.maximum(x, (rng.random((n, 28, 28)) * 40).astype(np.uint8))
        write_idx(d / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", y)
    return d


def config(path, data_dir, **extra):
    cfg = {
        "experiment": "spiking_fmnist", "seeds": [0], "workers": 1,
        "data": {"dir": str(data_dir), "download": False},
        "encoding": {"t_steps": 30},
        "model": {"hidden": [24]},
        "train": {"epochs": 3, "batch_size": 40, "lr": 0.01},
        "eval": {"batch_size": 40},
        "runs": [{"name": "float", "synapses": "ideal", "neurons": "ideal"},
                 {"name": "chip/uncalibrated", "synapses": "brainscales2", "neurons": "analog"},
                 {"name": "chip/calibrated", "synapses": "brainscales2", "neurons": "analog", "calibrated": True}],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_spiking_experiment_end_to_end(tmp_path, tiny_data, capsys):
    cfg = config(tmp_path / "cfg.yaml", tiny_data)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "chip/calibrated" in printed and "spikes/neuron" in printed
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["run"]: r for r in summary["table"]}
    assert list(rows) == ["float", "chip/uncalibrated", "chip/calibrated"]
    assert rows["float"]["test_acc"] > 50  # learnt well above chance (10 %)
    assert rows["chip/calibrated"]["test_acc"] > 30
    assert rows["float"]["chip_time_s"] == pytest.approx(80 * 30 * 1e-6)
    assert rows["float"]["biological_time_s"] == pytest.approx(80 * 30 * 1e-3)
    text = (out / "RESULTS.md").read_text()
    assert "Calibration of the hidden layer" in text and "| tau_mem |" in text
    assert (out / "figures" / "accuracy.png").stat().st_size > 1000
    job = json.loads(next((out / "runs").glob("*.json")).read_text())
    job = job.get("result", job)
    cal = [r for r in job["runs"] if r["run"] == "chip/calibrated"][0]["calibration"][0]
    assert all(row["ratio"] <= 0.3 for row in cal)
    assert len(job["metrics"]) == 3 and 0 < job["readout_scale"] <= 1
    # operations: the float training per update, then the test set's inferences on every run's chip
    assert job["ops"]["energy_per_update_pJ"]["total"] > 0 and job["ops"]["updates"] == 3 * 240 // 40
    assert all(r["ops"]["per_inference"]["units"]["neuron_updates"] > 0 for r in job["runs"])
    assert job["runs"][0]["ops"]["energy_per_inference_pJ"]["total"] > 0  # the float run's digital neurons
    assert all("neuron updates of the analog chip" in r["ops"]["energy_per_inference_pJ"]["not_costed"]
               for r in job["runs"][1:])
    assert [r["run"] for r in summary["energy"]] == list(rows) and "## Operations and energy" in text


@pytest.mark.parametrize("run, fragment", [
    ({"synapses": "pcm_nandakumar2019"}, "no such device card"),
    ({"neurons": "digital"}, "neurons"),
    ({"neurons": "ideal", "calibrated": True}, "only analog neurons"),
    ({"periphery": "noisy"}, "periphery"),
])
def test_spiking_config_errors(tmp_path, tiny_data, capsys, run, fragment):
    cfg = config(tmp_path / "cfg.yaml", tiny_data, runs=[run])
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and str(cfg) in err and len(err.strip().splitlines()) == 1


def test_spiking_config_needs_an_analog_chip_card(tmp_path, tiny_data, capsys):
    cfg = config(tmp_path / "cfg.yaml", tiny_data, model={"hidden": [24], "card": "pcm_nandakumar2018"})
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert "analog_chip" in capsys.readouterr().err
    cfg = config(tmp_path / "cfg2.yaml", tiny_data, model={"hidden": [600]},
                 runs=[{"synapses": "ideal", "neurons": "analog"}])
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert "512 neurons" in capsys.readouterr().err


def test_a_diverged_seed_counts_in_every_run(tmp_path, tiny_data, capsys):
    cfg = config(tmp_path / "cfg.yaml", tiny_data, train={"epochs": 2, "batch_size": 40, "lr": 1000.0},
                 runs=[{"name": "float", "synapses": "ideal", "neurons": "ideal"},
                       {"name": "chip", "synapses": "brainscales2", "neurons": "analog"}])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["diverged"]) == ["seed0"] and summary["diverged"]["seed0"]["metric"] == "train_loss"
    for row in summary["table"]:
        assert row["seeds"] == row["diverged"] == 1 and "test_acc" not in row
    assert [line.split()[1] for line in printed.splitlines()[1:3]] == ["diverged", "diverged"]
    text = (out / "RESULTS.md").read_text()
    assert "| float | ideal | ideal | diverged |" in text and "* diverged: float, seed 0, at epoch 1" in text
