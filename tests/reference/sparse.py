"""Plain-numpy twin of :mod:`neuroemu._kernels.sparse`.

Loops over time, vectorised over batch and neurons (or over active entries), with the kernels'
arithmetic in the same order and dtype, so results agree bit for bit. Functions return new arrays
instead of writing in place. :func:`dense_network_grads` strings the dense twins together into a
whole forward and backward pass of the network (the plain-numpy baseline of the benchmark).
"""

from __future__ import annotations

import numpy as np

from neuroemu.rules.surrogate import spike_count_reg


def _rows(ptr):
    """Row index (t·B + b) of every active entry."""
    return np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))


def _sigma(ad, scale, one):
    q = scale * ad + one
    return one / (q * q)


def lif_forward(cur, beta, theta, b_th=np.inf):
    """Returns (zs, vs, number of entries with |v − θ| < b_th)."""
    cur = np.asarray(cur)
    f = cur.dtype.type
    bt, th = f(beta), f(theta)
    zs, vs = np.empty_like(cur), np.empty_like(cur)
    v = np.zeros(cur.shape[1:], cur.dtype)
    z = np.zeros_like(v)
    for t in range(cur.shape[0]):
        v = (bt * v + cur[t]) - z * th
        z = np.where(v > th, f(1), f(0))
        vs[t], zs[t] = v, z
    return zs, vs, int(np.count_nonzero(np.abs(vs - th) < f(b_th)))


def active_set(v, theta, b_th, scale):
    """CSR active set (ptr, idx, sg) of the voltages v (T, B, n) (see the kernel module)."""
    v = np.asarray(v)
    f = v.dtype.type
    nt, nb, n = v.shape
    ad = np.abs(v - f(theta)).reshape(nt * nb, n)
    rows, idx = np.nonzero(ad < f(b_th))
    ptr = np.zeros(nt * nb + 1, np.int64)
    ptr[1:] = np.cumsum(np.bincount(rows, minlength=nt * nb))
    return ptr, idx.astype(np.int32), _sigma(ad[rows, idx], f(scale), f(1))


def lif_forward_active(cur, beta, theta, b_th, scale):
    """Returns (zs, (ptr, idx, sg))."""
    zs, vs, _ = lif_forward(cur, beta, theta)
    return zs, active_set(vs, theta, b_th, scale)


def leaky_forward(cur, beta):
    cur = np.asarray(cur)
    bt = cur.dtype.type(beta)
    ys = np.empty_like(cur)
    y = np.zeros(cur.shape[1:], cur.dtype)
    for t in range(cur.shape[0]):
        y = bt * y + cur[t]
        ys[t] = y
    return ys


def leaky_backward(g, beta):
    g = np.asarray(g)
    bt = g.dtype.type(beta)
    out = np.empty_like(g)
    acc = np.zeros(g.shape[1:], g.dtype)
    for t in range(g.shape[0] - 1, -1, -1):
        acc = g[t] + bt * acc
        out[t] = acc
    return out


def presyn_trace(s, beta):
    s = np.asarray(s)
    bt = s.dtype.type(beta)
    out = np.empty_like(s)
    tr = np.zeros(s.shape[1:], s.dtype)
    for t in range(s.shape[0]):
        tr = bt * tr + s[t]
        out[t] = tr
    return out


def dense_bptt(gz, v, beta, theta, scale, b_th):
    gz = np.asarray(gz)
    f = gz.dtype.type
    bt, th, sc, bth = f(beta), f(theta), f(scale), f(b_th)
    gv = np.empty_like(gz)
    acc = np.zeros(gz.shape[1:], gz.dtype)
    for t in range(gz.shape[0] - 1, -1, -1):
        ad = np.abs(v[t] - th)
        s = np.where(ad < bth, _sigma(ad, sc, f(1)), f(0))
        acc = gz[t] * s + bt * acc
        gv[t] = acc
    return gv


def _dot(x, w):
    """Row-wise Σ_j x[k, j] w[k, j] with the kernels' eight partial sums."""
    n = x.shape[1]
    m = n - n % 8
    s8 = np.zeros((x.shape[0], 8), x.dtype)
    for j in range(0, m, 8):
        s8 += x[:, j:j + 8] * w[:, j:j + 8]
    s = ((s8[:, 0] + s8[:, 1]) + (s8[:, 2] + s8[:, 3])) + ((s8[:, 4] + s8[:, 5]) + (s8[:, 6] + s8[:, 7]))
    for j in range(m, n):
        s = s + x[:, j] * w[:, j]
    return s


def gather_rows_dot(ptr, idx, g, wt):
    return _dot(g[_rows(ptr)], wt[idx])


def active_ds(ptr, idx, gz, dcount, sg, nb):
    b = _rows(ptr) % nb
    return (gz + dcount[b, idx]) * sg


def sparse_weight_grad(ptr, idx, ds, tr, dw):
    """Returns dw + the scatter (entries added in storage order, like the kernel)."""
    dw = np.array(dw)
    np.add.at(dw, idx, ds[:, None] * tr[_rows(ptr)])
    return dw


def sparse_input_grad(ptr, idx, ds, nt, nb, beta, ptr_lo, idx_lo, w):
    """h = β h, then h[b] += ds · W[j] for the active entries of each step (in storage order),
    vectorised over the batch; the lower layer's active entries read h."""
    bt = ds.dtype.type(beta)
    rows, rows_lo = _rows(ptr), _rows(ptr_lo)
    h = np.zeros((nb, w.shape[1]), ds.dtype)
    out = np.empty(len(idx_lo), ds.dtype)
    for t in range(nt - 1, -1, -1):
        h = bt * h
        sel = (rows >= t * nb) & (rows < (t + 1) * nb)
        np.add.at(h, rows[sel] - t * nb, ds[sel, None] * w[idx[sel]])
        sel_lo = (rows_lo >= t * nb) & (rows_lo < (t + 1) * nb)
        out[sel_lo] = h[rows_lo[sel_lo] - t * nb, idx_lo[sel_lo]]
    return out


def dense_network_grads(weights, s_in, labels, *, beta, beta_out, theta=1.0, scale=100.0, reg=None, readout_scale=1.0):
    """Whole dense forward + backward of the network from the twins above and numpy matmuls.

    weights: [W_1, ..., W_L] (hidden layers then the readout); s_in (T, B, n_0); returns
    (loss, grads, logits)."""
    dtype = weights[0].dtype
    x = np.asarray(s_in, dtype)
    nt, nb, _ = x.shape
    inputs, volts = [x], []
    for w in weights[:-1]:
        z, v, _ = lif_forward((x.reshape(nt * nb, -1) @ w.T).reshape(nt, nb, -1), beta, theta)
        inputs.append(z)
        volts.append(v)
        x = z
    y = leaky_forward(readout_scale * (x.reshape(nt * nb, -1) @ weights[-1].T).reshape(nt, nb, -1), beta_out)
    logits = y.max(axis=0).astype(np.float64)
    lab = np.asarray(labels)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    ce = float(np.mean(log_z - shifted[np.arange(nb), lab]))
    dlogits = np.exp(shifted - log_z[:, None])
    dlogits[np.arange(nb), lab] -= 1.0
    dlogits /= nb
    reg_loss, dcounts = spike_count_reg([z.sum(axis=0) for z in inputs[1:]], reg)
    g = np.zeros(y.shape, dtype)
    bb, kk = np.indices(logits.shape)
    g[np.argmax(y, axis=0), bb, kk] = dlogits
    gv = readout_scale * leaky_backward(g, beta_out)
    grads = [None] * len(weights)
    for layer in range(len(weights) - 1, -1, -1):
        gflat = gv.reshape(nt * nb, -1)
        grads[layer] = gflat.T @ inputs[layer].reshape(nt * nb, -1)
        if layer == 0:
            break
        gz = (gflat @ weights[layer]).reshape(nt, nb, -1) + dcounts[layer - 1].astype(dtype)[None]
        gv = dense_bptt(gz, volts[layer - 1], beta, theta, scale, np.inf)
    return ce + reg_loss, grads, y.max(axis=0)


def lif_forward_events(cur, beta, theta, b_th, scale):
    """Returns ((ptr, idx, sg), (eptr, eidx), counts): the active set, the spikes' event list and
    the spike counts per sample (summed over t in order)."""
    zs, (ptr, idx, sg) = lif_forward_active(cur, beta, theta, b_th, scale)
    nt, nb, n = zs.shape
    rows, eidx = np.nonzero(zs.reshape(nt * nb, n))
    eptr = np.zeros(nt * nb + 1, np.int64)
    eptr[1:] = np.cumsum(np.bincount(rows, minlength=nt * nb))
    counts = np.zeros((nb, n), zs.dtype)
    for t in range(nt):
        counts += zs[t]
    return (ptr, idx, sg), (eptr, eidx.astype(np.int32)), counts


def active_backward(ptr, idx, ds, nt, nb, beta, eptr, eidx, eval_, ptr_lo, idx_lo, wt):
    """Per block of samples (the kernel's), per sample: h = β h, then h[j] += ds at the active
    entries of step t, then row i of that block's dWᵀ += val · h for each input event (t, b, i),
    and ∂L/∂S = _dot(h, wt[i]) for each lower active entry (t, b, i); blocks added in order."""
    from tests.reference.events import _blocks

    from neuroemu._kernels.events import BLOCKS

    dt = ds.dtype
    bt = dt.type(beta)
    n_in, n = wt.shape
    out = np.empty(len(idx_lo), dt)
    lim = _blocks(nb)
    dwt = None
    for c in range(BLOCKS):
        a = np.zeros((n_in, n), dt)
        for b in range(lim[c], lim[c + 1]):
            h = np.zeros(n, dt)
            for t in range(nt - 1, -1, -1):
                r = t * nb + b
                h = bt * h
                sl = slice(ptr[r], ptr[r + 1])
                h[idx[sl]] += ds[sl]  # distinct neurons within a row
                for k in range(eptr[r], eptr[r + 1]):
                    a[eidx[k]] += h if len(eval_) == 0 else eval_[k] * h
                sl = slice(ptr_lo[r], ptr_lo[r + 1])
                if sl.stop > sl.start:
                    out[sl] = _dot(np.broadcast_to(h, (sl.stop - sl.start, n)), wt[idx_lo[sl]])
        dwt = a if dwt is None else dwt + a
    return dwt, out
