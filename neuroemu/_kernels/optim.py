"""Kernels of the optimisers: Adam as one fused, in-place pass over a flat parameter array, and the
flush of subnormal gradients to zero.

Per entry, in the array's dtype: m ← β₁m + (1 − β₁)g, s ← β₂s + (1 − β₂)g², p ← p − a·m / (√s·r + ε),
with a = lr / (1 − β₁^t) and r = 1 / √(1 − β₂^t) (the bias corrections) computed by the caller.
Numpy evaluates the same step with a temporary array per operation; on a 6272 × 3000 float32 layer
that is about 7× slower than this single pass.

m, s and the step a·m / (√s·r + ε) flush to zero below the dtype's smallest normal number (as a CPU
in flush-to-zero mode does). Where a gradient stays zero or nearly so (inputs that are always 0,
units that never pass gradient), m decays geometrically into the subnormal range and stays there
for a while, and x86 processors take a slow path for each operation on a subnormal: unflushed, a
quarter of a 784 × 5000 layer's first moments were subnormal after 50 000 steps, and its Adam step
took 26 ms against 17 ms flushed (measured beside another training run). The flushed values lie far
below any weight's rounding: on that layer, w + Δw came out the same at every entry.

The same holds for the errors that backprop carries through a layer: a softmax that is sure of its
class leaves errors of 1e-39 and below on the other classes, and a matrix product with a few percent
of subnormal entries runs many times slower on x86 processors that take a microcode assist per
subnormal operand (about 20× at 10 % on an Intel Xeon). ``count_subnormal`` finds them in one
read-only pass; ``flush_subnormal`` sets them to zero.
"""

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def adam_step(p, g, m, s, a, b1, b2, r, eps):
    """One Adam step of the flat, contiguous arrays p, g, m, s (same dtype); scalars as in the
    module doc, converted to the array dtype first."""
    one, zero = p.dtype.type(1.0), p.dtype.type(0.0)
    tiny = p.dtype.type(np.finfo(p.dtype).tiny)
    a, b1, b2, r, eps = p.dtype.type(a), p.dtype.type(b1), p.dtype.type(b2), p.dtype.type(r), p.dtype.type(eps)
    c1, c2 = one - b1, one - b2
    for i in range(p.size):
        gi = g[i]
        mi = b1 * m[i] + c1 * gi
        mi = mi if abs(mi) >= tiny else zero
        si = b2 * s[i] + c2 * (gi * gi)
        si = si if si >= tiny else zero
        m[i] = mi
        s[i] = si
        d = a * mi / (np.sqrt(si) * r + eps)
        p[i] -= d if abs(d) >= tiny else zero


@njit(cache=True)
def count_subnormal(x):
    """How many entries of the flat array x are nonzero with a magnitude below the dtype's smallest
    normal number."""
    tiny = x.dtype.type(np.finfo(x.dtype).tiny)
    zero = x.dtype.type(0.0)
    n = 0
    for i in range(x.size):
        v = abs(x[i])
        n += (v > zero) & (v < tiny)
    return n


@njit(cache=True)
def flush_subnormal(x):
    """Set the subnormal entries of the flat, contiguous array x to zero, in place."""
    tiny = x.dtype.type(np.finfo(x.dtype).tiny)
    zero = x.dtype.type(0.0)
    for i in range(x.size):
        if abs(x[i]) < tiny:
            x[i] = zero
