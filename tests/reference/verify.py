"""Plain-numpy twin of :mod:`neuroemu._kernels.verify`, and the whole-tile program-and-verify and
refresh that the gathered kernels replace (every device read with noise and a full-size count array
pulsed in each round), kept as the reference the tile's methods are tested against."""

from __future__ import annotations

import numpy as np

from . import device as RD
from . import rng as R


def read_synapses(g, tprog, nu, t, ks, m_syn, n_side, n_dev, read_law, prm, seed, noisy):
    """(n_side, n_dev, len(ks)) reads of the devices of synapses ks: ``read_devices`` at those devices."""
    ks = np.asarray(ks, dtype=np.int64)
    idx = (np.arange(n_side * n_dev)[:, None] * m_syn + ks[None, :]).reshape(-1)
    age = t - np.asarray(tprog)[idx]
    g = np.asarray(g, dtype=np.float64)[idx]
    gd = g * RD.drift_factor(np.asarray(nu)[idx], age, prm)
    if noisy:
        gd = gd + RD.read_std(g, gd, age, read_law, prm) * R.normal(seed, idx, 0)
    return gd.reshape(n_side, n_dev, ks.size)


def pulse_synapses(g, p, tprog, npulse, up, down, lo, hi, stuck, nu, ks, counts, start, m_syn, n_dev, bidir, law,
                   prm, seed, t):
    """``pulse_tile`` with counts[j] on synapse ks[j] and none elsewhere. Returns new (g, p, tprog, npulse)."""
    full = np.zeros(m_syn, np.int64)
    full[np.asarray(ks, dtype=np.int64)] = counts
    st = np.zeros(m_syn, np.int64)
    if np.size(start) > 0:
        st[np.asarray(ks, dtype=np.int64)] = start
    return RD.pulse_tile(g, p, tprog, npulse, up, down, lo, hi, stuck, nu, full, st, n_dev, bidir, law, prm, seed, t)


def refresh_candidates(g, tprog, nu, t, m_syn, n_dev, high, min_common, prm):
    """(mask, count) of the synapses due for a refresh, from a noiseless read of every device."""
    from neuroemu._kernels.device import READ_LINEAR

    gd = RD.read_devices(g, tprog, nu, t, READ_LINEAR, prm, 0, False).reshape(2, n_dev, m_syn).mean(axis=1)
    mask = (np.maximum(gd[0], gd[1]) >= high) & (np.minimum(gd[0], gd[1]) - prm.g_min >= min_common)
    return mask, int(mask.sum())


def program_verify_full(tile, target, mask, *, max_pulses=100, tol=None):
    """The whole-tile program-and-verify: every round reads every device (``Tile.read_weights``) and
    pulses a full-size count array (``Tile.pulse``)."""
    k = np.flatnonzero(np.asarray(mask).reshape(-1))
    target = np.asarray(target, dtype=np.float64).reshape(-1)
    if target.size == tile.n_synapses and k.size != tile.n_synapses:
        target = target[k]
    tol = 0.5 * tile.card.nominal_step / tile.scale if tol is None else tol
    start = np.zeros(tile.n_synapses, np.int32)
    active = np.ones(k.size, bool)
    first_sign = None
    for i in range(max_pulses):
        err = target - tile.read_weights().reshape(-1)[k]
        sign = np.sign(err)
        if first_sign is None:
            first_sign = sign
        active &= (np.abs(err) > tol) & (sign == first_sign)
        if not active.any():
            break
        counts = np.zeros(tile.n_synapses, np.int32)
        counts[k[active]] = sign[active].astype(np.int32)
        start[:] = i % tile.n_devices
        tile.pulse(counts, start)


def refresh_full(tile, high, min_common=None, *, max_pulses=100):
    """The whole-tile refresh: a noisy read of every device for the targets, then
    :func:`program_verify_full`."""
    if not tile.differential or not tile.card.pulsable:
        return 0
    if min_common is None:
        min_common = tile.card.nominal_step
    g = tile.conductances().reshape(2, tile.n_devices, -1).mean(axis=1)
    hi_side = np.maximum(g[0], g[1])
    lo_side = np.minimum(g[0], g[1]) - tile.prm.g_min
    mask = (hi_side >= high) & (lo_side >= min_common)
    count = int(mask.sum())
    if count == 0:
        return 0
    target = tile.read_weights().reshape(-1)[mask]
    m2 = mask.reshape(tile.shape)
    tile.reset(m2)
    program_verify_full(tile, target, m2, max_pulses=max_pulses)
    tile.n_refresh += count
    return count

