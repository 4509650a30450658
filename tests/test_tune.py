"""`neuroemu tune`: grids with equal budgets, successive halving, validation seeds, resume, diverged
trials, the crossbar_mlp validation split, tuned.yaml, errors."""

import csv
import json
import math
import re
import types

import numpy as np
import pytest
import yaml

from neuroemu.data.classification import validation_split
from neuroemu.rules.backprop import Backprop
from neuroemu.cli import main
from neuroemu.config import Opt, check_seeds, validate
from tests.synthetic import write_tiny_fashion_mnist
from neuroemu.errors import ConfigError
from neuroemu.studies import EXPERIMENTS, resolve
from neuroemu.tune import expand, halving_sizes, lin_grid, log_grid, plan, promote, rung_resources, run_tune


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mtimes(out):
    return {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}


# ---------------------------------------------------------------------------------------- grids
def test_log_grid_spans_the_range_in_equal_ratios():
    assert log_grid(1e-6, 1e-2, 5) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]
    vals = log_grid(1e-3, 1.0, 4)
    assert vals[0] == 1e-3 and vals[-1] == 1.0 and len(vals) == 4
    ratios = np.diff(np.log10(vals))
    assert np.allclose(ratios, 1.0, atol=1e-5)  # 6 significant digits kept
    assert log_grid(1e-4, 1e-2, 1) == [1e-3]  # one point: the geometric mean
    assert log_grid(1, 64, 7, integer=True) == [1, 2, 4, 8, 16, 32, 64]
    assert lin_grid(0.0, 1.0, 3) == [0.0, 0.5, 1.0]


def spec(**kw):
    if "values" in kw:
        return {"values": kw["values"]}
    return {"scale": kw.get("scale", "log"), "range": kw["range"], "points": kw.get("points"),
            "int": kw.get("int", False)}


def test_every_grid_has_exactly_the_budget():
    lr = spec(range=[1e-4, 1.0])
    points, values = expand({"train.lr": lr}, 8)
    assert len(points) == 8 and values["train.lr"][0] == 1e-4 and values["train.lr"][-1] == 1.0
    # a list of two thresholds leaves four learning rates: the same budget, whatever the space
    points, values = expand({"train.lr": lr, "scheme_params.threshold": spec(values=[1e-3, 1e-2])}, 8)
    assert len(points) == 8 and len(values["train.lr"]) == 4
    assert points[0] == {"train.lr": 1e-4, "scheme_params.threshold": 1e-3}  # first key slowest
    assert points[1] == {"train.lr": 1e-4, "scheme_params.threshold": 1e-2}
    points, values = expand({"a": lr, "b": spec(scale="lin", range=[0.0, 1.0])}, 9)  # two ranges share it: 3 × 3
    assert len(points) == 9 and len(values["a"]) == len(values["b"]) == 3
    assert len(expand({"a": spec(values=[1, 2]), "b": spec(range=[1.0, 10.0], points=4)}, 8)[0]) == 8
    for space, budget, text in [({"a": spec(values=[1, 2, 3])}, 8, "the grid has 3 points (a: 3), the budget is 8"),
                                ({"a": spec(values=[1, 2, 3]), "b": lr}, 8, "cannot be shared"),
                                ({"a": lr, "b": lr}, 8, "cannot be shared")]:
        with pytest.raises(ConfigError, match=re.escape(text)):
            expand(space, budget)
    with pytest.raises(ConfigError, match="not distinct"):
        expand({"a": spec(range=[1.0, 3.0], int=True)}, 8)


def test_halving_schedule():
    assert halving_sizes(8, 3) == [8, 2, 1]
    assert halving_sizes(8, 2) == [8, 4, 2, 1]
    assert halving_sizes(9, 3) == [9, 3, 1]
    assert halving_sizes(8, 3, rungs=2) == [8, 2]
    assert halving_sizes(1, 3) == [1]
    assert rung_resources(250, 3, 3) == [28, 83, 250]
    assert rung_resources(5, 3, 3) == [1, 2, 5]
    assert rung_resources(5, 3, 3, min_resource=2) == [2, 2, 5]
    assert rung_resources(5, 1, 3) == [5]
    assert promote([0.3, 0.1, float("nan"), 0.1, 0.2], 3, "min") == [1, 3, 4]  # ties to the earlier point
    assert promote([0.3, 0.1, float("nan"), 0.1, 0.2], 2, "max") == [0, 4]
    assert promote([float("nan")] * 3, 1, "max") == [0]


# ---------------------------------------------------------------------------------------- a toy experiment
TOY_RUN = {"name": Opt("str"), "best": Opt("float", -2.0), "diverge_above": Opt("float", 1e9),
           "scheme_params": Opt("dict", {}), "train": Opt("dict", {})}
TOY_TRAIN = {"lr": Opt("float", 0.1, 1e-12, 1e6), "steps": Opt("int", 9, 1)}


def toy_run_job(job):
    """Loss (log10 lr − best)² + 1/steps + a little seed noise: the best learning rate is 10^best at
    every length. Above ``diverge_above`` the job diverges, with a loss that would otherwise win."""
    lr, steps = job["train"]["lr"], job["train"]["steps"]
    loss = (math.log10(lr) - job["run"]["best"]) ** 2 + 1.0 / steps + 1e-4 * (job["seed"] % 7)
    res = {"run": job["run"]["name"], "seed": job["seed"], "loss": loss, "steps": steps,
           "threshold": job["run"]["scheme_params"].get("threshold", 0.0)}
    if lr > job["run"]["diverge_above"]:
        res.update(loss=-1.0, diverged={"at": 1, "metric": "loss", "value": "inf", "bound": None})
    return res


def toy_check(cfg, where):
    runs = []
    for i, raw in enumerate(cfg["runs"]):
        run = validate(raw, TOY_RUN, f"{where} runs[{i}]")
        part = {k: Opt(v.kind, None, v.lo, v.hi, nullable=True) for k, v in TOY_TRAIN.items()}
        run["train"] = {k: v for k, v in validate(run["train"], part, f"{where} runs[{i}].train").items() if v is not None}
        runs.append(run)
    cfg["runs"] = runs
    return cfg


def toy_jobs(cfg):
    return [{"id": f"{run['name']}@seed{seed}", "run": run, "seed": seed, "train": {**cfg["train"], **run["train"]}}
            for run in cfg["runs"] for seed in cfg["seeds"]]


def toy_module(**tune):
    schema = {"experiment": Opt("str"), "seeds": Opt("list", [0], check=check_seeds), "workers": Opt("int", 1),
              "train": TOY_TRAIN, "runs": Opt("list")}
    decl = {"metric": "loss", "mode": "min", "resource": "train.steps", "sections": ("train",), **tune}
    return types.SimpleNamespace(NAME="toy", SCHEMA=schema, check=toy_check, jobs=toy_jobs, run_job=toy_run_job,
                                 prepare=lambda cfg: None, TUNE=decl)


TOY_TUNE = {"budget": 9, "seeds": [100, 101], "space": {"train.lr": {"log": [1e-4, 1.0]}}}


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A registered toy experiment and a writer of its configs."""
    monkeypatch.setitem(EXPERIMENTS, "toy", toy_module())

    def write(tune=None, name="cfg.yaml", **extra):
        cfg = {"experiment": "toy", "seeds": [0, 1, 2], "train": {"lr": 0.1, "steps": 9},
               "runs": [{"name": "a", "best": -2.0}, {"name": "b", "best": -0.5, "diverge_above": 0.5}],
               "tune": TOY_TUNE if tune is None else tune, **extra}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path
    return write


def test_successive_halving_picks_each_runs_best(toy, tmp_path, capsys):
    cfg = toy()
    out = tmp_path / "out"
    code, stdout, err = run_cli(["tune", str(cfg), "--out", str(out), "--workers", "1"], capsys)
    assert code == 0, err
    assert "rung 1/3: 18 configuration(s) (2 run(s)), train.steps 1" in err and "rung 3/3" in err
    rows = read_csv(out / "trials.csv")
    assert list(rows[0])[:5] == ["run", "point", "rung", "train.steps", "train.lr"]
    for run, lr in (("a", "0.01"), ("b", "0.316228")):
        mine = [r for r in rows if r["run"] == run]
        assert [sum(r["rung"] == str(k) for r in mine) for k in range(3)] == [9, 3, 1]  # 9 -> 3 -> 1
        assert [r["train.steps"] for r in mine if r["point"] == mine[-1]["point"]] == ["1", "3", "9"]
        assert [r["train.lr"] for r in mine if r["chosen"] == "True"] == [lr]
        assert len({r["train.lr"] for r in mine if r["rung"] == "0"}) == 9  # the whole budget on the first rung
    # b's largest learning rate diverges with the lowest loss: it scores worst and goes no further
    worst = next(r for r in rows if r["run"] == "b" and r["train.lr"] == "1.0")
    assert worst["diverged"] == "2" and worst["loss"] == "" and worst["promoted"] == "False"
    meta = json.loads((out / "tune.json").read_text())
    assert meta["chosen"] == {"a": {"train.lr": 0.01}, "b": {"train.lr": 0.316228}}
    assert meta["configurations_per_rung"] == [9, 3, 1] and meta["resource_per_rung"] == [1, 3, 9]
    assert meta["validation_seeds"] == [100, 101] and meta["reported_seeds"] == [0, 1, 2]
    assert all(set(t["seeds"]) == {100, 101} for t in meta["trials"])  # never a reported seed
    assert stdout.splitlines()[1].split()[:2] == ["a", "train.lr=0.01"]
    text = (out / "RESULTS.md").read_text()
    assert "same budget of 9 configurations" in text and "| a | train.lr: log 0.0001 … 1, 9 points |" in text
    assert (out / "figures" / "score_vs_lr.png").stat().st_size > 5000
    # tuned.yaml: the config without its tune section, each run with its own learning rate
    tuned = yaml.safe_load((out / "tuned.yaml").read_text())
    assert "tune" not in tuned and tuned["train"]["lr"] == 0.1
    assert [r["train"] for r in tuned["runs"]] == [{"lr": 0.01}, {"lr": 0.316228}]
    module, rcfg = resolve(out / "tuned.yaml")  # what `neuroemu run` does first
    jobs = module.jobs(rcfg)
    assert [(j["id"], j["train"]["lr"]) for j in jobs[::3]] == [("a@seed0", 0.01), ("b@seed0", 0.316228)]
    assert {j["seed"] for j in jobs} == {0, 1, 2}


def test_a_second_invocation_recomputes_nothing(toy, tmp_path, capsys):
    cfg = toy()
    out = tmp_path / "out"
    assert run_cli(["tune", str(cfg), "--out", str(out), "--quiet"], capsys)[0] == 0
    before = mtimes(out)
    trials = (out / "trials.csv").read_text()
    assert len(before) == 2 * (9 + 3 + 1) * 2  # runs x trials x validation seeds
    meta = json.loads((out / "tune.json").read_text())
    assert meta["jobs_loaded"] == 0 and meta["jobs"] == 52
    code, _, err = run_cli(["tune", str(cfg), "--out", str(out)], capsys)
    assert code == 0 and err.count("[done before]") == len(before) and "finished" not in err
    assert mtimes(out) == before and (out / "trials.csv").read_text() == trials
    assert "(all 52 jobs loaded from an earlier run, not recomputed)" in (out / "RESULTS.md").read_text()
    # another budget: only the new configurations run (a point and length trained before is loaded)
    code, _, err = run_cli(["tune", str(cfg), "--out", str(out), "--set", "tune.budget=3"], capsys)
    assert code == 0 and "finished" in err and "[done before]" in err


def test_validation_seeds_as_the_resource_reuse_the_jobs_of_lower_rungs(toy, tmp_path, capsys):
    cfg = toy(dict(TOY_TUNE, seeds=list(range(100, 109)), resource="seeds"))
    out = tmp_path / "out"
    summary = run_tune(cfg, out, quiet=True)
    rows = [t for t in summary["trials"] if t["run"] == "a"]
    assert [len(t["seeds"]) for t in rows if t["chosen"]] == [9]
    assert {len(t["seeds"]) for t in rows if t["rung"] == 0} == {1}
    assert {t["resource"] for t in rows} == {1, 3, 9}
    assert json.loads((out / "tune.json").read_text())["jobs_loaded"] == 0  # reused from a lower rung, not loaded
    assert all(j.endswith("@seed100") or "train.steps" not in j for t in rows for j in t["jobs"])
    # 9 configurations x 1 seed, then 3 x 3 and 1 x 9, minus the seeds each already had
    assert len([p for p in (out / "runs").glob("*.json") if "_a_seed" in p.name]) == 9 + 6 + 6
    assert summary["chosen"]["a"] == {"train.lr": 0.01}


def test_per_run_spaces_and_untuned_runs(toy, tmp_path):
    tune = dict(TOY_TUNE, budget=4, runs={"a": {"scheme_params.threshold": [0.1, 0.2]}, "b": None})
    p = plan(toy(tune))
    a, b = p.runs
    assert len(a.points) == 4 and a.values["scheme_params.threshold"] == [0.1, 0.2] and len(a.values["train.lr"]) == 2
    assert not b.tuned
    summary = run_tune(p.config_path, tmp_path / "out", quiet=True)
    assert set(summary["chosen"]) == {"a"}
    tuned = yaml.safe_load((tmp_path / "out" / "tuned.yaml").read_text())
    assert tuned["runs"][1] == {"name": "b", "best": -0.5, "diverge_above": 0.5}  # as configured
    assert set(tuned["runs"][0]["scheme_params"]) == {"threshold"}
    assert "not tuned" in (tmp_path / "out" / "RESULTS.md").read_text()


def test_the_experiment_may_give_its_metric_and_direction_per_config(toy, monkeypatch):
    decl = EXPERIMENTS["toy"].TUNE
    monkeypatch.setitem(decl, "mode", lambda cfg: "max" if cfg["train"]["steps"] > 5 else "min")
    assert plan(toy()).mode == "max"
    assert plan(toy(), ["train.steps=3"]).mode == "min"
    assert plan(toy(dict(TOY_TUNE, mode="min"))).mode == "min"  # the section has the last word


TOY_ERRORS = [
    ({"tune": dict(TOY_TUNE, seeds=[2, 100])}, "tune.seeds: validation seeds must be disjoint from the reported seeds"),
    ({"tune": dict(TOY_TUNE, budget=8, space={"train.lr": [0.1, 0.01, 0.001]})}, "the budget is 8"),
    ({"tune": dict(TOY_TUNE, runs={"c": {}})}, "tune.runs.c: no run of that name"),
    ({"tune": dict(TOY_TUNE, space={"train.lr": {"log": [0, 1]}})}, "tune.space.train.lr.log: expected [lo, hi] with 0 < lo"),
    ({"tune": dict(TOY_TUNE, space={"train.lr": 0.1})}, "tune.space.train.lr: expected a list of values"),
    ({"tune": dict(TOY_TUNE, space={"workers": [1, 2, 3]}, budget=3)}, "shared by all runs"),
    ({"tune": dict(TOY_TUNE, space={"seeds": [[1], [2]]}, budget=2)}, "tune.space.seeds: not searchable"),
    ({"tune": dict(TOY_TUNE, space={"train.lrr": [0.1, 0.2]}, budget=2)}, "runs[0].train.lrr: unknown field"),
    ({"tune": dict(TOY_TUNE, space={"train.lr": [-1.0, 0.2]}, budget=2)}, "tune trial of run 'a' (train.lr=-1.0)"),
    ({"tune": dict(TOY_TUNE, buget=3)}, "tune.buget: unknown field (did you mean 'budget'?)"),
    ({"tune": dict(TOY_TUNE, method="halving")}, "tune.method: expected one of grid_halving, grid"),
    ({"tune": dict(TOY_TUNE, rungs=5)}, "tune.rungs: budget 9 with eta 3 leaves one configuration after 3"),
    ({"tune": dict(TOY_TUNE, resource="train.lr")}, "tune.resource: train.lr is searched"),
    ({"tune": dict(TOY_TUNE, resource="train.nothing")}, "is not a config key of toy"),
    ({"tune": dict(TOY_TUNE, metric="steps")}, "tune.mode: metric 'steps' is not the experiment's own"),
    ({"tune": dict(TOY_TUNE, set={"train.lr": 0.1})}, "tune.set.train.lr: also searched"),
    ({"tune": {"budget": 2, "space": {"train.lr": [0.1, 0.2]}}}, "tune.seeds: missing required field"),
]


@pytest.mark.parametrize("change, message", TOY_ERRORS, ids=[m[:40] for _, m in TOY_ERRORS])
def test_bad_tune_sections_are_one_line_errors_before_anything_runs(toy, tmp_path, capsys, change, message):
    cfg = toy(**change) if "tune" not in change else toy(change["tune"])
    out = tmp_path / "out"
    code, _, err = run_cli(["tune", str(cfg), "--out", str(out)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert str(cfg) in err and not out.exists()


def test_a_metric_the_results_lack_is_a_one_line_error(toy, tmp_path, capsys):
    cfg = toy(dict(TOY_TUNE, metric="accuracy", mode="max"))
    code, _, err = run_cli(["tune", str(cfg), "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "tune.metric: the trials' results have no 'accuracy'" in err and "loss" in err


def test_a_config_without_a_tune_section_or_an_experiment_without_tune_support(toy, tmp_path, capsys, monkeypatch):
    path = tmp_path / "plain.yaml"
    path.write_text("experiment: toy\nruns: [{name: a}]\n")
    code, _, err = run_cli(["tune", str(path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "tune: missing" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(EXPERIMENTS["toy"], "TUNE", None)
    code, _, err = run_cli(["tune", str(toy()), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "experiment 'toy' cannot be tuned yet: its module declares no TUNE" in err and "crossbar_mlp" in err


# ---------------------------------------------------------------------------------------- crossbar_mlp
@pytest.fixture(scope="module")
def fmnist(tmp_path_factory):
    """Tiny synthetic Fashion-MNIST (150 train / 40 test images)."""
    return write_tiny_fashion_mnist(tmp_path_factory.mktemp("tune") / "fmnist", 150, 40)


def crossbar_config(path, data_dir, validation=50, tune=None):
    path.write_text(yaml.safe_dump({
        "experiment": "crossbar_mlp", "seeds": [0], "workers": 1,
        "data": {"dir": str(data_dir), "download": False, "validation": validation},
        "model": {"hidden": [8]},
        "train": {"epochs": 2, "batch_size": 50, "lr": 0.1},
        "eval": {"delays": [3600]},
        "runs": [{"name": "fp32", "card": "ideal", "scheme": "ideal", "periphery": "ideal"},
                 {"card": "pcm_nandakumar2018", "scheme": "sign", "scheme_params": {"threshold": 0.01}}],
        "tune": tune or {"budget": 2, "eta": 2, "seeds": [100], "space": {"train.lr": {"log": [0.05, 0.5]}},
                         "runs": {"pcm_nandakumar2018/sign": {"scheme_params.threshold": [0.001, 0.01],
                                                              "train.lr": [0.1]}}},
    }, sort_keys=False))
    return path


def test_validation_split_is_disjoint_and_fixed():
    keep, held = validation_split(100, 30, 0)
    assert len(held) == 30 and len(keep) == 70 and not set(keep) & set(held) and set(keep) | set(held) == set(range(100))
    assert np.array_equal(held, validation_split(100, 30, 0)[1])  # by its own seed, not the job's
    assert not np.array_equal(held, validation_split(100, 30, 1)[1])
    with pytest.raises(ConfigError, match="data.validation"):
        validation_split(100, 100, 0)


def test_crossbar_trials_train_off_the_validation_images_and_never_load_the_test_set(fmnist, tmp_path, capsys,
                                                                                      monkeypatch):
    import neuroemu.data

    loaded, trained = [], []
    load = neuroemu.data.load_fashion_mnist

    def spy_load(split, **kw):
        loaded.append(split)
        return load(split, **kw)

    step = Backprop.step

    def spy_step(self, chip, batch):
        trained.append(batch[0].copy())
        return step(self, chip, batch)

    monkeypatch.setattr(neuroemu.data, "load_fashion_mnist", spy_load)
    monkeypatch.setattr(Backprop, "step", spy_step)
    cfg = crossbar_config(tmp_path / "cfg.yaml", fmnist)
    out = tmp_path / "out"
    summary = run_tune(cfg, out, workers=1, quiet=True)
    assert set(loaded) == {"train"}  # the test set was never loaded
    x_all, _ = load("train", data_dir=fmnist, download=False)
    _, held = validation_split(len(x_all), 50, 0)
    val_rows = {row.tobytes() for row in x_all[held]}
    seen = {row.tobytes() for x in trained for row in x}
    assert seen and not seen & val_rows and len(seen) == len(x_all) - 50  # all of the rest, none of them
    assert summary["chosen"]["pcm_nandakumar2018/sign"]["train.lr"] == 0.1
    rows = read_csv(out / "trials.csv")
    assert all(0 <= float(r["val_acc"]) <= 1 for r in rows) and "test_acc" not in rows[0]
    for p in (out / "runs").glob("*.json"):
        stored = json.loads(p.read_text())
        assert stored["job"]["eval"]["test"] is False and stored["job"]["seed"] == 100
        assert "test_acc" not in stored["result"] and "val_acc" in stored["result"]
    assert "the test set is not loaded" in (out / "RESULTS.md").read_text()

    # the same command again with --then-run: nothing recomputed, then tuned.yaml on the reported seeds
    monkeypatch.setattr(neuroemu.data, "load_fashion_mnist", load)
    monkeypatch.setattr(Backprop, "step", step)
    before = mtimes(out)
    code, stdout, err = run_cli(["tune", str(cfg), "--out", str(out), "--then-run", "--workers", "1"], capsys)
    assert code == 0, err
    assert {k: v for k, v in mtimes(out).items() if k in before} == before and "finished tune/" not in err
    assert f"results of the tuned config: {out}/run/RESULTS.md" in stdout
    ran = json.loads((out / "run" / "summary.json").read_text())
    assert [r["run"] for r in ran["table"]] == ["fp32", "pcm_nandakumar2018/sign"]
    assert all("test_acc" in r and "val_acc" in r for r in ran["table"])
    stored = json.loads((out / "run" / "runs" / "pcm_nandakumar2018_sign_seed0.json").read_text())
    assert stored["job"]["train"]["lr"] == 0.1 and stored["job"]["run"]["scheme_params"]["threshold"] in (0.001, 0.01)


def test_crossbar_tuning_needs_held_out_images(fmnist, tmp_path, capsys):
    cfg = crossbar_config(tmp_path / "cfg.yaml", fmnist, validation=0)
    code, _, err = run_cli(["tune", str(cfg), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "data.validation: tuning scores its trials on held-out training images" in err
    # held out for the trials only
    code, _, err = run_cli(["tune", str(cfg), "--out", str(tmp_path / "o"), "--set", "tune.set={data.validation: 50}",
                            "--quiet"], capsys)
    assert code == 0, err
    tuned = yaml.safe_load((tmp_path / "o" / "tuned.yaml").read_text())
    assert tuned["data"]["validation"] == 0


def test_crossbar_runs_own_train_values_and_unchanged_jobs(fmnist, tmp_path):
    cfg = crossbar_config(tmp_path / "cfg.yaml", fmnist, validation=0)
    raw = yaml.safe_load(cfg.read_text())
    raw.pop("tune")
    raw["runs"][1]["train"] = {"lr": 0.3, "epochs": 1}
    cfg.write_text(yaml.safe_dump(raw))
    module, rcfg = resolve(cfg)
    jobs = module.jobs(rcfg)
    assert jobs[0]["train"]["lr"] == 0.1 and jobs[1]["train"] == {**rcfg["train"], "lr": 0.3, "epochs": 1}
    # options at their defaults stay out of the jobs (results recorded before them keep their hashes)
    assert "train" not in jobs[0]["run"] and "validation" not in jobs[0]["data"] and "test" not in jobs[0]["eval"]
    raw["runs"][1]["train"] = {"lr": -1}
    cfg.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"runs\[1\]\.train\.lr"):
        resolve(cfg)
    raw["runs"][1]["train"] = {"lrr": 1}
    cfg.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        resolve(cfg)
    raw["runs"][1].pop("train")
    raw["eval"]["test"] = False
    cfg.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="eval.delays"):
        resolve(cfg)


def test_tune_on_an_experiment_without_tune_support_names_what_is_missing(tmp_path, capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((root / "examples" / "sparse_snn" / "fmnist.yaml").read_text())
    raw["tune"] = {"budget": 2, "seeds": [100], "space": {"train.lr": [0.1, 0.2]}}
    cfg = tmp_path / "snn.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(["tune", str(cfg), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "experiment 'sparse_snn' cannot be tuned yet" in err and "declares no TUNE" in err


def toy_failing_run_job(job):
    if job["train"]["lr"] > 0.5:
        raise RuntimeError("told to fail")
    return toy_run_job(job)


def test_worker_processes_and_a_dask_cluster_give_the_same_trials(toy, tmp_path):
    cfg = toy()
    serial = run_tune(cfg, tmp_path / "serial", workers=1, quiet=True)
    procs = run_tune(cfg, tmp_path / "procs", workers=2, quiet=True)
    assert procs["trials"] == serial["trials"] and procs["chosen"] == serial["chosen"]
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        dask = run_tune(cfg, tmp_path / "dask", scheduler=cluster.scheduler_address, quiet=True)
    assert dask["trials"] == serial["trials"]
    assert json.loads((tmp_path / "dask" / "tune.json").read_text())["executor"].startswith("dask ")


def test_failed_trials_keep_what_finished_and_write_no_tuned_config(toy, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(EXPERIMENTS["toy"], "run_job", toy_failing_run_job)
    out = tmp_path / "out"
    code, _, err = run_cli(["tune", str(toy()), "--out", str(out), "--quiet"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "4 job(s) failed" in err
    rows = read_csv(out / "trials.csv")
    assert len(rows) == 18 and not (out / "tuned.yaml").exists()  # the first rung only
    assert "**Unfinished**" in (out / "RESULTS.md").read_text()
    monkeypatch.setattr(EXPERIMENTS["toy"], "run_job", toy_run_job)  # fixed: the rerun resumes
    code, _, err = run_cli(["tune", str(toy()), "--out", str(out)], capsys)
    assert code == 0 and err.count("[done before]") == 32 and (out / "tuned.yaml").exists()


def test_eprop_trials_run_on_validation_seeds_with_per_run_learning_rates(tmp_path):
    cfg = tmp_path / "eprop.yaml"
    cfg.write_text(yaml.safe_dump({
        "experiment": "eprop_pcm", "seeds": [0, 1], "workers": 1,
        "task": {"name": "pattern_generation", "n_in": 8, "t_steps": 40},
        "model": {"n_rec": 8}, "train": {"updates": 4, "eval_every": 2},
        "runs": [{"name": "fp32", "card": "ideal", "scheme": "ideal", "exact_reads": True},
                 {"card": "pcm_nandakumar2018", "scheme": "sign", "scheme_params": {"threshold": 1e-6}}],
        "tune": {"budget": 2, "eta": 2, "seeds": [100], "space": {"train.lr": {"log": [1e-5, 1e-4]}}},
    }, sort_keys=False))
    p = plan(cfg)
    assert (p.metric, p.mode, p.resource, p.resources, p.sizes) == ("final", "min", "train.updates", [2, 4], [2, 1])
    job = p.trial(p.runs[1], 1, 0)[0]
    assert job["seed"] == 100 and job["train"]["lr"] == 1e-4 and job["train"]["updates"] == 2
    assert job["eval"]["delays"] == []
    summary = run_tune(cfg, tmp_path / "out", quiet=True)
    assert set(summary["chosen"]) == {"fp32", "pcm_nandakumar2018/sign"}
    module, rcfg = resolve(tmp_path / "out" / "tuned.yaml")
    jobs = module.jobs(rcfg)
    assert [j["seed"] for j in jobs] == [0, 1, 0, 1]
    assert [j["train"]["lr"] for j in jobs[::2]] == [summary["chosen"][r]["train.lr"] for r in summary["chosen"]]


def test_a_crossbar_run_without_the_test_set_reports_validation_accuracy(fmnist, tmp_path, capsys):
    cfg = crossbar_config(tmp_path / "cfg.yaml", fmnist)
    raw = yaml.safe_load(cfg.read_text())
    raw.pop("tune")
    raw["runs"][1]["train"] = {"lr": 0.3}
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    code, stdout, err = run_cli(["run", str(cfg), "--out", str(out), "--quiet", "--set", "eval.test=false",
                                 "--set", "eval.delays=[]"], capsys)
    assert code == 0, err
    assert stdout.splitlines()[0].split()[:7] == ["run", "test", "acc", "%", "val", "acc", "%"]
    table = json.loads((out / "summary.json").read_text())["table"]
    assert all("val_acc" in r and "test_acc" not in r for r in table)
    text = (out / "RESULTS.md").read_text()
    assert "the test set was not used (eval.test: false)" in text and "validation acc. (%)" in text
    assert "runs with their own training values (the others use the lr above): pcm_nandakumar2018/sign: lr 0.3" in text


def test_run_and_sweep_set_the_tune_section_aside_but_check_it(fmnist, tmp_path):
    cfg = crossbar_config(tmp_path / "cfg.yaml", fmnist)
    _, with_tune = resolve(cfg)
    plain = yaml.safe_load(cfg.read_text())
    del plain["tune"]
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(plain))
    assert with_tune == resolve(tmp_path / "plain.yaml")[1]
    with pytest.raises(ConfigError, match="tune.budget"):
        resolve(cfg, ["tune.budget=0"])
