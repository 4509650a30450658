"""Plain-numpy twin of :mod:`neuroemu._kernels.periphery` (float32 read path).

The arithmetic is the kernels' float32 arithmetic in the same order, so results agree bit for bit.
The functions return new arrays instead of writing in place.
"""

from __future__ import annotations

import numpy as np

from . import rng as R

F32 = np.float32


def dac(x, levels, noise_management):
    """Quantise rows of x to the DAC grid over ±1. Returns (out, scale)."""
    x = np.asarray(x, dtype=F32)
    n, m = x.shape
    if noise_management and m > 0:
        s = np.abs(x).max(axis=1)
    else:
        s = np.zeros(n, F32)
    s = np.where(s < F32(1e-30), F32(1.0), s).astype(F32)  # (near-)zero rows: no scaling
    inv = (F32(1.0) / s)[:, None]
    if levels > 0:
        half = F32(levels / 2.0)
        ihalf = F32(2.0 / levels)
        out = np.clip(np.rint(x * inv * half) * ihalf, F32(-1.0), F32(1.0))
    else:
        out = x * inv
    return out.astype(F32), s


def adc(y, scale, var, out_noise, levels, bound, seed):
    """Output noise, ADC quantisation and saturation, times ``scale``. Returns (out, clipped)."""
    v = np.array(y, dtype=F32, copy=True)
    n, m = v.shape
    var = np.asarray(var)
    quant = bound > 0.0 and levels > 0
    if var.size > 0 or out_noise > 0.0:
        xi = R.normal_k(R.key(seed, np.arange(n)[:, None]), np.arange(m)[None, :]) if n * m else np.zeros((n, m))
        if var.size > 0:
            v = v + (np.sqrt(out_noise * out_noise + var.astype(np.float64)) * xi).astype(F32)
        else:
            v = v + F32(out_noise) * xi.astype(F32)
    if quant:
        step = F32(2.0 * bound / levels)
        istep = F32(levels / (2.0 * bound))
        v = np.rint(v * istep) * step
    clipped = np.zeros(n, np.int8)
    if bound > 0.0:
        bnd = F32(bound)
        hit = (v >= bnd) | (v <= -bnd)
        v = np.where(v >= bnd, bnd, np.where(v <= -bnd, -bnd, v))
        clipped = hit.any(axis=1).astype(np.int8) if m else clipped
    return (v * np.asarray(scale, dtype=F32)[:, None]).astype(F32), clipped


def spike_mvm(active, w_rows):
    """out[b] = Σ_{i active} w_rows[i], accumulated in input order like the kernel."""
    active = np.asarray(active, dtype=bool)
    w_rows = np.asarray(w_rows)
    out = np.zeros((active.shape[0], w_rows.shape[1]), dtype=w_rows.dtype)
    for i in range(active.shape[1]):
        out = out + np.where(active[:, i, None], w_rows[i][None, :], w_rows.dtype.type(0))
    return out


def count_nonzero(x):
    """Twin of the kernel."""
    return int(np.count_nonzero(np.asarray(x)))


def only_pm_one(x):
    """Twin of the kernel: every non-zero entry is ±1."""
    x = np.asarray(x)
    return bool(np.all(np.abs(x[x != 0]) == 1))
