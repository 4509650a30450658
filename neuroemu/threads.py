"""How many cores neuroemu uses: its numba kernels and the BLAS library, together.

The parallel kernels (``numba`` ``prange``) and the BLAS library (OpenBLAS, MKL) each keep a pool of
threads. :func:`limit` sets both pools to the same count for the duration of a ``with`` block, so
that a benchmark or a run can be timed on one core or on all of them::

    from neuroemu import threads
    with threads.limit(1):
        ...  # kernels and BLAS on one thread each

:func:`available` is the most a process may use (``NUMBA_NUM_THREADS``, by default the number of
cores). Worker processes of :func:`neuroemu.runner.run_jobs` start with one thread each.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba
from threadpoolctl import threadpool_limits

__all__ = ["available", "current", "limit"]


def available() -> int:
    """The most threads a kernel may use in this process (numba's ``NUMBA_NUM_THREADS``)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def current() -> int:
    """Threads the parallel kernels use now."""
    return int(numba.get_num_threads())


@contextmanager
def limit(n: int) -> Iterator[int]:
    """Run the block with ``n`` threads for the kernels and for BLAS (clipped to 1 ...
    :func:`available`); yields the count in force. The previous counts are restored on exit."""
    n = max(1, min(int(n), available()))
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        numba.set_num_threads(before)
