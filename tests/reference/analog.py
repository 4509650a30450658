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
