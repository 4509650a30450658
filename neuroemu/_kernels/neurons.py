"""Ideal neuron dynamics (LIF, current-based LIF, ALIF, leaky readout) as numba kernels.

One update covers the LIF family; with ``beta_syn = 0`` the synaptic current equals the input
exactly and with ``beta_adapt = 0`` the threshold is ``v_th`` exactly, so LIF, CUBA and ALIF share
the same arithmetic. Per element and step, with input x = I(t+1) and state (i, v, z, r, a) at t:

    i   = beta_syn*i + x                       synaptic current (CUBA)
    a   = rho*a + z                            adaptation, A = v_th + beta_adapt*a
    u   = 0 if r > 0 else i                    refractory: input ignored, counter decremented
    v   = (alpha*v + u) - z*v_th               reset_mode 0 (subtract)
    v   = alpha*(v_reset if z else v) + u      reset_mode 1 (to value)
    z   = 1 if v > A and not refractory else 0;  on a spike r = refractory_steps

Arrays are C-contiguous, float32 or float64 (the state and input share one dtype; ``r`` is
int32); parameters are converted to that dtype once so float32 runs stay in float32.
"""

from typing import NamedTuple

import numpy as np
from numba import njit


class DynParams(NamedTuple):
    """Parameters of the shared LIF-family update (all floats)."""

    alpha: float
    v_th: float
    v_reset: float
    reset_mode: float  # 0 = subtract v_th, 1 = set to v_reset
    refractory_steps: float
    beta_syn: float
    rho: float
    beta_adapt: float


@njit(cache=True)
def _scalars(p, like):
    s = np.empty(8, like.dtype)
    s[0] = p.alpha
    s[1] = p.v_th
    s[2] = p.v_reset
    s[3] = p.beta_syn
    s[4] = p.rho
    s[5] = p.beta_adapt
    s[6] = 0.0
    s[7] = 1.0
    return s


@njit(cache=True, inline="always")
def _update(x, al, vth, vr, bs, rho, ba, zero, one, to_value, nref, v, z, r, a, i):
    """One element, one step. Returns (v, z, r, a, i) at t+1."""
    i = bs * i + x
    a = rho * a + z
    thr = vth + ba * a
    refr = r > 0
    if refr:
        u = zero
        r -= 1
    else:
        u = i
    if to_value:
        base = vr if z > 0 else v
        v = al * base + u
    else:
        v = (al * v + u) - z * vth
    if v > thr and not refr:
        z = one
        r = nref
    else:
        z = zero
    return v, z, r, a, i


@njit(cache=True)
def neuron_step(x, p, v, z, r, a, i):
    """One step of the LIF-family update on (batch, n) arrays, in place on v, z, r, a, i."""
    s = _scalars(p, v)
    to_value = p.reset_mode != 0.0
    nref = np.int32(p.refractory_steps)
    nb, n = x.shape
    for b in range(nb):
        for j in range(n):
            v[b, j], z[b, j], r[b, j], a[b, j], i[b, j] = _update(
                x[b, j], s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], to_value, nref,
                v[b, j], z[b, j], r[b, j], a[b, j], i[b, j])


@njit(cache=True)
def neuron_sequence(xs, p, v, z, r, a, i, zs, vs, as_):
    """T steps of the LIF-family update: xs (T, batch, n) inputs; state updated in place.

    Writes spikes ``zs``, voltages ``vs`` and adaptation ``as_`` (each (T, batch, n)); pass
    ``as_`` with size 0 to skip recording adaptation.
    """
    s = _scalars(p, v)
    al, vth, vr, bs, rho, ba, zero, one = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
    to_value = p.reset_mode != 0.0
    nref = np.int32(p.refractory_steps)
    rec_a = as_.size > 0
    nt, nb, n = xs.shape
    if (nref == 0 and not to_value and p.beta_syn == 0.0 and p.rho == 0.0 and p.beta_adapt == 0.0
            and not rec_a and nt > 0 and not np.any(r)):
        _plain_lif(xs, al, vth, zero, one, v, z, a, i, zs, vs)
        return
    for t in range(nt):  # time outermost: xs, zs, vs are read and written contiguously
        for b in range(nb):
            for j in range(n):
                vv, zz, rr, aa, ii = _update(xs[t, b, j], al, vth, vr, bs, rho, ba, zero, one,
                                             to_value, nref, v[b, j], z[b, j], r[b, j], a[b, j],
                                             i[b, j])
                v[b, j], z[b, j], r[b, j], a[b, j], i[b, j] = vv, zz, rr, aa, ii
                zs[t, b, j] = zz
                vs[t, b, j] = vv
                if rec_a:
                    as_[t, b, j] = aa


@njit(cache=True)
def _plain_lif(xs, al, vth, zero, one, v, z, a, i, zs, vs):
    """Fast path of neuron_sequence for plain LIF (subtract reset, no refractory period, no
    synapse or adaptation): the same arithmetic without branches, so the inner loop vectorises.
    The state ends as the general update leaves it: a = z before the last step, i = last input."""
    nt, nb, n = xs.shape
    for b in range(nb):
        for j in range(n):
            a[b, j] = z[b, j] if nt == 1 else zero
    for t in range(nt):
        for b in range(nb):
            for j in range(n):
                zo = z[b, j]
                vv = (al * v[b, j] + xs[t, b, j]) - zo * vth
                zz = one if vv > vth else zero
                v[b, j] = vv
                z[b, j] = zz
                vs[t, b, j] = vv
                zs[t, b, j] = zz
                if t == nt - 2:
                    a[b, j] = zz
    for b in range(nb):
        for j in range(n):
            i[b, j] = xs[nt - 1, b, j]


@njit(cache=True)
def readout_step(x, alpha_out, y):
    """Leaky non-spiking readout, one step in place: y = alpha_out*y + x on (batch, n)."""
    k = np.empty(1, y.dtype)
    k[0] = alpha_out
    kk = k[0]
    nb, n = x.shape
    for b in range(nb):
        for j in range(n):
            y[b, j] = kk * y[b, j] + x[b, j]


@njit(cache=True)
def readout_sequence(xs, alpha_out, y, ys):
    """Leaky readout over xs (T, batch, n); y (batch, n) updated in place, trace written to ys."""
    k = np.empty(1, y.dtype)
    k[0] = alpha_out
    kk = k[0]
    nt, nb, n = xs.shape
    for t in range(nt):
        for b in range(nb):
            for j in range(n):
                yy = kk * y[b, j] + xs[t, b, j]
                y[b, j] = yy
                ys[t, b, j] = yy
