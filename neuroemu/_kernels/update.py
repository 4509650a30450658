"""Update-scheme kernels: stochastic pulse coincidences, accumulate-and-pulse, sparse pulses, column reads.

Device state arrays are the flat tile arrays of :mod:`.device` (layout (side, device, synapse)); every
pulse goes through :func:`.device.pulse_one` with the same bookkeeping as :func:`.device.pulse_tile`:
the pulse is counted in ``npulse`` and stamps ``tprog`` even on a stuck device, which does not move;
bidirectional tiles take up/down pulses on side 0; SET-only pairs take a positive change on side 0
and a negative one on side 1. ``arb`` is a per-synapse arbitration counter (empty array: always
device 0): pulses go round-robin over the ``n_dev`` devices of a side starting at ``arb[k]``, and
the counter advances by the number of pulses issued (Boybat et al. 2018).

Stochastic pulse coincidences (Gokmen & Vlasov 2016), with the update management of IBM aihwkit
(``PulsedUpdateMetaParameter::performUpdateManagement``). Sample b, with x_max = max|x_b| and
d_max = max|d_b| (a sample whose x or d is all zero is skipped), uses BL_b slots, a row factor A (for d)
and a column factor B (for x) with A·B = c = lr/(Δw_pulse·BL_b), so E[ΔW_ij] = −BL_b·A·B·Δw_pulse·x_j·d_i
= −lr·x_j·d_i as long as no probability is clipped at 1 (:func:`sample_factors`):

* fixed BL: BL_b = BL and A = B = sqrt(c), or with ``balance`` (update management) A = sqrt(c·x_max/d_max),
  B = sqrt(c·d_max/x_max): both sides reach the same largest probability, sqrt(c·x_max·d_max);
* BL management (``bl_manage``, which balances too, as in aihwkit): x_max and d_max are first raised
  to at least Δw_pulse² (aihwkit's floor), then BL_b = min(ceil(lr·x_max·d_max/Δw_pulse), BL) and the
  factors are balanced. The largest probability, sqrt(lr·x_max·d_max/(Δw_pulse·BL_b)), is at most 1
  unless BL_b = BL: a short train replaces a long one of mostly empty slots, and no side is clipped.

Slot t of sample b is event e = b·BL + t whatever BL_b is (slots BL_b..BL−1 stay empty). For a call
keyed by ``seed`` and sample ``b`` the streams are kc = key(seed, 4b), kcp = key(seed, 4b+1)
(columns) and kr = key(seed, 4b+2), krp = key(seed, 4b+3) (rows). Column j (row i alike) gets a
mask of BL_b slots:

* K ~ Binomial(BL_b, p) from u = uniform_k(kc, j) by inverse CDF (:func:`binomial_inv`);
* K distinct slots by Floyd's algorithm (:func:`floyd_mask`) fed by 32-bit fields of
  hash_k(kcp, 32j + 0), hash_k(kcp, 32j + 1), ... (low half first); slot t = (field·(i+1)) >> 32,
  whose bias is below BL_b/2³² (for K > BL_b/2 the BL_b − K empty slots are drawn instead).

Synapse (i, j) receives popcount(mask_i & mask_j) pulses, one per coincident slot, in slot order;
the step noise of the pulse in slot t of sample b on device ``idx`` is keyed by (dseed, b·BL + t,
idx). The kernel computes the common case (p ≤ 1/2, K ≤ 2, except K = 2 when BL_b = 3) in a
branch-free loop the compiler vectorises, and everything else with the scalar functions; both give
the same bits.
It never tests every (row, column) pair: it lists, per (sample, slot), the columns that fire and,
per row, the (sample, slot) events where the row fires, then walks row by row (the next row's
device state is prefetched meanwhile), so the work is proportional to the number of
coincidences. Pulses of one synapse keep (sample, slot) order; different synapses are
independent, so the visiting order does not change the result.

Pulse limit. The coincidence and accumulate-and-pulse kernels take ``cap``, the most pulses one
synapse may receive in one call (one update): a coincidence beyond it is not applied (a synapse keeps
its first ``cap`` pulses in (sample, slot) order), an accumulator transfers at most ``cap`` pulses and
keeps the rest. Both return (pulses issued, synapses that wanted more than the limit, the largest
pulse count wanted on one of them — 0 when none did), so the caller can report it.

Aggregated pulses (``agg``, the schemes' ``aggregate_pulses``): on a card whose pulses add up
(:func:`.device.steps_add_up`: constant step, no level grid) the pulses one device takes in one call
are applied as one step (:func:`.device.pulse_n`) where :func:`.device.walk_clear` says the walk of
single pulses cannot reach a bound, one by one elsewhere; the coincidence kernel does so with one
device per synapse side (with several, which device a pulse reaches depends on the order of the
signs) on rows that cannot reach the pulse limit. The step noise is keyed as the device's last
pulse would be, so a device with one pulse gets the same bits either way.

Cost: every pulse (or aggregated step) draws its own step noise and updates ~8 device arrays, so a
pulsed update costs far more than the float SGD step it emulates (benchmarks/bench_update.py
measures it). On the benchmark's coincidence update a device takes about 1.2 pulses per update, so
aggregation saves few draws there; it pays where a device takes many pulses per update.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types, uint64
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from .device import PCM_SET, drift_factor, pulse_n, pulse_one, steps_add_up, synapse_weight, walk_clear
from .rng import hash_k, key, uniform_k

_ONE = uint64(1)
_ZERO = uint64(0)
_FULL = uint64(0xFFFFFFFFFFFFFFFF)
_M32 = uint64(0xFFFFFFFF)
_S32 = uint64(32)
_NO_ARB = np.empty(0, np.int64)  # no arbitration counter (one device per side)

# The typed-pointer name; LLVM versions with opaque pointers re-mangle it when they read the module
# (tests/test_schemes.py checks that the call reaches the compiled code). The hint is worth keeping:
# without it stochastic_coincidence takes ~1.6x as long in benchmarks/bench_update.py.
_PREFETCH = "llvm.prefetch.p0i8"


@intrinsic
def prefetch(typingctx, arr, idx):
    """Hint the CPU to fetch arr[idx] into cache for writing (a no-op for the program's result)."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            _PREFETCH)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


#: Largest supported bit length (one uint64 mask per row/column).
MAX_BL = 64
_SLOW = 255  # marker: this mask needs the scalar path


@njit(cache=True, inline="always")
def ipow(q, n):
    """q**n for an integer 0 <= n < 128 by binary powering (a fixed sequence of multiplications, so
    vectorised and scalar code and the numpy twin agree bit for bit)."""
    r = 1.0
    b = q
    for s in range(7):
        if (n >> s) & 1:
            r *= b
        b *= b
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
def _floyd_step(mask, f, i):
    """One step of Floyd's sampling: draw t in [0, i] from the 32-bit field f; take i if t is taken."""
    t = (f * uint64(i + 1)) >> _S32
    bt = _ONE << t
    bi = _ONE << uint64(i)
    return mask | (bi if (mask & bt) != _ZERO else bt)


@njit(cache=True)
def floyd_mask(kp, base, n_set, bl):
    """A uint64 with ``n_set`` distinct bits set among the low ``bl``, uniformly (Floyd's algorithm)."""
    comp = n_set > bl // 2
    m = bl - n_set if comp else n_set
    mask = _ZERO
    h = _ZERO
    c = 0
    for i in range(bl - m, bl):
        if c & 1:
            f = h >> _S32
        else:
            h = hash_k(kp, base + (c >> 1))
            f = h & _M32
        mask = _floyd_step(mask, f, i)
        c += 1
    if comp:
        full = _FULL if bl == 64 else (_ONE << uint64(bl)) - _ONE
        mask = full ^ mask
    return mask


@njit(cache=True, error_model="numpy")
def _draw_fast(v, fac, bl, ku, kp, kout, mout):
    """Masks of one sample's columns (or rows) with firing probability min(fac·|v|, 1), in a
    branch-free loop the compiler vectorises. kout[j] = K (0..2) and mout[j] = the mask, or
    kout[j] = _SLOW where the scalar path must decide: p > 1/2, K > 2, or K = 2 with BL = 3 (where
    :func:`floyd_mask` draws the one empty slot instead; for BL <= 2 both ways give the same mask)."""
    c1 = bl / 1.0
    c2 = (bl - 1) / 2.0
    i2 = max(bl - 2, 0)  # the first Floyd step of K = 2 (never used for BL = 1, where K <= 1)
    odd3 = 2 if bl == 3 else 3  # BL = 3 draws K = 2 as its complement (one empty slot): scalar path
    for j in range(v.size):
        p = min(fac * abs(float(v[j])), 1.0)
        u = uniform_k(ku, j)
        q = 1.0 - p
        f = ipow(q, bl)
        r = p / q
        cdf0 = f
        f = f * r * c1
        cdf1 = cdf0 + f
        f = f * r * c2
        cdf2 = cdf1 + f
        kk = np.int64(u >= cdf0) + np.int64(u >= cdf1)
        h = hash_k(kp, uint64(32 * j))
        f0 = h & _M32
        f1 = h >> _S32
        m1 = _floyd_step(_ZERO, f0, bl - 1)
        m2 = _floyd_step(_floyd_step(_ZERO, f0, i2), f1, bl - 1)
        m = m1 if kk == 1 else (m2 if kk == 2 else _ZERO)
        slow = (u >= cdf2) or (p > 0.5) or (kk == odd3)
        kout[j] = _SLOW if slow else kk
        mout[j] = m


@njit(cache=True)
def _grow(a, need):
    out = np.empty(max(need, 2 * a.size), a.dtype)
    out[: a.size] = a
    return out


@njit(cache=True)
def _absmax(v):
    """max|v| of a finite vector, with eight independent accumulators (no loop-carried latency)."""
    acc = np.zeros(8)
    n8 = v.size - v.size % 8
    for j in range(0, n8, 8):
        for s in range(8):
            acc[s] = max(acc[s], abs(float(v[j + s])))
    m = 0.0
    for s in range(8):
        m = max(m, acc[s])
    for j in range(n8, v.size):
        m = max(m, abs(float(v[j])))
    return m


@njit(cache=True)
def _masks(v, fac, bl, ku, kp, kout, mout, lst):
    """Masks of one sample's columns (or rows); returns the number of non-empty ones, listed in
    ``lst`` (ascending), with kout/mout holding each one's exact K and mask."""
    n = v.size
    _draw_fast(v, fac, bl, ku, kp, kout, mout)
    nl = 0
    for j in range(n):  # branch-free compaction
        lst[nl] = j
        nl += kout[j] != 0
    m = 0
    for q in range(nl):
        j = lst[q]
        if kout[j] == _SLOW:
            p = min(fac * abs(float(v[j])), 1.0)
            kk = binomial_inv(uniform_k(ku, j), bl, p)
            if kk == 0:
                continue
            kout[j] = kk
            mout[j] = floyd_mask(kp, 32 * j, kk, bl)
        lst[m] = j
        m += 1
    return m


@njit(cache=True)
def sample_factors(xm, dm, lr, dw, balance, bl_manage, bl):
    """(BL, A, B) of one sample with max|x| = ``xm`` > 0 and max|d| = ``dm`` > 0 (see the module
    docstring): the slots its trains use, the row factor A and the column factor B."""
    if bl_manage:
        reg = dw * dw
        xm = max(xm, reg)
        dm = max(dm, reg)
        want = np.ceil(lr * xm * dm / dw)  # a float: no integer overflow
        n = bl if want >= bl else max(int(want), 1)
    else:
        n = bl
    c_ab = lr / (dw * n)
    if balance or bl_manage:
        return n, math.sqrt(c_ab * xm / dm), math.sqrt(c_ab * dm / xm)
    f = math.sqrt(c_ab)
    return n, f, f


@njit(cache=True)
def coincidence_draw(x, d, lr, dw, balance, bl_manage, bl, seed):
    """Draw the pulse coincidences of ΔW = -lr·dᵀx (see the module docstring).

    x: (batch, n_in), d: (batch, n_out), float32 or float64; ``lr`` > 0; ``dw`` = Δw_pulse; ``bl``
    the bit length (with ``bl_manage`` the most slots a sample may use). Each sample's BL and factors
    come from :func:`sample_factors`; column j fires with p = min(B|x_j|, 1) per slot, row i with
    min(A|d_i|, 1).

    Returns (coff, cols, rstart, events, bls): the columns firing in slot t of sample b are
    cols[coff[e]:coff[e+1]], e = b·bl + t, stored as j (x_j > 0) or ~j (x_j < 0); the events of row i
    are events[rstart[i]:rstart[i+1]] in (sample, slot) order, stored as e (d_i > 0) or ~e; bls[b] is
    the number of slots sample b used (0 for a sample whose x or d is all zero).
    """
    nb, n_in = x.shape
    n_out = d.shape[1]
    n_e = nb * bl
    coff = np.zeros(n_e + 1, np.int64)
    cols = np.empty(max(64, 2 * n_in * nb), np.int32)
    ev_row = np.empty(max(64, n_out * nb), np.int32)
    ev_e = np.empty(ev_row.size, np.int32)
    tmp_j = np.empty(n_in * bl, np.int32)
    tmp_t = np.empty(n_in * bl, np.int32)
    kc_out = np.empty(n_in, np.uint8)
    mc_out = np.empty(n_in, np.uint64)
    kr_out = np.empty(n_out, np.uint8)
    mr_out = np.empty(n_out, np.uint64)
    lst = np.empty(max(n_in, n_out), np.int64)
    cnt = np.zeros(bl, np.int64)
    nxt = np.zeros(bl, np.int64)
    bls = np.zeros(nb, np.int64)
    n_cols = 0
    n_ev = 0
    for b in range(nb):
        e0 = b * bl
        for s in range(bl):
            coff[e0 + s] = n_cols
        xm = _absmax(x[b])
        dm = _absmax(d[b])
        if not (xm > 0.0 and dm > 0.0 and math.isfinite(xm) and math.isfinite(dm)):
            continue
        bl_b, fa, fb = sample_factors(xm, dm, lr, dw, balance, bl_manage, bl)
        bls[b] = bl_b
        # columns: slot lists of this sample (slots bl_b..bl-1 stay empty)
        xb = x[b]
        nl = _masks(xb, fb, bl_b, key(seed, 4 * b), key(seed, 4 * b + 1), kc_out, mc_out, lst)
        if nl == 0:
            continue
        for s in range(bl):
            cnt[s] = 0
        npair = 0
        for q in range(nl):
            j = lst[q]
            sj = j if xb[j] > 0 else ~j
            m = mc_out[j]
            while m != _ZERO:
                s = trailing_zeros(m)
                m &= m - _ONE
                tmp_j[npair] = sj
                tmp_t[npair] = s
                cnt[s] += 1
                npair += 1
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
        # rows: events where a row fires in a slot that has columns
        db = d[b]
        nl = _masks(db, fa, bl_b, key(seed, 4 * b + 2), key(seed, 4 * b + 3), kr_out, mr_out, lst)
        if n_ev + bl_b * nl > ev_row.size:
            ev_row = _grow(ev_row, n_ev + bl_b * nl)
            ev_e = _grow(ev_e, n_ev + bl_b * nl)
        for q in range(nl):
            i = lst[q]
            pos_d = db[i] > 0
            m = mr_out[i]
            while m != _ZERO:
                s = trailing_zeros(m)
                m &= m - _ONE
                if cnt[s] != 0:
                    ev_row[n_ev] = i
                    ev_e[n_ev] = e0 + s if pos_d else ~(e0 + s)
                    n_ev += 1
    coff[n_e] = n_cols
    # events grouped by row, stable (keeps (sample, slot) order within a row)
    rstart = np.zeros(n_out + 1, np.int64)
    for q in range(n_ev):
        rstart[ev_row[q] + 1] += 1
    for i in range(n_out):
        rstart[i + 1] += rstart[i]
    fill = rstart[:n_out].copy()
    events = np.empty(n_ev, np.int32)
    for q in range(n_ev):
        r = ev_row[q]
        events[fill[r]] = ev_e[q]
        fill[r] += 1
    return coff, cols, rstart, events, bls


@njit(cache=True, inline="always")
def _prefetch_span(g, p, tprog, npulse, up, down, lo, hi, stuck, nu, arb, use_p, lo_i, hi_i, m_syn, n_planes):
    """Prefetch elements [lo_i, hi_i) (one index per cache line) of every device plane of the state
    (``p`` only when the devices use it: ``use_p``)."""
    for pl in range(n_planes):
        o = pl * m_syn
        for j in range(o + lo_i, o + hi_i, 8):
            prefetch(g, j)
            prefetch(tprog, j)
            prefetch(npulse, j)
            prefetch(up, j)
            prefetch(down, j)
            prefetch(lo, j)
            prefetch(hi, j)
            prefetch(nu, j)
            if use_p:
                prefetch(p, j)
            if (j & 63) < 8:
                prefetch(stuck, j)
    if arb.size > 0:
        for j in range(lo_i, hi_i, 8):
            prefetch(arb, j)


@njit(cache=True, inline="always")
def _coincidence_pulse(k, sgn, e, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, arb, has_arb, m_syn, n_dev, bidir,
                       law, prm, dseed, t):
    """One coincidence pulse on synapse k (direction sgn, event e): the device from the arbitration
    counter, the side from the direction, step noise keyed by (dseed, e, device index)."""
    side = 0 if (bidir or sgn > 0) else 1
    dev = 0
    if has_arb:
        dev = arb[k]
        arb[k] = dev + 1 if dev + 1 < n_dev else 0
    idx = (side * n_dev + dev) * m_syn + k
    npulse[idx] += 1
    if stuck[idx] == 0:
        g_now = g[idx] * drift_factor(nu[idx], t - tprog[idx], prm)
        g[idx], p[idx] = pulse_one(law, g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], sgn, prm, dseed, e, idx)
    tprog[idx] = t


@njit(cache=True)
def _row_aggregated(i, q0, q1, coff, cols, events, n_in, n_out, cu, cd, lu, ld, fl, g, p, tprog, npulse, up, down, lo,
                    hi, stuck, nu, bidir, law, prm, dseed, t):
    """The coincidences of row i (events[q0:q1], at most the limit on any synapse) with one device per
    synapse side, each device's pulses as one step where that is exact: count every synapse's up and
    down coincidences and its last event of each direction, sweep the row (:func:`.device.pulse_n`
    where :func:`.device.walk_clear` holds), and replay one pulse at a time, in order, the devices it
    refuses. Returns the pulses issued.
    Scratch (n_in each): cu, cd, fl zero on entry and on return; lu, ld."""
    m_syn = n_out * n_in
    base = i * n_in
    use_p = prm.write_noise > 0.0
    for q in range(q0, q1):
        es = events[q]
        neg = es < 0
        e = ~es if neg else es
        for c in range(coff[e], coff[e + 1]):
            v = cols[c]
            vneg = v < 0
            j = ~v if vneg else v
            if vneg != neg:  # an up pulse (direction -sign(x_j·d_i))
                cu[j] += 1
                lu[j] = e
            else:
                cd[j] += 1
                ld[j] = e
    total = 0
    n_fall = 0
    if bidir:  # one device per synapse (the common case, written out without the side loop below)
        for j in range(n_in):
            a = cu[j]
            b = cd[j]
            if a + b == 0:
                continue
            cu[j] = 0
            cd[j] = 0
            total += a + b
            idx = base + j
            if stuck[idx] == 0:
                g_now = g[idx] * drift_factor(nu[idx], t - tprog[idx], prm)
                p_now = p[idx] if use_p else 1.0  # p: only the persistent conductance of write noise
                if a + b > 1 and not walk_clear(g_now, p_now, up[idx], down[idx], lo[idx], hi[idx], a, b, nu[idx], prm):
                    fl[j] = 1  # one pulse at a time, below
                    n_fall += 1
                    continue
                e = lu[j] if b == 0 or (a > 0 and lu[j] > ld[j]) else ld[j]  # the device's last event
                gi, pi = pulse_n(g_now, p_now, up[idx], down[idx], lo[idx], hi[idx], a, b, prm, dseed, e, idx)
                g[idx] = gi
                if use_p:
                    p[idx] = pi
            npulse[idx] += a + b
            tprog[idx] = t
    else:
        for j in range(n_in):
            n_up = cu[j]
            n_dn = cd[j]
            if n_up + n_dn == 0:
                continue
            cu[j] = 0
            cd[j] = 0
            total += n_up + n_dn
            f = 0
            for side in range(2):  # SET-only pair: up pulses on side 0, down pulses on side 1
                a = n_up if side == 0 else 0
                b = n_dn if side == 1 else 0
                if a + b == 0:
                    continue
                e = lu[j] if side == 0 else ld[j]
                idx = side * m_syn + base + j
                # the device's pulses as one step, noise keyed by (dseed, its last event, idx)
                if stuck[idx] == 0:
                    g_now = g[idx] * drift_factor(nu[idx], t - tprog[idx], prm)
                    p_now = p[idx] if use_p else 1.0
                    if a + b > 1 and not walk_clear(g_now, p_now, up[idx], down[idx], lo[idx], hi[idx], a, b, nu[idx],
                                                    prm):
                        f |= 1 << side  # one pulse at a time, below
                        continue
                    gi, pi = pulse_n(g_now, p_now, up[idx], down[idx], lo[idx], hi[idx], a, b, prm, dseed, e, idx)
                    g[idx] = gi
                    if use_p:
                        p[idx] = pi
                npulse[idx] += a + b
                tprog[idx] = t
            fl[j] = f
            n_fall += f != 0
    if n_fall:  # devices near a bound (or drifting between pulses): their pulses one at a time, in order
        for q in range(q0, q1):
            es = events[q]
            neg = es < 0
            e = ~es if neg else es
            for c in range(coff[e], coff[e + 1]):
                v = cols[c]
                vneg = v < 0
                j = ~v if vneg else v
                sgn = 1 if vneg != neg else -1
                side = 0 if (bidir or sgn > 0) else 1
                if (fl[j] >> side) & 1:
                    _coincidence_pulse(base + j, sgn, e, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, _NO_ARB,
                                       False, m_syn, 1, bidir, law, prm, dseed, t)
        fl[:] = 0
    return total


@njit(cache=True)
def coincidence_apply(coff, cols, rstart, events, n_in, cap, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, arb,
                      n_dev, bidir, law, prm, dseed, t, agg=False):
    """Apply drawn coincidences (see :func:`coincidence_draw`) row by row, at most ``cap`` pulses per
    synapse; returns (pulses issued, synapses that wanted more, most coincidences on one of them).

    One pulse at a time (``agg`` false, a card whose pulses do not add up, several devices per side,
    or a row with more than ``cap`` events): while a row is processed, the next
    row's device state is prefetched a slice per event, so its pulses find their (scattered) synapses
    in cache. Each event gives a synapse at most one pulse, so only a row with more than ``cap``
    events can reach the limit: such a row (an update far too large) counts pulses per synapse, and
    the other rows run as without a limit.

    Aggregated (``agg``; see :mod:`.device`): each device's pulses of the update as one step
    (:func:`_row_aggregated`), noise keyed by (dseed, its last event, device index); a device with one
    pulse gets the bits it gets one pulse at a time.

    Rows are independent (a row's synapses, devices and arbitration counters are its own, and every
    random number is keyed by event and device), so they could run in parallel without changing the
    result; a ``prange`` over blocks of rows was measured slower at 2 threads than at 1 on the 2-core
    reference machine (benchmarks/bench_update.py), so the loop is serial. The one-pulse-at-a-time
    body is written out here: as a function called per row it measured about 1.3x slower.
    """
    n_out = rstart.size - 1
    m_syn = n_out * n_in
    n_planes = (1 if bidir else 2) * n_dev
    has_arb = arb.size > 0
    use_p = law == PCM_SET or prm.write_noise > 0.0  # p: PCM's pulse history, or the persistent conductance
    simple = bidir and not has_arb and not use_p
    agg = agg and n_dev == 1 and not has_arb and steps_add_up(law, prm)
    total = 0
    n_over = 0
    most = 0
    used = np.zeros(n_in, np.int64)  # coincidences per synapse of a row over the limit
    cu = np.zeros(n_in, np.int64)  # scratch of the aggregated rows
    cd = np.zeros(n_in, np.int64)
    lu = np.empty(n_in, np.int64)
    ld = np.empty(n_in, np.int64)
    fl = np.zeros(n_in, np.int64)
    for i in range(n_out):
        q0 = rstart[i]
        q1 = rstart[i + 1]
        if q0 == q1:
            continue
        if agg and q1 - q0 <= cap:
            total += _row_aggregated(i, q0, q1, coff, cols, events, n_in, n_out, cu, cd, lu, ld, fl, g, p, tprog,
                                     npulse, up, down, lo, hi, stuck, nu, bidir, law, prm, dseed, t)
            continue
        capped = q1 - q0 > cap
        if capped:
            used[:] = 0
        base = i * n_in
        nxt = base + n_in  # next row: prefetched in slices, one per event of this row
        nxt_end = nxt + n_in if i + 1 < n_out else nxt
        chunk = ((n_in + (q1 - q0) - 1) // (q1 - q0) + 7) // 8 * 8
        for q in range(q0, q1):
            es = events[q]
            if es >= 0:
                e = es
                sdn = 1
            else:
                e = ~es
                sdn = -1
            c0 = coff[e]
            c1 = coff[e + 1]
            if nxt < nxt_end:
                stop = min(nxt + chunk, nxt_end)
                _prefetch_span(g, p, tprog, npulse, up, down, lo, hi, stuck, nu, arb, use_p, nxt, stop, m_syn, n_planes)
                nxt = stop
            if capped:
                for c in range(c0, c1):
                    v = cols[c]
                    j = v if v >= 0 else ~v
                    used[j] += 1
                    if used[j] <= cap:
                        _coincidence_pulse(base + j, -sdn if v >= 0 else sdn, e, g, p, tprog, npulse, up, down, lo, hi,
                                           stuck, nu, arb, has_arb, m_syn, n_dev, bidir, law, prm, dseed, t)
                        total += 1
            elif simple:
                total += c1 - c0
                for c in range(c0, c1):
                    v = cols[c]
                    idx = base + (v if v >= 0 else ~v)
                    sgn = -sdn if v >= 0 else sdn
                    npulse[idx] += 1
                    if stuck[idx] == 0:
                        dd = up[idx] if sgn > 0 else down[idx]
                        g_now = g[idx] * drift_factor(nu[idx], t - tprog[idx], prm)
                        gi, _ = pulse_one(law, g_now, 1.0, dd, dd, lo[idx], hi[idx], sgn, prm, dseed, e, idx)
                        g[idx] = gi
                    tprog[idx] = t
            else:  # the body of _coincidence_pulse, written out: the call costs here (measured: pcm 1.3x, rram 2.8x)
                total += c1 - c0
                for c in range(c0, c1):
                    v = cols[c]
                    k = base + (v if v >= 0 else ~v)
                    sgn = -sdn if v >= 0 else sdn
                    side = 0 if (bidir or sgn > 0) else 1
                    dev = 0
                    if has_arb:
                        dev = arb[k]
                        arb[k] = dev + 1 if dev + 1 < n_dev else 0
                    idx = (side * n_dev + dev) * m_syn + k
                    npulse[idx] += 1
                    if stuck[idx] == 0:
                        g_now = g[idx] * drift_factor(nu[idx], t - tprog[idx], prm)
                        g[idx], p[idx] = pulse_one(law, g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], sgn,
                                                   prm, dseed, e, idx)
                    tprog[idx] = t
        if capped:
            for j in range(n_in):
                if used[j] > cap:
                    n_over += 1
                    most = max(most, used[j])
    return total, n_over, most


@njit(cache=True)
def coincidence_update(x, d, lr, dw, balance, bl_manage, bl, cap, seed, dseed, g, p, tprog, npulse, up, down, lo, hi,
                       stuck, nu, arb, n_dev, bidir, law, prm, t, agg=False):
    """Draw and apply a stochastic pulse-coincidence update, at most ``cap`` pulses per synapse
    (``agg``: aggregated where exact, see :func:`coincidence_apply`); returns (pulses issued, synapses
    that wanted more, most coincidences on one of them, the slots each sample used)."""
    coff, cols, rstart, events, bls = coincidence_draw(x, d, lr, dw, balance, bl_manage, bl, seed)
    total, n_over, most = coincidence_apply(coff, cols, rstart, events, x.shape[1], cap, g, p, tprog, npulse, up,
                                            down, lo, hi, stuck, nu, arb, n_dev, bidir, law, prm, dseed, t, agg)
    return total, n_over, most, bls


@njit(cache=True)
def pulse_sparse(ks, counts, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, m_syn, n_dev, bidir, law,
                 prm, seed, t, agg=False):
    """Signed pulse counts ``counts[q]`` on synapses ``ks[q]``: :func:`.device.pulse_tile` restricted
    to the listed synapses (same random keys), with the start device taken from and advanced in
    ``arb``. Returns pulses issued.

    With ``agg`` on a card whose pulses add up (:func:`.device.steps_add_up`), the pulses each device
    takes (pulse m of the synapse goes to device (start + m) mod n_dev) are one step
    (:func:`.device.pulse_n`) keyed as its last pulse m would be, where :func:`.device.walk_clear`
    holds; one pulse gives the same bits either way.
    """
    has_arb = arb.size > 0
    agg = agg and steps_add_up(law, prm)
    total = 0
    for q in range(ks.size):
        n = counts[q]
        if n == 0:
            continue
        k = ks[q]
        sign = 1 if n > 0 else -1
        side = 0 if (bidir or n > 0) else 1
        na = abs(n)
        dev = arb[k] if has_arb else 0
        if agg:
            for r in range(min(na, n_dev)):  # device (dev + r) mod n_dev takes pulses m = r, r + n_dev, ...
                nd = (na - 1 - r) // n_dev + 1
                dv = dev + r
                if dv >= n_dev:
                    dv -= n_dev
                idx = (side * n_dev + dv) * m_syn + k
                if stuck[idx] == 0:
                    g_now = g[idx] * drift_factor(nu[idx], t - tprog[idx], prm)
                    n_up = nd if sign > 0 else 0
                    if nd == 1 or walk_clear(g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], n_up, nd - n_up,
                                             nu[idx], prm):
                        g[idx], p[idx] = pulse_n(g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], n_up, nd - n_up,
                                                 prm, seed, idx, r + (nd - 1) * n_dev)
                    else:
                        for m in range(r, na, n_dev):
                            g_now = g[idx] * drift_factor(nu[idx], t - tprog[idx], prm)
                            g[idx], p[idx] = pulse_one(law, g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], sign,
                                                       prm, seed, idx, m)
                            tprog[idx] = t
                npulse[idx] += nd
                tprog[idx] = t
            dev = (dev + na) % n_dev
        else:
            for m in range(na):
                idx = (side * n_dev + dev) * m_syn + k
                npulse[idx] += 1
                if stuck[idx] == 0:
                    g_now = g[idx] * drift_factor(nu[idx], t - tprog[idx], prm)
                    g[idx], p[idx] = pulse_one(law, g_now, p[idx], up[idx], down[idx], lo[idx], hi[idx], sign, prm,
                                               seed, idx, m)
                tprog[idx] = t
                dev += 1
                if dev == n_dev:
                    dev = 0
        if has_arb:
            arb[k] = dev
        total += na
    return total


_BLOCK = 4096  # synapses per accumulate block (their pulse counts stay in L1)


@njit(cache=True, error_model="numpy")
def accumulate_pulse(chi, dw, alpha, eps, cap, arb, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, n_dev, bidir,
                     law, prm, seed, t, agg=False):
    """Mixed-precision transfer (Nandakumar et al. 2020).

    chi[k] += alpha·dw[k]; n = trunc(chi[k]/eps); chi[k] -= n·eps; where |n| > cap, n becomes ±cap
    and chi[k] += (n ∓ cap)·eps takes back what the limit holds; n pulses go to synapse k (pulse_tile keying;
    round-robin from ``arb``; ``agg``: as :func:`pulse_sparse`). ``dw`` may be float32 (it is widened
    first). Works in blocks: a vectorised pass updates the accumulator and lists the synapses that
    fire, then their pulses are applied. (Blocks touch disjoint synapses and the random numbers are
    keyed by device and pulse, so they could run in parallel; a ``prange`` over them, right after the
    scheme's BLAS product, was measured slower at 2 threads than at 1: the loop is serial.) Returns (pulses issued, synapses that wanted more than the limit, the largest
    |trunc(chi/eps)| wanted on one of them, a float).
    """
    m_syn = chi.size
    capf = float(cap)
    n_blk = (m_syn + _BLOCK - 1) // _BLOCK
    res_n = np.zeros(n_blk, np.int64)
    res_over = np.zeros(n_blk, np.int64)
    res_most = np.zeros(n_blk)
    nbuf = np.empty(_BLOCK)
    ks = np.empty(_BLOCK, np.int64)
    cnt = np.empty(_BLOCK, np.int64)
    for blk in range(n_blk):
        k0 = blk * _BLOCK
        k1 = min(k0 + _BLOCK, m_syn)
        ch = chi[k0:k1]
        d = dw[k0:k1]
        nz = 0
        for kk in range(k1 - k0):  # vectorised
            c = ch[kk] + alpha * float(d[kk])
            n = np.trunc(c / eps)
            ch[kk] = c - n * eps if n != 0.0 else c
            nbuf[kk] = n
            nz += n != 0.0
        if nz == 0:
            continue
        over = 0
        for kk in range(k1 - k0):  # vectorised
            over += abs(nbuf[kk]) > capf
        if over:  # the limit: the accumulator takes back what it holds
            res_over[blk] = over
            most = 0.0
            for kk in range(k1 - k0):
                n = nbuf[kk]
                if abs(n) > capf:
                    most = max(most, abs(n))
                    lim = capf if n > 0.0 else -capf
                    ch[kk] += (n - lim) * eps
                    nbuf[kk] = lim
            res_most[blk] = most
        m = 0
        for kk in range(k1 - k0):  # branch-free compaction
            ks[m] = k0 + kk
            cnt[m] = np.int64(nbuf[kk])
            m += nbuf[kk] != 0.0
        res_n[blk] = pulse_sparse(ks[:m], cnt[:m], arb, g, p, tprog, npulse, up, down, lo, hi, stuck, nu, m_syn, n_dev,
                                  bidir, law, prm, seed, t, agg)
    total = 0
    n_over = 0
    most = 0.0
    for blk in range(n_blk):
        total += res_n[blk]
        n_over += res_over[blk]
        most = max(most, res_most[blk])
    return total, n_over, most


@njit(cache=True)
def column_weights(g, tprog, nu, t, n_side, n_dev, g_ref, inv_scale, read_law, prm, j, n_in, w, var):
    """Column j of :func:`.device.tile_weights` (weights and per-read variance), same arithmetic."""
    n_out = w.size
    m_syn = n_out * n_in
    for i in range(n_out):
        acc, v = synapse_weight(g, tprog, nu, t, i * n_in + j, m_syn, n_side, n_dev, g_ref, read_law, prm)
        w[i] = acc * inv_scale
        var[i] = v * inv_scale * inv_scale
