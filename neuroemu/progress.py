"""Progress of a long run: a tqdm bar when tqdm is installed and stderr is a terminal, plain text
lines otherwise (logs and CI get one line per finished item).

``Progress(total, desc)`` counts finished items; ``step(message)`` advances by one and shows the
message with elapsed time and an estimate of the time left. ``enabled=False`` silences it.

``JobProgress(job_id)`` reports from *inside* one job (a training loop): one plain line on stderr,
``[<job id>] <message>  (<elapsed> s)``, at most once every :data:`INTERVAL_S` seconds, so that a long
job shows where it is without flooding the console when several jobs run at once. Worker processes
inherit stderr, so their lines appear in the console too. Setting the environment variable
``NEUROEMU_QUIET`` (:data:`QUIET_ENV`) to anything but ``""`` or ``"0"`` silences it; the job runner
sets it while it runs quietly (``neuroemu run --quiet``), and spawned workers inherit it.

``job_messages(once=...)`` decorates an experiment's ``run_job(job)``: the warnings a job raises show
its id, and those of the given categories show once per job (e.g. a scheme's pulse-limit warning,
which every tile of a network would raise). Warnings are not progress: ``NEUROEMU_QUIET`` keeps them.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import warnings
from typing import Any, Callable, TextIO


class Progress:
    def __init__(self, total: int, desc: str = "", *, enabled: bool = True):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.done = 0
        self.start = time.monotonic()
        self._bar = None
        if enabled and total > 0 and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)

    def log(self, message: str) -> None:
        """Print a line without breaking the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def step(self, message: str = "") -> None:
        """One more item finished."""
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        line = f"[{self.done}/{self.total}] {message} ({elapsed:.0f} s elapsed, ~{left:.0f} s left)"
        self.log(line)
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


#: Environment variable that silences :class:`JobProgress` (any value but "" and "0").
QUIET_ENV = "NEUROEMU_QUIET"
#: Environment variable that overrides :data:`INTERVAL_S` (seconds, a number >= 0).
INTERVAL_ENV = "NEUROEMU_PROGRESS_S"
#: Seconds between two progress lines of one job: a line every few epochs or hundreds of updates
#: on the example studies, and two workers together print about one line every 7 s.
INTERVAL_S = 15.0


def quiet() -> bool:
    """True when the environment asks for no progress output (:data:`QUIET_ENV`)."""
    return os.environ.get(QUIET_ENV, "") not in ("", "0")


def _interval() -> float:
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None:
        return INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0.0:  # also NaN
        raise ValueError(f"{INTERVAL_ENV}: expected a number of seconds >= 0, got {raw!r}")
    return value


class JobProgress:
    """Throttled progress lines from inside one job (see the module docstring).

    ``due()`` says whether a line would be printed now (so a loop builds its message only then;
    ``due(since=t)`` whether ``interval`` has passed since the time ``t`` of :meth:`now`);
    ``log(message)`` prints it when due, or always with ``force=True``, and returns whether it did.
    ``enabled`` (default: not :func:`quiet`) and ``interval`` (default :data:`INTERVAL_S`, or
    ``NEUROEMU_PROGRESS_S``) are read when the object is made; ``clock`` and ``stream`` are for tests.
    """

    def __init__(self, job_id: str, *, enabled: bool | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic, stream: TextIO | None = None):
        self.job_id = job_id
        self.enabled = not quiet() if enabled is None else bool(enabled)
        self.interval = _interval() if interval is None else float(interval)
        self._clock = clock
        self._stream = stream
        self.start = self._last = clock()

    def now(self) -> float:
        """The clock's time, for :meth:`due` ``since``."""
        return self._clock()

    def due(self, since: float | None = None) -> bool:
        """Whether ``interval`` has passed since the last line, or since ``since`` (a :meth:`now`)."""
        return self.enabled and self._clock() - (self._last if since is None else since) >= self.interval

    def log(self, message: str, *, force: bool = False) -> bool:
        if not (self.due() or (force and self.enabled)):
            return False
        now = self._clock()
        self._last = now
        line = f"[{self.job_id}] {message}  ({now - self.start:.0f} s)"
        stream = self._stream if self._stream is not None else sys.stderr
        bars = sys.modules.get("tqdm")
        if bars is not None and stream is sys.stderr:  # a bar of this process stays intact
            bars.tqdm.write(line, file=stream)
        else:
            print(line, file=stream, flush=True)
        return True


def job_messages(once: tuple[type[Warning], ...] = ()) -> Callable:
    """Decorator of ``run_job(job)``: while the job runs, a warning shows as ``[<job id>] message``
    (without the source line), and one of a category in ``once`` only the first time in the job."""

    def decorate(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        @functools.wraps(fn)
        def run(job: dict[str, Any]) -> Any:
            seen: set[type[Warning]] = set()
            with warnings.catch_warnings():
                show = warnings.showwarning

                def tagged(message, category, filename, lineno, file=None, line=None):
                    if issubclass(category, once):
                        if category in seen:
                            return
                        seen.add(category)
                    show(f"[{job['id']}] {message}", category, filename, lineno, file, "")

                warnings.showwarning = tagged
                return fn(job)

        return run

    return decorate
