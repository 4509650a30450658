"""Analog matrix-multiply kernel of a BrainScaleS-2-like chip ("hagen" mode).

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
from numba import njit

from .rng import key, normal_k


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
