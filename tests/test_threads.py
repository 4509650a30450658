"""Thread control: neuroemu.threads and the benchmarks' --threads option."""

import numba
import pytest
from threadpoolctl import threadpool_info

from benchmarks.timing import at_threads, thread_counts
from neuroemu import threads


def _blas_threads():
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_limit_sets_both_pools_and_restores():
    before, blas_before = threads.current(), _blas_threads()
    with threads.limit(1) as n:
        assert n == 1 and numba.get_num_threads() == 1
        assert _blas_threads() <= {1}
    assert threads.current() == before and _blas_threads() == blas_before


def test_limit_clips_to_available():
    with threads.limit(10_000) as n:
        assert n == threads.available() == threads.current()
    with threads.limit(0) as n:
        assert n == 1


def test_thread_counts_and_at_threads():
    top = threads.available()
    assert thread_counts("1,1,2") == ([1, 2] if top >= 2 else [1])
    assert thread_counts(str(top + 5)) == [top]
    rows = at_threads("1", lambda n: [{"case": "a", "seen": threads.current()}])
    assert rows == [{"threads": 1, "case": "a", "seen": 1}]
    with pytest.raises(ValueError):
        thread_counts("one")
