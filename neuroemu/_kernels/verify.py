"""Kernels of program-and-verify on a few synapses of a tile: reads and pulses of the devices of
the synapses listed in ``ks`` only, with the same random numbers the whole-tile kernels of
:mod:`neuroemu._kernels.device` draw for those devices.

The device layout is the tile's, (side, device, synapse) flattened: the device at (side s, device
d, synapse k) sits at index ``(s * n_dev + d) * m_syn + k``. Every random number is keyed by that
device index (and the pulse number), so reading or pulsing a subset of the synapses gives, bit for
bit, what the whole-tile kernels give for them: :func:`read_synapses` equals ``read_devices`` at
those devices, :func:`pulse_synapses` equals ``pulse_tile`` with counts that are zero elsewhere.
"""

from numba import njit

from .device import drift_factor, pulse_synapse, read_std
from .rng import normal


@njit(cache=True)
def read_synapses(g, tprog, nu, t, ks, m_syn, n_side, n_dev, read_law, prm, seed, noisy, out):
    """out[s, d, j]: the conductance of device (s, d) of synapse ks[j] at time t (drift), plus one
    read of noise when ``noisy``; ``out`` has shape (n_side, n_dev, len(ks))."""
    for s in range(n_side):
        for d in range(n_dev):
            row = (s * n_dev + d) * m_syn
            for j in range(ks.size):
                idx = row + ks[j]
                age = t - tprog[idx]
                gd = g[idx] * drift_factor(nu[idx], age, prm)
                if noisy:
                    gd = gd + read_std(g[idx], gd, age, read_law, prm) * normal(seed, idx, 0)
                out[s, d, j] = gd
    return out


@njit(cache=True)
def pulse_synapses(g, p, tprog, npulse, up, down, lo, hi, stuck, nu, ks, counts, start, m_syn, n_dev, bidir, law,
                   prm, seed, t):
    """Apply counts[j] signed pulses to synapse ks[j] (``pulse_tile``'s rules: SET-only devices take
    n > 0 pulses on side 0 and n < 0 on side 1; round-robin over the side's devices from
    ``start[j]``, or from device 0 when ``start`` is empty)."""
    for j in range(ks.size):
        if counts[j] != 0:
            pulse_synapse(g, p, tprog, npulse, up, down, lo, hi, stuck, nu, ks[j], counts[j],
                          start[j] if start.size > 0 else 0, m_syn, n_dev, bidir, law, prm, seed, t)


@njit(cache=True)
def refresh_candidates(g, tprog, nu, t, m_syn, n_dev, high, min_common, prm, mask):
    """mask[k]: whether synapse k of a differential tile is due for a refresh at time t: the mean
    (drifted, noiseless) conductance of one side is at least ``high`` and that of the other side
    at least ``min_common`` above g_min. Returns the number of such synapses. One pass over the
    devices, the same arithmetic as reading them all (``read_devices``) and averaging each side."""
    count = 0
    for k in range(m_syn):
        g0 = 0.0
        g1 = 0.0
        for s in range(2):
            acc = 0.0
            for d in range(n_dev):
                idx = (s * n_dev + d) * m_syn + k
                gd = g[idx] * drift_factor(nu[idx], t - tprog[idx], prm)
                acc = gd if d == 0 else acc + gd
            if s == 0:
                g0 = acc / n_dev
            else:
                g1 = acc / n_dev
        hi_side = max(g0, g1)
        lo_side = min(g0, g1) - prm.g_min
        due = hi_side >= high and lo_side >= min_common
        mask[k] = due
        count += due
    return count
