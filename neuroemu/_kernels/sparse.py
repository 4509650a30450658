"""Kernels of sparse spiking gradient descent (Perez-Nieves & Goodman 2021).

LIF layer with reset by subtraction, per step t (state zero at t = −1):

    v_t = (β v_{t−1} + I_t) − z_{t−1} θ,    z_t = [v_t > θ]

Surrogate σ'(v) = 1 / (scale · |v − θ| + 1)², computed as q = scale·|v − θ| + 1, 1/(q·q).

Active set of a layer: the entries (t, b, j) with |v_t − θ| < b_th, stored as CSR over the rows
r = t·B + b (time-major, so the forward pass appends them in order): ``ptr`` (T·B + 1, int64),
``idx`` (nnz, int32, neuron j, ascending within a row) and ``sg`` (nnz, σ'(v) at the entry).

Arrays are C-contiguous, float32 or float64; scalars (b_th included, so the active test
|v − θ| < b_th is made in the array dtype) are converted to the array dtype once so float32 runs
stay in float32. The dot products of :func:`gather_rows_dot` use eight partial sums combined as
((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)), then the remainder in order (see :func:`_dot`).
"""

import numpy as np
from numba import njit, prange

from .events import BLOCKS, _block, grown


@njit(cache=True)
def _cast(like, a, b, c, d=0.0):
    """[a, b, c, 0, 1, d] in the dtype of ``like``."""
    k = np.empty(6, like.dtype)
    k[0] = a
    k[1] = b
    k[2] = c
    k[3] = 0.0
    k[4] = 1.0
    k[5] = d
    return k


@njit(cache=True)
def lif_forward(cur, beta, theta, b_th, zs, vs):
    """LIF over currents cur (T, B, n): writes spikes zs and pre-reset voltages vs (T, B, n).
    Returns the number of active entries, |v − θ| < b_th."""
    k = _cast(cur, beta, theta, 0.0, b_th)
    bt, th, zero, one, bth = k[0], k[1], k[3], k[4], k[5]
    nt, nb, n = cur.shape
    v = np.zeros((nb, n), cur.dtype)
    z = np.zeros((nb, n), cur.dtype)
    count = 0
    for t in range(nt):
        for b in range(nb):
            for j in range(n):
                vv = (bt * v[b, j] + cur[t, b, j]) - z[b, j] * th
                zz = one if vv > th else zero
                v[b, j] = vv
                z[b, j] = zz
                vs[t, b, j] = vv
                zs[t, b, j] = zz
                count += 1 if abs(vv - th) < bth else 0
    return count


@njit(cache=True)
def lif_forward_active(cur, beta, theta, b_th, scale, zs):
    """LIF over cur (T, B, n) like :func:`lif_forward`, writing spikes zs but keeping the voltage
    only at active entries (|v − θ| < b_th). Returns the active set (ptr, idx, sg) in CSR over
    rows t·B + b, with sg = σ'(v) at each entry.

    Per row the LIF update runs over a scratch voltage vector, then a branch-free compaction
    appends every neuron and advances the write position only for active ones (storing |v − θ|);
    σ' is evaluated once at the end over the compacted entries."""
    k = _cast(cur, beta, theta, scale, b_th)
    bt, th, sc, zero, one, bth = k[0], k[1], k[2], k[3], k[4], k[5]
    nt, nb, n = cur.shape
    v = np.zeros((nb, n), cur.dtype)
    z = np.zeros((nb, n), cur.dtype)
    cap = max(1024, (nt * nb * n) // 32, 2 * n)
    idx = np.empty(cap, np.int32)
    sg = np.empty(cap, cur.dtype)
    ptr = np.empty(nt * nb + 1, np.int64)
    ptr[0] = 0
    m = 0
    for t in range(nt):
        for b in range(nb):
            if m + n > cap:
                cap = max(2 * cap, m + n)
                idx = grown(idx, m, cap)
                sg = grown(sg, m, cap)
            vb = v[b]
            zb = z[b]
            zt = zs[t, b]
            ct = cur[t, b]
            for j in range(n):
                vv = (bt * vb[j] + ct[j]) - zb[j] * th
                zz = one if vv > th else zero
                vb[j] = vv
                zb[j] = zz
                zt[j] = zz
            for j in range(n):
                ad = abs(vb[j] - th)
                idx[m] = j
                sg[m] = ad
                m += 1 if ad < bth else 0
            ptr[t * nb + b + 1] = m
    out = np.empty(m, cur.dtype)
    for i in range(m):
        q = sc * sg[i] + one
        out[i] = one / (q * q)
    return ptr, idx[:m].copy(), out


@njit(cache=True)
def leaky_forward(cur, beta, ys):
    """Non-spiking leaky integrator: y_t = β y_{t−1} + I_t over cur (T, B, n), trace into ys."""
    k = _cast(cur, beta, 0.0, 0.0)
    bt = k[0]
    nt, nb, n = cur.shape
    y = np.zeros((nb, n), cur.dtype)
    for t in range(nt):
        for b in range(nb):
            for j in range(n):
                yy = bt * y[b, j] + cur[t, b, j]
                y[b, j] = yy
                ys[t, b, j] = yy


@njit(cache=True)
def leaky_backward(g, beta, out):
    """Reverse-time leak: out_t = g_t + β out_{t+1} (out_T = 0) over (T, B, n)."""
    k = _cast(g, beta, 0.0, 0.0)
    bt = k[0]
    nt, nb, n = g.shape
    acc = np.zeros((nb, n), g.dtype)
    for t in range(nt - 1, -1, -1):
        for b in range(nb):
            for j in range(n):
                a = g[t, b, j] + bt * acc[b, j]
                acc[b, j] = a
                out[t, b, j] = a


@njit(cache=True)
def presyn_trace(s, beta, out):
    """Presynaptic trace tr_t = β tr_{t−1} + S_t over (T, B, n_in)."""
    k = _cast(s, beta, 0.0, 0.0)
    bt = k[0]
    nt, nb, n = s.shape
    tr = np.zeros((nb, n), s.dtype)
    for t in range(nt):
        for b in range(nb):
            for i in range(n):
                x = bt * tr[b, i] + s[t, b, i]
                tr[b, i] = x
                out[t, b, i] = x


@njit(cache=True)
def dense_bptt(gz, v, beta, theta, scale, b_th, gv):
    """Dense BPTT through the leak of one LIF layer (reset not differentiated):

        gv_t = gz_t σ'(v_t) [|v_t − θ| < b_th] + β gv_{t+1},   gv_T = 0

    over (T, B, n); b_th = inf gives the unmasked surrogate."""
    k = _cast(gz, beta, theta, scale, b_th)
    bt, th, sc, zero, one, bth = k[0], k[1], k[2], k[3], k[4], k[5]
    nt, nb, n = gz.shape
    acc = np.zeros((nb, n), gz.dtype)
    for t in range(nt - 1, -1, -1):
        for b in range(nb):
            for j in range(n):
                ad = abs(v[t, b, j] - th)
                s = zero
                if ad < bth:
                    q = sc * ad + one
                    s = one / (q * q)
                a = gz[t, b, j] * s + bt * acc[b, j]
                acc[b, j] = a
                gv[t, b, j] = a


@njit(cache=True, inline="always")
def _dot(x, w, i, n, zero):
    """Σ_j x[j] w[i, j] with eight partial sums (order fixed, see the module docstring)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    m = n - n % 8
    for j in range(0, m, 8):
        s0 += x[j] * w[i, j]
        s1 += x[j + 1] * w[i, j + 1]
        s2 += x[j + 2] * w[i, j + 2]
        s3 += x[j + 3] * w[i, j + 3]
        s4 += x[j + 4] * w[i, j + 4]
        s5 += x[j + 5] * w[i, j + 5]
        s6 += x[j + 6] * w[i, j + 6]
        s7 += x[j + 7] * w[i, j + 7]
    s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    for j in range(m, n):
        s += x[j] * w[i, j]
    return s


@njit(cache=True)
def gather_rows_dot(ptr, idx, g, wt):
    """Values of the dense product g wtᵀ at the active entries only: out[k] = Σ_m g[r, m] wt[j, m]
    for entry k = (row r, neuron j). g (rows, K), wt (n, K) (the next layer's W transposed)."""
    z = _cast(g, 0.0, 0.0, 0.0)[3]
    nnz = idx.shape[0]
    out = np.empty(nnz, g.dtype)
    nr = ptr.shape[0] - 1
    kk = g.shape[1]
    for r in range(nr):
        gr = g[r]
        for k in range(ptr[r], ptr[r + 1]):
            out[k] = _dot(gr, wt, idx[k], kk, z)
    return out


@njit(cache=True)
def active_ds(ptr, idx, gz, dcount, sg, nb):
    """ds = (gz + dcount[b, j]) · σ' at each active entry (row r = t·B + b, b = r mod B).
    gz (nnz) is the gradient from the layer above at the entries, dcount (B, n) ∂R/∂count."""
    nnz = idx.shape[0]
    ds = np.empty(nnz, gz.dtype)
    nr = ptr.shape[0] - 1
    for r in range(nr):
        b = r % nb
        for k in range(ptr[r], ptr[r + 1]):
            ds[k] = (gz[k] + dcount[b, idx[k]]) * sg[k]
    return ds


@njit(cache=True)
def sparse_weight_grad(ptr, idx, ds, tr, dw):
    """dW[j, i] += Σ over active entries (r, j) of ds · tr[r, i]: tr (rows, n_in) the presynaptic
    trace flattened over (t, b), dw (n, n_in) accumulated in place, entries in storage order."""
    nr = ptr.shape[0] - 1
    n_in = tr.shape[1]
    for r in range(nr):
        for k in range(ptr[r], ptr[r + 1]):
            j = idx[k]
            d = ds[k]
            for i in range(n_in):
                dw[j, i] += d * tr[r, i]


@njit(cache=True)
def sparse_input_grad(ptr, idx, ds, nt, nb, beta, ptr_lo, idx_lo, w):
    """Gradient ∂L/∂S to the layer below, at ITS active entries only.

    gS_t = gv_t W and gv_t = β gv_{t+1} + ds_t (ds = 0 outside this layer's active set) give
    gS_t = β gS_{t+1} + Σ_{j active at (t, b)} ds_{t,b,j} W[j, :]: a reverse-time scan with one
    vector h[b, :] (n_in) per sample, decayed by β each step once it is non-zero, to which every
    active entry adds ds · W[j, :] (in storage order); each active entry (t, b, i) of the lower
    layer reads h[b, i]. w: (n, n_in). Returns out (nnz_lo)."""
    k = _cast(ds, beta, 0.0, 0.0)
    bt = k[0]
    n_in = w.shape[1]
    h = np.zeros((nb, n_in), ds.dtype)
    out = np.empty(idx_lo.shape[0], ds.dtype)
    started = np.zeros(nb, np.bool_)
    for t in range(nt - 1, -1, -1):
        for b in range(nb):
            r = t * nb + b
            hb = h[b]
            if started[b]:
                for i in range(n_in):
                    hb[i] = bt * hb[i]
            for kk in range(ptr[r], ptr[r + 1]):
                started[b] = True
                d = ds[kk]
                wj = w[idx[kk]]
                for i in range(n_in):
                    hb[i] = hb[i] + d * wj[i]
            for kk in range(ptr_lo[r], ptr_lo[r + 1]):
                out[kk] = hb[idx_lo[kk]]
    return out


@njit(cache=True)
def lif_forward_events(cur, beta, theta, b_th, scale, counts):
    """LIF over cur (T, B, n) like :func:`lif_forward_active`, without a dense spike array: returns
    the active set (ptr, idx, sg) and the spike events (eptr, eidx) (an event list over the same
    rows t·B + b, see :mod:`neuroemu._kernels.events`), and adds the spikes of each sample to
    counts (B, n).

    Per row the LIF update (a loop that vectorises) also writes |v − θ| and a flag byte per neuron
    (1: active, 2: spike) into scratch vectors; the flags are then read eight at a time as one
    64-bit word, and only words with a flag set are looked into (few entries are kept)."""
    k = _cast(cur, beta, theta, scale, b_th)
    bt, th, sc, zero, one, bth = k[0], k[1], k[2], k[3], k[4], k[5]
    nt, nb, n = cur.shape
    v = np.zeros((nb, n), cur.dtype)
    z = np.zeros((nb, n), cur.dtype)
    nw = (n + 7) // 8
    fl = np.zeros(8 * nw, np.uint8)
    fw = fl.view(np.uint64)
    ad = np.empty(n, cur.dtype)
    cap = max(1024, (nt * nb * n) // 32, 2 * n)
    idx = np.empty(cap, np.int32)
    sg = np.empty(cap, cur.dtype)
    ptr = np.empty(nt * nb + 1, np.int64)
    ecap = max(1024, (nt * nb * n) // 32, 2 * n)
    eidx = np.empty(ecap, np.int32)
    eptr = np.empty(nt * nb + 1, np.int64)
    ptr[0] = 0
    eptr[0] = 0
    m = 0
    me = 0
    for t in range(nt):
        for b in range(nb):
            if m + n > cap:
                cap = max(2 * cap, m + n)
                idx = grown(idx, m, cap)
                sg = grown(sg, m, cap)
            if me + n > ecap:
                ecap = max(2 * ecap, me + n)
                eidx = grown(eidx, me, ecap)
            vb = v[b]
            zb = z[b]
            cb = counts[b]
            ct = cur[t, b]
            for j in range(n):
                vv = (bt * vb[j] + ct[j]) - zb[j] * th
                zz = one if vv > th else zero
                vb[j] = vv
                zb[j] = zz
                cb[j] += zz
                a = abs(vv - th)
                ad[j] = a
                fl[j] = np.uint8(a < bth) + np.uint8(2) * np.uint8(vv > th)
            for w in range(nw):
                if fw[w] != 0:
                    for j in range(8 * w, min(8 * w + 8, n)):
                        f = fl[j]
                        if f & 1:
                            idx[m] = j
                            sg[m] = ad[j]
                            m += 1
                        if f & 2:
                            eidx[me] = j
                            me += 1
            ptr[t * nb + b + 1] = m
            eptr[t * nb + b + 1] = me
    out = np.empty(m, cur.dtype)
    for i in range(m):
        q = sc * sg[i] + one
        out[i] = one / (q * q)
    return ptr, idx[:m].copy(), out, eptr, eidx[:me].copy()


@njit(cache=True, parallel=True)
def active_backward(ptr, idx, ds, nt, nb, beta, eptr, eidx, eval_, ptr_lo, idx_lo, wt):
    """The sparse backward of one hidden layer from its active entries and its input's events.

    gv_t = β gv_{t+1} + ds_t (ds = 0 outside the active set) is run backwards in time, one sample
    at a time, as one vector h (n) per sample. At step t of sample b:

    * every input event (t, b, i) (value eval_[k], or 1 when eval_ is empty) adds val · h to
      row i of dWᵀ: ∂L/∂W[j, i] = Σ_{t,b} gv_{t,b,j} S_{t,b,i}, which equals the sum of ds times
      the presynaptic trace over the active entries (module docstring of the rule) without
      keeping the trace;
    * every active entry (t, b, i) of the layer below (ptr_lo, idx_lo) reads ∂L/∂S = (gv_t W)[i]
      = Σ_j h[j] wt[i, j] (:func:`_dot`).

    wt = Wᵀ (n_in, n). The samples are cut into :data:`~neuroemu._kernels.events.BLOCKS` blocks run
    in parallel, each adding into its own dWᵀ; the blocks are added in order. Returns (dWᵀ (n_in,
    n), ∂L/∂S at the lower layer's active entries (nnz_lo,))."""
    k = _cast(ds, beta, 0.0, 0.0)
    bt, zero = k[0], k[3]
    n_in, n = wt.shape
    nk = BLOCKS
    acc = np.zeros((nk, n_in, n), ds.dtype)
    out = np.empty(idx_lo.shape[0], ds.dtype)
    ones = eval_.shape[0] == 0
    for c in prange(nk):
        a = acc[c]
        h = np.empty(n, ds.dtype)
        for b in range(_block(c, nk, nb), _block(c + 1, nk, nb)):
            for j in range(n):
                h[j] = zero
            for t in range(nt - 1, -1, -1):
                r = t * nb + b
                for j in range(n):
                    h[j] = bt * h[j]
                for kk in range(ptr[r], ptr[r + 1]):
                    h[idx[kk]] += ds[kk]
                for kk in range(eptr[r], eptr[r + 1]):
                    ai = a[eidx[kk]]
                    if ones:
                        for j in range(n):
                            ai[j] += h[j]
                    else:
                        v = eval_[kk]
                        for j in range(n):
                            ai[j] += v * h[j]
                for kk in range(ptr_lo[r], ptr_lo[r + 1]):
                    out[kk] = _dot(h, wt, idx_lo[kk], n, zero)
    dwt = acc[0].copy()
    for c in range(1, nk):
        dwt += acc[c]
    return dwt, out
