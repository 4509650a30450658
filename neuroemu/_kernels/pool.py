"""Kernels of max pooling over k × k windows with stride s, on an input already padded with −∞.

Forward, per output (n, c, i, j): the window's entries at offsets o = ki·k + kj (row-major) are
compared in that order; the output is the first of the largest (``v > best`` replaces, so a NaN at
offset 0 stays and later NaNs never win), and ``arg`` keeps its offset. Backward: every output adds
its gradient onto the input entry its maximum came from, each input entry summing its contributions
in the order of their offsets, as the numpy twin's strided adds (one per offset) do.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def max_pool_forward(xp, k, s, ho, wo, arg):
    """xp (N, C, Hp, Wp) padded input; returns y (N, C, ho, wo) in xp's dtype and writes the offsets
    of the maxima into ``arg`` (N, C, ho, wo) (pass an array of size 0 to skip them)."""
    nb, nc = xp.shape[0], xp.shape[1]
    y = np.empty((nb, nc, ho, wo), xp.dtype)
    keep = arg.size > 0
    for n in range(nb):
        for c in range(nc):
            for i in range(ho):
                for j in range(wo):
                    r0, c0 = i * s, j * s
                    best = xp[n, c, r0, c0]
                    at = 0
                    for ki in range(k):
                        for kj in range(k):
                            v = xp[n, c, r0 + ki, c0 + kj]
                            if v > best:  # never at offset 0 (v is best); NaN never wins
                                best = v
                                at = ki * k + kj
                    y[n, c, i, j] = best
                    if keep:
                        arg[n, c, i, j] = at
    return y


@njit(cache=True)
def max_pool_backward(arg, gy, k, s, gx):
    """Adds each output gradient gy (N, C, ho, wo) onto its maximum's entry of gx (N, C, Hp, Wp),
    the padded input gradient (zeros on entry).

    Outputs are visited from the last (i, j) to the first: two outputs (i, j) and (i', j') that add
    onto the same entry reach it at offsets whose order is the reverse of theirs (a later window sees
    the entry nearer its start), so every entry sums its contributions in the order of the offsets."""
    nb, nc, ho, wo = gy.shape
    for n in range(nb):
        for c in range(nc):
            for i in range(ho - 1, -1, -1):
                for j in range(wo - 1, -1, -1):
                    o = arg[n, c, i, j]
                    gx[n, c, i * s + o // k, j * s + o % k] += gy[n, c, i, j]
