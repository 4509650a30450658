"""Numba kernels (private). Plain arrays and NamedTuples of floats in, arrays out.

Every kernel here has a plain-numpy twin in ``tests/reference/`` and a test that they agree.
Randomness inside kernels comes from the counter-based generator in :mod:`.rng`, keyed by a seed
that the caller draws from a ``numpy.random.Generator``: results do not depend on the order in
which elements are visited, so the same seed gives the same result bit for bit.

Kernels are single-threaded on purpose: they run between BLAS matrix products, and a numba
thread pool started right after an OpenBLAS call fights its spinning threads for the cores (a
0.1 ms kernel was measured at 8 ms that way on a 2-core machine). The matrix products use the
cores through BLAS; sweeps use them through processes.
"""
