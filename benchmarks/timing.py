"""Timing shared by the benchmarks: medians of functions timed in turn, after warm-up."""

import time

import numpy as np


def median_times(fns, repeat: int, warmup: int = 2) -> list[float]:
    """Median wall time of each function, calling them in turn (so that all see the same machine
    load) after ``warmup`` untimed rounds (numba compilation, caches)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [float(np.median(ts)) for ts in times]


def add_threads_option(ap) -> None:
    """``--threads 1,2``: the thread counts to measure at (kernels and BLAS alike, see
    :func:`neuroemu.threads.limit`); every count gets its own table, measured in the same run."""
    ap.add_argument("--threads", default="1,2", metavar="N[,N...]",
                    help="thread counts to measure at, comma-separated (default 1,2; counts above "
                         "the cores available are clipped)")


def thread_counts(spec: str) -> list[int]:
    """The distinct counts of a ``--threads`` value, clipped to the threads available."""
    from neuroemu.threads import available

    out = []
    for part in str(spec).split(","):
        n = max(1, min(int(part), available()))
        if n not in out:
            out.append(n)
    return out


def at_threads(spec: str, measure) -> list[dict]:
    """Call ``measure(n)`` under :func:`neuroemu.threads.limit` for each count of ``spec``; the rows
    it returns get a ``threads`` key and are concatenated."""
    from neuroemu.threads import limit

    rows = []
    for n in thread_counts(spec):
        with limit(n):
            for r in measure(n):
                rows.append({"threads": n, **r})
    return rows
