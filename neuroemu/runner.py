"""Run many independent jobs (runs × seeds) with resume: a finished job is never recomputed.

Each job is a JSON-serialisable dict with a unique ``id``. Its result is written atomically to
``<out>/runs/<id>.json`` together with the job and a hash of it, as soon as the job ends. On
restart, jobs whose result file holds the same hash are loaded instead of recomputed, so an
interrupted run keeps everything it had finished. A result file of the same id with another hash
is a finished run of another protocol (another config, an edited device card, another neuroemu
version): nothing runs and :class:`ResultsDiffer` names the first differing setting, unless
``overwrite=True``, which recomputes those jobs and replaces their results. New ids (another run,
another grid value) simply run.

The keys in :data:`LOCAL_KEYS`, at any depth of a job, are local: where a file is on this machine
(the directory of a plug-in or network file, whose content the job identifies by its SHA-256).
They are not part of the job's identity (:func:`identity`): not hashed, not stored, so the same job
run from another working directory or checkout loads the same results.

Jobs run serially, in local worker processes (BLAS and numba pinned to one thread per worker so
that workers do not oversubscribe the cores) or on any :class:`concurrent.futures.Executor` the
caller provides (e.g. a Dask cluster's ``Client.get_executor()``).

Stopping: Ctrl-C, and SIGTERM while jobs run (handled like Ctrl-C), cancel the jobs not started,
terminate the local workers at once instead of waiting for their jobs, and raise
:class:`KeyboardInterrupt`; finished results are already on disk. Local workers ignore Ctrl-C (the
parent stops them) and exit within about a second when the parent is gone, even after a SIGKILL
(see :func:`_worker_init`). With ``quiet=True`` the environment variable ``NEUROEMU_QUIET=1``
(:data:`neuroemu.progress.QUIET_ENV`) is set while the jobs run, so that the jobs (in workers too)
silence their own progress lines. A job whose result holds ``diverged`` (see
:mod:`neuroemu.divergence`) is reported as finished with where and how it diverged.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import hashlib
import json
import multiprocessing as mp
import os
import re
import signal
import sys
import threading
import time
import traceback
from multiprocessing import connection
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from . import alloc
from .errors import NeuroemuError
from .io import atomic_write_json, atomic_write_npz, atomic_write_text
from .progress import QUIET_ENV, Progress

#: Keys of a job that say where its files are on this machine, not what the job is.
LOCAL_KEYS = frozenset({"_from", "_absolute"})


def identity(job: Any) -> Any:
    """``job`` without its :data:`LOCAL_KEYS` (at any depth): what its hash, its stored copy and its
    checkpoints are keyed on."""
    if isinstance(job, dict):
        return {k: identity(v) for k, v in job.items() if k not in LOCAL_KEYS}
    if isinstance(job, (list, tuple)):
        return [identity(v) for v in job]
    return job


def local_file(written: str | Path, base_dir: Path | None) -> tuple[str, dict[str, Any]]:
    """A file a config names (relative to ``base_dir``, the config's directory, or absolute) as a job
    names it: (its file name, its :data:`LOCAL_KEYS`: ``_from`` its directory, ``_absolute`` when it
    was written as an absolute path). The job then reads the same from any working directory."""
    written = Path(written)
    path = Path(os.path.abspath(written if written.is_absolute() else (base_dir or Path.cwd()) / written))
    return path.name, {"_from": str(path.parent.resolve()), **({"_absolute": True} if written.is_absolute() else {})}


def written_file(file: str, local: dict[str, Any], old: Path, new: Path) -> str:
    """The inverse of :func:`local_file` for a config written in ``new``: ``file`` as named from there
    (relative to ``new``, or absolute where it was written so). ``local`` (a spec holding the local keys,
    or none: the file is relative to ``old``, the directory of an unresolved config) loses its local keys."""
    where, absolute = Path(local.pop("_from", old)), local.pop("_absolute", False)
    if Path(file).is_absolute():
        return file
    return str(where / file) if absolute else os.path.relpath(where / file, new)


def job_hash(job: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity(job), sort_keys=True, default=str).encode()).hexdigest()[:16]


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
#: Environment variable naming the directory where a job's trainer keeps its checkpoint while the
#: job runs (:mod:`neuroemu.train`); set to ``<out>/runs`` while the jobs run.
CHECKPOINT_ENV = "NEUROEMU_CHECKPOINTS"


def load_arrays(out_dir: str | Path, result: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays a finished job saved beside its result (empty when it saved none)."""
    name = result.get(ARRAYS)
    if not name:
        return {}
    with np.load(Path(out_dir) / "runs" / name) as f:
        return {k: f[k] for k in f.files}


def result_path(out_dir: Path, job: dict[str, Any]) -> Path:
    return Path(out_dir) / "runs" / f"{slug(job['id'])}.json"


def _read_stored(path: Path) -> dict[str, Any] | None:
    """A result file's content; None when it is missing or unreadable (a job that did not finish)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "result" in data else None


_ABSENT = object()


def _show(value: Any) -> str:
    text = "absent" if value is _ABSENT else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _first_difference(new: Any, old: Any, path: str = "") -> str | None:
    """The first setting where two jobs differ, as ``key.path is NEW now, was OLD`` (None if equal)."""
    if isinstance(new, dict) and isinstance(old, dict):
        keys = [*new, *(k for k in old if k not in new)]
        pairs = ((f"{path}.{k}" if path else k, new.get(k, _ABSENT), old.get(k, _ABSENT)) for k in keys)
    elif isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        pairs = ((f"{path}.{i}", a, b) for i, (a, b) in enumerate(zip(new, old)))
    else:
        same = json.dumps(new, sort_keys=True, default=str) == json.dumps(old, sort_keys=True, default=str)
        return None if same else f"{path} is {_show(new)} now, was {_show(old)}"
    return next((found for key, a, b in pairs if (found := _first_difference(a, b, key))), None)


def _diverged_note(result: dict[str, Any]) -> str:
    """`` (diverged at 3: nmse 2034)`` for a result marked diverged, else ``""``."""
    d = result.get("diverged")
    if not isinstance(d, dict):
        return ""
    value = d.get("value")
    shown = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
    return f" (diverged at {d.get('at')}: {d.get('metric')} {shown})"


def load_results(out_dir: str | Path, jobs: list[dict[str, Any]], *, overwrite: bool = False) -> dict[str, dict]:
    """The results of the jobs that finished before with the same settings, by job id.

    Raises :class:`ResultsDiffer` when ``<out>/runs`` holds a finished job of the same id with other
    settings, unless ``overwrite`` (then that job counts as not finished and is recomputed). Reads
    only: call it before writing anything to ``out_dir`` to refuse early."""
    results, differ = {}, []
    for job in jobs:
        data = _read_stored(result_path(Path(out_dir), job))
        if data is None:
            continue
        if data.get("hash") == job_hash(job):
            results[job["id"]] = data["result"]
        else:
            differ.append((job, data))
    if differ and not overwrite:
        job, data = differ[0]
        new = json.loads(json.dumps(identity(job), default=str))  # as stored
        where = _first_difference(new, data.get("job")) if isinstance(data.get("job"), dict) else None
        raise ResultsDiffer(out_dir, [j["id"] for j, _ in differ], where)
    return results


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables (inherited by spawned workers) and restore them afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """While the jobs run, SIGTERM raises KeyboardInterrupt (so workers are stopped and finished
    results kept, as on Ctrl-C); the previous handler is restored afterwards. Python handles
    signals in the main thread only, so elsewhere nothing changes, nor where SIGTERM is ignored."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _worker_init(parent: int) -> None:
    """Start a local worker: Ctrl-C is left to the parent, and the worker dies with its parent.

    On Linux, prctl(PR_SET_PDEATHSIG) has the kernel SIGKILL the worker as soon as the parent dies,
    however it dies, even while a job holds the GIL in a long compiled call. On every platform a
    daemon thread also waits for the parent's end and calls os._exit: it waits on multiprocessing's
    parent sentinel (a pipe whose write end only the parent holds: EOF the moment the parent is gone)
    and checks once a second that os.getppid() is still the parent (the orphan is re-parented), in
    case a fork of the parent inherited that pipe. That thread needs the GIL, so on macOS a worker
    inside a long compiled call exits when the call returns to Python. The getppid check right after
    prctl covers a parent that died before it. Freed large blocks are kept for reuse
    (:func:`neuroemu.alloc.keep_freed_memory`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent", daemon=True).start()
    alloc.keep_freed_memory()


def _watch_parent(parent: int) -> None:
    proc = mp.parent_process()
    while os.getppid() == parent:
        if proc is None:
            time.sleep(1.0)
        elif connection.wait([proc.sentinel], timeout=1.0):
            break
    os._exit(1)


def _stop_workers(ex: cf.ProcessPoolExecutor) -> None:
    """Cancel the jobs not started and end the running ones now, instead of waiting for them."""
    # the pool's processes: no public API before Python 3.14 (ProcessPoolExecutor.terminate_workers)
    procs = list((getattr(ex, "_processes", None) or {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(2)
        if p.is_alive():
            p.kill()
            p.join()


def run_jobs(jobs: list[dict[str, Any]], fn: Callable[[dict[str, Any]], dict[str, Any]], out_dir: str | Path, *,
             workers: int = 1, quiet: bool = False, executor: cf.Executor | None = None,
             overwrite: bool = False, loaded: set[str] | None = None) -> list[dict[str, Any]]:
    """Run ``fn(job)`` for every job not finished before; return results in job order.

    ``fn`` must be a module-level function (it is pickled to worker processes). With ``executor``
    (any :class:`concurrent.futures.Executor`, e.g. ``distributed.Client(address).get_executor()``)
    the jobs are submitted to it and ``workers`` is ignored; the caller owns the executor (it is not
    shut down here) and sets up its workers' threads. Otherwise ``workers <= 1`` runs the jobs
    here, one after the other, and ``workers > 1`` in that many spawned processes, each with BLAS
    and numba pinned to one thread. Results are saved as soon as each job ends. A job that raises
    does not stop the others: its traceback goes to ``<out>/runs/<id>.error.txt`` and, once all jobs
    have ended, :class:`JobsFailed` names the failed jobs. Before anything runs, a finished job of
    the same id with other settings raises :class:`ResultsDiffer` unless ``overwrite``. Ctrl-C or
    SIGTERM stops the remaining jobs at once (:class:`KeyboardInterrupt`); finished ones stay on disk.
    ``loaded``, when given, receives the ids of the jobs whose finished results were loaded.
    """
    out_dir = Path(out_dir)
    results = load_results(out_dir, jobs, overwrite=overwrite)
    if loaded is not None:
        loaded.update(results)
    todo = [job for job in jobs if job["id"] not in results]
    bar = Progress(len(todo), "jobs", enabled=not quiet)
    for job in jobs:
        if job["id"] in results:
            bar.log(f"[done before] {job['id']}")

    failed: dict[str, str] = {}

    def finish(job, res):
        arrays = res.pop(ARRAYS, None)
        npz = result_path(out_dir, job).with_suffix(".npz")
        if arrays:  # large arrays (e.g. trained weights) go to an .npz beside the JSON, named in it
            atomic_write_npz(npz, arrays)
            res[ARRAYS] = npz.name
        atomic_write_json(result_path(out_dir, job), {"job": identity(job), "hash": job_hash(job), "result": res})
        if not arrays:
            npz.unlink(missing_ok=True)  # left by an overwritten result
        result_path(out_dir, job).with_suffix(".error.txt").unlink(missing_ok=True)
        results[job["id"]] = res
        bar.step(f"finished {job['id']}{_diverged_note(res)}")

    def fail(job, exc):
        text = "".join(traceback.format_exception(exc))
        path = result_path(out_dir, job).with_suffix(".error.txt")
        atomic_write_text(path, text)
        failed[job["id"]] = f"{type(exc).__name__}: {exc}"
        bar.step(f"FAILED {job['id']}: {type(exc).__name__}: {exc} (traceback in {path})")

    def collect(futures):
        pending = dict(futures)
        try:
            for fut in cf.as_completed(futures):
                job = pending.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    fail(job, exc)
                else:
                    finish(job, fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            for fut, job in pending.items():  # ended while we were being stopped: keep them
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    finish(job, fut.result())
            raise

    env = {CHECKPOINT_ENV: str((out_dir / "runs").resolve())}  # where trainers checkpoint their jobs
    if quiet:
        env[QUIET_ENV] = "1"
    with _environ(env), _sigterm_as_ctrl_c():
        try:
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
                with _environ(dict.fromkeys(_THREAD_VARS, "1")):  # inherited by the workers before they import numpy
                    ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                                initializer=_worker_init, initargs=(os.getpid(),))
                    try:
                        collect({ex.submit(fn, job): job for job in todo})
                    except BaseException:
                        _stop_workers(ex)
                        raise
                    ex.shutdown()
        finally:
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


class ResultsDiffer(NeuroemuError):
    """The results directory holds finished jobs of the same ids with other settings; ``job_ids``
    names them. Nothing was run or written."""

    def __init__(self, out_dir: str | Path, job_ids: list[str], first: str | None):
        self.out_dir, self.job_ids = Path(out_dir), job_ids
        what = f"{job_ids[0]}, {first}" if first else job_ids[0]
        super().__init__(f"{out_dir}: {len(job_ids)} finished run(s) there used other settings (first: {what}); "
                         "use a new --out, or --overwrite to replace them")
