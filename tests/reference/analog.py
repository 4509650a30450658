"""Plain-numpy twin of :mod:`neuroemu._kernels.analog`."""

from __future__ import annotations

import numpy as np

from . import rng as R


def hagen_mac(x, w_rows, gain, noise_std, block, lo, hi, seed):
    x = np.asarray(x, dtype=np.float64)
    w_rows = np.asarray(w_rows, dtype=np.float64)
    nb, n_in = x.shape
    n_out = w_rows.shape[1]
    n_blocks = -(-n_in // block)
    out = np.zeros((nb, n_out))
    for blk in range(n_blocks):
        r0, r1 = blk * block, min((blk + 1) * block, n_in)
        acc = np.zeros((nb, n_out))
        for i in range(r0, r1):  # the kernel's summation order: row by row
            acc += x[:, i:i + 1] * w_rows[i][None, :]
        a = (np.arange(nb) * n_blocks + blk)[:, None]
        noise = R.normal(seed, a, np.arange(n_out)[None, :])
        out += np.clip(np.floor(gain * acc + noise_std * noise), lo, hi)
    return np.clip(out, lo, hi)


def neuron_sequence(xs, leak, reset, th, alpha, beta, gscale, noise, nref, v_lo, v_hi, spiking, seed, v, i, r,
                    v_off=0.0, v_scale=1.0):
    """Vectorised over (batch, n); returns (zs, vs, is_, v, i, r), vs = (membrane − v_off) / v_scale
    in float64 (the kernel rounds it to its output's type)."""
    xs = np.asarray(xs, dtype=np.float64)
    v, i, r = np.array(v, dtype=np.float64), np.array(i, dtype=np.float64), np.array(r, dtype=np.int64)
    nt, nb, n = xs.shape
    zs, vs, is_ = np.zeros(xs.shape), np.zeros(xs.shape), np.zeros(xs.shape)
    idx = np.arange(nb)[:, None] * n + np.arange(n)[None, :]
    for t in range(nt):
        i = beta * i + gscale * xs[t]
        refr = r > 0
        free = leak + alpha * (v - leak) + i
        if np.any(noise > 0):
            free = free + np.where(noise > 0, noise * R.normal(seed, t, idx), 0.0)
        free = np.clip(free, v_lo, v_hi)
        spike = ~refr & (free > th) if spiking else np.zeros_like(refr)
        vs[t] = (np.where(refr, reset, free) - v_off) / v_scale
        zs[t] = spike
        is_[t] = i
        v = np.where(refr | spike, reset, free)
        r = np.where(refr, r - 1, np.where(spike, nref, r))
    return zs, vs, is_, v, i, r
