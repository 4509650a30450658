"""Large arrays without fresh pages each time: glibc keeps freed large blocks for the next allocation.

glibc's ``malloc`` serves each request above its mmap threshold (128 KiB at start, raised as blocks
are freed, to at most 32 MiB on 64-bit) with fresh pages from the kernel and gives them back on
``free``, so every new array of that size gets pages that the kernel faults in and zeroes when they
are first written. A training step that allocates arrays the size of a large layer pays it at every
step: the CNN of ``examples/sdt`` (a 6272 × 3000 float32 output layer, 75 MB per gradient and per
change) spent about a fifth of its step there. :func:`keep_freed_memory` raises both thresholds so
that freed blocks stay in the process and the next step reuses them; the numbers computed do not
change.

The command line calls it at start, and so does every worker process of
:func:`neuroemu.runner.run_jobs`. It does nothing on other C libraries (macOS, musl), nor where the
user set glibc's own ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``: set either to keep
glibc's behaviour (``MALLOC_TRIM_THRESHOLD_=131072`` is its default).
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and are reused when freed
TRIM_THRESHOLD = (1 << 31) - 1  # free memory at the top of the heap is kept, up to 2 GiB


def keep_freed_memory() -> bool:
    """Have glibc keep freed blocks up to 1 GiB for reuse (see the module text). True where it took
    effect (glibc on Linux, its thresholds not set by the user); False otherwise, changing nothing."""
    if not sys.platform.startswith("linux") or any(
            k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library symbols, or one without mallopt (musl)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
