"""The sparse-SNN Fashion-MNIST experiment end to end on tiny synthetic data, and its errors."""

import json

import numpy as np
import pytest
import yaml

from neuroemu.cli import main
from neuroemu.runner import ARRAYS
from neuroemu.data import load_fashion_mnist
from neuroemu.data.encoders import latency_encode
from neuroemu.studies.sparse_snn import learning_rate, psp_peak
from neuroemu.rules.sparse import SparseSNN
from neuroemu.hardware.substrate import IdealNeurons
from tests.test_spiking_fmnist import tiny_data  # noqa: F401 - the fixture


def config(path, data_dir, **extra):
    cfg = {
        "experiment": "sparse_snn", "seeds": [0], "workers": 1,
        "data": {"dir": str(data_dir), "download": False},
        "encoding": {"t_steps": 30},
        "model": {"hidden": 24},
        "train": {"epochs": 2, "batch_size": 40, "lr": 0.1},
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
    # operations: training per update and per inference (float chip), then per inference on each deployed chip
    job = json.loads((out / "runs" / "dense_N24_seed0.json").read_text())["result"]
    assert job["ops"]["energy_per_update_pJ"]["total"] > 0 and job["ops"]["energy_per_inference_pJ"]["total"] > 0
    assert job["ops_deployed"]["chip"]["energy_per_inference_pJ"]["device_reads"] > 0
    energy = {r["run"]: r for r in summary["energy"]}
    assert energy["dense/N24"]["update"]["total"] > 0 and energy["dense/N24 on pcm_joshi2020"]["update"] is None
    assert "## Operations and energy" in text and (out / "figures" / "energy.png").stat().st_size > 1000
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


@pytest.mark.parametrize("section, card, field", [
    ("chip", "pcm_joshi2020", "read_q: 0.0088"), ("neurons", "brainscales2", "n_neurons: 512"),
])
def test_an_edited_card_is_not_served_from_old_results(tmp_path, tiny_data, section, card, field):  # noqa: F811
    from neuroemu.hardware.cards import cards_dir
    from neuroemu.studies import resolve
    from neuroemu.runner import ResultsDiffer, load_results, run_jobs

    path = tmp_path / f"my_{card}.yaml"
    path.write_text((cards_dir() / f"{card}.yaml").read_text().replace(f"name: {card}", f"name: my_{card}"))
    assert field in path.read_text()
    cfg = config(tmp_path / "cfg.yaml", tiny_data, **{section: {"card": str(path)}})
    out = tmp_path / "out"
    module, resolved = resolve(cfg)
    run_jobs(module.jobs(resolved), lambda job: {"finished": True}, out, quiet=True)  # results stand-in
    key = field.split(":")[0]
    path.write_text(path.read_text().replace(field, f"{key}: 1"))
    module, resolved = resolve(cfg)
    with pytest.raises(ResultsDiffer, match=rf"{section}\.card_data\.parameters\.{key}"):
        load_results(out, module.jobs(resolved))


def test_learning_rate_schedules():
    cos = {"lr": 1e-3, "lr_schedule": "cosine"}
    assert [learning_rate(cos, k, 10) for k in (0, 5, 10)] == pytest.approx([1e-3, 5e-4, 0.0])
    assert learning_rate({"lr": 1e-3, "lr_schedule": "constant"}, 7, 10) == 1e-3


@pytest.mark.parametrize("alpha,beta", [(np.exp(-0.1), np.exp(-0.2)), (np.exp(-0.1), np.exp(-1 / 3))])
def test_psp_peak_is_the_kernel_maximum(alpha, beta):
    neurons = IdealNeurons(1, dt=1.0, tau_mem=-1 / np.log(alpha), tau_syn=-1 / np.log(beta))
    n = np.arange(200)
    want = ((alpha ** (n + 1) - beta ** (n + 1)) / (alpha - beta)).max()  # Σ_k α^(n−k) β^k, closed form
    assert psp_peak(neurons) == pytest.approx(want, rel=1e-6)
    assert psp_peak(IdealNeurons(1, dt=1.0, tau_mem=10.0, tau_syn=1e-6)) == pytest.approx(1.0)  # no filter


def test_saved_weights_and_neuron_substrates(tmp_path, tiny_data):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, runs=[{"backward": "sparse"}],
                 train={"epochs": 2, "batch_size": 40, "lr": 0.01, "lr_schedule": "cosine"},
                 eval={"batch_size": 40, "chip_images": 80})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "runs" / "sparse_N24_b_th0.2_seed0.json").read_text())["result"]
    net = SparseSNN((784, 24, 24, 10), rng=0)
    net.load_weights(out / "runs" / res["arrays"])
    x, y = load_fashion_mnist("test", data_dir=tiny_data, limit=80)
    # in batches of eval.batch_size, as the run evaluates: the same matrix shapes, so the same numbers
    logits = np.concatenate([net.predict(latency_encode(x[i:i + 40], t_steps=30, tau_eff=20.0, theta=0.2))
                             for i in range(0, len(x), 40)])
    # the saved weights are the trained network: its accuracy on the evaluated images is the recorded one
    assert res["neurons"]["network"] == np.mean(logits.argmax(axis=1) == y)
    assert all(0 <= res["neurons"][k] <= 1 for k in ("chip_model", "analog", "analog_calibrated"))
    assert res["neurons"]["psp_peak"] > 2  # τ_syn 5 µs against τ_mem 10 µs
    text = (out / "RESULTS.md").read_text()
    assert "analog, calibrated" in text and (out / "figures" / "neuron_substrates.png").stat().st_size > 1000


def test_neurons_can_be_skipped_and_targets_are_checked(tmp_path, tiny_data, capsys):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, runs=[{"backward": "dense"}], neurons={"card": None},
                 train={"epochs": 1, "batch_size": 40, "lr": 0.01})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert "analog, calibrated" not in (out / "RESULTS.md").read_text()
    assert not (out / "figures" / "neuron_substrates.png").exists()
    cfg = config(tmp_path / "cfg2.yaml", tiny_data, neurons={"targets": {"tau_syn": 1e-7}})
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "neurons: brainscales2 targets.tau_syn" in capsys.readouterr().err
    cfg = config(tmp_path / "cfg3.yaml", tiny_data, neurons={"card": "pcm_joshi2020"})
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "analog_chip" in capsys.readouterr().err
    cfg = config(tmp_path / "cfg4.yaml", tiny_data, neurons={"targets": {"tau_sin": 5e-6}})
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "targets.tau_sin: unknown target (did you mean 'tau_syn'?)" in capsys.readouterr().err


def test_a_diverged_seed_is_marked_and_not_deployed(tmp_path, tiny_data, capsys):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, train={"epochs": 2, "batch_size": 40, "lr": 1000.0},
                 runs=[{"backward": "sparse"}])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    d = summary["diverged"]["sparse/N24/b_th0.2@seed0"]
    assert d["at"] == 1 and d["metric"] == "train_loss" and d["value"] > d["bound"]
    row = summary["table"][0]
    assert row["diverged"] == 1 and "test_acc" not in row and "chip_0s" not in row
    assert printed.splitlines()[1].split()[1] == "diverged"
    result = json.loads(next((out / "runs").glob("*.json")).read_text())["result"]
    assert "chip" not in result and "neurons" not in result  # stopped before the hardware evaluations
    assert "| sparse/N24/b_th0.2 | diverged |" in (out / "RESULTS.md").read_text()


def _timeless(result):
    """A job's result without its wall times and arrays."""
    if isinstance(result, dict):
        return {k: _timeless(v) for k, v in result.items()
                if not (k.endswith(("_time_s", "wall_s", "_ms")) or k == ARRAYS)}
    if isinstance(result, list):
        return [_timeless(v) for v in result]
    return result


@pytest.mark.parametrize("study", ["sparse_snn", "spiking_fmnist"])
def test_an_interrupted_job_resumes_from_its_checkpoint_with_the_same_result(tmp_path, tiny_data, monkeypatch,
                                                                             study):  # noqa: F811
    from neuroemu.studies import resolve
    from tests import test_spiking_fmnist
    from tests.checkpoints import resumes_identically

    make = config if study == "sparse_snn" else test_spiking_fmnist.config
    extra = {"runs": [{"backward": "sparse"}]} if study == "sparse_snn" else {}
    cfg = make(tmp_path / "cfg.yaml", tiny_data, train={"epochs": 3, "batch_size": 40, "lr": 0.01}, **extra)
    module, resolved = resolve(cfg)

    def clean(result):
        return {**_timeless(result), "weights": {k: w.tolist() for k, w in result.get(ARRAYS, {}).items()}}

    resumes_identically(monkeypatch, tmp_path, module.run_job, module.jobs(resolved)[0], 2, clean)
