"""Crossbar periphery kernels: input DAC with noise management, output noise + ADC, sparse reads.

They work in float32 (the precision of the analog read path) on C-contiguous arrays.
"""

import numpy as np
from numba import njit

from .rng import key, normal_k


@njit(cache=True)
def dac(x, levels, noise_management, out, scale):
    """Quantise each row of x (float32) to the DAC grid over ±1.

    With noise management the row is first divided by max|x| (stored in ``scale``; 1 for a row
    whose max|x| is below 1e-30, where 1/max|x| would overflow float32 and 0·inf give NaN).
    ``levels`` = 2^bits − 2 steps over [−1, 1] (step 2/levels); levels = 0 turns the DAC off.
    """
    n, m = x.shape
    one = np.float32(1.0)
    half = np.float32(levels / 2.0)
    ihalf = np.float32(2.0 / levels) if levels > 0 else one
    for b in range(n):
        s = np.float32(0.0)
        if noise_management:
            for i in range(m):
                a = abs(x[b, i])
                if a > s:
                    s = a
        if s < np.float32(1e-30):
            s = one
        scale[b] = s
        inv = one / s
        if levels > 0:
            for i in range(m):
                v = np.rint(x[b, i] * inv * half) * ihalf
                out[b, i] = min(max(v, -one), one)
        else:
            for i in range(m):
                out[b, i] = x[b, i] * inv


@njit(cache=True)
def adc(y, scale, var, out_noise, levels, bound, seed, clipped):
    """Add read + output noise, quantise to the ADC grid, clip to ±bound, multiply by ``scale``.

    ``var`` (same shape as y, or size 0) is the output-referred variance of per-device read noise;
    the total noise std of an output is sqrt(var + out_noise²), one normal keyed by (seed, row,
    column). ``levels`` = 2^bits − 2 steps over [−bound, bound] (0 = no ADC); bound ≤ 0 means no
    saturation. ``clipped[b]`` is set to 1 if any output of row b saturated. Works in place.
    """
    n, m = y.shape
    has_var = var.size > 0
    on2 = out_noise * out_noise
    sd0 = np.float32(out_noise)
    bnd = np.float32(bound)
    quant = bound > 0.0 and levels > 0
    step = np.float32(2.0 * bound / levels) if quant else np.float32(1.0)
    istep = np.float32(levels / (2.0 * bound)) if quant else np.float32(1.0)
    for b in range(n):
        k = key(seed, b)
        c = 0
        sb = np.float32(scale[b])
        for j in range(m):
            v = y[b, j]
            if has_var:
                v += np.float32(np.sqrt(on2 + var[b, j]) * normal_k(k, j))
            elif on2 > 0.0:
                v += sd0 * np.float32(normal_k(k, j))
            if quant:
                v = np.rint(v * istep) * step
            if bound > 0.0:
                if v >= bnd:
                    v = bnd
                    c = 1
                elif v <= -bnd:
                    v = -bnd
                    c = 1
            y[b, j] = v * sb
        clipped[b] = c


@njit(cache=True)
def spike_mvm(active, w_rows, out):
    """out[b] = Σ_{i: active[b, i]} w_rows[i]: an MVM with binary inputs that touches only the
    rows of active inputs. ``active`` is boolean (batch, n_in), ``w_rows`` (n_in, n_out)."""
    n, m = active.shape
    k = w_rows.shape[1]
    for b in range(n):
        for j in range(k):
            out[b, j] = 0.0
        for i in range(m):
            if active[b, i]:
                for j in range(k):
                    out[b, j] += w_rows[i, j]
    return out


@njit(cache=True)
def count_nonzero(x):
    """Non-zero entries of the 2-d array x (a branch-free loop: several times numpy's speed on floats)."""
    n = 0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            n += x[i, j] != 0
    return n


@njit(cache=True)
def only_pm_one(x):
    """Whether every non-zero entry of the 2-d array x is ±1 (spikes and signs are accumulates in the
    operation counts of a read, other inputs multiply-accumulates); stops at the first other value."""
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            v = x[i, j]
            if v != 0 and v != 1 and v != -1:
                return False
    return True
