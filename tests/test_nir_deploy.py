"""The nir_deploy study: a NIR file as the network of a deployment study, end to end on tiny synthetic
data; the float reference reproduces the exporting network exactly; config errors; an edited file
is not served from old results."""

import json

import numpy as np
import pytest
import yaml

nir = pytest.importorskip("nir")

from neuroemu import studies  # noqa: E402
from neuroemu.chip import Hardware  # noqa: E402
from neuroemu.cli import main  # noqa: E402
from neuroemu.data import load_fashion_mnist  # noqa: E402
from neuroemu.data.encoders import latency_encode  # noqa: E402
from neuroemu.data.classification import accuracy  # noqa: E402
from neuroemu.errors import ConfigError  # noqa: E402
from neuroemu.interop.nir import to_nir  # noqa: E402
from neuroemu.models.snn import SNN  # noqa: E402
from neuroemu.plugins import file_digest  # noqa: E402
from neuroemu.rules.sparse import SparseSNN  # noqa: E402
from neuroemu.rules.surrogate import Adam  # noqa: E402
from neuroemu.runner import ResultsDiffer, job_hash, load_results, run_jobs  # noqa: E402
from neuroemu.studies import nir_deploy  # noqa: E402
from tests.synthetic import write_tiny_fashion_mnist  # noqa: E402

DT = 1e-3
ENC = {"t_steps": 20, "tau_eff": 5.0, "theta": 0.2}


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """The experiment is known to `neuroemu run` (a no-op once neuroemu.studies lists it)."""
    monkeypatch.setitem(studies.EXPERIMENTS, nir_deploy.NAME, nir_deploy)


def encode(x):
    return latency_encode(x, **ENC)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(data dir, the .nir file of a briefly trained 784-16-16-10 SparseSNN, its exact float64 chip)."""
    root = tmp_path_factory.mktemp("nir_deploy")
    data = write_tiny_fashion_mnist(root / "fmnist", 200, 60)
    x, y = load_fashion_mnist("train", data_dir=data, download=False)
    net = SparseSNN((784, 16, 16, 10), dt=DT, rng=0, dtype=np.float64)
    opt = Adam(5e-3)
    for k in range(10):
        net.train_step(encode(x[20 * k:20 * (k + 1)]), y[20 * k:20 * (k + 1)], opt)
    chip = SNN(net, encode=encode).build(Hardware.exact(), rng=0)
    path = root / "net" / "tiny.nir"
    path.parent.mkdir()
    nir.write(path, to_nir(chip, dt=DT))
    return data, path, chip


def config(path, data, net_file, **extra):
    cfg = {
        "experiment": "nir_deploy", "seeds": [0], "workers": 1,
        "network": {"file": str(net_file), "dt": DT},
        "data": {"dir": str(data), "download": False},
        "encoding": ENC,
        "eval": {"batch_size": 30, "delays": [0, 3600]},
        "runs": [{"name": "pcm", "synapses": "pcm_joshi2020", "periphery": "default"},
                 {"name": "bss2", "synapses": "brainscales2"},
                 {"name": "analog", "neurons": "analog", "calibrated": True, "reset": "to_value"}],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_end_to_end_and_the_reference_reproduces_the_exporting_network(tmp_path, tiny, capsys):
    data, net_file, chip = tiny
    cfg = config(tmp_path / "deploy.yaml", data, net_file)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert "vs ref pp" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["run"]: r for r in summary["table"]}
    assert list(rows) == ["float/ideal", "pcm", "bss2", "analog"]  # the reference added in front
    ref = rows["float/ideal"]
    assert ref["reference"] and ref["vs_reference"] == 0.0 and ref["spikes_per_neuron"] > 0
    assert rows["pcm"]["drifts"] and {"acc_0s", "acc_3600s"} <= set(rows["pcm"])
    assert not rows["bss2"]["drifts"] and "acc_3600s" not in rows["bss2"]
    assert rows["analog"]["chip_time_s"] == pytest.approx(60 * ENC["t_steps"] * 1e-6)
    assert "chip_time_s" not in ref
    for r in rows.values():
        assert 0 <= r["test_acc"] <= 100
    text = (out / "RESULTS.md").read_text()
    assert "float/ideal (reference)" in text and "tiny.nir" in text
    for name in ("accuracy", "drift"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    # the study's reference is the exporting network, image for image: the same accuracy, exactly
    xte, yte = load_fashion_mnist("test", data_dir=data, download=False)
    want = accuracy(chip, xte, yte, 30)
    module, resolved = studies.resolve(cfg)
    got = load_results(out, module.jobs(resolved))["float/ideal@seed0"]
    assert got["test_acc"] == want and 0.1 < want  # the network learned something (10 classes)
    # the config.yaml written beside the results runs as it is: the same jobs (the file's hash pinned)
    again_module, again = studies.resolve(out / "config.yaml")
    assert again["network"]["sha256"] == resolved["network"]["sha256"]
    assert again_module.jobs(again) == module.jobs(resolved)


def test_the_network_file_is_relative_to_the_config_and_hashed(tmp_path, tiny, monkeypatch):
    data, net_file, _ = tiny
    cfg = config(net_file.parent / "cfg.yaml", data, net_file.name, runs=[{"synapses": "float"}])
    try:
        module, resolved = studies.resolve(cfg)
        monkeypatch.chdir(tmp_path)  # another working directory: the same jobs
        _, elsewhere = studies.resolve(cfg)
    finally:
        cfg.unlink()
    assert resolved["network"]["sha256"] == file_digest(net_file)
    assert nir_deploy.located(resolved["network"]) == net_file.resolve()
    assert [r["name"] for r in resolved["runs"]] == ["float/ideal"]  # the one run is the reference
    assert [job_hash(j) for j in module.jobs(elsewhere)] == [job_hash(j) for j in module.jobs(resolved)]


@pytest.mark.parametrize("change, fragment", [
    ({"network": {"file": "missing.nir", "dt": DT}}, "no such NIR file"),
    ({"network": {"file": "NET", "dt": DT, "method": "midpoint"}}, "method"),
    ({"network": {"file": "NET", "dt": DT, "sha256": "0" * 64}}, "sha256"),
    ({"runs": [{"neurons": "analog"}]}, r"subtract.*reset: to_value"),
    ({"runs": [{"neurons": "ideal", "calibrated": True}]}, "only analog neurons are calibrated"),
    ({"runs": [{"synapses": "float", "periphery": "default"}]}, "no tiles"),
    ({"runs": [{"synapses": "pcm_nandakumar2019"}]}, "no such device card"),
    ({"runs": [{"neurons": "analog", "neuron_card": "pcm_joshi2020", "reset": "to_value"}]}, "analog_chip"),
])
def test_config_errors(tmp_path, tiny, capsys, change, fragment):
    data, net_file, _ = tiny
    if "network" in change and change["network"]["file"] == "NET":
        change["network"]["file"] = str(net_file)
    cfg = config(tmp_path / "cfg.yaml", data, net_file, **change)
    with pytest.raises(ConfigError, match=fragment):
        studies.resolve(cfg)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "cfg.yaml" in capsys.readouterr().err  # the message names the config


def test_a_network_with_the_wrong_input_or_output_is_refused(tmp_path, tiny):
    data, _, _ = tiny
    net = SparseSNN((50, 4, 10), dt=DT, rng=0, dtype=np.float64)
    path = tmp_path / "small.nir"
    nir.write(path, to_nir(SNN(net).build(Hardware.exact(), rng=0), dt=DT))
    with pytest.raises(ConfigError, match="784"):
        studies.resolve(config(tmp_path / "cfg.yaml", data, path))


def test_an_edited_network_file_is_not_served_from_old_results(tmp_path, tiny):
    data, net_file, _ = tiny
    path = tmp_path / "net.nir"
    path.write_bytes(net_file.read_bytes())
    cfg = config(tmp_path / "cfg.yaml", data, path)
    out = tmp_path / "out"
    module, resolved = studies.resolve(cfg)
    run_jobs(module.jobs(resolved), lambda job: {"finished": True}, out, quiet=True)  # results stand-in
    assert len(load_results(out, module.jobs(resolved))) == 4
    graph = nir.read(str(path))
    graph.nodes["layer1"].weight = np.asarray(graph.nodes["layer1"].weight) * 1.01
    nir.write(path, graph)
    module, resolved = studies.resolve(cfg)
    with pytest.raises(ResultsDiffer, match=r"network\.sha256"):
        load_results(out, module.jobs(resolved))
