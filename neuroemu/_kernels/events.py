"""Event-driven kernels: spike trains as event lists, and the products that touch only the events.

An event list of a 2-d array x (rows, n) is its non-zero entries in CSR: ``ptr`` (rows + 1, int64),
entries of row r at ptr[r] .. ptr[r+1]−1, and ``idx`` (nnz, int32) their columns, ascending within
a row. For spikes (every non-zero entry is 1) this is all there is; other inputs carry a value per
event (``val``; an empty ``val`` means every value is 1). The spike trains of the spiking networks
are (T, B, n) arrays flattened to rows r = t·B + b (time-major).

* :func:`spike_events` builds the list from a dense array and says whether it holds spikes only;
* :func:`event_currents` is the forward product S Wᵀ of a spike train: each row sums the rows of
  Wᵀ of its events (O(nnz · n_out) instead of the dense O(rows · n_in · n_out));
* :func:`event_outer` is the weight gradient of such a product, gᵀ S, scattered from the events.

Parallel kernels (``prange``) split their work into a fixed number of blocks of rows or samples,
each with its own accumulator, combined in block order, so the results do not depend on the number
of threads. Sums run in storage order (rows, then events in a row) within a block.
"""

import numpy as np
from numba import njit, prange

#: Blocks of :func:`event_outer` (and of the sample-parallel backward of the sparse rule): a fixed
#: count, so that the sums (and so the results) are the same at any number of threads.
BLOCKS = 8


@njit(cache=True, inline="always")
def grown(a, m, cap):
    """A copy of a with room for ``cap`` entries, its first ``m`` kept (the growing event lists)."""
    b = np.empty(cap, a.dtype)
    b[:m] = a[:m]
    return b


@njit(cache=True, inline="always")
def _block(k, nk, n):
    """Start of block k of nk equal blocks over range(n)."""
    return (k * n) // nk


@njit(cache=True)
def spike_events(x):
    """Event list (ptr, idx) of the non-zero entries of x (rows, n) (any numeric or boolean dtype),
    and whether they are spikes (every non-zero entry equal to 1). One pass over the rows: a count
    of the row's non-zero entries (a loop that vectorises), then, for a row with any, a branch-free
    compaction of its column indices; the index buffer grows by doubling."""
    rows, n = x.shape
    ptr = np.empty(rows + 1, np.int64)
    ptr[0] = 0
    cap = max(1024, (rows * n) // 64)
    idx = np.empty(cap, np.int32)
    k = 0
    bad = 0
    for r in range(rows):
        if k + n > cap:
            cap = max(2 * cap, k + n)
            idx = grown(idx, k, cap)
        xr = x[r]
        c = 0
        for i in range(n):
            v = xr[i]
            c += v != 0
            bad += (v != 0) & (v != 1)
        if c != 0:
            for i in range(n):
                idx[k] = i
                k += xr[i] != 0
        ptr[r + 1] = k
    return ptr, idx[:k].copy(), bad == 0


@njit(cache=True, parallel=True)
def event_currents(ptr, idx, wt, out):
    """out[r] = Σ over the events k of row r (in order) of wt[idx[k]]: the product S Wᵀ of a spike
    train S with the event list (ptr, idx), for wt = Wᵀ (n_in, n_out); out (rows, n_out)."""
    rows = ptr.shape[0] - 1
    m = wt.shape[1]
    zero = out.dtype.type(0)
    for r in prange(rows):
        o = out[r]
        for j in range(m):
            o[j] = zero
        for k in range(ptr[r], ptr[r + 1]):
            w = wt[idx[k]]
            for j in range(m):
                o[j] += w[j]


@njit(cache=True, parallel=True)
def event_outer(ptr, idx, val, g, n_in):
    """gᵀ S as (n_in, m): out[i] = Σ over the events k = (r, i) of val[k] · g[r] (val empty: 1),
    g (rows, m). The rows are cut into :data:`BLOCKS` blocks, each summed in storage order into its
    own accumulator, and the blocks are added in order."""
    rows = ptr.shape[0] - 1
    m = g.shape[1]
    nk = BLOCKS
    acc = np.zeros((nk, n_in, m), g.dtype)
    ones = val.shape[0] == 0
    for c in prange(nk):
        a = acc[c]
        for r in range(_block(c, nk, rows), _block(c + 1, nk, rows)):
            gr = g[r]
            for k in range(ptr[r], ptr[r + 1]):
                ai = a[idx[k]]
                if ones:
                    for j in range(m):
                        ai[j] += gr[j]
                else:
                    v = val[k]
                    for j in range(m):
                        ai[j] += v * gr[j]
    out = acc[0].copy()
    for c in range(1, nk):
        out += acc[c]
    return out
