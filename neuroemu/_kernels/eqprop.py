"""Kernels of equilibrium propagation: the relaxation of a layered energy-based network.

States s_l (B, n_l), l = 1..L, live in [0, 1], where ρ(s) = s. One Euler step of
ds/dt = −∂F/∂s followed by the projection onto [0, 1], for every layer at once (synchronous: all
drives are computed from the states of the previous step before any layer moves):

    h_l = (W_l s_{l−1} + b_l) + W_{l+1}ᵀ s_{l+1}          (no second term for the top layer)
    g_l = (s_l − h_l) [+ β n_L on the top layer]
    s_l ← clip(s_l − dt g_l, 0, 1)

with the nudging term n_L = s_L − d (``mode`` 1, squared error) or n_L = W_outᵀ (softmax(W_out s_L
+ b_out) − d) (``mode`` 2, cross-entropy through a read-out that is not part of the energy);
``mode`` 0 is the free phase. The bottom layer's drive W_1 x + b_1 does not change during a phase:
the caller computes it once and passes it as ``drive``.

Element-wise, per entry and in this order: h = fw + b (when there is a bias), h = h + bw (when
there is a layer above), g = s − h, g = g + β·n (nudged top layer), v = s − dt·g, s = min(max(v, 0),
1). Scalars are converted to the array dtype once, so float32 runs stay in float32. Matrix
products go through ``np.dot`` (BLAS); the softmax of ``mode`` 2 subtracts the row maximum and
sums the exponentials in index order.
"""

import numpy as np
from numba import njit
from numba.typed import List


@njit(cache=True)
def _cast(like, a, b):
    """[a, b, 0, 1] in the dtype of ``like``."""
    k = np.empty(4, like.dtype)
    k[0] = a
    k[1] = b
    k[2] = 0.0
    k[3] = 1.0
    return k


@njit(cache=True)
def layer_step(s, fw, bias, bw, dt, beta, mode, aux):
    """One projected Euler step of one layer, in place: s ← clip(s − dt ((s − h) + β n), 0, 1) with
    h = (fw + bias) + bw.

    s, fw (B, n): state and feed-forward drive (W_l s_{l−1}, or the constant W_1 x + b_1 of the
    bottom layer); bias (n,) or empty for none; bw (B, n) the feedback W_{l+1}ᵀ s_{l+1} or empty
    (size 0) for the top layer. mode 0: no nudging; 1: n = s − aux (aux the target, (B, n)); 2: n =
    aux (a precomputed force, (B, n))."""
    k = _cast(s, dt, beta)
    h_dt, h_beta, zero, one = k[0], k[1], k[2], k[3]
    nb, n = s.shape
    has_b = bias.shape[0] > 0
    has_bw = bw.size > 0
    h = np.empty(n, s.dtype)
    # Each loop reads only the arrays that are there. A single loop body that also indexed the
    # empty bias / bw / aux behind flags gave the same numbers but, in some processes, ran at
    # scalar speed (up to 20x slower, depending on where the arrays lay in memory; most likely the
    # compiler's run-time overlap check failing on the empty arrays' nominal rows).
    for b in range(nb):
        sr, hr = s[b], fw[b]
        if has_b and has_bw:
            fr, bwr = hr, bw[b]
            for j in range(n):
                h[j] = (fr[j] + bias[j]) + bwr[j]
            hr = h
        elif has_b:
            fr = hr
            for j in range(n):
                h[j] = fr[j] + bias[j]
            hr = h
        elif has_bw:
            fr, bwr = hr, bw[b]
            for j in range(n):
                h[j] = fr[j] + bwr[j]
            hr = h
        if mode == 1:
            ar = aux[b]
            for j in range(n):
                sv = sr[j]
                g = (sv - hr[j]) + h_beta * (sv - ar[j])
                sr[j] = min(max(sv - h_dt * g, zero), one)
        elif mode == 2:
            ar = aux[b]
            for j in range(n):
                sv = sr[j]
                g = (sv - hr[j]) + h_beta * ar[j]
                sr[j] = min(max(sv - h_dt * g, zero), one)
        else:
            for j in range(n):
                sv = sr[j]
                g = sv - hr[j]
                sr[j] = min(max(sv - h_dt * g, zero), one)


@njit(cache=True)
def softmax_force(s_top, w_out, b_out, target, out):
    """Writes the cross-entropy force W_outᵀ (softmax(s_top W_outᵀ + b_out) − target) into out
    (B, n_L) and returns the read-out probabilities (B, n_out)."""
    nb = s_top.shape[0]
    k = w_out.shape[0]
    zero = _cast(s_top, 0.0, 0.0)[2]
    z = np.empty((nb, k), s_top.dtype)
    np.dot(s_top, w_out.T, z)
    for b in range(nb):
        m = z[b, 0] + b_out[0]
        for c in range(k):
            v = z[b, c] + b_out[c]
            z[b, c] = v
            m = max(m, v)
        tot = zero
        for c in range(k):
            e = np.exp(z[b, c] - m)
            z[b, c] = e
            tot = tot + e
        for c in range(k):
            z[b, c] = z[b, c] / tot
    err = np.empty((nb, k), s_top.dtype)
    for b in range(nb):
        for c in range(k):
            err[b, c] = z[b, c] - target[b, c]
    np.dot(err, w_out, out)
    return z


@njit(cache=True)
def relax(drive, ws, bs, states, n_steps, dt, beta, mode, aux, w_out, b_out):
    """Runs ``n_steps`` synchronous steps of a whole phase, updating ``states`` in place.

    drive (B, n_1): W_1 x + b_1; ws, bs: typed lists of W_l (n_l, n_{l−1}) and b_l (n_l,), l = 1..L
    (W_1 and b_1 are not read: they are in ``drive``); states: typed list of s_l (B, n_l) in [0, 1].
    mode 0: free; 1: squared-error nudging towards aux (B, n_L); 2: cross-entropy nudging towards
    aux (B, n_out) through the read-out w_out (n_out, n_L), b_out (n_out,). w_out and b_out are not
    read in modes 0 and 1 (pass empty arrays)."""
    nl = len(states)
    nb = drive.shape[0]
    dtype = drive.dtype
    fws = List()
    bws = List()
    for i in range(nl):
        n = states[i].shape[1]
        fws.append(drive if i == 0 else np.empty((nb, n), dtype))
        bws.append(np.empty((nb, n), dtype) if i < nl - 1 else np.empty((0, 0), dtype))
    no_bias = np.empty(0, dtype)
    force = np.empty((nb, states[nl - 1].shape[1]), dtype)
    top_aux = force if mode == 2 else aux
    for _ in range(n_steps):
        for i in range(1, nl):
            np.dot(states[i - 1], ws[i].T, fws[i])
        for i in range(nl - 1):
            np.dot(states[i + 1], ws[i + 1], bws[i])
        if mode == 2:
            softmax_force(states[nl - 1], w_out, b_out, aux, force)
        for i in range(nl):
            m = mode if i == nl - 1 else 0
            layer_step(states[i], fws[i], no_bias if i == 0 else bs[i], bws[i], dt, beta, m,
                       top_aux if i == nl - 1 else no_bias.reshape((0, 0)))
