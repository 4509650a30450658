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
