"""Run many independent jobs (runs × seeds) with resume: a finished job is never recomputed.

Each job is a JSON-serialisable dict with a unique ``id``. Its result is written atomically to
``<out>/runs/<id>.json`` together with a hash of the job; on restart, jobs whose result file exists
with the same hash are loaded instead of recomputed, so an interrupted run keeps everything it had
finished. Jobs run serially, in local worker processes (BLAS and numba pinned to one thread per
worker so that workers do not oversubscribe the cores) or on any :class:`concurrent.futures.Executor`
the caller provides (e.g. a Dask cluster's ``Client.get_executor()``).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing as mp
import os
import re
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import NeuroemuError
from .io import atomic_write_json, atomic_write_npz, atomic_write_text
from .progress import Progress

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def job_hash(job: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()[:16]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")


def check_run_names(runs: list[dict[str, Any]], where: str) -> None:
    """Run names must give distinct result files (their slugs) within one experiment."""
    from .errors import ConfigError

    seen: dict[str, str] = {}
    for i, run in enumerate(runs):
        key = slug(run["name"])
        if key in seen:
            raise ConfigError(f"{where} runs[{i}].name: run name {run['name']!r} clashes with {seen[key]!r} (the same "
                              "file name under runs/); give the runs distinct names")
        seen[key] = run["name"]


#: Key of a job result holding a dict of numpy arrays: saved as ``runs/<id>.npz``; the stored result
#: keeps the file's name under the same key (load it with :func:`load_arrays`).
ARRAYS = "arrays"


def load_arrays(out_dir: str | Path, result: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays a finished job saved beside its result (empty when it saved none)."""
    name = result.get(ARRAYS)
    if not name:
        return {}
    with np.load(Path(out_dir) / "runs" / name) as f:
        return {k: f[k] for k in f.files}


def result_path(out_dir: Path, job: dict[str, Any]) -> Path:
    return Path(out_dir) / "runs" / f"{slug(job['id'])}.json"


def load_finished(out_dir: Path, job: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result of ``job`` if it finished with the same settings, else None."""
    p = result_path(out_dir, job)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data["result"] if data.get("hash") == job_hash(job) else None


def _pin_threads() -> None:
    for v in _THREAD_VARS:
        os.environ[v] = "1"


def run_jobs(jobs: list[dict[str, Any]], fn: Callable[[dict[str, Any]], dict[str, Any]], out_dir: str | Path, *,
             workers: int = 1, quiet: bool = False, executor: cf.Executor | None = None) -> list[dict[str, Any]]:
    """Run ``fn(job)`` for every job not finished before; return results in job order.

    ``fn`` must be a module-level function (it is pickled to worker processes). With ``executor``
    (any :class:`concurrent.futures.Executor`, e.g. ``distributed.Client(address).get_executor()``)
    the jobs are submitted to it and ``workers`` is ignored; the caller owns the executor (it is not
    shut down here) and sets up its workers' threads. Otherwise ``workers <= 1`` runs the jobs
    here, one after the other, and ``workers > 1`` in that many spawned processes, each with BLAS
    and numba pinned to one thread. Results are saved as soon as each job ends. A job that raises
    does not stop the others: its traceback goes to ``<out>/runs/<id>.error.txt`` and, once all jobs
    have ended, :class:`JobsFailed` names the failed jobs. Ctrl-C stops the remaining jobs; finished
    ones stay on disk.
    """
    out_dir = Path(out_dir)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        done = load_finished(out_dir, job)
        if done is not None:
            results[job["id"]] = done
        else:
            todo.append(job)
    bar = Progress(len(todo), "jobs", enabled=not quiet)
    for job in jobs:
        if job["id"] in results:
            bar.log(f"[done before] {job['id']}")

    failed: dict[str, str] = {}

    def finish(job, res):
        arrays = res.pop(ARRAYS, None)
        if arrays:  # large arrays (e.g. trained weights) go to an .npz beside the JSON, named in it
            path = result_path(out_dir, job).with_suffix(".npz")
            atomic_write_npz(path, arrays)
            res[ARRAYS] = path.name
        atomic_write_json(result_path(out_dir, job), {"job": job, "hash": job_hash(job), "result": res})
        result_path(out_dir, job).with_suffix(".error.txt").unlink(missing_ok=True)
        results[job["id"]] = res
        bar.step(f"finished {job['id']}")

    def fail(job, exc):
        text = "".join(traceback.format_exception(exc))
        path = result_path(out_dir, job).with_suffix(".error.txt")
        atomic_write_text(path, text)
        failed[job["id"]] = f"{type(exc).__name__}: {exc}"
        bar.step(f"FAILED {job['id']}: {type(exc).__name__}: {exc} (traceback in {path})")

    def collect(futures):
        try:
            for fut in cf.as_completed(futures):
                job = futures[fut]
                exc = fut.exception()
                if exc is not None:
                    fail(job, exc)
                else:
                    finish(job, fut.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    if executor is not None:
        if todo:
            collect({executor.submit(fn, job): job for job in todo})
    elif workers <= 1 or len(todo) <= 1:
        for job in todo:
            try:
                res = fn(job)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - recorded, reported after the other jobs
                fail(job, exc)
            else:
                finish(job, res)
    else:
        saved = {v: os.environ.get(v) for v in _THREAD_VARS}
        _pin_threads()  # inherited by the spawned workers before they import numpy
        try:
            ctx = mp.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                collect({ex.submit(fn, job): job for job in todo})
        finally:
            for v, val in saved.items():
                if val is None:
                    os.environ.pop(v, None)
                else:
                    os.environ[v] = val
    bar.close()
    if failed:
        raise JobsFailed(failed, [results[j["id"]] for j in jobs if j["id"] in results])
    return [results[j["id"]] for j in jobs]


class JobsFailed(NeuroemuError):
    """Some jobs raised; ``failed`` maps job id to the error, ``results`` holds the finished ones."""

    def __init__(self, failed: dict[str, str], results: list[dict[str, Any]]):
        self.failed, self.results = failed, results
        first = next(iter(failed.items()))
        super().__init__(f"{len(failed)} job(s) failed (first: {first[0]}: {first[1]}); finished jobs are "
                         "saved and are not recomputed on the next run")
