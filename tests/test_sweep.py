"""`neuroemu sweep`: grid parsing, identical numbers on every executor, resume, tidy rows, errors."""

import csv
import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import yaml

from neuroemu.cli import main
from tests.synthetic import write_tiny_fashion_mnist
from neuroemu.errors import ConfigError
from neuroemu.studies import EXPERIMENTS, crossbar_mlp, spiking_fmnist
from neuroemu.sweep import console_table, grid_points, parse_grid, run_sweep, split_values, tidy_rows

GRID = ["--grid", "train.lr=0.5,0.1", "--seeds", "2"]


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny synthetic Fashion-MNIST (100 train / 50 test images) and a one-run crossbar_mlp config."""
    root = tmp_path_factory.mktemp("sweep")
    d = write_tiny_fashion_mnist(root / "fmnist", 100, 50)
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "experiment": "crossbar_mlp", "workers": 1,
        "data": {"dir": str(d), "download": False},
        "model": {"hidden": [8]},
        "train": {"epochs": 1, "batch_size": 50, "lr": 0.1},
        "eval": {"delays": [3600]},
        "runs": [{"card": "pcm_nandakumar2018", "scheme": "stochastic"}],
    }))
    return root, cfg


def read_rows(out):
    with open(out / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))


def numbers(rows):
    """Everything but the wall-clock time, as written (exact float text)."""
    return [{k: v for k, v in r.items() if k != "train_time_s"} for r in rows]


def mtimes(out):
    return {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}


@pytest.fixture(scope="module")
def process_run(setup):
    """The 2-point x 2-seed sweep in 2 local worker processes."""
    root, cfg = setup
    out = root / "processes"
    assert main(["sweep", str(cfg), *GRID, "--out", str(out), "--workers", "2", "--quiet"]) == 0
    return out


def test_sweep_table_and_metadata(setup, process_run):
    rows = read_rows(process_run)
    assert len(rows) == 2 * 2  # grid points x seeds x runs
    assert list(rows[0])[:3] == ["train.lr", "seed", "run"]
    assert [(r["train.lr"], r["seed"]) for r in rows] == [("0.5", "0"), ("0.5", "1"), ("0.1", "0"), ("0.1", "1")]
    assert {r["run"] for r in rows} == {"pcm_nandakumar2018/stochastic"}
    for key in ("test_acc", "pulses_per_synapse", "refreshes", "energy_pJ", "train_time_s", "test_acc_after_3600s"):
        assert key in rows[0]
    assert float(rows[0]["pulses_per_synapse"]) > float(rows[2]["pulses_per_synapse"]) > 0  # lr 0.5 pulses more
    meta = json.loads((process_run / "sweep.json").read_text())
    assert meta["grid"] == {"train.lr": [0.5, 0.1]} and meta["seeds"] == [0, 1]
    assert meta["command"].startswith("neuroemu sweep ") and "--grid train.lr=0.5,0.1" in meta["command"]
    assert meta["versions"]["numpy"] == np.__version__ and meta["failed"] == {}
    assert [p["values"] for p in meta["points"]] == [{"train.lr": 0.5}, {"train.lr": 0.1}]
    ids = [i for p in meta["points"] for i in p["jobs"]]
    assert len(ids) == len(set(ids)) == 4 and len(mtimes(process_run)) == 4


def test_serial_and_processes_give_identical_numbers(setup, process_run):
    # bit for bit needs the same number of BLAS threads (a thread count can change how a product is
    # split and summed): the workers run on one thread each, so the serial run gets one thread too
    root, cfg = setup
    out = root / "serial"
    env = dict(os.environ, **dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                            "NUMBA_NUM_THREADS"), "1"))
    proc = subprocess.run([sys.executable, "-m", "neuroemu", "sweep", str(cfg), *GRID, "--out", str(out),
                           "--workers", "1"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    stdout = proc.stdout
    assert numbers(read_rows(out)) == numbers(read_rows(process_run))
    lines = stdout.strip().splitlines()  # header, one line per grid point and run, the results path
    assert lines[0].split()[:2] == ["train.lr", "run"] and len(lines) == 1 + 2 + 1
    assert "±" in lines[1] and lines[-1] == f"results: {out}/sweep.csv"


def test_resume_recomputes_only_what_is_missing(setup, process_run, capsys):
    root, cfg = setup
    out = root / "resume"
    shutil.copytree(process_run, out)
    before = mtimes(out)
    code, _, err = run_cli(["sweep", str(cfg), *GRID, "--out", str(out), "--workers", "2"], capsys)
    assert code == 0 and err.count("[done before]") == 4 and "finished" not in err
    assert mtimes(out) == before
    gone = sorted(before)[1]
    (out / "runs" / gone).unlink()
    code, _, err = run_cli(["sweep", str(cfg), *GRID, "--out", str(out), "--workers", "2"], capsys)
    assert code == 0 and err.count("[done before]") == 3 and err.count("finished") == 1
    after = mtimes(out)
    assert {k for k in after if after[k] != before.get(k)} == {gone}
    assert numbers(read_rows(out)) == numbers(read_rows(process_run))
    # a new grid value runs only its own jobs
    code, _, err = run_cli(["sweep", str(cfg), "--grid", "train.lr=0.5,0.1,0.2", "--seeds", "2", "--out", str(out),
                            "--workers", "1"], capsys)
    assert code == 0 and err.count("[done before]") == 4 and err.count("finished") == 2
    assert len(read_rows(out)) == 6


def test_dask_cluster_gives_identical_numbers(setup, process_run, capsys):
    distributed = pytest.importorskip("distributed")
    root, cfg = setup
    out = root / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        code, _, err = run_cli(["sweep", str(cfg), *GRID, "--out", str(out), "--scheduler",
                                cluster.scheduler_address], capsys)
    assert code == 0, err
    assert "Dask scheduler" in err
    assert numbers(read_rows(out)) == numbers(read_rows(process_run))
    assert json.loads((out / "sweep.json").read_text())["executor"].startswith("dask tcp://127.0.0.1:")


def test_missing_dask_names_the_extra(setup, capsys, monkeypatch):
    root, cfg = setup
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    code, _, err = run_cli(["sweep", str(cfg), *GRID, "--out", str(root / "nodask"), "--scheduler",
                            "tcp://127.0.0.1:1", "--quiet"], capsys)
    assert code == 2 and "neuroemu[dask]" in err and len(err.strip().splitlines()) == 1


def test_bad_scheduler_address_is_a_one_line_error(setup, capsys):
    pytest.importorskip("distributed")
    root, cfg = setup
    for address in ("nonsense://x:1", "localhost"):
        code, _, err = run_cli(["sweep", str(cfg), *GRID, "--out", str(root / "badaddr"), "--scheduler", address,
                                "--quiet"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "tcp://host:8786" in err, err
    assert not (root / "badaddr").exists()


def _fake_run_job(job):
    if job.get("fail"):
        raise RuntimeError(f"{job['id']} was told to fail")
    return {"run": "r", "seed": 0, "value": job["x"] * 2, "curve": [1, 2]}


def _fake_experiment(tmp_path, seeds=False):
    """A registered experiment without ``tidy`` (and without a 'seeds' field), and a config for it."""
    from neuroemu.config import Opt

    schema = {"experiment": Opt("str"), "workers": Opt("int", 1), "x": Opt("int", 0)}
    mod = types.SimpleNamespace(NAME="no_seeds", SCHEMA=schema, check=lambda cfg, where: cfg,
                                prepare=lambda cfg: None, run_job=_fake_run_job,
                                jobs=lambda cfg: [{"id": "ok", "x": cfg["x"]}, {"id": "bad", "x": 0, "fail": True}])
    cfg = tmp_path / "no_seeds.yaml"
    cfg.write_text("experiment: no_seeds\n")
    return mod, cfg


def test_failed_jobs_keep_the_finished_rows(tmp_path, capsys, monkeypatch):
    mod, cfg = _fake_experiment(tmp_path)
    monkeypatch.setitem(EXPERIMENTS, mod.NAME, mod)
    out = tmp_path / "o"
    code, _, err = run_cli(["sweep", str(cfg), "--grid", "x=1,2", "--out", str(out), "--workers", "1", "--quiet"],
                           capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "2 job(s) failed" in err
    rows = read_rows(out)  # a module without tidy: the result's top-level scalars
    assert [(r["x"], r["run"], r["seed"], r["value"]) for r in rows] == [("1", "r", "0", "2"), ("2", "r", "0", "4")]
    assert "curve" not in rows[0]
    assert sorted(json.loads((out / "sweep.json").read_text())["failed"]) == ["x_1/bad", "x_2/bad"]


def test_other_settings_in_a_used_out_dir_are_refused_unless_overwritten(tmp_path, capsys, monkeypatch):
    mod, cfg = _fake_experiment(tmp_path)
    mod.jobs = lambda cfg: [{"id": "ok", "x": cfg["x"]}]
    monkeypatch.setitem(EXPERIMENTS, mod.NAME, mod)
    out = tmp_path / "o"
    assert run_cli(["sweep", str(cfg), "--set", "x=1", "--out", str(out), "--quiet"], capsys)[0] == 0
    before = (out / "sweep.json").read_text(), (out / "runs" / "ok.json").read_text()
    code, _, err = run_cli(["sweep", str(cfg), "--set", "x=2", "--out", str(out), "--quiet"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{out}: 1 finished run(s)" in err and "first: ok, x is 2 now, was 1" in err and "--overwrite" in err
    assert ((out / "sweep.json").read_text(), (out / "runs" / "ok.json").read_text()) == before  # nothing written
    summary = run_sweep(cfg, out, overrides=["x=2"], overwrite=True, quiet=True)
    assert [r["value"] for r in summary["rows"]] == [4]
    assert json.loads((out / "runs" / "ok.json").read_text())["job"]["x"] == 2


@pytest.mark.parametrize("args, expect", [
    (["--grid", "train.lr"], ["--grid 'train.lr'", "KEY=V1,V2"]),
    (["--grid", "=0.1,0.2"], ["dotted config key"]),
    (["--grid", "train.lr=0.1,,0.2"], ["empty value"]),
    (["--grid", "train.lr=0.1,0.1"], ["listed twice"]),
    (["--grid", "train.lr=0.1", "--grid", "train.lr=0.2"], ["given twice"]),
    (["--grid", "train.lr=[0.1"], ["not valid YAML"]),
    (["--grid", "train.lrr=0.1,0.2"], ["train.lrr", "unknown field", "'lr'", "grid point train.lrr=0.1"]),
    (["--grid", "runs.3.scheme=sign"], ["--grid", "runs.3.scheme", "not an index"]),
    (["--grid", "train.lr=-1,0.1"], ["train.lr", "grid point train.lr=-1"]),
    (["--grid", "runs.0.scheme=sign,sgin"], ["runs[0].scheme", "sgin"]),
    (["--seeds", "0"], ["--seeds", ">= 1"]),
    (["--grid", "seeds=[0],[1]", "--seeds", "2"], ["--seeds"]),
])
def test_bad_sweep_arguments_are_one_line_errors(setup, capsys, args, expect):
    root, cfg = setup
    out = root / "bad"
    code, _, err = run_cli(["sweep", str(cfg), *args, "--out", str(out), "--quiet"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for text in expect:
        assert text in err, (text, err)
    assert not (out / "runs").exists()  # nothing was started


def test_seeds_on_an_experiment_without_seeds(tmp_path, capsys, monkeypatch):
    mod, cfg = _fake_experiment(tmp_path)
    monkeypatch.setitem(EXPERIMENTS, mod.NAME, mod)
    code, _, err = run_cli(["sweep", str(cfg), "--seeds", "2", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(cfg) in err and "no_seeds" in err and "'seeds'" in err


def test_grid_parsing():
    assert split_values("0.1, 0.01") == ["0.1", "0.01"]
    assert split_values("[8],[16, 16],{a: 1, b: 2},'x,y'") == ["[8]", "[16, 16]", "{a: 1, b: 2}", "'x,y'"]
    grid = parse_grid(["model.hidden=[8],[16,16]", "runs.0.scheme=sign,stochastic", "train.lr=1e-3"])
    assert [v for _, v in grid["model.hidden"]] == [[8], [16, 16]]
    assert grid["train.lr"] == [("1e-3", 1e-3)]  # YAML values, exponent floats as numbers
    points = grid_points(grid)
    assert len(points) == 4
    assert points[1] == {"model.hidden": ("[8]", [8]), "runs.0.scheme": ("stochastic", "stochastic"),
                         "train.lr": ("1e-3", 1e-3)}
    assert grid_points({}) == [{}]
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_grid(["nothing"])


def test_tidy_protocol():
    res = {"run": "r", "seed": 3, "card": "c", "test_acc": 0.5, "pulses_per_synapse": 1.5, "refreshes": 2,
           "energy_pJ": 10.0, "train_time_s": 1.0, "test_acc_after": {"3600": 0.4}, "metrics": [{"x": 1}]}
    assert tidy_rows(crossbar_mlp, res) == [{"run": "r", "seed": 3, "test_acc": 0.5, "pulses_per_synapse": 1.5,
                                            "refreshes": 2, "energy_pJ": 10.0, "train_time_s": 1.0,
                                            "test_acc_after_3600s": 0.4}]
    run = {"run": "a", "test_acc": 0.8, "hidden_spikes_per_neuron": 1.2, "emulation_wall_s": 3.0,
           "calibration_wall_s": 0.0, "chip_time_s": 0.1, "calibration": [[{"p": 1}]]}
    snn = {"seed": 1, "train_time_s": 5.0, "readout_scale": 0.9, "runs": [run, dict(run, run="b", test_acc=0.7)]}
    rows = tidy_rows(spiking_fmnist, snn)
    assert [(r["run"], r["seed"], r["test_acc"]) for r in rows] == [("a", 1, 0.8), ("b", 1, 0.7)]
    assert rows[0]["hidden_spikes_per_neuron"] == 1.2 and rows[0]["train_time_s"] == 5.0
    plain = types.SimpleNamespace()  # a module without tidy: the result's top-level scalars
    assert tidy_rows(plain, {"seed": 0, "loss": 0.1, "curve": [1, 2]}) == [{"run": "", "seed": 0, "loss": 0.1}]


def test_console_table_mean_and_std_over_seeds():
    rows = [{"train.lr": 0.1, "seed": s, "run": "r", "test_acc": a} for s, a in ((0, 0.5), (1, 0.7))]
    lines = console_table(rows, ["train.lr"])
    assert lines[0].split() == ["train.lr", "run", "test", "acc", "%", "seeds"]
    assert lines[1].split() == ["0.1", "r", "60.00±14.14", "2"]
    lines = console_table([{"seed": 0, "run": "r", "loss": 0.25}], [])
    assert lines[1].split() == ["r", "0.25±0", "1"]


def test_console_table_leaves_diverged_seeds_out_and_says_so():
    diverged = {"diverged_at": 3, "diverged_metric": "nmse", "diverged_value": 2034.0}
    rows = [{"lr": 0.1, "seed": 0, "run": "r", "final": 0.5}, {"lr": 0.1, "seed": 1, "run": "r", "final": 0.7},
            {"lr": 0.1, "seed": 2, "run": "r", **diverged},
            {"lr": 9.0, "seed": 0, "run": "r", **diverged}, {"lr": 9.0, "seed": 1, "run": "r", **diverged}]
    lines = console_table(rows, ["lr"])
    assert lines[0].split() == ["lr", "run", "final", "seeds"]
    assert lines[1].split() == ["0.1", "r", "0.6±0.14", "(diverged", "1/3)", "3"]
    assert lines[2].split() == ["9.0", "r", "diverged", "2"]
    # the main metric is never a field of the diverged rows, even when they come first
    assert console_table(rows[2:] + rows[:2], ["lr"])[0].split()[2] == "final"
