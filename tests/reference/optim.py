"""Plain-numpy twin of neuroemu._kernels.optim."""

import numpy as np


def adam_step(p, g, m, s, a, b1, b2, r, eps):
    t = p.dtype.type
    a, b1, b2, r, eps = t(a), t(b1), t(b2), t(r), t(eps)
    tiny = np.finfo(p.dtype).tiny
    m *= b1
    m += (t(1.0) - b1) * g
    m[np.abs(m) < tiny] = 0
    s *= b2
    s += (t(1.0) - b2) * (g * g)
    s[s < tiny] = 0
    d = a * m / (np.sqrt(s) * r + eps)
    d[np.abs(d) < tiny] = 0
    p -= d


def count_subnormal(x):
    v = np.abs(x)
    return int(np.count_nonzero((v > 0) & (v < np.finfo(x.dtype).tiny)))


def flush_subnormal(x):
    x[np.abs(x) < np.finfo(x.dtype).tiny] = 0
