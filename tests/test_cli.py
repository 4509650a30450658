"""The `neuroemu` command: devices subcommands, `run` end to end on tiny synthetic data, errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from neuroemu.hardware.cards import cards_dir, list_cards
from neuroemu.cli import main
from tests.synthetic import write_tiny_fashion_mnist


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_devices_lists_every_card_name_first(capsys):
    code, out, _ = run_cli(["devices"], capsys)
    assert code == 0
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert names == list_cards()
    assert {"pcm_nandakumar2018", "pcm_joshi2020", "rram_gong2018", "linear_step", "quantized", "ideal"} <= set(names)


def test_devices_show_prints_a_valid_card(capsys):
    code, out, _ = run_cli(["devices", "show", "pcm_nandakumar2018"], capsys)
    assert code == 0
    data = yaml.safe_load(out)
    assert data["name"] == "pcm_nandakumar2018"
    assert data["parameters"]["g_max"] == {"value": 12.0, "unit": "uS"}


def test_devices_show_user_file_and_bad_card_error(tmp_path, capsys):
    src = cards_dir() / "linear_step.yaml"
    good = tmp_path / "linear_step.yaml"
    good.write_text(src.read_text())
    assert run_cli(["devices", "show", str(good)], capsys)[0] == 0
    bad = tmp_path / "my_rram.yaml"
    bad.write_text(src.read_text().replace("name: linear_step", "name: my_rram").replace("dw_min:", "dw_mim:"))
    code, out, err = run_cli(["devices", "show", str(bad)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert str(bad) in err and "dw_mim" in err and "dw_min" in err


def test_out_of_range_card_field_is_one_line_error(tmp_path, capsys):
    src = cards_dir() / "pcm_nandakumar2018.yaml"
    bad = tmp_path / "pcm_nandakumar2018.yaml"
    bad.write_text(src.read_text().replace("drift_nu: 0.04", "drift_nu: 4.0"))
    code, _, err = run_cli(["devices", "show", str(bad)], capsys)
    assert code == 2 and "drift_nu" in err and "[0, 1]" in err and str(bad) in err


def test_devices_response_json(capsys):
    code, out, _ = run_cli(["devices", "response", "pcm_nandakumar2018", "--pulses", "5", "--devices", "2000",
                            "--seed", "0", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["unit"] == "uS" and data["pulses"] == [1, 2, 3, 4, 5]
    assert all(b > a for a, b in zip(data["mean"], data["mean"][1:]))  # SET pulses raise G on average
    code, _, err = run_cli(["devices", "response", "pcm_joshi2020", "--json"], capsys)
    assert code == 2 and "pulses" in err


def test_levels_knob_on_the_command_line(capsys):
    code, out, _ = run_cli(["devices", "show", "rram_gong2018", "--bits", "4"], capsys)
    assert code == 0 and yaml.safe_load(out)["parameters"]["levels"] == 16
    code, out, _ = run_cli(["devices", "response", "linear_step", "--levels", "8", "--pulses", "3", "--devices",
                            "500", "--json"], capsys)
    assert code == 0
    code, _, err = run_cli(["devices", "show", "linear_step", "--levels", "1"], capsys)
    assert code == 2 and "levels" in err


def test_devices_plot_writes_pngs(tmp_path, capsys):
    code, out, _ = run_cli(["devices", "plot", "rram_gong2018", "--out", str(tmp_path)], capsys)
    assert code == 0
    paths = [Path(p) for p in out.split()]
    assert len(paths) == 4 and all(p.stat().st_size > 1000 for p in paths)


@pytest.fixture
def tiny_data(tmp_path):
    return write_tiny_fashion_mnist(tmp_path / "fmnist", 300, 100)


def write_config(path, data_dir, runs=None, **extra):
    cfg = {
        "experiment": "crossbar_mlp", "seeds": [0], "workers": 1,
        "data": {"dir": str(data_dir), "download": False},
        "model": {"hidden": [16]},
        "train": {"epochs": 2, "batch_size": 50, "lr": 0.1},
        "eval": {"delays": [3600]},
        "runs": runs or [{"name": "fp32", "card": "ideal", "scheme": "ideal", "periphery": "ideal"},
                         {"card": "pcm_nandakumar2018", "scheme": "mixed_precision"}],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_end_to_end_and_resume(tmp_path, tiny_data, capsys):
    cfg = write_config(tmp_path / "cfg.yaml", tiny_data)
    out = tmp_path / "out"
    code, stdout, err = run_cli(["run", str(cfg), "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    for name in ("config.yaml", "metrics.csv", "summary.json", "RESULTS.md"):
        assert (out / name).stat().st_size > 0
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "accuracy.png" in figures and len(figures) >= 3
    summary = json.loads((out / "summary.json").read_text())
    runs = [r["run"] for r in summary["table"]]
    assert runs == ["fp32", "pcm_nandakumar2018/mixed_precision"]
    assert summary["table"][1]["pulses_per_synapse"] > 0 and summary["table"][0]["pulses_per_synapse"] == 0
    assert summary["meta"]["versions"]["numpy"] == np.__version__
    lines = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 2 * 2  # header + runs x epochs
    assert "fp32" in (out / "RESULTS.md").read_text()
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["hardware"]["periphery"]["adc_bits"] == 9  # defaults filled in
    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert len(before) == 2
    # second invocation: nothing is recomputed
    code, _, err = run_cli(["run", str(cfg), "--out", str(out)], capsys)
    assert code == 0 and err.count("[done before]") == 2
    assert before == {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    # the resolved config.yaml runs as it is and names the same jobs
    code, _, err = run_cli(["run", str(out / "config.yaml"), "--out", str(out)], capsys)
    assert code == 0 and err.count("[done before]") == 2, err
    # a changed setting recomputes only what it touches
    code, _, err = run_cli(["run", str(cfg), "--out", str(out), "--set", "runs.1.scheme=sign"], capsys)
    assert code == 0 and err.count("[done before]") == 1


def test_run_config_errors_are_one_line(tmp_path, tiny_data, capsys):
    cfg = write_config(tmp_path / "cfg.yaml", tiny_data)
    code, _, err = run_cli(["run", str(cfg), "--out", str(tmp_path / "o"), "--set", "train.lr=-1"], capsys)
    assert code == 2 and "train.lr" in err and str(cfg) in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["run", str(cfg), "--out", str(tmp_path / "o"), "--set", "train.epohcs=2"], capsys)
    assert code == 2 and "epohcs" in err and "epochs" in err
    bad = write_config(tmp_path / "bad.yaml", tiny_data, runs=[{"card": "pcm_nandakumar2019", "scheme": "ideal"}])
    code, _, err = run_cli(["run", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "runs[0].card" in err and "pcm_nandakumar2018" in err
    bad = write_config(tmp_path / "bad2.yaml", tiny_data, runs=[{"card": "pcm_joshi2020", "scheme": "sign"}])
    code, _, err = run_cli(["run", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "runs[0].scheme" in err
    code, _, err = run_cli(["run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "missing.yaml" in err


def test_shipped_example_config_validates():
    from neuroemu.studies import resolve

    root = Path(__file__).resolve().parents[1]
    module, cfg = resolve(root / "examples" / "fmnist_crossbar" / "config.yaml")
    assert len(cfg["runs"]) >= 10
    assert {r["scheme"] for r in cfg["runs"]} >= {"ideal", "digital", "sign", "stochastic", "stochastic_coincidence",
                                                 "multi_device", "mixed_precision", "tiki_taka"}


def test_console_script_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "neuroemu", "devices"], capture_output=True, text=True)
    assert res.returncode == 0 and "pcm_nandakumar2018" in res.stdout


@pytest.mark.parametrize("change, field", [
    ({"runs": [{"card": "linear_step", "scheme": "mixed_precision", "scheme_params": {"epsilom": 0.1}}]}, "epsilom"),
    ({"runs": [{"card": "linear_step", "scheme": "ideal", "levels": 8, "bits": 3}]}, "runs[0].bits"),
    ({"runs": [{"card": "pcm_joshi2020", "scheme": "sign", "deploy": True}]}, "runs[0].scheme"),
    ({"runs": [{"card": "linear_step", "scheme": "ideal", "periphery": "idael"}]}, "runs[0].periphery"),
    ({"runs": [{"card": "linear_step", "scheme": "ideal", "periphery": {"dac_bits": 1}}]}, "dac_bits"),
    ({"runs": [{"card": "quantized", "scheme": "digital", "levels": 3}]}, "runs[0]"),
    ({"runs": [{"name": "a/b", "card": "ideal", "scheme": "ideal"}, {"name": "a_b", "card": "ideal", "scheme": "ideal"}]},
     "runs[1].name"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"data": {"train_limit": 10}}, "train_limit"),
    ({"experiment": [1]}, "experiment"),
])
def test_run_rejects_bad_settings_before_any_job_starts(tmp_path, tiny_data, capsys, change, field):
    data = change.pop("data", {})
    cfg = write_config(tmp_path / "cfg.yaml", tiny_data, **change)
    if data:
        raw = yaml.safe_load(cfg.read_text())
        raw["data"].update(data)
        cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    code, _, err = run_cli(["run", str(cfg), "--out", str(out), "--quiet"], capsys)
    assert code == 2 and field in err and len(err.strip().splitlines()) == 1, err
    assert not (out / "runs").exists()  # nothing was started


def test_an_edited_card_is_not_served_from_old_results(tmp_path, tiny_data, capsys):
    card = tmp_path / "my_step.yaml"
    card.write_text((cards_dir() / "linear_step.yaml").read_text().replace("name: linear_step", "name: my_step"))
    cfg = write_config(tmp_path / "cfg.yaml", tiny_data, runs=[{"card": str(card), "scheme": "mixed_precision"}])
    out = tmp_path / "out"
    assert run_cli(["run", str(cfg), "--out", str(out), "--quiet"], capsys)[0] == 0
    card.write_text(card.read_text().replace("dw_min: 0.001", "dw_min: 0.002"))
    code, _, err = run_cli(["run", str(cfg), "--out", str(out)], capsys)
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli(["run", str(cfg), "--out", str(out), "--overwrite"], capsys)
    assert code == 0 and "[done before]" not in err


def test_devices_show_and_plot_an_analog_chip(tmp_path, capsys):
    code, out, _ = run_cli(["devices", "show", "brainscales2"], capsys)
    assert code == 0
    data = yaml.safe_load(out)
    assert data["kind"] == "analog_chip" and data["parameters"]["tau_mem"]["value"] == pytest.approx(1e-05)
    code, out, _ = run_cli(["devices", "plot", "brainscales2", "--out", str(tmp_path)], capsys)
    assert code == 0
    names = sorted(Path(p).name for p in out.split())
    assert names == ["brainscales2_calibration.png", "brainscales2_mac_transfer.png",
                     "brainscales2_membrane_traces.png", "brainscales2_raster.png"]
    code, _, err = run_cli(["devices", "response", "brainscales2"], capsys)
    assert code == 2 and "analog chip" in err


@pytest.fixture
def bad_inputs(tmp_path, tiny_data):
    """Paths for the bad-input cases: a valid config, files with problems, a plain file."""
    paths = {"tmp": tmp_path, "data": tiny_data, "cfg": write_config(tmp_path / "cfg.yaml", tiny_data)}
    paths["latin_cfg"] = tmp_path / "latin.yaml"
    paths["latin_cfg"].write_bytes(b"experiment: crossbar_mlp\ndescription: caf\xe9\n")
    paths["latin_card"] = tmp_path / "linear_step.yaml"
    paths["latin_card"].write_bytes((cards_dir() / "linear_step.yaml").read_bytes() + b"# caf\xe9\n")
    paths["dir_yaml"] = tmp_path / "folder.yaml"
    paths["dir_yaml"].mkdir()
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- crossbar_mlp\n")
    (tmp_path / "file").write_text("")
    return paths


BAD_INPUTS = [
    (["devices", "response", "pcm_nandakumar2018", "--seed", "-5"], "--seed: expected an integer >= 0, got '-5'"),
    (["devices", "plot", "rram_gong2018", "--out", "{tmp}/figs", "--seed", "-1"], "--seed"),
    (["devices", "show", "{latin_card}"], "linear_step.yaml (line 27, byte 1029): not UTF-8 text"),
    (["run", "{latin_cfg}", "--out", "{tmp}/o"], "latin.yaml (line 2, byte 41): not UTF-8 text (byte 0xe9)"),
    (["devices", "response", "linear_step", "--devices", str(10**13)], "devices fit in the available memory"),
    (["run", "{tmp}", "--out", "{tmp}/o"], "is a directory; expected a YAML config file"),
    (["run", "{dir_yaml}", "--out", "{tmp}/o"], "folder.yaml: is a directory"),
    (["devices", "show", "{dir_yaml}"], "folder.yaml: is a directory; expected a device card YAML file"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--workers", "0"], "--workers: expected an integer >= 1, got '0'"),
    (["sweep", "{cfg}", "--out", "{tmp}/o", "--workers", "0"], "--workers: expected an integer >= 1"),
    (["sweep", "{cfg}", "--out", "{tmp}/o", "--seeds", "0"], "--seeds: expected an integer >= 1"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "runs.0.card=pcm_nandakumar"],
     "runs[0].card: pcm_nandakumar: no such device card (did you mean 'pcm_nandakumar2018'?)"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "runs.0.scheme=tikitaka"],
     "runs[0].scheme: expected one of ideal, digital, sign, stochastic, stochastic_coincidence, multi_device, "
     "mixed_precision, tiki_taka, exact, got 'tikitaka' (did you mean 'tiki_taka'?)"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "experiment=crossbar-mlp"],
     "got 'crossbar-mlp' (did you mean 'crossbar_mlp'?)"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "runs.0.periphery=ideel"], "got 'ideel' (did you mean 'ideal'?)"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "runs.1.scheme_params.epsilom=0.1"],
     "scheme 'mixed_precision': unknown parameter 'epsilom' (did you mean 'epsilon'?); expected one of:"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "trian.epochs=1"], "trian: unknown field (did you mean 'train'?)"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "runs.0.Scheme=sign"], "(did you mean 'scheme'?)"),
    (["devices", "show", "pcm_nandakumar"], "(did you mean 'pcm_nandakumar2018'?)"),
    (["devices", "show", "nosuch"], "nosuch: no such device card; known cards:"),
    (["devices", "show", "linear_step", "--levels", "1"], "--levels: expected an integer in [2, 16777216]"),
    (["devices", "show", "linear_step", "--bits", "0"], "--bits: expected an integer in [1, 24]"),
    (["devices", "response", "linear_step", "--pulses", "0"], "--pulses: expected an integer >= 1"),
    (["devices", "plot", "linear_step"], "expected --out DIR"),
    (["devices", "shwo", "linear_step"], "invalid choice: 'shwo'"),
    ([], "the following arguments are required: command"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "train.epochs"], "expected KEY=VALUE"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "=3"], "empty key"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "nosuch.key=1"], "nosuch: unknown field"),
    (["run", "{tmp}/empty.yaml", "--out", "{tmp}/o"], "empty.yaml: expected a mapping at the top level"),
    (["run", "{tmp}/list.yaml", "--out", "{tmp}/o"], "list.yaml: expected a mapping at the top level"),
    (["run", "{tmp}/absent.yaml", "--out", "{tmp}/o"], "absent.yaml: no such file"),
    (["run", "{cfg}", "--out", "{tmp}/file"], "file exists and is not a directory"),
    (["run", "{cfg}", "--out", "{tmp}/file/o"], "file/o: Not a directory"),
    (["devices", "plot", "linear_step", "--out", "{tmp}/file/figs"], "file/figs: Not a directory"),
    (["data", "fashion-mnist", "--dir", "{data}"],
     "train-images-idx3-ubyte.gz: 235216 bytes of IDX data; expected 47040016"),
    (["tune", "{cfg}", "--out", "{tmp}/o"], "cfg.yaml: tune: missing; add a tune section"),
    (["tune", "{cfg}", "--out", "{tmp}/o", "--set", "tune={{budget: 2, seeds: [0], space: {{train.lr: [0.1, 0.2]}}}}"],
     "tune.seeds: validation seeds must be disjoint from the reported seeds [0]; 0 is in both"),
    (["tune", "{cfg}", "--out", "{tmp}/o", "--workers", "0"], "--workers: expected an integer >= 1, got '0'"),
    (["tune", "{cfg}", "--out", "{tmp}/o", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
     "argument --scheduler: not allowed with argument --workers"),
    (["tune", "{cfg}"], "the following arguments are required: --out"),
    (["tune", "{cfg}", "--out", "{tmp}/file"], "file exists and is not a directory"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a)[:60] or "no-args" for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_status_2(bad_inputs, capsys, args, message):
    argv = [a.format(**bad_inputs) for a in args]
    code, out, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("neuroemu: error: "), err
    assert "Traceback" not in err and message in lines[0], err
    assert not (bad_inputs["tmp"] / "o" / "runs").exists()  # nothing was started


def test_a_closed_pipe_ends_quietly():
    """`neuroemu ... | head -1`: no message, the status of a tool ended by SIGPIPE."""
    cmd = [sys.executable, "-m", "neuroemu", "devices", "response", "linear_step", "--pulses", "20000",
           "--devices", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"linear_step")
    proc.stdout.close()  # more than a pipe buffer is still to come
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == b""


def test_overwrite_is_passed_to_run_and_sweep(monkeypatch, tmp_path, capsys):
    import neuroemu.studies
    import neuroemu.sweep

    seen = []
    fake = lambda *args, **kwargs: seen.append(kwargs["overwrite"]) or {"console": []}  # noqa: E731
    monkeypatch.setattr(neuroemu.studies, "run_experiment", fake)
    monkeypatch.setattr(neuroemu.sweep, "run_sweep", fake)
    for command in ("run", "sweep"):
        assert main([command, "cfg.yaml", "--out", str(tmp_path)]) == 0
        assert main([command, "cfg.yaml", "--out", str(tmp_path), "--overwrite"]) == 0
    assert seen == [False, True, False, True]


def test_tune_gets_its_flags(monkeypatch, tmp_path, capsys):
    import neuroemu.tune

    seen = []

    def fake(config, out, overrides, **kwargs):
        seen.append((config, out, overrides, kwargs))
        return {"console": ["run  chosen"], "chosen": {}, "trials": [],
                **({"run": {"console": ["table"]}} if kwargs["then_run"] else {})}

    monkeypatch.setattr(neuroemu.tune, "run_tune", fake)
    assert main(["tune", "cfg.yaml", "--out", str(tmp_path), "--set", "tune.budget=4", "--quiet"]) == 0
    assert main(["tune", "cfg.yaml", "--out", str(tmp_path), "--workers", "3", "--overwrite", "--then-run"]) == 0
    assert seen[0] == ("cfg.yaml", str(tmp_path), ["tune.budget=4"], {"workers": None, "scheduler": None, "quiet": True,
                                                                    "overwrite": False, "then_run": False})
    assert seen[1][3] == {"workers": 3, "scheduler": None, "quiet": False, "overwrite": True, "then_run": True}
    out = capsys.readouterr().out
    assert f"tuned config: {tmp_path}/tuned.yaml" in out and f"results of the tuned config: {tmp_path}/run/RESULTS.md" in out
