"""Plain-numpy twin of :mod:`neuroemu._kernels.events`.

Vectorised over rows (or over the events of a block), with the kernels' sums in the same order
and dtype, so results agree bit for bit."""

from __future__ import annotations

import numpy as np

from neuroemu._kernels.events import BLOCKS


def spike_events(x):
    """(ptr, idx, binary) of the non-zero entries of x (rows, n)."""
    x = np.asarray(x)
    rows, idx = np.nonzero(x)
    ptr = np.zeros(x.shape[0] + 1, np.int64)
    ptr[1:] = np.cumsum(np.bincount(rows, minlength=x.shape[0]))
    return ptr, idx.astype(np.int32), bool(np.all(x[rows, idx] == 1))


def event_currents(ptr, idx, wt, dtype=None):
    """out[r] = Σ_k wt[idx[k]] over the events of row r, added in order (one event position of
    every row at a time)."""
    rows = len(ptr) - 1
    out = np.zeros((rows, wt.shape[1]), wt.dtype if dtype is None else dtype)
    cnt = np.diff(ptr)
    for p in range(int(cnt.max(initial=0))):
        r = np.nonzero(cnt > p)[0]
        out[r] += wt[idx[ptr[r] + p]]
    return out


def _blocks(n):
    return [(c * n) // BLOCKS for c in range(BLOCKS + 1)]


def event_outer(ptr, idx, val, g, n_in):
    """Per block of rows, np.add.at of val · g[row] into row idx of its accumulator (in event
    order); the blocks are added in order."""
    rows = len(ptr) - 1
    r_of = np.repeat(np.arange(rows), np.diff(ptr))
    lim = _blocks(rows)
    out = None
    for c in range(BLOCKS):
        a = np.zeros((n_in, g.shape[1]), g.dtype)
        sel = (r_of >= lim[c]) & (r_of < lim[c + 1])
        contrib = g[r_of[sel]] if len(val) == 0 else val[sel, None] * g[r_of[sel]]
        np.add.at(a, idx[sel], contrib)
        out = a if out is None else out + a
    return out
