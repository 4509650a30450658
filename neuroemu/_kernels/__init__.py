"""Numba kernels (private). Plain arrays and NamedTuples of floats in, arrays out.

Every kernel here has a plain-numpy twin in ``tests/reference/`` and a test that they agree.
Randomness inside kernels comes from the counter-based generator in :mod:`.rng`, keyed by a seed
that the caller draws from a ``numpy.random.Generator``: results do not depend on the order in
which elements are visited, so the same seed gives the same result bit for bit.

Kernels whose work splits into independent parts run them in parallel (``prange``: the samples of
a batch, the chains of a sampler, fixed blocks of rows), each part computing exactly what it would
alone, so the results do not depend on the number of threads (tested). The count is set with the
BLAS library's by :func:`neuroemu.threads.limit`. A numba thread pool started right after an
OpenBLAS call used to fight OpenBLAS's spinning threads for the cores (a 5 ms kernel ran at
1-thread speed after a matrix product on 2 cores): ``neuroemu/__init__.py`` makes both pools sleep
when idle. Sweeps use the cores through processes, one thread each.
"""
