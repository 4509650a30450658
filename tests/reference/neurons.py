"""Plain-numpy twin of :mod:`neuroemu._kernels.neurons`.

Loops over time, vectorised over batch and neurons, with the kernels' arithmetic in the same order
and dtype, so results agree bit for bit. Functions return new arrays instead of writing in place.
"""

from __future__ import annotations

import numpy as np


def neuron_step(x, p, v, z, r, a, i):
    """One LIF-family step (see the kernel module docstring). Returns (v, z, r, a, i)."""
    x = np.asarray(x)
    T = x.dtype.type
    al, vth, vr, bs, rho, ba = (T(p.alpha), T(p.v_th), T(p.v_reset), T(p.beta_syn), T(p.rho),
                                T(p.beta_adapt))
    i = bs * i + x
    a = rho * a + z
    thr = vth + ba * a
    refr = r > 0
    u = np.where(refr, T(0), i)
    r = np.where(refr, r - 1, r).astype(np.int32)
    if p.reset_mode != 0.0:
        v = al * np.where(z > 0, vr, v) + u
    else:
        v = (al * v + u) - z * vth
    spike = (v > thr) & ~refr
    z = np.where(spike, T(1), T(0))
    r = np.where(spike, np.int32(p.refractory_steps), r).astype(np.int32)
    return v.astype(x.dtype), z, r, a.astype(x.dtype), i.astype(x.dtype)


def neuron_sequence(xs, p, v, z, r, a, i):
    """T steps. Returns (zs, vs, as_, (v, z, r, a, i))."""
    xs = np.asarray(xs)
    zs, vs, as_ = (np.empty(xs.shape, xs.dtype) for _ in range(3))
    for t in range(xs.shape[0]):
        v, z, r, a, i = neuron_step(xs[t], p, v, z, r, a, i)
        zs[t], vs[t], as_[t] = z, v, a
    return zs, vs, as_, (v, z, r, a, i)


def readout_sequence(xs, alpha_out, y):
    """y(t+1) = κ y(t) + x(t+1). Returns (ys, y)."""
    xs = np.asarray(xs)
    k = xs.dtype.type(alpha_out)
    ys = np.empty(xs.shape, xs.dtype)
    for t in range(xs.shape[0]):
        y = k * y + xs[t]
        ys[t] = y
    return ys, y
