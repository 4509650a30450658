"""Plain-numpy twin of neuroemu._kernels.hebbian."""

import numpy as np


def competitive_responses(wx, xnorm, wnorm, kind, rule, temperature, k, eps):
    dt = wx.dtype.type
    s = wx.copy()
    if kind >= 1:
        s = s / np.maximum(xnorm[:, None] * wnorm[None, :], dt(eps))
        if kind == 2:
            s = (dt(0.5) * (dt(1.0) + s)) ** 2
    if rule == 0:
        e = np.exp((s - s.max(axis=1, keepdims=True)) * dt(1.0 / temperature))
        return e / e.sum(axis=1, keepdims=True)
    r = np.zeros_like(s)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    np.put_along_axis(r, top, dt(1.0), axis=1)
    return r
