"""Plain-numpy twin of :mod:`neuroemu._kernels.sampling` (vectorised over chains and neurons)."""

from __future__ import annotations

import numpy as np

from neuroemu._kernels.sampling import (P_C, P_DE, P_DI, P_DM, P_EE, P_EI, P_GL, P_LDE, P_LDI, P_LE, P_LI, P_NOISE,
                                        P_RESET, P_TH, P_WE, P_WI)

from . import rng as R


def poisson(k, b, lam):
    """Poisson counts by inversion of one uniform per element (arrays)."""
    u = R.uniform_k(k, b)
    n = np.zeros(np.shape(u), np.int64)
    p = np.exp(-lam) * np.ones(np.shape(u))
    s = p.copy()
    more = u > s
    while more.any():
        n = np.where(more, n + 1, n)
        p = np.where(more, p * lam / np.maximum(n, 1), p)
        s = np.where(more, s + p, s)
        more = more & (u > s) & (n < 10000)
    return n


def sampling_run(steps, t0, every, dt, conductance, par, leak, wt, clamp, v_lo, v_hi, n_ref, seed, renew, v, ge,
                 gi, r, fired, since, gap):
    """Returns (v, ge, gi, r, fired, since, gap, rec, counts) after ``steps`` steps; inputs are not
    changed."""
    v, ge, gi, r, fired, since, gap = (np.array(a, copy=True) for a in (v, ge, gi, r, fired, since, gap))
    nb, n = v.shape
    idx = np.arange(nb)[:, None] * n + np.arange(n)[None, :]
    rec = np.zeros((steps // every, nb, n), np.uint8)
    counts = np.zeros((nb, n), np.int64)
    pos, neg = np.maximum(wt, 0.0), np.maximum(-wt, 0.0)
    for s in range(steps):
        t = t0 + s
        kb, kn = R.key(seed, 2 * t), R.key(seed, 2 * t + 1)
        for j in range(n):  # the kernel's order of arrival: presynaptic index ascending
            f = fired[:, j:j + 1] > 0
            g = gap[:, j:j + 1].astype(np.float64)
            scale_e = 1.0 - np.exp(g * par[P_LDE]) if renew[j] else 1.0
            scale_i = 1.0 - np.exp(g * par[P_LDI]) if renew[j] else 1.0
            ge = np.where(f & (wt[j] > 0), ge + pos[j] * scale_e, ge)
            gi = np.where(f & (wt[j] < 0), gi + neg[j] * scale_i, gi)
        fired[:] = 0
        on_e, on_i = par[P_LE] > 0, par[P_LI] > 0
        ne = np.where(on_e, poisson(kb, 2 * idx, par[P_LE]), 0)
        ni = np.where(on_i, poisson(kb, 2 * idx + 1, par[P_LI]), 0)
        ge = np.where(on_e, ge + par[P_WE] * ne, ge)
        gi = np.where(on_i, gi + par[P_WI] * ni, gi)
        r = np.where(r > 0, r - 1, r)
        held = r > 0
        if conductance:
            g = par[P_GL] + ge + gi
            vinf = (par[P_GL] * leak + ge * par[P_EE] + gi * par[P_EI]) / g
            vv = vinf + (v - vinf) * np.exp(-dt * g / par[P_C])
        else:
            vinf = leak + (ge - gi) / par[P_GL]
            vv = vinf + (v - vinf) * par[P_DM]
        noisy = par[P_NOISE] > 0
        vv = np.where(noisy, vv + par[P_NOISE] * R.normal_k(kn, idx), vv)
        vv = np.clip(vv, v_lo, v_hi)
        spike = ~held & ((clamp == 1) | ((clamp < 0) & (vv > par[P_TH])))
        v = np.where(held | spike, par[P_RESET] * np.ones_like(v), vv)
        r = np.where(spike, n_ref, r).astype(np.int32)
        fired = spike.astype(np.uint8)
        counts += spike
        gap = np.where(spike, since, gap)
        since = np.where(spike, 0, since) + 1
        ge = ge * par[P_DE]
        gi = gi * par[P_DI]
        if (s + 1) % every == 0:
            rec[(s + 1) // every - 1] = r > 0
    return v, ge, gi, r, fired, since, gap, rec, counts
