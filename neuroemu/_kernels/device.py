"""Device physics kernels: pulses, RESET, drift, read noise, write noise, programming by target.

Arrays are flat views of a tile's device state laid out as (side, device, synapse): the device
at (side s, device d, synapse k) sits at index ``(s * n_dev + d) * M + k`` with ``M`` synapses.
All conductances are in µS, times in s.

State per device: ``g`` is the conductance a read sees; ``p`` is the device's second state
variable, whose meaning depends on the model: the pulse-history term P of ``PCM_SET`` devices,
and for devices with write noise (``prm.write_noise > 0``) the *persistent* conductance that
pulses act on, ``g`` then being the apparent one, ``p`` plus a write-noise offset drawn anew each
time the device is programmed (aihwkit's ``w_persistent`` and apparent weight). Other devices
leave ``p`` unused. Write noise and drift are exclusive (the card loader refuses the
combination): the pulse kernels take the persistent conductance as it is, undrifted.

Aggregated pulses. Where the step law allows it exactly, the update kernels apply the n pulses one
device receives in one update as one step (:func:`pulse_n`) instead of n steps of :func:`pulse_one`.
For a constant-step device (``CONSTANT``, no level grid) pulse m of an update moves the device by
±step·(1 + σ·ξ_m) and clips it to its bounds: a step that depends on neither the state nor the pulse
history, so away from the bounds n_up up and n_dn down pulses, in any order, add up to
n_up·up − n_dn·down plus one normal of variance σ²·(n_up·up² + n_dn·down²), the same law as the
sum of the n draws. Clipping makes the order matter only when the walk of partial sums reaches a
bound, so :func:`walk_clear` asks the walk's drift plus :data:`WALK_MARGIN` standard deviations of
its noise to fit between the device and both bounds (compared as squares) (by Lévy's inequality the walk then reaches a
bound with probability at most 4·Φ(−WALK_MARGIN) ≈ 2.5e-15); otherwise, and for a device whose
conductance drifts between two pulses (drift already at age 0: t_offset > t0), the pulses are
applied one by one. A single pulse is the same arithmetic as :func:`pulse_one` (the same bits).
Write noise does not break the law: pulses act on the persistent conductance and only the last
write's offset is seen. State-dependent steps (soft bounds, exponential steps, PCM's SET) and level
grids (stochastic rounding at every pulse) take their pulses one by one.
"""

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .rng import normal, uniform

# Pulse laws.
PCM_SET = 0  # Nandakumar et al. 2018: state- and history-dependent stochastic SET
CONSTANT = 1  # constant step, hard bounds
SOFT_BOUNDS = 2  # step shrinks linearly towards the bound it moves to
EXP_STEP = 3  # exponential step (aihwkit ExpStepDevice)

# Read-noise laws.
READ_LINEAR = 0  # σ = rel·G + abs
READ_1F = 1  # accumulating 1/f noise (Joshi et al. 2020)

_ROUND_SALT = 0x5851F42D4C957F2D  # separates the rounding stream from the step-noise stream
_WRITE_SALT = 0x2545F4914F6CDD1D  # separates the write-noise stream from the other two


class DeviceParams(NamedTuple):
    """Card numbers a kernel needs (floats only; see neuroemu.hardware.cards for their meaning)."""

    p_factor: float  # exp(-1/decay_pulses)
    mean_g: float
    mean_0: float
    mean_p: float
    std_g: float
    std_0: float
    std_p: float
    dw_std: float
    es_a: float
    es_b: float
    es_A_up: float
    es_A_down: float
    es_gamma_up: float
    es_gamma_down: float
    g_min: float
    g_max: float
    g_mid: float
    levels: float  # 0 = continuous
    reset_mean: float
    reset_std: float
    read_rel: float
    read_abs: float
    t0: float
    t_offset: float
    q: float
    q_exp: float
    q_floor: float
    q_max: float
    t_read: float
    write_noise: float  # std of the write-noise offset (µS); 0 = none


@njit(cache=True, inline="always")
def _round_levels(g, prm, seed, key, m):
    """Stochastic rounding of g to the card's level grid (unbiased: E[result] = g)."""
    step = (prm.g_max - prm.g_min) / (prm.levels - 1.0)
    x = (g - prm.g_min) / step
    lo = np.floor(x)
    if uniform(seed ^ _ROUND_SALT, key, m) < x - lo:
        lo += 1.0
    # a device whose own bound lies beyond g_min/g_max (bounds_dtod) still has only `levels` values
    lo = min(max(lo, 0.0), prm.levels - 1.0)
    return prm.g_min + lo * step


@njit(cache=True, inline="always")
def pulse_one(law, g, p, up, down, lo, hi, sign, prm, seed, key, m):
    """One programming pulse on one device. Returns (g, p).

    ``sign`` > 0 moves the conductance up, < 0 down (ignored by PCM_SET, which only SETs).
    ``up``/``down`` are the device's step sizes (device-to-device spread applied), ``lo``/``hi``
    its bounds. The random numbers are keyed by (seed, key, m): key = device index, m = pulse number.
    With write noise the step acts on the persistent conductance ``p``, which is clipped and rounded
    to the levels; the returned apparent conductance is ``p`` plus a fresh write-noise offset
    (not clipped: it is what a read sees, not a device state).
    """
    xi = normal(seed, key, m)
    if law == PCM_SET:
        p = p * prm.p_factor
        mean = prm.mean_g * g + prm.mean_0 + prm.mean_p * p
        std = prm.std_g * g + prm.std_0 + prm.std_p * p
        g = g + mean + std * xi
    else:
        if prm.write_noise > 0.0:
            g = p
        noise = 1.0 + prm.dw_std * xi
        if sign > 0:
            if law == CONSTANT:
                y = 1.0
            elif law == SOFT_BOUNDS:
                y = (hi - g) / (hi - prm.g_mid)
            else:
                z = 2.0 * prm.es_a * (g - prm.g_mid) / (hi - lo) + prm.es_b
                y = max(1.0 - prm.es_A_up * np.exp(prm.es_gamma_up * z), 0.0)
            g = g + y * up * noise
        else:
            if law == CONSTANT:
                y = 1.0
            elif law == SOFT_BOUNDS:
                y = (g - lo) / (prm.g_mid - lo)
            else:
                z = 2.0 * prm.es_a * (g - prm.g_mid) / (hi - lo) + prm.es_b
                y = max(1.0 - prm.es_A_down * np.exp(-prm.es_gamma_down * z), 0.0)
            g = g - y * down * noise
    g = min(max(g, lo), hi)
    if prm.levels > 0.0:
        g = _round_levels(g, prm, seed, key, m)
    if law != PCM_SET and prm.write_noise > 0.0:
        p = g
        g = p + prm.write_noise * normal(seed ^ _WRITE_SALT, key, m)
    return g, p


#: Standard deviations of the walk's noise that :func:`walk_clear` keeps between an aggregated walk
#: and each bound: the walk of single pulses then reaches a bound with probability at most
#: 4·Φ(−8) ≈ 2.5e-15 per device and update (a numerical tolerance, not a device property).
WALK_MARGIN = 8.0


@njit(cache=True, inline="always")
def steps_add_up(law, prm):
    """Whether the pulses of one device in one update may be applied as one step (:func:`pulse_n`):
    a constant step (no state or history dependence) on a continuous conductance (no level grid)."""
    return law == CONSTANT and prm.levels == 0.0


@njit(cache=True, inline="always")
def walk_clear(g, p, up, down, lo, hi, n_up, n_dn, nu, prm):
    """Whether n_up up and n_dn down pulses of a constant-step device at (drifted) conductance ``g``
    (with write noise: persistent conductance ``p``) stay clear of its bounds in any order: the drift
    n_up·up (n_dn·down) plus :data:`WALK_MARGIN` standard deviations of the walk's noise fit below
    ``hi`` (above ``lo``), and the device does not drift between two pulses (its drift factor at age 0
    is 1)."""
    x = p if prm.write_noise > 0.0 else g
    room_up = hi - x - n_up * up
    room_dn = x - lo - n_dn * down
    need = (WALK_MARGIN * prm.dw_std) ** 2 * (n_up * up * up + n_dn * down * down)  # margin², no square root
    return (room_up >= 0.0 and room_dn >= 0.0 and room_up * room_up >= need and room_dn * room_dn >= need
            and drift_factor(nu, 0.0, prm) == 1.0)


_SQRT_COUNTS = np.sqrt(np.arange(64.0))  # sqrt(n) of small counts (IEEE square roots: math.sqrt's bits)


@njit(cache=True, inline="always")
def _sqrt_count(n):
    """sqrt(float(n)) for a pulse count n >= 0, from a table below 64 (a library call costs more)."""
    return _SQRT_COUNTS[n] if n < 64 else math.sqrt(float(n))


@njit(cache=True, inline="always")
def pulse_n(g, p, up, down, lo, hi, n_up, n_dn, prm, seed, key, m):
    """``n_up`` up and ``n_dn`` down pulses (n_up + n_dn >= 1) on one constant-step device as one
    step; returns (g, p). The step is n_up·up − n_dn·down plus σ·sqrt(n_up·up² + n_dn·down²)·ξ with
    one normal ξ keyed by (seed, key, m), clipped to the bounds once; with write noise it acts on the
    persistent conductance ``p`` and the apparent one gets one fresh offset. Exact in law where
    :func:`walk_clear` holds (see the module docstring). One pulse is computed as :func:`pulse_one`
    computes it (same keys, same bits); so is a one-sided run written as step·(n + σ·sqrt(n)·ξ)."""
    xi = normal(seed, key, m)
    if prm.write_noise > 0.0:
        g = p
    if n_dn == 0:
        g = g + up * (float(n_up) + prm.dw_std * _sqrt_count(n_up) * xi)
    elif n_up == 0:
        g = g - down * (float(n_dn) + prm.dw_std * _sqrt_count(n_dn) * xi)
    else:
        g = g + (n_up * up - n_dn * down) + prm.dw_std * math.sqrt(n_up * up * up + n_dn * down * down) * xi
    g = min(max(g, lo), hi)
    if prm.write_noise > 0.0:
        p = g
        g = p + prm.write_noise * normal(seed ^ _WRITE_SALT, key, m)
    return g, p


@njit(cache=True, inline="always")
def drift_factor(nu, age, prm):
    """(max(age + t_offset, t0)/t0)^-ν: no drift before t0 after programming."""
    if nu == 0.0:
        return 1.0
    r = (age + prm.t_offset) / prm.t0
    if r <= 1.0:
        return 1.0
    return r ** (-nu)


@njit(cache=True)
def pulse_tile(g, p, tprog, npulse, up, down, lo, hi, stuck, nu, counts, start, n_dev, bidir, law, prm, seed, t):
    """Apply signed pulse counts to a tile, synapse by synapse.

    counts[k] pulses go to synapse k: bidirectional devices get |n| up (n > 0) or down (n < 0)
    pulses on side 0; SET-only devices get |n| SETs on side 0 (n > 0) or side 1 (n < 0). The pulses
    go round-robin over the ``n_dev`` devices of that side starting at ``start[k]`` (``start`` may be
    empty: start at device 0). Stuck devices take the pulse (it is counted) but do not move.
    A pulse acts on the device's present (drifted) conductance, G·(age/t0)^-ν (with write noise: on
    its persistent conductance, see :func:`pulse_one`), and restarts its drift clock.
    """
    m_syn = counts.size
    for k in range(m_syn):
        if counts[k] != 0:
            pulse_synapse(g, p, tprog, npulse, up, down, lo, hi, stuck, nu, k, counts[k],
                          start[k] if start.size > 0 else 0, m_syn, n_dev, bidir, law, prm, seed, t)


@njit(cache=True, inline="always")
def pulse_synapse(g, p, tprog, npulse, up, down, lo, hi, stuck, nu, k, n, s0, m_syn, n_dev, bidir, law, prm, seed, t):
    """n signed pulses to synapse k, round-robin over its side's devices from device s0 (the rules
    of :func:`pulse_tile`)."""
    sign = 1 if n > 0 else -1
    side = 0 if (bidir or n > 0) else 1
    for m in range(abs(n)):
        idx = (side * n_dev + (s0 + m) % n_dev) * m_syn + k
        npulse[idx] += 1
        if stuck[idx] == 0:
            g_now = g[idx] * drift_factor(nu[idx], t - tprog[idx], prm)
            g[idx], p[idx] = pulse_one(law, g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx],
                                       sign, prm, seed, idx, m)
        tprog[idx] = t


@njit(cache=True)
def reset_devices(g, p, tprog, nreset, lo, hi, stuck, index, prm, seed, t):
    """RESET the devices at ``index``: G ~ N(reset_mean, reset_std) clipped to the bounds, P = 1.

    With write noise the clipped value is the persistent conductance ``p`` and ``g`` gets a fresh
    write-noise offset on top (a RESET programs the device like a pulse does).
    """
    for j in range(index.size):
        idx = index[j]
        nreset[idx] += 1
        tprog[idx] = t
        p[idx] = 1.0
        if stuck[idx] == 0:
            v = prm.reset_mean + prm.reset_std * normal(seed, idx, 0)
            v = min(max(v, lo[idx]), hi[idx])
            if prm.write_noise > 0.0:
                p[idx] = v
                v = v + prm.write_noise * normal(seed ^ _WRITE_SALT, idx, 0)
            g[idx] = v


@njit(cache=True, inline="always")
def read_std(g_prog, g_drift, age, read_law, prm):
    """Standard deviation of one read of a device (µS)."""
    if read_law == READ_LINEAR:
        return prm.read_rel * abs(g_drift) + prm.read_abs
    q = min(prm.q / max((abs(g_prog) / prm.g_max) ** prm.q_exp, prm.q_floor), prm.q_max)
    tt = age + prm.t0
    return abs(g_drift) * q * np.sqrt(np.log((tt + prm.t_read) / (2.0 * prm.t_read)))


@njit(cache=True)
def read_devices(g, tprog, nu, t, read_law, prm, seed, noisy, out):
    """Conductance of each device at time t (drift), plus one read of noise when ``noisy``.

    Read noise is noise of the measured read current, Gaussian and not clipped (a single noisy read
    of a device near 0 µS can come out negative). This keeps per-device reads exactly equivalent to
    the output-referred noise of a tile read. (aihwkit's PCM model clamps such reads at 0; the
    difference only touches devices within a few σ of 0 µS.)
    """
    for idx in range(g.size):
        age = t - tprog[idx]
        gd = g[idx] * drift_factor(nu[idx], age, prm)
        if noisy:
            gd = gd + read_std(g[idx], gd, age, read_law, prm) * normal(seed, idx, 0)
        out[idx] = gd
    return out


@njit(cache=True, inline="always")
def synapse_weight(g, tprog, nu, t, k, m_syn, n_side, n_dev, g_ref, read_law, prm):
    """(Σ_d G(+) − Σ_d G(−) or − n_dev·g_ref, Σ σ_read²) of synapse k at time t, in µS and µS²."""
    acc = 0.0
    v = 0.0
    for s in range(n_side):
        sgn = 1.0 if s == 0 else -1.0
        for d in range(n_dev):
            idx = (s * n_dev + d) * m_syn + k
            age = t - tprog[idx]
            gd = g[idx] * drift_factor(nu[idx], age, prm)
            acc += sgn * gd
            sd = read_std(g[idx], gd, age, read_law, prm)
            v += sd * sd
    if n_side == 1:
        acc -= n_dev * g_ref
    return acc, v


@njit(cache=True)
def tile_weights(g, tprog, nu, t, n_side, n_dev, g_ref, inv_scale, read_law, prm, w, var):
    """Effective weights of a tile at time t and the per-read noise variance of each weight.

    w[k] = (Σ_d G(+) − Σ_d G(−)) / scale (or − n_dev·g_ref for one-sided tiles), with drift;
    var[k] = Σ over the synapse's devices of σ_read² / scale². With var, one MVM read with per-device
    Gaussian noise equals the noiseless MVM plus output noise of variance Σ_i x_i² var_i.
    """
    m_syn = w.size
    for k in range(m_syn):
        acc, v = synapse_weight(g, tprog, nu, t, k, m_syn, n_side, n_dev, g_ref, read_law, prm)
        w[k] = acc * inv_scale
        var[k] = v * inv_scale * inv_scale


@njit(cache=True)
def program_inference(g_target, prm, c0, c1, c2, prog_scale, nu_coef, seed, g_out, nu_out):
    """Program PCM to targets with Joshi et al. 2020 statistics (aihwkit PCMLikeNoiseModel).

    g_prog = max(0, g_t + σ_prog ξ₁), σ_prog = (c0 + c1 ĝ + c2 ĝ²)·prog_scale, ĝ = g_t/g_max;
    ν = |μ_ν + σ_ν ξ₂| with μ_ν, σ_ν clipped affine functions of ln ĝ (nu_coef = (μ_a, μ_b, μ_lo,
    μ_hi, σ_a, σ_b, σ_lo, σ_hi)).
    """
    for i in range(g_target.size):
        gt = g_target[i]
        gh = gt / prm.g_max
        sig = (c0 + c1 * gh + c2 * gh * gh) * prog_scale
        g_out[i] = max(gt + sig * normal(seed, i, 0), 0.0)
        lg = np.log(max(gh, 1e-7))
        mu = min(max(nu_coef[0] * lg + nu_coef[1], nu_coef[2]), nu_coef[3])
        sn = min(max(nu_coef[4] * lg + nu_coef[5], nu_coef[6]), nu_coef[7])
        nu_out[i] = abs(mu + sn * normal(seed, i, 1))
