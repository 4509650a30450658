"""Worker processes never outlive the run: Ctrl-C, SIGTERM and SIGKILL of the parent stop them.

The command-line tests start `neuroemu run` on a tiny e-prop config with two workers, find the
workers through /proc and signal the parent the way a user or a batch system would. Everything is
polled a generous number of times (a loaded 2-core machine is slow to start Python processes);
the waits bound liveness, they time nothing."""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from neuroemu.runner import result_path, run_jobs

HAS_PROC = Path("/proc/self/stat").exists()
needs_proc = pytest.mark.skipif(not HAS_PROC, reason="finds the worker processes through /proc (Linux)")


def wait_for(condition, timeout, step=0.1):
    """Poll ``condition()`` until it is truthy (returned), at most ``timeout / step`` times ``step``
    seconds apart (None). Counted in polls, not read from the clock: on a busy machine the wait only
    grows."""
    for _ in range(math.ceil(timeout / step)):
        value = condition()
        if value:
            return value
        time.sleep(step)
    return None


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie has finished)."""
    if not HAS_PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def workers_of(parent: int) -> list[int]:
    """The multiprocessing workers started by ``parent`` (not its resource tracker)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rpartition(")")[2].split()[1])
            cmdline = (d / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(d.name))
    return found


# ---------------------------------------------------------------------------------------- in process
def slow_or_quick(job):
    """A job that ends at once, or marks that it started (with its pid) and then runs for minutes."""
    if job["quick"]:
        return {"pid": os.getpid()}
    Path(job["marker"]).write_text(str(os.getpid()))
    time.sleep(300)
    return {"pid": os.getpid()}


def test_sigterm_stops_the_workers_at_once_and_keeps_finished_jobs(tmp_path):
    """SIGTERM while jobs run acts as Ctrl-C: KeyboardInterrupt, running workers ended instead of
    waited for, finished results kept; the previous SIGTERM handler is back afterwards."""
    jobs = [{"id": "quick", "quick": True}] + [
        {"id": f"slow{i}", "quick": False, "marker": str(tmp_path / f"started{i}")} for i in range(3)]
    markers = [Path(j["marker"]) for j in jobs[1:]]
    seen = {}

    def interrupt_when_busy():
        seen["ready"] = wait_for(lambda: result_path(tmp_path, jobs[0]).exists() and
                                 sum(m.exists() for m in markers) >= 2, timeout=120)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=interrupt_when_busy)
    t.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_jobs(jobs, slow_or_quick, tmp_path, workers=2, quiet=True)
    finally:
        t.join()
    assert seen["ready"], "the workers did not start their jobs within the deadline"
    assert signal.getsignal(signal.SIGTERM) is previous
    pids = [int(m.read_text()) for m in markers if m.exists()]
    assert len(pids) >= 2 and wait_for(lambda: not any(alive(p) for p in pids), timeout=10)
    assert json.loads(result_path(tmp_path, jobs[0]).read_text())["result"]["pid"] > 0
    assert not any(result_path(tmp_path, j).exists() for j in jobs[1:])


# ---------------------------------------------------------------------------------------- the command
def start(tmp_path, command, *, updates=300, seeds=2):
    """``neuroemu COMMAND`` on a tiny e-prop study (one fp32 run per seed, two workers) in its own
    process group, as a shell starts a command; its stderr goes to a file. About 1 ms per update."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "experiment": "eprop_pcm", "seeds": list(range(seeds)), "workers": 2,
        "task": {"n_in": 20, "t_steps": 200}, "model": {"n_rec": 20},
        "train": {"updates": updates, "lr": 2e-5, "eval_every": 100}, "hardware": {"w_max": 0.3},
        "eval": {"delays": []},
        "runs": [{"name": "fp32", "card": "ideal", "scheme": "ideal", "exact_reads": True}],
    }))
    out = tmp_path / "out"
    log = open(tmp_path / "stderr.txt", "w")
    # SIGINT as a terminal gives it, also where the tests themselves run with it ignored (started in
    # the background by a non-interactive shell, which Python then leaves ignored)
    proc = subprocess.Popen([sys.executable, "-m", "neuroemu", command[0], str(cfg), "--out", str(out), *command[1:]],
                            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log.close()
    return proc, out


def kill_all(proc, pids):
    for pid in [proc.pid, *pids]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait()


@needs_proc
def test_workers_die_with_a_killed_parent(tmp_path):
    """SIGKILL leaves the parent no chance to stop its workers; they must notice and exit."""
    proc, _ = start(tmp_path, ["run"], updates=10**6)  # each job would run for many minutes
    pids = []
    try:
        pids = wait_for(lambda: proc.poll() is not None or len(workers_of(proc.pid)) == 2, timeout=120) and \
            workers_of(proc.pid)
        assert len(pids) == 2, (tmp_path / "stderr.txt").read_text()
        time.sleep(2)  # let them get into their jobs
        assert all(alive(p) for p in pids) and proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert wait_for(lambda: not any(alive(p) for p in pids), timeout=15), "workers outlived their parent"
    finally:
        kill_all(proc, pids)


@needs_proc
@pytest.mark.parametrize("sig, group", [(signal.SIGINT, True), (signal.SIGINT, False), (signal.SIGTERM, False)],
                         ids=["ctrl-c", "sigint-parent", "sigterm-parent"])
def test_an_interrupted_sweep_stops_its_workers_and_keeps_finished_runs(tmp_path, sig, group):
    """Ctrl-C in a terminal signals the whole process group; `kill` signals the parent alone. Either
    way the parent stops its workers at once (the running jobs would take many minutes) and exits
    with 130; the runs finished before are kept."""
    proc, out = start(tmp_path, ["sweep", "--grid", "train.updates=300,1000000"])  # 2 quick jobs, 2 long ones
    pids = []
    try:
        finished = wait_for(lambda: proc.poll() is not None or len(list(out.glob("runs/*.json"))) == 2, timeout=180)
        assert finished and proc.poll() is None, (tmp_path / "stderr.txt").read_text()
        pids = workers_of(proc.pid)
        assert len(pids) == 2
        time.sleep(1)  # both workers in their long jobs
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        assert proc.wait(timeout=60) == 130
        assert wait_for(lambda: not any(alive(p) for p in pids), timeout=10), "workers outlived the sweep"
        err = (tmp_path / "stderr.txt").read_text()
        assert "interrupted" in err and "Traceback" not in err
        kept = sorted(p.name for p in out.glob("runs/*.json"))
        assert kept == ["train.updates_300_fp32_seed0.json", "train.updates_300_fp32_seed1.json"]
    finally:
        kill_all(proc, pids)
