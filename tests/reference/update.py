"""Plain Python/numpy twins of :mod:`neuroemu._kernels.update`.

The coincidence twin is the textbook formulation: for every sample, draw each column's and each
row's bit mask, then for every (row, column) pair apply popcount(mask_i & mask_j) pulses in slot
order. The kernel gets the same result from per-slot lists walked row by row. Random numbers come
from the rng twin (:mod:`tests.reference.rng`), device physics from the device twin
(:mod:`tests.reference.device`); what is checked here is which pulse goes to which device, with
which random key, in which order. Functions work in place on the arrays they are given, like the
kernels.
"""

from __future__ import annotations

import math

import numpy as np

from . import device as D
from . import rng as R

M32 = (1 << 32) - 1


def key(seed: int, a: int) -> int:
    return int(R.key(seed, a))


def hash_k(k: int, b: int) -> int:
    return int(R.hash_k(k, b))


def uniform_k(k: int, b: int) -> float:
    return float(R.uniform_k(k, b))


def ipow(q: float, n: int) -> float:
    r, b = 1.0, q
    while n > 0:
        if n & 1:
            r *= b
        b *= b
        n >>= 1
    return r


def binomial_inv(u: float, n: int, p: float) -> int:
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


def floyd_step(mask: int, f: int, i: int) -> int:
    """One step of Floyd's sampling: slot t = (f·(i+1)) >> 32 in [0, i], or i if t is taken."""
    t = (f * (i + 1)) >> 32
    return mask | ((1 << i) if mask & (1 << t) else (1 << t))


def floyd_mask(kp: int, base: int, n_set: int, bl: int) -> int:
    comp = n_set > bl // 2
    m = bl - n_set if comp else n_set
    mask = 0
    for c, i in enumerate(range(bl - m, bl)):
        h = hash_k(kp, base + (c >> 1))
        mask = floyd_step(mask, (h >> 32) if c & 1 else (h & M32), i)
    if comp:
        mask = ((1 << bl) - 1) ^ mask
    return mask


def draw_masks(v: np.ndarray, fac: float, bl: int, ku: int, kp: int) -> list[int]:
    """Bit masks of one sample's columns (or rows), firing probability min(fac·|v|, 1)."""
    out = []
    for j in range(v.size):
        p = min(fac * abs(float(v[j])), 1.0)
        kk = binomial_inv(uniform_k(ku, j), bl, p)
        out.append(floyd_mask(kp, 32 * j, kk, bl) if kk else 0)
    return out


def sample_factors(xm, dm, lr, dw, balance, bl_manage, bl) -> tuple[int, float, float]:
    """(BL, A, B) of one sample: aihwkit's BL management (x_max, d_max floored at dw², BL = min(ceil(
    lr·x_max·d_max/dw), bl)) and update management (A·B = lr/(dw·BL) split by sqrt(x_max/d_max))."""
    if bl_manage:
        xm, dm = max(xm, dw * dw), max(dm, dw * dw)
        n = min(max(math.ceil(lr * xm * dm / dw), 1), bl)
    else:
        n = bl
    c_ab = lr / (dw * n)
    if balance or bl_manage:
        return n, math.sqrt(c_ab * xm / dm), math.sqrt(c_ab * dm / xm)
    return n, math.sqrt(c_ab), math.sqrt(c_ab)


def sample_masks(x, d, lr, dw, balance, bl_manage, bl, seed, b) -> tuple[list[int], list[int], int]:
    """Column masks (from x), row masks (from d) and the slots used (BL_b) of sample b; no slots
    when x[b] or d[b] is 0."""
    xm = max(abs(float(v)) for v in x[b])
    dm = max(abs(float(v)) for v in d[b])
    if not (xm > 0.0 and dm > 0.0):
        return [0] * x.shape[1], [0] * d.shape[1], 0
    n, fa, fb = sample_factors(xm, dm, lr, dw, balance, bl_manage, bl)
    return (draw_masks(x[b], fb, n, key(seed, 4 * b), key(seed, 4 * b + 1)),
            draw_masks(d[b], fa, n, key(seed, 4 * b + 2), key(seed, 4 * b + 3)), n)


def _pulse_synapse(k, sgn, e, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, m_syn, n_dev, bidir, law, prm,
                   dseed, t) -> None:
    """One coincidence pulse on synapse k: device by the arbitration counter, step noise keyed by
    (dseed, event e, device index)."""
    side = 0 if (bidir or sgn > 0) else 1
    dev = 0
    if arb.size:
        dev = int(arb[k])
        arb[k] = (dev + 1) % n_dev
    idx = (side * n_dev + dev) * m_syn + k
    npulse[idx] += 1
    if stuck[idx] == 0:
        g_now = g[idx] * D.drift_factor(nu[idx], t - tprog[idx], prm)
        gi, pi = D.pulse_one(law, g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], sgn, prm, dseed, e, idx)
        g[idx], p[idx] = float(gi), float(pi)
    tprog[idx] = t


def _limit_report(wanted: np.ndarray, cap) -> tuple[int, int]:
    """(synapses whose wanted pulse count exceeds cap, the largest such count; 0 when none)."""
    over = np.abs(wanted) > cap
    return int(over.sum()), (np.abs(wanted).max().item() if over.any() else 0)


def _device_run(idx, pulses, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, prm, dseed, t) -> bool:
    """The (event, sign) pulses of one device in one update as one step (``pulse_n``, keyed by the last
    event); False, touching nothing, where they must go one by one (``walk_clear`` fails)."""
    n_up = sum(1 for _, s in pulses if s > 0)
    n_dn = len(pulses) - n_up
    if stuck[idx] == 0:
        g_now = float(g[idx] * D.drift_factor(nu[idx], t - tprog[idx], prm)[()])
        if len(pulses) > 1 and not D.walk_clear(g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], n_up, n_dn,
                                                nu[idx], prm):
            return False
        g[idx], p[idx] = D.pulse_n(g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], n_up, n_dn, prm, dseed,
                                   pulses[-1][0], idx)
    npulse[idx] += len(pulses)
    tprog[idx] = t
    return True


def _apply_aggregated(lists, row_events, n_in, cap, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, arb, n_dev, bidir,
                      law, prm, dseed, t) -> tuple[int, int, int]:
    """The coincidences ``lists[k]`` ((event, sign) in order) of every synapse k with aggregation on:
    synapses of a row with at most ``cap`` events, on one device per side of an aggregating card, take
    each device's pulses as one step where exact (else one by one); the others one pulse at a time,
    at most ``cap`` per synapse."""
    m_syn = len(lists)
    agg = n_dev == 1 and arb.size == 0 and D.steps_add_up(law, prm)
    used = np.zeros(m_syn, np.int64)
    total = 0
    for k, lst in enumerate(lists):
        if agg and row_events[k // n_in] <= cap:
            total += len(lst)
            for side in (0, 1):
                mine = [(e, s) for e, s in lst if (0 if (bidir or s > 0) else 1) == side]
                if not mine:
                    continue
                if not _device_run(side * m_syn + k, mine, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, prm,
                                   dseed, t):
                    for e, s in mine:
                        _pulse_synapse(k, s, e, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, m_syn, n_dev,
                                       bidir, law, prm, dseed, t)
            continue
        for e, s in lst:
            used[k] += 1
            if used[k] > cap:
                continue
            _pulse_synapse(k, s, e, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, m_syn, n_dev, bidir, law,
                           prm, dseed, t)
            total += 1
    return (total, *_limit_report(used, cap))


def coincidence_update(x, d, lr, dw, balance, bl_manage, bl, cap, seed, dseed, g, p, tprog, npulse, up, down, lo, hi,
                       stuck, nu, arb, n_dev, bidir, law, prm, t, agg=False) -> tuple[int, int, int, np.ndarray]:
    """Twin of ``coincidence_update``: same arguments, same effect on the arrays, (pulses issued,
    synapses over the limit, most coincidences on one synapse among them, slots used per sample)."""
    nb, n_in = x.shape
    n_out = d.shape[1]
    m_syn = n_in * n_out
    if agg:
        lists = [[] for _ in range(m_syn)]
        row_events = np.zeros(n_out, np.int64)
        bls = np.zeros(nb, np.int64)
        for b in range(nb):
            cm, rm, bls[b] = sample_masks(x, d, lr, dw, balance, bl_manage, bl, seed, b)
            any_col = 0
            for m in cm:
                any_col |= m
            for i in range(n_out):
                row_events[i] += bin(rm[i] & any_col).count("1")
                for j in range(n_in):
                    both = rm[i] & cm[j]
                    sgn = -1 if (x[b, j] > 0) == (d[b, i] > 0) else 1
                    for s in range(bl):
                        if (both >> s) & 1:
                            lists[i * n_in + j].append((b * bl + s, sgn))
        return (*_apply_aggregated(lists, row_events, n_in, cap, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, arb,
                                   n_dev, bidir, law, prm, dseed, t), bls)
    used = np.zeros(m_syn, np.int64)  # coincidences drawn per synapse; the first cap are applied
    bls = np.zeros(nb, np.int64)
    total = 0
    for b in range(nb):
        cm, rm, bls[b] = sample_masks(x, d, lr, dw, balance, bl_manage, bl, seed, b)
        for i in range(n_out):
            for j in range(n_in):
                both = rm[i] & cm[j]
                sgn = -1 if (x[b, j] > 0) == (d[b, i] > 0) else 1
                for s in range(bl):  # slots in order
                    if (both >> s) & 1:
                        k = i * n_in + j
                        used[k] += 1
                        if used[k] > cap:
                            continue
                        _pulse_synapse(k, sgn, b * bl + s, arb, g, p, tprog, npulse, up, down, lo, hi,
                                       stuck, nu, m_syn, n_dev, bidir, law, prm, dseed, t)
                        total += 1
    return (total, *_limit_report(used, cap), bls)


def coincidence_draw(x, d, lr, dw, balance, bl_manage, bl, seed):
    """Twin of ``coincidence_draw``: (coff, cols, rstart, events, bls) from the masks of :func:`sample_masks`.

    Event e = b·bl + t is slot t of sample b; its firing columns (j, or ~j for x_j < 0) are
    cols[coff[e]:coff[e+1]] in ascending j; row i's events (e, or ~e for d_i < 0) are
    events[rstart[i]:rstart[i+1]] in ascending e, listing only slots where some column fires.
    """
    nb, n_in = x.shape
    n_out = d.shape[1]
    coff, cols, bls = [0], [], []
    row_events = [[] for _ in range(n_out)]
    for b in range(nb):
        cm, rm, n = sample_masks(x, d, lr, dw, balance, bl_manage, bl, seed, b)
        bls.append(n)
        for s in range(bl):
            e = b * bl + s
            fire = [j if x[b, j] > 0 else ~j for j in range(n_in) if (cm[j] >> s) & 1]
            cols += fire
            coff.append(len(cols))
            for i in range(n_out):
                if fire and (rm[i] >> s) & 1:
                    row_events[i].append(e if d[b, i] > 0 else ~e)
    rstart = np.cumsum([0] + [len(r) for r in row_events])
    events = [e for r in row_events for e in r]
    return (np.array(coff, np.int64), np.array(cols, np.int32), rstart.astype(np.int64),
            np.array(events, np.int32), np.array(bls, np.int64))


def coincidence_apply(coff, cols, rstart, events, n_in, cap, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, arb,
                      n_dev, bidir, law, prm, dseed, t, agg=False) -> tuple[int, int, int]:
    """Twin of ``coincidence_apply``: every listed (row, event, column) in turn, one pulse each, up to
    cap per synapse (with ``agg``: each synapse's list through the aggregated twin)."""
    n_out = rstart.size - 1
    if agg:
        lists = [[] for _ in range(n_out * n_in)]
        for i in range(n_out):
            for es in events[rstart[i]:rstart[i + 1]]:
                e, sdn = (int(es), 1) if es >= 0 else (~int(es), -1)
                for v in cols[coff[e]:coff[e + 1]]:
                    j, sgn = (int(v), -sdn) if v >= 0 else (~int(v), sdn)
                    lists[i * n_in + j].append((e, sgn))
        return _apply_aggregated(lists, np.diff(rstart), n_in, cap, g, p, tprog, npulse, up, down, lo, hi, stuck, nu,
                                 arb, n_dev, bidir, law, prm, dseed, t)
    used = np.zeros(n_out * n_in, np.int64)
    total = 0
    for i in range(n_out):
        for es in events[rstart[i]:rstart[i + 1]]:
            e, sdn = (int(es), 1) if es >= 0 else (~int(es), -1)
            for v in cols[coff[e]:coff[e + 1]]:
                j, sgn = (int(v), -sdn) if v >= 0 else (~int(v), sdn)
                used[i * n_in + j] += 1
                if used[i * n_in + j] > cap:
                    continue
                _pulse_synapse(i * n_in + j, sgn, e, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, nu,
                               n_out * n_in, n_dev, bidir, law, prm, dseed, t)
                total += 1
    return (total, *_limit_report(used, cap))


def pulse_sparse(ks, counts, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, m_syn, n_dev, bidir, law, prm,
                 seed, t, agg=False) -> int:
    """Twin of ``pulse_sparse``: dense counts through the ``pulse_tile`` twin, then the counter. With
    ``agg`` on an aggregating card, synapse by synapse: device (start + r) mod n_dev takes pulses
    m = r, r + n_dev, ... as one step keyed by its last m (``walk_clear``), else one by one."""
    if agg and D.steps_add_up(law, prm):
        total = 0
        for k, n in zip(np.asarray(ks), np.asarray(counts)):
            k, n = int(k), int(n)
            if n == 0:
                continue
            side = 0 if (bidir or n > 0) else 1
            sign = 1 if n > 0 else -1
            start = int(arb[k]) if arb.size else 0
            for r in range(min(abs(n), n_dev)):
                ms = list(range(r, abs(n), n_dev))
                idx = (side * n_dev + (start + r) % n_dev) * m_syn + k
                if stuck[idx] == 0:
                    g_now = float(g[idx] * D.drift_factor(nu[idx], t - tprog[idx], prm)[()])
                    a, b = (len(ms), 0) if sign > 0 else (0, len(ms))
                    if len(ms) == 1 or D.walk_clear(g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], a, b, nu[idx],
                                                    prm):
                        g[idx], p[idx] = D.pulse_n(g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], a, b, prm,
                                                   seed, idx, ms[-1])
                    else:
                        for m in ms:
                            g_now = g[idx] * D.drift_factor(nu[idx], t - tprog[idx], prm)[()]
                            gi, pi = D.pulse_one(law, g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], sign, prm,
                                                 seed, idx, m)
                            g[idx], p[idx] = float(gi), float(pi)
                            tprog[idx] = t
                npulse[idx] += len(ms)
                tprog[idx] = t
            if arb.size:
                arb[k] = (start + abs(n)) % n_dev
            total += abs(n)
        return total
    dense = np.zeros(m_syn, np.int64)
    dense[ks] = counts
    start = arb if arb.size else np.empty(0, np.int64)
    g[:], p[:], tprog[:], npulse[:] = D.pulse_tile(g, p, tprog, npulse, up, down, lo, hi, stuck, nu, dense, start, n_dev,
                                                   bidir, law, prm, seed, t)
    if arb.size:
        arb[:] = (arb + np.abs(dense)) % n_dev
    return int(np.abs(dense).sum())


def accumulate_pulse(chi, dw, alpha, eps, cap, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, n_dev, bidir,
                     law, prm, seed, t, agg=False) -> tuple[int, int, float]:
    """Twin of ``accumulate_pulse``: the accumulator in numpy (transfers limited to ±cap), the pulses
    through ``pulse_tile``."""
    c = chi + alpha * np.asarray(dw, dtype=np.float64)
    wanted = np.trunc(c / eps)
    chi[:] = np.where(wanted != 0.0, c - wanted * eps, c)
    n = np.clip(wanted, -cap, cap)
    over = n != wanted
    chi[over] += (wanted[over] - n[over]) * eps  # what the limit holds back stays in the accumulator
    ks = np.flatnonzero(n)
    total = pulse_sparse(ks, n[ks].astype(np.int64), arb, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, chi.size,
                         n_dev, bidir, law, prm, seed, t, agg)
    return (total, *_limit_report(wanted, cap))


def column_weights(g, tprog, nu, t, n_side, n_dev, g_ref, inv_scale, read_law, prm, j, n_in, w, var):
    """Twin of ``column_weights``: the whole tile through the ``tile_weights`` twin, then column j."""
    w_all, v_all = D.tile_weights(g, tprog, nu, t, n_side, n_dev, g_ref, inv_scale, read_law, prm)
    w[:] = w_all.reshape(-1, n_in)[:, j]
    var[:] = v_all.reshape(-1, n_in)[:, j]
