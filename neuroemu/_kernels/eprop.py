"""e-prop kernels (Bellec et al., Nat. Commun. 2020): the recurrent LIF/ALIF loop and the
eligibility-trace accumulation of the gradients. The equations are documented in
:mod:`neuroemu.rules.eprop`; the numpy twin is ``tests/reference/eprop.py``.

All arrays are float64 and C-contiguous, time-major (T, batch, n).
"""

import math

import numpy as np
from numba import njit

from .rng import key, normal_k


@njit(cache=True)
def simulate(i_in, w_rec, var_rec, seed, alpha, rho, beta, v_th, gamma, n_ref, n_alif, zs, vs, as_, psis):
    """Recurrent LIF/ALIF network over i_in (T, batch, n); writes z, v, a, ψ (each (T, batch, n)).

    Per step t, element (b, j), with the state at t−1 (zero at t = −1), neurons j ≥ n − n_alif ALIF:

        rec  = Σ_{i≠j, z_i(t−1)=1} w_rec[j, i]                      (in increasing i)
        rec += sqrt(Σ_{i≠j, z_i(t−1)=1} var_rec[j, i]) · normal_k(key(seed, t), b·n + j)   if that sum > 0
        v    = α v + (i_in[t, b, j] + rec) − z(t−1)·v_th
        a    = ρ a + z(t−1)  (ALIF; 0 for LIF),   A = v_th + β a  (A = v_th for LIF)
        refractory = r > 0 (then r −= 1);   z = [v > A and not refractory];  a spike sets r = n_ref
        ψ    = 0 if refractory else (γ / v_th) · max(0, 1 − |v − A| / v_th)

    ``var_rec`` of size 0 means noise-free reads.
    """
    nt, nb, n = i_in.shape
    noisy = var_rec.size > 0
    first_alif = n - n_alif
    g = gamma / v_th
    v = np.zeros((nb, n))
    a = np.zeros((nb, n))
    zp = np.zeros((nb, n))
    r = np.zeros((nb, n), np.int64)
    spk = np.empty(n, np.int64)
    for t in range(nt):
        k = key(seed, t)
        for b in range(nb):
            ns = 0
            for i in range(n):
                if zp[b, i] != 0.0:
                    spk[ns] = i
                    ns += 1
            for j in range(n):
                rec = 0.0
                var = 0.0
                for q in range(ns):
                    i = spk[q]
                    if i != j:
                        rec += w_rec[j, i]
                        if noisy:
                            var += var_rec[j, i]
                if noisy and var > 0.0:
                    rec += math.sqrt(var) * normal_k(k, b * n + j)
                vv = alpha * v[b, j] + (i_in[t, b, j] + rec) - zp[b, j] * v_th
                if j >= first_alif:
                    aa = rho * a[b, j] + zp[b, j]
                    thr = v_th + beta * aa
                else:
                    aa = 0.0
                    thr = v_th
                refr = r[b, j] > 0
                if refr:
                    r[b, j] -= 1
                    zz = 0.0
                    pp = 0.0
                else:
                    zz = 1.0 if vv > thr else 0.0
                    if zz > 0.0:
                        r[b, j] = n_ref
                    pd = 1.0 - abs(vv - thr) / v_th
                    pp = g * pd if pd > 0.0 else 0.0
                v[b, j] = vv
                a[b, j] = aa
                zs[t, b, j] = zz
                vs[t, b, j] = vv
                as_[t, b, j] = aa
                psis[t, b, j] = pp
        for b in range(nb):
            for j in range(n):
                zp[b, j] = zs[t, b, j]


@njit(cache=True)
def accumulate(s, psi, ls, creg, alpha, kappa, rho, beta, n_alif, out):
    """Add the e-prop gradient of one weight matrix to out (n_post, n_pre), summed over the batch.

    s (T, batch, n_pre): presynaptic signal (x(t) for input synapses, z(t−1) for recurrent ones);
    psi, ls (T, batch, n_post): pseudo-derivative and learning signal; creg (n_post,): the
    firing-rate regulariser's factor per neuron (all zero to skip it). Posts j ≥ n_post − n_alif
    are ALIF. Per batch element, all traces start at zero; per step t:

        ε^a[j, i] = ψ_j(t−1) ē_i(t−1) + (ρ − ψ_j(t−1) β) ε^a[j, i]       (ALIF rows, t ≥ 1)
        ē_i       = α ē_i + s_i(t)
        e[j, i]   = ψ_j(t) ē_i   (LIF)     or   ψ_j(t) (ē_i − β ε^a[j, i])   (ALIF)
        F[j, i]   = κ F[j, i] + e[j, i]
        out[j, i] += L_j(t) F[j, i] + creg_j e[j, i]      (the creg term only when creg is not all 0)

    Rows with ψ_j(t) = 0 only decay F (e = 0 exactly). O(T · n_post · n_pre) time and
    O(n_post · n_pre) memory per call; nothing of size T · n_post · n_pre is stored.
    """
    nt, nb, n_pre = s.shape
    n_post = psi.shape[2]
    first_alif = n_post - n_alif
    use_reg = False
    for j in range(n_post):
        if creg[j] != 0.0:
            use_reg = True
    ebar = np.empty(n_pre)
    f = np.empty((n_post, n_pre))
    ea = np.empty((n_alif, n_pre))
    for b in range(nb):
        ebar[:] = 0.0
        f[:, :] = 0.0
        ea[:, :] = 0.0
        for t in range(nt):
            if t > 0:
                for jj in range(n_alif):
                    p = psi[t - 1, b, first_alif + jj]
                    c = rho - p * beta
                    for i in range(n_pre):
                        ea[jj, i] = p * ebar[i] + c * ea[jj, i]
            for i in range(n_pre):
                ebar[i] = alpha * ebar[i] + s[t, b, i]
            for j in range(n_post):
                p = psi[t, b, j]
                lj = ls[t, b, j]
                cj = creg[j] if use_reg else 0.0
                if p == 0.0:
                    if lj == 0.0:
                        for i in range(n_pre):
                            f[j, i] = kappa * f[j, i]
                    else:
                        for i in range(n_pre):
                            ff = kappa * f[j, i]
                            f[j, i] = ff
                            out[j, i] += lj * ff
                elif j < first_alif:
                    if use_reg:
                        for i in range(n_pre):
                            e = p * ebar[i]
                            ff = kappa * f[j, i] + e
                            f[j, i] = ff
                            out[j, i] += lj * ff + cj * e
                    else:
                        for i in range(n_pre):
                            ff = kappa * f[j, i] + p * ebar[i]
                            f[j, i] = ff
                            out[j, i] += lj * ff
                else:
                    jj = j - first_alif
                    for i in range(n_pre):
                        e = p * (ebar[i] - beta * ea[jj, i])
                        ff = kappa * f[j, i] + e
                        f[j, i] = ff
                        if use_reg:
                            out[j, i] += lj * ff + cj * e
                        else:
                            out[j, i] += lj * ff
