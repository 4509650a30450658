"""Plain-numpy twin of :mod:`neuroemu._kernels.eprop`.

Loops over time, vectorised over batch and neurons (simulate) or over synapses (accumulate), with
the kernels' arithmetic in the same order, so results agree bit for bit. The recurrent sum runs
over presynaptic neurons in increasing order, like the kernel's loop over spikes (terms with
z_i = 0 add an exact zero).
"""

from __future__ import annotations

import numpy as np

from . import rng as R


def simulate(i_in, w_rec, var_rec, seed, alpha, rho, beta, v_th, gamma, n_ref, n_alif):
    """Returns (z, v, a, psi), each (T, batch, n)."""
    i_in = np.asarray(i_in, dtype=np.float64)
    nt, nb, n = i_in.shape
    w = np.array(w_rec, dtype=np.float64)
    np.fill_diagonal(w, 0.0)
    noisy = np.size(var_rec) > 0
    if noisy:
        var_m = np.array(var_rec, dtype=np.float64)
        np.fill_diagonal(var_m, 0.0)
    alif = np.arange(n) >= n - n_alif
    g = gamma / v_th
    v, a, zp = np.zeros((nb, n)), np.zeros((nb, n)), np.zeros((nb, n))
    r = np.zeros((nb, n), np.int64)
    zs, vs, as_, psis = (np.zeros((nt, nb, n)) for _ in range(4))
    idx = np.arange(nb)[:, None] * n + np.arange(n)[None, :]
    for t in range(nt):
        rec = np.zeros((nb, n))
        var = np.zeros((nb, n))
        for i in range(n):
            rec = rec + zp[:, i:i + 1] * w[None, :, i]
            if noisy:
                var = var + zp[:, i:i + 1] * var_m[None, :, i]
        if noisy:
            rec = np.where(var > 0.0, rec + np.sqrt(var) * R.normal(seed, t, idx), rec)
        v = alpha * v + (i_in[t] + rec) - zp * v_th
        a = np.where(alif, rho * a + zp, 0.0)
        thr = np.where(alif, v_th + beta * a, v_th)
        refr = r > 0
        r = np.where(refr, r - 1, r)
        z = np.where(~refr & (v > thr), 1.0, 0.0)
        r = np.where(z > 0, n_ref, r)
        pd = 1.0 - np.abs(v - thr) / v_th
        psi = np.where(refr, 0.0, np.where(pd > 0.0, g * pd, 0.0))
        zs[t], vs[t], as_[t], psis[t] = z, v, a, psi
        zp = z
    return zs, vs, as_, psis


def accumulate(s, psi, ls, creg, alpha, kappa, rho, beta, n_alif):
    """Returns the (n_post, n_pre) gradient (the kernel adds it to ``out``; pass zeros there)."""
    s, psi, ls = (np.asarray(q, dtype=np.float64) for q in (s, psi, ls))
    creg = np.asarray(creg, dtype=np.float64)
    nt, nb, n_pre = s.shape
    n_post = psi.shape[2]
    first = n_post - n_alif
    use_reg = bool(np.any(creg != 0.0))
    out = np.zeros((n_post, n_pre))
    for b in range(nb):
        ebar = np.zeros(n_pre)
        f = np.zeros((n_post, n_pre))
        ea = np.zeros((n_alif, n_pre))
        for t in range(nt):
            if t > 0 and n_alif:
                p = psi[t - 1, b, first:][:, None]
                ea = p * ebar[None, :] + (rho - p * beta) * ea
            ebar = alpha * ebar + s[t, b]
            p = psi[t, b][:, None]
            e = np.empty((n_post, n_pre))
            e[:first] = p[:first] * ebar[None, :]
            e[first:] = p[first:] * (ebar[None, :] - beta * ea)
            f = kappa * f + e
            if use_reg:
                out = out + (ls[t, b][:, None] * f + creg[:, None] * e)
            else:
                out = out + ls[t, b][:, None] * f
    return out
