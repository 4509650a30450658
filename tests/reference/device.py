"""Plain-numpy twin of :mod:`neuroemu._kernels.device`.

Same state layout as the kernels (flat arrays, device at ``(side * n_dev + d) * M + k``) and the
same random numbers (``tests.reference.rng``). Functions take copies of the state and return new
arrays instead of writing in place. Transcendental functions (exp, log, pow) come from numpy's
vectorised implementations here and from libm in the kernels, so results that pass through them
agree to a few ulp rather than bit for bit; everything else is the same arithmetic in the same
order and agrees exactly.
"""

from __future__ import annotations

import numpy as np

import math

from neuroemu._kernels.device import (CONSTANT, EXP_STEP, PCM_SET, READ_LINEAR, SOFT_BOUNDS, WALK_MARGIN,
                                      _ROUND_SALT, _WRITE_SALT)

from . import rng as R


def round_levels(g, prm, seed, key, m):
    """Stochastic rounding of g to the card's level grid, keyed by (seed ^ salt, key, m)."""
    step = (prm.g_max - prm.g_min) / (prm.levels - 1.0)
    x = (g - prm.g_min) / step
    lo = np.floor(x)
    lo = np.where(R.uniform(int(seed) ^ _ROUND_SALT, key, m) < x - lo, lo + 1.0, lo)
    lo = np.minimum(np.maximum(lo, 0.0), prm.levels - 1.0)
    return prm.g_min + lo * step


def pulse_one(law, g, p, up, down, lo, hi, sign, prm, seed, key, m):
    """One pulse on each of the devices given (arrays broadcast). Returns (g, p)."""
    xi = R.normal(seed, key, m)
    g = np.asarray(g, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if law == PCM_SET:
        p = p * prm.p_factor
        mean = prm.mean_g * g + prm.mean_0 + prm.mean_p * p
        std = prm.std_g * g + prm.std_0 + prm.std_p * p
        g = g + mean + std * xi
    else:
        if prm.write_noise > 0.0:  # the step acts on the persistent conductance
            g = p
        noise = 1.0 + prm.dw_std * xi
        if law == CONSTANT:
            y_up = y_down = np.ones_like(g)
        elif law == SOFT_BOUNDS:
            y_up = (hi - g) / (hi - prm.g_mid)
            y_down = (g - lo) / (prm.g_mid - lo)
        elif law == EXP_STEP:
            z = 2.0 * prm.es_a * (g - prm.g_mid) / (hi - lo) + prm.es_b
            y_up = np.maximum(1.0 - prm.es_A_up * np.exp(prm.es_gamma_up * z), 0.0)
            y_down = np.maximum(1.0 - prm.es_A_down * np.exp(-prm.es_gamma_down * z), 0.0)
        else:
            raise ValueError(f"unknown law {law}")
        g = np.where(np.asarray(sign) > 0, g + y_up * up * noise, g - y_down * down * noise)
    g = np.minimum(np.maximum(g, lo), hi)
    if prm.levels > 0.0:
        g = round_levels(g, prm, seed, key, m)
    if law != PCM_SET and prm.write_noise > 0.0:  # apparent = persistent + a fresh write-noise offset
        p = g
        g = p + prm.write_noise * R.normal(int(seed) ^ _WRITE_SALT, key, m)
    return g, p


def steps_add_up(law, prm) -> bool:
    """Whether a device's pulses of one update may be one step: constant step, no level grid."""
    return law == CONSTANT and prm.levels == 0.0


def walk_clear(g, p, up, down, lo, hi, n_up, n_dn, nu, prm) -> bool:
    """Whether n_up up and n_dn down constant steps from g (with write noise: p) stay WALK_MARGIN
    standard deviations of their noise clear of both bounds, on a device that does not drift at age 0."""
    x = float(p if prm.write_noise > 0.0 else g)
    room_up = hi - x - n_up * up
    room_dn = x - lo - n_dn * down
    need = (WALK_MARGIN * prm.dw_std) ** 2 * (n_up * up * up + n_dn * down * down)
    return bool(room_up >= 0.0 and room_dn >= 0.0 and room_up * room_up >= need and room_dn * room_dn >= need
                and float(drift_factor(nu, 0.0, prm)) == 1.0)


def pulse_n(g, p, up, down, lo, hi, n_up, n_dn, prm, seed, key, m):
    """n_up up and n_dn down constant-step pulses as one step, one normal keyed by (seed, key, m);
    one scalar device. Returns (g, p)."""
    xi = float(R.normal(seed, key, m))
    g, p = float(g), float(p)
    if prm.write_noise > 0.0:
        g = p
    if n_dn == 0:
        g = g + up * (float(n_up) + prm.dw_std * (math.sqrt(n_up) if n_up > 1 else 1.0) * xi)
    elif n_up == 0:
        g = g - down * (float(n_dn) + prm.dw_std * (math.sqrt(n_dn) if n_dn > 1 else 1.0) * xi)
    else:
        g = g + (n_up * up - n_dn * down) + prm.dw_std * math.sqrt(n_up * up * up + n_dn * down * down) * xi
    g = min(max(g, lo), hi)
    if prm.write_noise > 0.0:
        p = g
        g = p + prm.write_noise * float(R.normal(int(seed) ^ _WRITE_SALT, key, m))
    return g, p


def pulse_tile(g, p, tprog, npulse, up, down, lo, hi, stuck, nu, counts, start, n_dev, bidir, law, prm, seed, t):
    """Signed pulse counts per synapse, round-robin over the devices of one side.

    Returns new (g, p, tprog, npulse). Vectorised over synapses; the m-th pulse of every synapse is
    applied at once (for a fixed m, different synapses address different devices).
    """
    g, p, tprog, npulse = (np.array(a, copy=True) for a in (g, p, tprog, npulse))
    counts = np.asarray(counts).astype(np.int64)
    m_syn = counts.size
    k = np.arange(m_syn)
    sign = np.where(counts > 0, 1, -1)
    side = np.where(bidir | (counts > 0), 0, 1)
    s0 = np.asarray(start, dtype=np.int64) if np.size(start) > 0 else np.zeros(m_syn, np.int64)
    n_abs = np.abs(counts)
    for m in range(int(n_abs.max(initial=0))):
        sel = n_abs > m
        ks = k[sel]
        idx = (side[sel] * n_dev + (s0[sel] + m) % n_dev) * m_syn + ks
        npulse[idx] += 1
        move = stuck[idx] == 0
        i = idx[move]
        g_now = g[i] * drift_factor(nu[i], t - tprog[i], prm)  # a pulse acts on the drifted conductance
        g[i], p[i] = pulse_one(law, g_now, p[i], up[i], down[i], lo[i], hi[i], sign[sel][move], prm, seed, i, m)
        tprog[idx] = t
    return g, p, tprog, npulse


def reset_devices(g, p, tprog, nreset, lo, hi, stuck, index, prm, seed, t):
    """RESET the devices at ``index``. Returns new (g, p, tprog, nreset)."""
    g, p, tprog, nreset = (np.array(a, copy=True) for a in (g, p, tprog, nreset))
    index = np.asarray(index, dtype=np.int64)
    np.add.at(nreset, index, 1)
    tprog[index] = t
    p[index] = 1.0
    i = index[stuck[index] == 0]
    v = prm.reset_mean + prm.reset_std * R.normal(seed, i, 0)
    v = np.minimum(np.maximum(v, lo[i]), hi[i])
    if prm.write_noise > 0.0:
        p[i] = v
        v = v + prm.write_noise * R.normal(int(seed) ^ _WRITE_SALT, i, 0)
    g[i] = v
    return g, p, tprog, nreset


def drift_factor(nu, age, prm):
    """(max(age + t_offset, t0)/t0)^-ν, elementwise (1 where ν = 0)."""
    nu, age = np.broadcast_arrays(np.asarray(nu, dtype=np.float64), np.asarray(age, dtype=np.float64))
    r = (age + prm.t_offset) / prm.t0
    drifting = (nu != 0.0) & (r > 1.0)
    out = np.ones(nu.shape)
    out[drifting] = r[drifting] ** (-nu[drifting])
    return out


def read_std(g_prog, g_drift, age, read_law, prm):
    """Standard deviation of one read (µS), elementwise."""
    g_prog, g_drift, age = (np.asarray(a, dtype=np.float64) for a in (g_prog, g_drift, age))
    if read_law == READ_LINEAR:
        return prm.read_rel * np.abs(g_drift) + prm.read_abs
    q = np.minimum(prm.q / np.maximum((np.abs(g_prog) / prm.g_max) ** prm.q_exp, prm.q_floor), prm.q_max)
    tt = age + prm.t0
    return np.abs(g_drift) * q * np.sqrt(np.log((tt + prm.t_read) / (2.0 * prm.t_read)))


def read_devices(g, tprog, nu, t, read_law, prm, seed, noisy):
    """Conductance of every device at time t, plus one noisy read when ``noisy`` (not clipped)."""
    g = np.asarray(g, dtype=np.float64)
    age = t - np.asarray(tprog)
    gd = g * drift_factor(nu, age, prm)
    if noisy:
        idx = np.arange(g.size)
        gd = gd + read_std(g, gd, age, read_law, prm) * R.normal(seed, idx, 0)
    return gd


def tile_weights(g, tprog, nu, t, n_side, n_dev, g_ref, inv_scale, read_law, prm):
    """Effective weights and per-read weight variance (same summation order as the kernel)."""
    g = np.asarray(g, dtype=np.float64)
    m_syn = g.size // (n_side * n_dev)
    age = t - np.asarray(tprog)
    gd = g * drift_factor(nu, age, prm)
    sd = read_std(g, gd, age, read_law, prm)
    acc = np.zeros(m_syn)
    v = np.zeros(m_syn)
    for s in range(n_side):
        sgn = 1.0 if s == 0 else -1.0
        for d in range(n_dev):
            sl = slice((s * n_dev + d) * m_syn, (s * n_dev + d + 1) * m_syn)
            acc = acc + sgn * gd[sl]
            v = v + sd[sl] * sd[sl]
    if n_side == 1:
        acc = acc - n_dev * g_ref
    return acc * inv_scale, v * inv_scale * inv_scale


def program_inference(g_target, prm, c0, c1, c2, prog_scale, nu_coef, seed):
    """PCM programming with Joshi et al. 2020 statistics. Returns (g_prog, nu)."""
    gt = np.asarray(g_target, dtype=np.float64)
    i = np.arange(gt.size)
    gh = gt / prm.g_max
    sig = (c0 + c1 * gh + c2 * gh * gh) * prog_scale
    g_out = np.maximum(gt + sig * R.normal(seed, i, 0), 0.0)
    lg = np.log(np.maximum(gh, 1e-7))
    mu = np.minimum(np.maximum(nu_coef[0] * lg + nu_coef[1], nu_coef[2]), nu_coef[3])
    sn = np.minimum(np.maximum(nu_coef[4] * lg + nu_coef[5], nu_coef[6]), nu_coef[7])
    nu = np.abs(mu + sn * R.normal(seed, i, 1))
    return g_out, nu
