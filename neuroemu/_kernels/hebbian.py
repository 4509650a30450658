"""Kernels of the competitive Hebbian rules (FastHebb, Lagani et al. 2022).

:func:`competitive_responses` turns the products wx = x·w_i (N, K) of a batch into the responses R
(N, K) in one pass per row, fused (no (N, K) temporaries):

    similarity  s_i = wx_i                                  (kind 0: dot)
                c_i = wx_i / max(|x| |w_i|, eps)            (kind 1: cosine)
                ((1 + c_i) / 2)²                            (kind 2: raised cosine)
    responses   soft-WTA: r = softmax(s / T)                (rule 0)
                k-WTA:    r_i = 1 for the k largest s_i     (rule 1; ties: the lower index first;
                          finite similarities assumed)

Rows are independent; arithmetic in the dtype of ``wx`` (float32 or float64).
"""

import numpy as np
from numba import njit

_FEW = 16  # k-WTA: up to this many winners by repeated maximum search, more by sorting the row


@njit(cache=True)
def competitive_responses(wx, xnorm, wnorm, kind, rule, temperature, k, eps, out):
    n, m = wx.shape
    one = wx.dtype.type(1.0)
    half = wx.dtype.type(0.5)
    inv_t = wx.dtype.type(1.0 / temperature)
    tiny = wx.dtype.type(eps)
    for r in range(n):
        row = out[r]
        for i in range(m):
            s = wx[r, i]
            if kind >= 1:
                s = s / max(xnorm[r] * wnorm[i], tiny)
                if kind == 2:
                    s = (half * (one + s)) ** 2
            row[i] = s
        if rule == 0:
            top = row[0]
            for i in range(1, m):
                top = max(top, row[i])
            total = wx.dtype.type(0.0)
            for i in range(m):
                e = np.exp((row[i] - top) * inv_t)
                row[i] = e
                total += e
            for i in range(m):
                row[i] = row[i] / total
        elif k <= _FEW:  # k passes of a first-maximum search
            for j in range(k):
                best = 0
                for i in range(1, m):
                    if row[i] > row[best]:
                        best = i
                row[best] = -np.inf
            for i in range(m):
                row[i] = one if row[i] == -np.inf else 0.0
        else:
            order = np.argsort(-row, kind="mergesort")
            for i in range(m):
                row[i] = 0.0
            for j in range(k):
                row[order[j]] = one
