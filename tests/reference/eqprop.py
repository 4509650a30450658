"""Plain-numpy twin of :mod:`neuroemu._kernels.eqprop`.

A straightforward loop over steps with numpy matrix products and whole-array element-wise
operations, in the kernels' order and dtype (h = fw + b, h = h + bw, g = s − h, g = g + β n,
s = clip(s − dt g, 0, 1)). The squared-error runs agree with the kernels to the last bit when both
call the same BLAS; the softmax of the cross-entropy read-out uses numpy's exp, which may differ
from the kernels' in the last bit. :func:`relax` is also the baseline of
``benchmarks/bench_eqprop.py``; ``hoist=False`` recomputes the bottom drive W_1 x + b_1 at every
step, as a naive implementation would.
"""

from __future__ import annotations

import numpy as np


def layer_step(s, fw, bias, bw, dt, beta, mode, aux):
    """Returns the new state of one layer (see the kernel); bias / bw None for none."""
    f = s.dtype.type
    h = fw if bias is None else fw + bias
    if bw is not None:
        h = h + bw
    g = s - h
    if mode == 1:
        g = g + f(beta) * (s - aux)
    elif mode == 2:
        g = g + f(beta) * aux
    return np.minimum(np.maximum(s - f(dt) * g, f(0)), f(1))


def softmax_force(s_top, w_out, b_out, target):
    """Returns (force W_outᵀ (o − d) (B, n_L), probabilities o (B, n_out))."""
    z = s_top @ w_out.T + b_out
    e = np.exp(z - z.max(axis=1, keepdims=True))
    o = e / e.sum(axis=1, keepdims=True)
    return (o - target) @ w_out, o


def relax(x, weights, biases, states, n_steps, dt, beta=0.0, mode=0, target=None, w_out=None, b_out=None,
          hoist=True, drive=None):
    """Runs a phase from ``states`` (list of (B, n_l)); returns the new states. weights/biases:
    W_l, b_l for the state layers l = 1..L only; mode 0 free, 1 squared error, 2 cross-entropy
    through (w_out, b_out); drive: W_1 x + b_1 when already computed."""
    s = [np.array(a) for a in states]
    nl = len(s)
    if drive is None or not hoist:
        drive = x @ weights[0].T + biases[0]
    for _ in range(n_steps):
        if not hoist:
            drive = x @ weights[0].T + biases[0]
        fw = [drive] + [s[i - 1] @ weights[i].T for i in range(1, nl)]
        bw = [s[i + 1] @ weights[i + 1] for i in range(nl - 1)] + [None]
        force = softmax_force(s[-1], w_out, b_out, target)[0] if mode == 2 else None
        new = []
        for i in range(nl):
            top = i == nl - 1
            new.append(layer_step(s[i], fw[i], None if i == 0 else biases[i], bw[i], dt, beta,
                                  mode if top else 0, (force if mode == 2 else target) if top else None))
        s = new
    return s
