"""Job runner: results saved per job, resume without recomputation, failures isolated."""

import json

import numpy as np
import pytest

from neuroemu.progress import Progress
from neuroemu.runner import JobsFailed, job_hash, load_arrays, result_path, run_jobs


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
    res = run_jobs(jobs, square, tmp_path)
    assert res[0]["value"] == -1
    assert "[done before] a" in capsys.readouterr().err
    jobs[0]["x"] = 5  # changed settings: recomputed
    assert run_jobs(jobs, square, tmp_path, quiet=True)[0]["value"] == 25


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
