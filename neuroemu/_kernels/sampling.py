"""Kernel of a network of sampling LIF neurons (Petrovici et al. 2016; Kungl et al. 2019).

``n`` leaky integrate-and-fire neurons with exponential synapses, excitatory and inhibitory
channels, conductance-based or current-based, driven by Poisson background events and by each
other's spikes through a dense weight matrix; ``batch`` independent copies (chains) run side by
side, each with its own leak potentials and clamps. A neuron's binary state is z = 1 for
``n_ref`` steps from each spike on (the refractory period τ_ref); the kernel records the states
every ``every`` steps.

Parameters per neuron (rows of ``par``, see the ``P_*`` indices): leak conductance g_l, membrane
capacitance C, threshold, reset, reversal potentials E_e and E_i (conductance-based only), the
per-step decay factors of the two synaptic channels and of the free membrane, the background's
mean events per step λ_e, λ_i and exp(−λ) of each, its weights, the standard deviation of the
membrane noise added per step, and the logarithms of the two channels' decay factors. Per step t, for every chain b and neuron k:

1. last step's spikes arrive: a spike of j adds W[k, j] to channel e of k when positive, −W[k, j]
   to channel i when negative (``wt`` is Wᵀ: row j holds j's outgoing weights); where ``renew[j]``
   is set, j's synapses are renewing (short-term depression with U = 1 and a recovery time equal to the receiving channel's
   τ_syn: the reference code's "saturating synapses") the change is scaled by
   1 − exp(−Δ/τ_syn) = 1 − decay^Δ, Δ the steps between j's last two spikes, so that a burst keeps the
   synaptic conductance at W instead of summing its post-synaptic potentials;
2. background: n_e ~ Poisson(λ_e), n_i ~ Poisson(λ_i) events add n·w_bg to their channel;
3. refractory (a counter r > 0 after its decrement): the membrane is held at the reset; otherwise
   it moves exactly for a step of constant input,
      conductance-based: g = g_l + g_e + g_i, v∞ = (g_l E_l + g_e E_e + g_i E_i)/g,
                         v = v∞ + (v − v∞)·exp(−dt·g/C)
      current-based:     v∞ = E_l + (g_e − g_i)/g_l,  v = v∞ + (v − v∞)·decay_m
   plus noise·N(0, 1), then clipped to [v_lo, v_hi]; it spikes when clamp is 1 (forced on), or
   when clamp is −1 (free) and v > v_th; clamp 0 never spikes. A spike sets v to the reset and
   r = n_ref;
4. both channels decay by their factor; the state z = (r > 0).

Random numbers are keyed (``rng.key``): the Poisson draws of step t by (seed, 2t) and element
2·(b·n + k) + channel, the membrane noise by (seed, 2t + 1) and b·n + k, so a run split into
pieces (``t0``) draws what the whole run would.
"""

import math

from numba import njit, prange

from .rng import key, normal_k, uniform_k

(P_GL, P_C, P_TH, P_RESET, P_EE, P_EI, P_DE, P_DI, P_DM, P_LE, P_LI, P_XE, P_XI, P_WE, P_WI, P_NOISE, P_LDE,
 P_LDI) = range(18)
N_PAR = 18


@njit(cache=True, inline="always")
def poisson_k(k, b, lam, exp_minus_lam):
    """Poisson(lam) count for element b of stream k, by inversion of one uniform (lam small)."""
    u = uniform_k(k, b)
    n = 0
    p = exp_minus_lam
    s = p
    while u > s and n < 10000:
        n += 1
        p *= lam / n
        s += p
    return n


@njit(cache=True, parallel=True)
def sampling_run(steps, t0, every, dt, conductance, par, leak, wt, clamp, v_lo, v_hi, n_ref, seed, renew,
                 v, ge, gi, r, fired, since, gap, rec, counts):
    """Run ``steps`` steps from step ``t0`` (module docstring). State v, ge, gi (batch, n) float64,
    r (batch, n) int32, fired (batch, n) uint8 (spikes of the last step, still to arrive), since
    (steps since each neuron's last spike) and gap (steps between its last two spikes), both
    (batch, n) int64, are updated in place; rec (steps // every, batch, n) uint8 receives the
    states after steps every−1, 2·every−1, ...; counts (batch, n) int64 adds the spikes. renew
    (n,) uint8: which neurons' outgoing synapses are renewing.

    The chains are independent, so they are spread over the threads (``prange``), each running all
    its steps; a chain does the same operations in the same order as in a serial run and its random
    numbers are keyed, so the result is the same bit for bit at any thread count."""
    nb = v.shape[0]
    for b in prange(nb):
        _chain_run(b, steps, t0, every, dt, conductance, par, leak, wt, clamp, v_lo, v_hi, n_ref, seed, renew,
                   v, ge, gi, r, fired, since, gap, rec, counts)


@njit(cache=True)
def _chain_run(b, steps, t0, every, dt, conductance, par, leak, wt, clamp, v_lo, v_hi, n_ref, seed, renew,
               v, ge, gi, r, fired, since, gap, rec, counts):
    """All ``steps`` steps of chain ``b`` (:func:`sampling_run`)."""
    n = v.shape[1]
    for s in range(steps):
        t = t0 + s
        kb = key(seed, 2 * t)
        kn = key(seed, 2 * t + 1)
        for j in range(n):
            if fired[b, j]:
                g = float(gap[b, j])
                renewing = renew[j] != 0
                for k in range(n):
                    w = wt[j, k]
                    if w > 0.0:
                        ge[b, k] += w * (1.0 - math.exp(g * par[P_LDE, k])) if renewing else w
                    elif w < 0.0:
                        gi[b, k] -= w * (1.0 - math.exp(g * par[P_LDI, k])) if renewing else w
                fired[b, j] = 0
        for k in range(n):
            idx = b * n + k
            if par[P_LE, k] > 0.0:
                ge[b, k] += par[P_WE, k] * poisson_k(kb, 2 * idx, par[P_LE, k], par[P_XE, k])
            if par[P_LI, k] > 0.0:
                gi[b, k] += par[P_WI, k] * poisson_k(kb, 2 * idx + 1, par[P_LI, k], par[P_XI, k])
            if r[b, k] > 0:
                r[b, k] -= 1
            if r[b, k] > 0:
                v[b, k] = par[P_RESET, k]
            else:
                vv = v[b, k]
                if conductance:
                    g = par[P_GL, k] + ge[b, k] + gi[b, k]
                    vinf = (par[P_GL, k] * leak[b, k] + ge[b, k] * par[P_EE, k] + gi[b, k] * par[P_EI, k]) / g
                    vv = vinf + (vv - vinf) * math.exp(-dt * g / par[P_C, k])
                else:
                    vinf = leak[b, k] + (ge[b, k] - gi[b, k]) / par[P_GL, k]
                    vv = vinf + (vv - vinf) * par[P_DM, k]
                if par[P_NOISE, k] > 0.0:
                    vv += par[P_NOISE, k] * normal_k(kn, idx)
                vv = min(max(vv, v_lo), v_hi)
                c = clamp[b, k]
                if c == 1 or (c < 0 and vv > par[P_TH, k]):
                    vv = par[P_RESET, k]
                    r[b, k] = n_ref
                    fired[b, k] = 1
                    counts[b, k] += 1
                    gap[b, k] = since[b, k]
                    since[b, k] = 0
                v[b, k] = vv
            since[b, k] += 1
            ge[b, k] *= par[P_DE, k]
            gi[b, k] *= par[P_DI, k]
        if (s + 1) % every == 0:
            i = (s + 1) // every - 1
            for k in range(n):
                rec[i, b, k] = 1 if r[b, k] > 0 else 0
