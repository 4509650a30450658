"""Job runner: results saved per job, resume without recomputation, failures isolated."""

import json
import os

import numpy as np
import pytest

from neuroemu.progress import QUIET_ENV, Progress
from neuroemu.runner import JobsFailed, ResultsDiffer, job_hash, load_arrays, result_path, run_jobs


def square(job):
    if job.get("fail"):
        raise RuntimeError(f"job {job['id']} was told to fail")
    return {"value": job["x"] ** 2}


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_job_order_and_saved(tmp_path, workers):
    jobs = [{"id": f"j{i}", "x": i} for i in range(4)]
    res = run_jobs(jobs, square, tmp_path, workers=workers, quiet=True)
    assert [r["value"] for r in res] == [0, 1, 4, 9]
    stored = json.loads(result_path(tmp_path, jobs[2]).read_text())
    assert stored["result"] == {"value": 4} and stored["hash"] == job_hash(jobs[2])


def test_finished_jobs_are_not_recomputed(tmp_path, capsys):
    jobs = [{"id": "a", "x": 2}, {"id": "b", "x": 3}]
    run_jobs(jobs, square, tmp_path, quiet=True)
    path = result_path(tmp_path, jobs[0])
    data = json.loads(path.read_text())
    data["result"]["value"] = -1  # a recomputation would overwrite this
    path.write_text(json.dumps(data))
    loaded = set()
    res = run_jobs(jobs + [{"id": "c", "x": 4}], square, tmp_path, loaded=loaded)
    assert res[0]["value"] == -1 and res[2]["value"] == 16
    assert "[done before] a" in capsys.readouterr().err
    assert loaded == {"a", "b"}  # the new job c was computed, not loaded


def test_local_keys_are_not_part_of_a_jobs_identity(tmp_path):
    """Keys starting with '_' say where things are on this machine: not hashed, not stored."""
    here = {"id": "a", "x": 2, "spec": {"name": "f.py:F", "_from": "/one/place"}}
    there = {"id": "a", "x": 2, "spec": {"name": "f.py:F", "_from": "/another"}}
    assert job_hash(here) == job_hash(there) != job_hash({**here, "x": 3})
    run_jobs([here], square, tmp_path, quiet=True)
    assert json.loads(result_path(tmp_path, here).read_text())["job"] == {"id": "a", "x": 2, "spec": {"name": "f.py:F"}}
    assert run_jobs([{**there, "x": 2}], lambda job: {"value": -1}, tmp_path, quiet=True)[0]["value"] == 4  # loaded


def maybe_diverged(job):
    if job.get("diverge"):
        return {"diverged": {"at": 3, "metric": "nmse", "value": job["diverge"], "bound": 1000.0}}
    return {"value": 1}


def test_a_diverged_job_is_reported_as_such(tmp_path, capsys):
    jobs = [{"id": "a"}, {"id": "b", "diverge": 2034.2}, {"id": "c", "diverge": "nan"}]
    run_jobs(jobs, maybe_diverged, tmp_path)
    lines = [line for line in capsys.readouterr().err.splitlines() if "finished" in line]
    # "[k/n] <message> (<time> elapsed, ~<time> left)"
    assert [line.split("] ", 1)[1].rsplit(" (", 1)[0] for line in lines] == [
        "finished a", "finished b (diverged at 3: nmse 2034)", "finished c (diverged at 3: nmse nan)"], lines


def test_the_same_ids_with_other_settings_are_refused_unless_overwritten(tmp_path):
    jobs = [{"id": "a", "x": 2, "opt": {"k": [1, 2]}}, {"id": "b", "x": 3}]
    run_jobs(jobs, square, tmp_path, quiet=True)
    before = result_path(tmp_path, jobs[0]).read_text()
    changed = [{"id": "a", "x": 2, "opt": {"k": [1, 5]}}, {"id": "b", "x": 4}, {"id": "c", "x": 1}]
    with pytest.raises(ResultsDiffer) as info:
        run_jobs(changed, square, tmp_path, quiet=True)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path}: 2 finished run(s)")
    assert "first: a, opt.k.1 is 5 now, was 2" in msg and "--out" in msg and "--overwrite" in msg
    assert info.value.job_ids == ["a", "b"]
    assert result_path(tmp_path, jobs[0]).read_text() == before and not result_path(tmp_path, changed[2]).exists()
    # new ids beside the finished ones are fine; overwrite recomputes only the jobs that differ
    assert [r["value"] for r in run_jobs(jobs + [changed[2]], square, tmp_path, quiet=True)] == [4, 9, 1]
    loaded = set()
    res = run_jobs(changed, square, tmp_path, quiet=True, overwrite=True, loaded=loaded)
    assert [r["value"] for r in res] == [4, 16, 1] and loaded == {"c"}  # a and b differed: recomputed
    assert json.loads(result_path(tmp_path, changed[1]).read_text())["hash"] == job_hash(changed[1])
    assert [r["value"] for r in run_jobs(changed, square, tmp_path, quiet=True)] == [4, 16, 1]  # resumes
    with pytest.raises(ResultsDiffer, match="first: b, x is 3 now, was 4"):
        run_jobs([{"id": "b", "x": 3}], square, tmp_path, quiet=True)
    with pytest.raises(ResultsDiffer, match="first: c, y is 1 now, was absent"):
        run_jobs([{"id": "c", "x": 1, "y": 1}], square, tmp_path, quiet=True)


def report_quiet(job):
    return {"quiet": os.environ.get(QUIET_ENV)}


@pytest.mark.parametrize("workers", [1, 2])
def test_quiet_reaches_the_jobs_through_the_environment(tmp_path, workers, monkeypatch):
    monkeypatch.delenv(QUIET_ENV, raising=False)
    jobs = [{"id": "a"}, {"id": "b"}]
    assert [r["quiet"] for r in run_jobs(jobs, report_quiet, tmp_path / "q", workers=workers, quiet=True)] == ["1", "1"]
    assert QUIET_ENV not in os.environ  # restored
    assert [r["quiet"] for r in run_jobs(jobs, report_quiet, tmp_path / "loud", workers=workers)] == [None, None]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_does_not_stop_the_others(tmp_path, workers):
    jobs = [{"id": "ok1", "x": 1}, {"id": "bad", "x": 0, "fail": True}, {"id": "ok2", "x": 2}]
    with pytest.raises(JobsFailed) as info:
        run_jobs(jobs, square, tmp_path, workers=workers, quiet=True)
    assert set(info.value.failed) == {"bad"} and "told to fail" in str(info.value)
    assert [r["value"] for r in info.value.results] == [1, 4]
    assert "RuntimeError" in result_path(tmp_path, jobs[1]).with_suffix(".error.txt").read_text()
    jobs[1]["fail"] = False  # fixed: only that job runs again
    assert [r["value"] for r in run_jobs(jobs, square, tmp_path, quiet=True)] == [1, 0, 4]


def test_progress_text_lines(capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *a, **k):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    p = Progress(2, "jobs")
    p.step("first")
    p.step("second")
    err = capsys.readouterr().err
    assert "[1/2] first" in err and "[2/2] second" in err and "left" in err
    q = Progress(2, "jobs", enabled=False)
    q.step("x")
    assert capsys.readouterr().err == "" and q.done == 1


class CountingExecutor:
    """A concurrent.futures executor that runs jobs in threads and counts submissions."""

    def __init__(self):
        import concurrent.futures as cf

        self.pool = cf.ThreadPoolExecutor(max_workers=2)
        self.submitted = []

    def submit(self, fn, *args, **kwargs):
        self.submitted.append(args[0]["id"])
        return self.pool.submit(fn, *args, **kwargs)


def test_a_given_executor_runs_the_jobs_and_stays_open(tmp_path):
    ex = CountingExecutor()
    jobs = [{"id": f"j{i}", "x": i} for i in range(3)] + [{"id": "bad", "x": 0, "fail": True}]
    with pytest.raises(JobsFailed) as info:
        run_jobs(jobs, square, tmp_path, workers=8, quiet=True, executor=ex)
    assert sorted(ex.submitted) == ["bad", "j0", "j1", "j2"]
    assert set(info.value.failed) == {"bad"} and [r["value"] for r in info.value.results] == [0, 1, 4]
    jobs[-1]["fail"] = False
    ex.submitted.clear()
    assert [r["value"] for r in run_jobs(jobs, square, tmp_path, quiet=True, executor=ex)] == [0, 1, 4, 0]
    assert ex.submitted == ["bad"]  # finished jobs are loaded, not resubmitted; the executor is still usable
    ex.submitted.clear()
    run_jobs(jobs, square, tmp_path, quiet=True, executor=ex)
    assert ex.submitted == []
    ex.pool.shutdown()


def with_arrays(job):
    return {"value": job["x"], "arrays": {"w": np.full((2, 3), job["x"], np.float32)}}


def test_arrays_go_to_an_npz_beside_the_result(tmp_path):
    jobs = [{"id": "a/1", "x": 2}, {"id": "b", "x": 3}]
    res = run_jobs(jobs, with_arrays, tmp_path, quiet=True)
    assert res[0]["arrays"] == "a_1.npz"
    stored = json.loads(result_path(tmp_path, jobs[0]).read_text())["result"]
    assert stored == {"value": 2, "arrays": "a_1.npz"}
    np.testing.assert_array_equal(load_arrays(tmp_path, res[1])["w"], np.full((2, 3), 3, np.float32))
    assert load_arrays(tmp_path, {"value": 1}) == {}
    again = run_jobs(jobs, with_arrays, tmp_path, quiet=True)  # resumed: the stored name, the same arrays
    assert load_arrays(tmp_path, again[0])["w"].dtype == np.float32


def squares_experiment(monkeypatch, workers: int = 1):
    """Register a tiny experiment "squares": one job squaring the config's x."""
    import types

    from neuroemu.config import Opt
    from neuroemu.studies import EXPERIMENTS

    mod = types.SimpleNamespace(
        NAME="squares", SCHEMA={"experiment": Opt("str"), "workers": Opt("int", workers), "x": Opt("int", 0)},
        check=lambda cfg, where: cfg, prepare=lambda cfg: None, run_job=square,
        jobs=lambda cfg: [{"id": "a", "x": cfg["x"]}], console_table=lambda table: [],
        report=lambda cfg, results, out, meta: {"table": [r["value"] for r in results]})
    monkeypatch.setitem(EXPERIMENTS, mod.NAME, mod)
    return mod


def test_run_experiment_refuses_before_replacing_the_config(tmp_path, monkeypatch):
    from neuroemu.studies import run_experiment

    squares_experiment(monkeypatch)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("experiment: squares\nx: 2\n")
    out = tmp_path / "out"
    assert run_experiment(cfg, out, quiet=True)["table"] == [4]
    config = (out / "config.yaml").read_text()
    with pytest.raises(ResultsDiffer, match="first: a, x is 3 now, was 2"):
        run_experiment(cfg, out, ["x=3"], quiet=True)
    assert (out / "config.yaml").read_text() == config
    assert run_experiment(cfg, out, ["x=3"], quiet=True, overwrite=True)["table"] == [9]
    assert "x: 3" in (out / "config.yaml").read_text()


def test_run_experiment_takes_the_workers_it_is_given(tmp_path, monkeypatch):
    import neuroemu.studies
    from neuroemu.errors import ConfigError
    from neuroemu.studies import run_experiment

    squares_experiment(monkeypatch, workers=3)
    seen = []
    monkeypatch.setattr(neuroemu.studies, "run_jobs",
                        lambda jobs, fn, out, *, workers, **kw: seen.append(workers) or [fn(j) for j in jobs])
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("experiment: squares\nx: 2\n")
    run_experiment(cfg, tmp_path / "a", quiet=True)
    run_experiment(cfg, tmp_path / "b", quiet=True, workers=1)
    assert seen == [3, 1]
    for bad in (0, -2):
        with pytest.raises(ConfigError, match=f"workers: expected an integer >= 1, got {bad}"):
            run_experiment(cfg, tmp_path / "c", quiet=True, workers=bad)
    assert not (tmp_path / "c").exists()  # refused before anything is written


def test_the_report_says_how_many_jobs_an_invocation_loaded_instead_of_computing():
    from neuroemu.studies.common import wall_time

    assert wall_time({"wall_time_s": 0.2, "jobs": 9, "jobs_loaded": 9}) == \
        "wall time 0 s (all 9 jobs loaded from an earlier run, not recomputed)"
    assert wall_time({"wall_time_s": 523.4, "jobs": 9, "jobs_loaded": 2}) == \
        "wall time 523 s (2 of 9 jobs loaded from an earlier run, not recomputed)"
    assert wall_time({"wall_time_s": 5.0, "jobs": 3, "jobs_loaded": 0}) == "wall time 5 s"
