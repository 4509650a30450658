"""Update-scheme kernels: stochastic pulse coincidences, accumulate-and-pulse, sparse pulses, column reads.

Device state arrays are the flat tile arrays of :mod:`.device` (layout (side, device, synapse)); every
pulse goes through :func:`.device.pulse_one` with the same bookkeeping as :func:`.device.pulse_tile`:
the pulse is counted in ``npulse`` and stamps ``tprog`` even on a stuck device, which does not move;
bidirectional tiles take up/down pulses on side 0; SET-only pairs take a positive change on side 0
and a negative one on side 1. ``arb`` is a per-synapse arbitration counter (empty array: always
device 0): pulses go round-robin over the ``n_dev`` devices of a side starting at ``arb[k]``, and
the counter advances by the number of pulses issued (Boybat et al. 2018).

Stochastic pulse coincidences (Gokmen & Vlasov 2016) are drawn as follows. For sample ``b`` of a
call keyed by ``seed``, column ``j`` gets a bit mask of ``BL`` slots with K ~ Binomial(BL, p_j) set
bits: K from one uniform by inverse CDF, then K distinct positions by Floyd's sampling algorithm
(complement when K > BL/2). Rows likewise. Synapse (i, j) receives one pulse for every slot where
both fire, i.e. popcount(mask_i & mask_j) pulses, in slot order. The kernel does not test every
(row, column) pair: it lists, per (sample, slot), the columns that fire and, per row, the (sample,
slot) events where the row fires, then walks row by row, so the work is proportional to the
number of coincidences and each row's device state stays in cache. Pulses of one synapse are
applied in (sample, slot) order; different synapses are independent, so the visiting order does
not change the result. The step noise of the pulse at slot t of sample b on device ``idx`` is keyed
by (dseed, b·BL + t, idx).
"""

import math

import numpy as np
from numba import njit, uint64
from numba.cpython.unsafe.numbers import trailing_zeros

from .device import drift_factor as _drift
from .device import pulse_one
from .device import read_std as _read_std
from .rng import key, uniform_k

_ONE = uint64(1)
_ZERO = uint64(0)
_FULL = uint64(0xFFFFFFFFFFFFFFFF)

#: Largest supported bit length (one uint64 mask per row/column).
MAX_BL = 64


@njit(cache=True, inline="always")
def ipow(q, n):
    """q**n for an integer n >= 0 by binary powering (a fixed sequence of multiplications, so the
    numpy twin reproduces it bit for bit)."""
    r = 1.0
    b = q
    while n > 0:
        if n & 1:
            r *= b
        b *= b
        n >>= 1
    return r


@njit(cache=True, inline="always")
def binomial_inv(u, n, p):
    """K ~ Binomial(n, p) from one uniform u in [0, 1) by inverse CDF (p mirrored above 1/2)."""
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    flip = p > 0.5
    if flip:
        p = 1.0 - p
    q = 1.0 - p
    f = ipow(q, n)
    cdf = f
    r = p / q
    k = 0
    while u >= cdf and k < n:
        f = f * r * ((n - k) / (k + 1.0))
        k += 1
        cdf += f
    return n - k if flip else k


@njit(cache=True, inline="always")
def draw_mask(kk, base, n_set, bl):
    """A uint64 with ``n_set`` distinct bits set among the low ``bl``, uniformly (Floyd's algorithm);
    uniforms are elements base, base+1, ... of stream kk (at most 32 of them)."""
    comp = n_set > bl // 2
    m = bl - n_set if comp else n_set
    mask = _ZERO
    c = 0
    for i in range(bl - m, bl):
        t = int(uniform_k(kk, base + c) * (i + 1))
        c += 1
        bit = _ONE << uint64(t)
        if mask & bit:
            mask |= _ONE << uint64(i)
        else:
            mask |= bit
    if comp:
        full = _FULL if bl == 64 else (_ONE << uint64(bl)) - _ONE
        mask = full ^ mask
    return mask


@njit(cache=True)
def _grow(a, need):
    out = np.empty(max(need, 2 * a.size), a.dtype)
    out[: a.size] = a
    return out


@njit(cache=True)
def coincidence_update(x, d, c_ab, balance, bl, seed, dseed, g, p, tprog, npulse, up, down, lo, hi, stuck, arb,
                       n_dev, bidir, law, prm, t):
    """Stochastic pulse-coincidence update for ΔW = -lr·dᵀx, samples in order. Returns pulses issued.

    x: (batch, n_in), d: (batch, n_out) (float32 or float64, C-contiguous). ``c_ab`` = A·B =
    lr/(Δw_pulse·BL). With ``balance`` the factors are rebalanced per sample so that both sides have
    the same largest probability: A = sqrt(c_ab·x_max/d_max), B = sqrt(c_ab·d_max/x_max); otherwise
    A = B = sqrt(c_ab). Column j fires with p = min(B|x_j|, 1) per slot, row i with min(A|d_i|, 1);
    a coincidence moves device (i, j) in direction -sign(x_j·d_i). Masks are keyed by ``seed``,
    step noise by ``dseed`` (see the module docstring).
    """
    nb, n_in = x.shape
    n_out = d.shape[1]
    m_syn = n_in * n_out
    n_e = nb * bl
    coff = np.zeros(n_e + 1, np.int64)
    cols = np.empty(max(64, 4 * n_in * nb), np.int32)
    ev_row = np.empty(max(64, 2 * n_out * nb), np.int32)
    ev_e = np.empty(ev_row.size, np.int32)
    tmp_j = np.empty(n_in * bl, np.int32)
    tmp_t = np.empty(n_in * bl, np.int32)
    cnt = np.zeros(bl, np.int64)
    nxt = np.zeros(bl, np.int64)
    n_cols = 0
    n_ev = 0
    # ---- phase 1: draw the masks of every sample; list firing columns per (sample, slot) and
    # firing (sample, slot) events per row.
    for b in range(nb):
        e0 = b * bl
        xm = 0.0
        for j in range(n_in):
            a = abs(float(x[b, j]))
            if a > xm:
                xm = a
        dm = 0.0
        for i in range(n_out):
            a = abs(float(d[b, i]))
            if a > dm:
                dm = a
        for s in range(bl):
            coff[e0 + s] = n_cols
        if not (xm > 0.0 and dm > 0.0) or not (math.isfinite(xm) and math.isfinite(dm)):
            continue
        if balance:
            fa = math.sqrt(c_ab * xm / dm)
            fb = math.sqrt(c_ab * dm / xm)
        else:
            fa = math.sqrt(c_ab)
            fb = fa
        kc = key(seed, 4 * b)
        kcp = key(seed, 4 * b + 1)
        kr = key(seed, 4 * b + 2)
        krp = key(seed, 4 * b + 3)
        for s in range(bl):
            cnt[s] = 0
        npair = 0
        for j in range(n_in):
            xv = float(x[b, j])
            if xv == 0.0:
                continue
            pj = fb * abs(xv)
            if pj > 1.0:
                pj = 1.0
            kk = binomial_inv(uniform_k(kc, j), bl, pj)
            if kk == 0:
                continue
            mask = draw_mask(kcp, 64 * j, kk, bl)
            sj = j if xv > 0.0 else ~j
            while mask != _ZERO:
                s = trailing_zeros(mask)
                mask &= mask - _ONE
                tmp_j[npair] = sj
                tmp_t[npair] = s
                cnt[s] += 1
                npair += 1
        if npair == 0:
            continue
        if n_cols + npair > cols.size:
            cols = _grow(cols, n_cols + npair)
        pos = n_cols
        for s in range(bl):
            coff[e0 + s] = pos
            nxt[s] = pos
            pos += cnt[s]
        for q in range(npair):
            s = tmp_t[q]
            cols[nxt[s]] = tmp_j[q]
            nxt[s] += 1
        n_cols = pos
        for i in range(n_out):
            dv = float(d[b, i])
            if dv == 0.0:
                continue
            pi = fa * abs(dv)
            if pi > 1.0:
                pi = 1.0
            kk = binomial_inv(uniform_k(kr, i), bl, pi)
            if kk == 0:
                continue
            mask = draw_mask(krp, 64 * i, kk, bl)
            if n_ev + kk > ev_row.size:
                ev_row = _grow(ev_row, n_ev + kk)
                ev_e = _grow(ev_e, n_ev + kk)
            while mask != _ZERO:
                s = trailing_zeros(mask)
                mask &= mask - _ONE
                if cnt[s] == 0:
                    continue
                ev_row[n_ev] = i
                ev_e[n_ev] = e0 + s if dv > 0.0 else ~(e0 + s)
                n_ev += 1
    coff[n_e] = n_cols
    # ---- phase 2: events grouped by row (stable: (sample, slot) order kept), then the pulses.
    rstart = np.zeros(n_out + 1, np.int64)
    for q in range(n_ev):
        rstart[ev_row[q] + 1] += 1
    for i in range(n_out):
        rstart[i + 1] += rstart[i]
    fill = rstart[:n_out].copy()
    order = np.empty(n_ev, np.int32)
    for q in range(n_ev):
        r = ev_row[q]
        order[fill[r]] = ev_e[q]
        fill[r] += 1
    has_arb = arb.size > 0
    total = 0
    for i in range(n_out):
        base = i * n_in
        for q in range(rstart[i], rstart[i + 1]):
            es = order[q]
            if es >= 0:
                e = es
                sd = 1
            else:
                e = ~es
                sd = -1
            c0 = coff[e]
            c1 = coff[e + 1]
            total += c1 - c0
            for c in range(c0, c1):
                v = cols[c]
                if v >= 0:
                    k = base + v
                    sgn = -sd
                else:
                    k = base + ~v
                    sgn = sd
                side = 0 if (bidir or sgn > 0) else 1
                dev = 0
                if has_arb:
                    dev = arb[k]
                    arb[k] = dev + 1 if dev + 1 < n_dev else 0
                idx = (side * n_dev + dev) * m_syn + k
                npulse[idx] += 1
                tprog[idx] = t
                if stuck[idx] == 0:
                    g[idx], p[idx] = pulse_one(law, g[idx], p[idx], up[idx], down[idx], lo[idx], hi[idx], sgn,
                                               prm, dseed, e, idx)
    return total


@njit(cache=True, inline="always")
def _pulses(k, n, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, m_syn, n_dev, bidir, law, prm, seed, t):
    """|n| pulses on synapse k with pulse_tile's keying (seed, device index, pulse number)."""
    sign = 1 if n > 0 else -1
    side = 0 if (bidir or n > 0) else 1
    na = abs(n)
    s0 = arb[k] if arb.size > 0 else 0
    for m in range(na):
        idx = (side * n_dev + (s0 + m) % n_dev) * m_syn + k
        npulse[idx] += 1
        tprog[idx] = t
        if stuck[idx] == 0:
            g[idx], p[idx] = pulse_one(law, g[idx], p[idx], up[idx], down[idx], lo[idx], hi[idx], sign, prm,
                                       seed, idx, m)
    if arb.size > 0:
        arb[k] = (s0 + na) % n_dev
    return na


@njit(cache=True)
def pulse_sparse(ks, counts, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, m_syn, n_dev, bidir, law, prm,
                 seed, t):
    """Signed pulse counts ``counts[q]`` on synapses ``ks[q]``: :func:`.device.pulse_tile` restricted
    to the listed synapses (same random keys), with the start device taken from and advanced in
    ``arb``. Returns pulses issued."""
    total = 0
    for q in range(ks.size):
        n = counts[q]
        if n != 0:
            total += _pulses(ks[q], n, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, m_syn, n_dev, bidir,
                             law, prm, seed, t)
    return total


@njit(cache=True)
def accumulate_pulse(chi, dw, alpha, eps, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, n_dev, bidir, law,
                     prm, seed, t):
    """Mixed-precision transfer (Nandakumar et al. 2020), one pass over the synapses.

    chi[k] += alpha·dw[k]; n = trunc(chi[k]/eps); chi[k] -= n·eps; n pulses go to synapse k
    (pulse_tile keying; round-robin from ``arb``). ``dw`` may be float32 (it is widened first).
    Returns pulses issued.
    """
    m_syn = chi.size
    total = 0
    for k in range(m_syn):
        c = chi[k] + alpha * float(dw[k])
        n = np.trunc(c / eps)
        if n != 0.0:
            c -= n * eps
            total += _pulses(k, np.int64(n), arb, g, p, tprog, npulse, up, down, lo, hi, stuck, m_syn, n_dev,
                             bidir, law, prm, seed, t)
        chi[k] = c
    return total


@njit(cache=True)
def column_weights(g, tprog, nu, t, n_side, n_dev, g_ref, inv_scale, read_law, prm, j, n_in, w, var):
    """Column j of :func:`.device.tile_weights` (weights and per-read variance), same arithmetic."""
    n_out = w.size
    m_syn = n_out * n_in
    for i in range(n_out):
        k = i * n_in + j
        acc = 0.0
        v = 0.0
        for s in range(n_side):
            sgn = 1.0 if s == 0 else -1.0
            for dd in range(n_dev):
                idx = (s * n_dev + dd) * m_syn + k
                age = t - tprog[idx]
                gd = g[idx] * _drift(nu[idx], age, prm)
                acc += sgn * gd
                sd = _read_std(g[idx], gd, age, read_law, prm)
                v += sd * sd
        if n_side == 1:
            acc -= n_dev * g_ref
        w[i] = acc * inv_scale
        var[i] = v * inv_scale * inv_scale
