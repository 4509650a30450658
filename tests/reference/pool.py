"""Plain-numpy twin of neuroemu._kernels.pool: one strided comparison (forward) or strided add
(backward) per window offset, in the order of the offsets."""

import numpy as np


def _window(ki, kj, ho, wo, s):
    return (slice(None), slice(None), slice(ki, ki + (ho - 1) * s + 1, s), slice(kj, kj + (wo - 1) * s + 1, s))


def max_pool_forward(xp, k, s, ho, wo, arg):
    y = np.array(xp[_window(0, 0, ho, wo, s)])
    offsets = np.zeros(y.shape, np.int64)
    for o in range(1, k * k):
        v = xp[_window(o // k, o % k, ho, wo, s)]
        larger = v > y
        np.copyto(y, v, where=larger)
        offsets[larger] = o
    if arg.size:
        arg[...] = offsets
    return y


def max_pool_backward(arg, gy, k, s, gx):
    ho, wo = gy.shape[2:]
    zero = gx.dtype.type(0)
    for o in range(k * k):
        gx[_window(o // k, o % k, ho, wo, s)] += np.where(arg == o, gy, zero)
