"""The sparse-SNN Fashion-MNIST experiment end to end on tiny synthetic data, and its errors."""

import json

import pytest
import yaml

from neuroemu.cli import main
from tests.test_spiking_fmnist import tiny_data  # noqa: F401 - the fixture


def config(path, data_dir, **extra):
    cfg = {
        "experiment": "sparse_snn", "seeds": [0], "workers": 1,
        "data": {"dir": str(data_dir), "download": False},
        "encoding": {"t_steps": 30},
        "model": {"hidden": 24},
        "train": {"epochs": 2, "batch_size": 40, "lr": 0.01},
        "chip": {"delays": [3600]},
        "eval": {"batch_size": 40},
        "runs": [{"backward": "dense"}, {"backward": "sparse"}, {"backward": "sparse", "b_th": 1.0e9, "name": "all"}],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sparse_snn_end_to_end(tmp_path, tiny_data, capsys):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert "bwd ms (h2)" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["run"]: r for r in summary["table"]}
    assert list(rows) == ["dense/N24", "sparse/N24/b_th0.2", "all"]
    assert rows["dense/N24"]["test_acc"] > 30
    assert 0 < rows["sparse/N24/b_th0.2"]["hidden2_active_fraction"] < 1
    # an unbounded band keeps every entry: the sparse backward is then the dense one, so the runs agree
    assert rows["all"]["hidden2_active_fraction"] == 1.0
    assert rows["all"]["test_acc"] == pytest.approx(rows["dense/N24"]["test_acc"], abs=2.5)
    assert set(k for k in rows["dense/N24"] if k.startswith("chip_")) == {"chip_0s", "chip_3600s"}
    text = (out / "RESULTS.md").read_text()
    assert "81.9 % dense" in text and "chip" in text
    for name in ("learning_curves", "chip_drift"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000


def test_sparse_snn_config_errors(tmp_path, tiny_data, capsys):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, runs=[{"backward": "half"}])
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "backward" in capsys.readouterr().err
    cfg = config(tmp_path / "cfg2.yaml", tiny_data, chip={"card": "pcm_nandakumar2019"})
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "no such device card" in capsys.readouterr().err
    cfg = config(tmp_path / "cfg3.yaml", tiny_data, runs=[{"backward": "dense"}, {"backward": "dense"}])
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "clashes" in capsys.readouterr().err
