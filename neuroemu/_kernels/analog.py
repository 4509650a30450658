"""Kernels of a BrainScaleS-2-like analog chip: its matrix multiply ("hagen" mode) and its neurons
(:func:`neuron_sequence`, analog current-based LIF neurons with per-neuron parameters and noise).

The model is the mock of the MAC mode published with the chip's software (hxtorch,
``mac_mock_forward``): the input dimension is split into blocks of ``block`` rows (128 on
BrainScaleS-2, where a signed weight takes two of the 256 synapse rows); each block is read
separately through the 8-bit ADC,

    y_b = clamp(floor(gain · num_sends · Σ_{i in b} x_i w_ij + N(0, noise_std²)), lo, hi),

and the blocks are summed digitally and clamped again. x are unsigned integers (5 bit), w signed
integers (6 bit + sign). The Gaussian noise (in output LSB) is keyed by (seed, sample, output) and
the block index, so results do not depend on visiting order.
"""

import numpy as np
from numba import njit, prange

from .rng import ZIG_K, ZIG_W, _normal_slow, _split, hash_k, key, normal_k


@njit(cache=True, inline="always")
def normal_from_hash(k, b, h):
    """``normal_k(k, b)`` given its hash ``h = hash_k(k, b)`` (computed ahead, in a loop that vectorises)."""
    iz, hz = _split(h)
    if abs(hz) < ZIG_K[iz]:
        return hz * ZIG_W[iz]
    return _normal_slow(k, b, iz, hz)


@njit(cache=True)
def hagen_mac(x, w_rows, gain, noise_std, block, lo, hi, seed, out):
    """out[b, j] for x (batch, n_in) and w_rows (n_in, n_out), both float64 holding integers."""
    nb, n_in = x.shape
    n_out = w_rows.shape[1]
    n_blocks = (n_in + block - 1) // block
    acc = np.empty(n_out)
    for b in range(nb):
        for j in range(n_out):
            out[b, j] = 0.0
        for blk in range(n_blocks):
            r0 = blk * block
            r1 = min(r0 + block, n_in)
            for j in range(n_out):
                acc[j] = 0.0
            for i in range(r0, r1):
                xi = x[b, i]
                if xi != 0.0:
                    for j in range(n_out):
                        acc[j] += xi * w_rows[i, j]
            k = key(seed, b * n_blocks + blk)
            for j in range(n_out):
                v = np.floor(gain * acc[j] + noise_std * normal_k(k, j))
                out[b, j] += min(max(v, lo), hi)
        for j in range(n_out):
            out[b, j] = min(max(out[b, j], lo), hi)
    return out


@njit(cache=True, parallel=True)
def neuron_sequence(xs, leak, reset, th, alpha, beta, gscale, noise, nref, v_lo, v_hi, spiking, seed,
                    v, i, r, zs, vs, is_, v_off=0.0, v_scale=1.0):
    """Analog current-based LIF neurons with per-neuron parameters, T steps.

    xs (T, batch, n): input per step in normalised units; ``gscale`` (n,) turns it into synaptic
    current (LSB per step). leak, reset, alpha = exp(−dt/τ_mem), beta = exp(−dt/τ_syn), noise
    (n,): per-neuron arrays (LSB); th (batch, n): this trial's thresholds. State v, i (batch, n)
    float64 and the refractory counter r (int32) are updated in place. Per element and step:

        i = beta·i + gscale·x
        refractory (r > 0):  v = reset, r −= 1, no spike         (the circuit clamps the membrane)
        otherwise:           v = clip(leak + alpha·(v − leak) + i + noise·N(0, 1), v_lo, v_hi)
                             spike if spiking and v > th: v = reset, r = nref

    zs records spikes; vs (size 0 to skip; float64 or float32) the membrane before any reset, so a
    spike shows as its suprathreshold value, stored as (v − v_off) / v_scale (computed in float64,
    then rounded to vs's type; the defaults store v itself); is_ (size 0 to skip) the synaptic
    current. The noise draw of element (b, j) at step t is keyed by (seed, t) and b·n + j.

    The samples of the batch are independent: they run in parallel (``prange``), each sample's T
    steps in turn, and every step in three passes over its neurons (the deterministic update, which
    vectorises; the noise draws; clip, threshold and refractory counter). The results do not depend
    on the number of threads.
    """
    nt, nb, n = xs.shape
    rec_v = vs.size > 0
    rec_i = is_.size > 0
    any_noise = False
    for j in range(n):
        if noise[j] > 0.0:
            any_noise = True
    for b in prange(nb):
        free = np.empty(n)
        h = np.empty(n, np.uint64)
        vb, ib, rb, thb = v[b], i[b], r[b], th[b]
        for t in range(nt):
            xt = xs[t, b]
            zt = zs[t, b]
            for j in range(n):
                ii = beta[j] * ib[j] + gscale[j] * xt[j]
                ib[j] = ii
                free[j] = leak[j] + alpha[j] * (vb[j] - leak[j]) + ii
            if rec_i:
                it = is_[t, b]
                for j in range(n):
                    it[j] = ib[j]
            if any_noise:
                k = key(seed, t)
                base = b * n
                for j in range(n):  # the hashes first: this loop vectorises
                    h[j] = hash_k(k, base + j)
                for j in range(n):  # drawn for every element (refractory ones discard it): no branch
                    x = noise[j] * normal_from_hash(k, base + j, h[j])
                    free[j] = free[j] + x if noise[j] > 0.0 else free[j]
            for j in range(n):
                refr = rb[j] > 0
                vv = min(max(free[j], v_lo), v_hi)
                spike = spiking and (not refr) and vv > thb[j]
                out = reset[j] if refr else vv
                vb[j] = reset[j] if (refr or spike) else vv
                rb[j] = rb[j] - 1 if refr else (nref if spike else rb[j])
                zt[j] = 1.0 if spike else 0.0
                free[j] = out
            if rec_v:
                vt = vs[t, b]
                for j in range(n):
                    vt[j] = (free[j] - v_off) / v_scale
