"""Discretised NIR neurons: pure functions over arrays (plain numpy, float64).

Every neuron node of NIR (IF, LIF, CubaLIF, LI, CubaLI, I) is, between spikes, a linear ODE. Over
one step of length dt (step t covers ((t−1)·dt, t·dt]; the state at t·dt is the step's output) it
becomes one affine update with coefficients fixed per node (:func:`coefficients`):

    I(t) = a_s I(t−1) + b_s u(t),                      u(t) = w_in x(t)     (CubaLIF, CubaLI only)
    v(t) = v_leak + a_m (v(t−1) − v_leak) + c I(t−1) + d u(t) − p(t−1)     (u = x without synapse)

where x(t) is the node's input of step t, p the pending subtraction of a "subtract" reset (below)
and the coefficients are, with a = exp(−dt/τ) ("exact") or a = 1 − dt/τ ("euler"):

* LI, LIF (τ v' = (v_leak − v) + r I): exact: a_m = exp(−dt/τ), d = r (1 − a_m) — the exact
  solution for the input held constant over the step (zero-order hold, ZOH); euler: a_m = 1 − dt/τ,
  d = r dt/τ. No synapse (c = 0).
* I, IF (v' = r I): a_m = 1, d = r dt, v_leak = 0 (both methods: the ZOH solution is the Euler step).
* CubaLI, CubaLIF (τ_syn I' = −I + w_in S, τ_mem v' = (v_leak − v) + r I), with the input S read
  by one of two conventions (``synapse_input``):

  - ``"hold"`` (default): S is held constant over the step (ZOH, as every other node's input).
    exact: a_s = e^{−dt/τ_syn}, b_s = 1 − a_s, c = r k, d = r (1 − a_m − k), the exact solution of
    the two-variable system over the step, with
        k = (dt/τ_mem) · a_m · (e^γ − 1)/γ,   γ = dt (1/τ_mem − 1/τ_syn)
    (= τ_syn/(τ_syn − τ_mem) · (a_s − a_m); k = (dt/τ) e^{−dt/τ} when τ_syn = τ_mem = τ). For a
    constant S from rest: I(t) = w_in S (1 − e^{−t/τ_syn}) and
        v(t) = v_leak + r w_in S [1 − (τ_syn e^{−t/τ_syn} − τ_mem e^{−t/τ_mem}) / (τ_syn − τ_mem)].
    euler (strict forward Euler, v driven by the current at the start of the step, as Norse and
    the NIR paper's reference code): a_s = 1 − dt/τ_syn, b_s = dt/τ_syn, c = r dt/τ_mem, d = 0.
    So a step input of amplitude S raises I by w_in·S·dt/τ_syn under euler and by
    w_in·S·(1 − e^{−dt/τ_syn}) under exact.
  - ``"impulse"``: each step's S is an impulse of area S·dt at the start of the step, so I jumps
    by w_in·S·dt/τ_syn (both methods), then the system evolves freely over the step: exact:
    b_s = a_s dt/τ_syn, c = r k, d = r k dt/τ_syn; euler: b_s = a_s dt/τ_syn, c = r dt/τ_mem,
    d = c dt/τ_syn. With w_in = τ_syn/dt and r = 1/k (exact) this is exactly neuroemu's CUBA kernel
    i(t) = β i(t−1) + x(t), v(t) = α v(t−1) + i(t); with w_in = τ_syn/dt, r = τ_mem/dt (euler),
    exactly snnTorch's ``Synaptic``.

Spiking nodes (IF, LIF, CubaLIF) spike at step t when v(t) > v_threshold (strictly), not while
refractory; the recorded membrane is v(t) before the reset. Reset modes:

* ``"to_value"`` (NIR's): v ← v_reset at the spike, so the next step leaks from v_reset (p = 0);
* ``"subtract"``: the next step's update subtracts v_threshold, not leaked (p(t) = z(t) v_threshold):
  the discrete convention of e-prop, Perez-Nieves & Goodman, snnTorch and the NIR paper's code.

Refractory period of n steps: a spike at t makes steps t+1 … t+n refractory: no spike, and with
mode ``"ignore_input"`` (neuroemu's CUBA kernel) the drive c I + d u is dropped (the membrane only
leaks; the synaptic current still evolves), with ``"block_spikes"`` (e-prop) the membrane integrates.

State at t = 0: v = v_leak (v = 0 for I and IF), I = 0, no refractory count.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

METHODS = ("exact", "euler")
SYNAPSE_INPUTS = ("hold", "impulse")
RESETS = ("to_value", "subtract")
REFRACTORY_MODES = ("ignore_input", "block_spikes")


class NeuronParams(NamedTuple):
    """Per-step coefficients of one neuron node (arrays broadcast to the node's shape)."""

    v_leak: np.ndarray
    a_m: np.ndarray
    c: np.ndarray
    d: np.ndarray
    a_s: np.ndarray
    b_s: np.ndarray
    w_in: np.ndarray
    v_th: np.ndarray
    v_reset: np.ndarray
    v0: np.ndarray
    synaptic: bool
    spiking: bool
    subtract: bool
    refractory_steps: int
    ignore_input: bool


class NeuronState(NamedTuple):
    v: np.ndarray
    i: np.ndarray
    pending: np.ndarray
    ref: np.ndarray


def cuba_k(dt: float, tau_mem: np.ndarray, tau_syn: np.ndarray) -> np.ndarray:
    """k = ∫₀^dt (1/τ_mem) e^{−(dt−s)/τ_mem} e^{−s/τ_syn} ds: the membrane's response at the end of
    a step to a synaptic current that starts at 1 and decays freely (see the module docstring)."""
    tm, ts = np.asarray(tau_mem, np.float64), np.asarray(tau_syn, np.float64)
    a_m, a_s = np.exp(-dt / tm), np.exp(-dt / ts)
    g = dt * (1.0 / tm - 1.0 / ts)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        small = np.abs(g) < 1e-300
        phi = np.where(small, 1.0, np.expm1(g) / np.where(small, 1.0, g))
        k = (dt / tm) * a_m * phi
        big = g > 30.0  # a_m·(e^γ − 1) = a_s − a_m without overflow
        k = np.where(big, (dt / tm) * (a_s - a_m) / np.where(big, g, 1.0), k)
    return k


def coefficients(kind: str, prm: dict, dt: float, method: str, synapse_input: str = "hold") -> dict:
    """The update coefficients of a neuron node ``kind`` (LI, LIF, I, IF, CubaLI, CubaLIF) with NIR
    parameters ``prm`` (float64 arrays of one shape) for step ``dt`` and ``method``."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if synapse_input not in SYNAPSE_INPUTS:
        raise ValueError(f"synapse_input: expected one of {', '.join(SYNAPSE_INPUTS)}, got {synapse_input!r}")
    zero = np.zeros_like(prm["r"])
    out = {"a_s": zero, "b_s": zero, "c": zero, "w_in": zero + 1.0}
    r = prm["r"]
    if kind in ("I", "IF"):
        out.update(v_leak=zero, a_m=zero + 1.0, d=r * dt, v0=zero)
    elif kind in ("LI", "LIF"):
        tau = prm["tau"]
        if method == "exact":
            out.update(a_m=np.exp(-dt / tau), d=-r * np.expm1(-dt / tau))
        else:
            out.update(a_m=1.0 - dt / tau, d=r * dt / tau)
        out.update(v_leak=prm["v_leak"], v0=prm["v_leak"])
    elif kind in ("CubaLI", "CubaLIF"):
        tm, ts = prm["tau_mem"], prm["tau_syn"]
        if method == "exact":
            a_m, a_s = np.exp(-dt / tm), np.exp(-dt / ts)
            c = r * cuba_k(dt, tm, ts)
            if synapse_input == "hold":
                b_s, d = -np.expm1(-dt / ts), r * (1.0 - a_m) - c
            else:
                b_s, d = a_s * dt / ts, c * dt / ts
        else:
            a_m, a_s = 1.0 - dt / tm, 1.0 - dt / ts
            c = r * dt / tm
            if synapse_input == "hold":
                b_s, d = dt / ts, zero
            else:
                b_s, d = a_s * dt / ts, c * dt / ts
        out.update(v_leak=prm["v_leak"], v0=prm["v_leak"], a_m=a_m, a_s=a_s, b_s=b_s, c=c, d=d, w_in=prm["w_in"])
    else:
        raise ValueError(f"kind: not a neuron node: {kind!r}")
    return out


def initial_state(p: NeuronParams, batch: int, shape: tuple) -> NeuronState:
    full = (int(batch), *shape)
    v = np.broadcast_to(p.v0, full).astype(np.float64)
    return NeuronState(v, np.zeros(full), np.zeros(full), np.zeros(full, np.int64))


def neuron_step(p: NeuronParams, state: NeuronState, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, NeuronState]:
    """One step on input x (batch, *shape): (output, membrane before the reset, new state). The
    output is the spikes (0/1) of a spiking node, else the membrane."""
    refr = state.ref > 0
    if p.synaptic:
        u = p.w_in * x
        drive = p.c * state.i + p.d * u
        i_new = p.a_s * state.i + p.b_s * u
    else:
        drive = p.d * x
        i_new = state.i
    if p.ignore_input and p.refractory_steps:
        drive = np.where(refr, 0.0, drive)
    v = p.v_leak + p.a_m * (state.v - p.v_leak) + drive - state.pending
    if not p.spiking:
        return v, v, NeuronState(v, i_new, state.pending, state.ref)
    spike = (v > p.v_th) & ~refr
    z = spike.astype(np.float64)
    ref = np.where(spike, p.refractory_steps, np.maximum(state.ref - 1, 0)) if p.refractory_steps else state.ref
    if p.subtract:
        return z, v, NeuronState(v, i_new, z * p.v_th, ref)
    return z, v, NeuronState(np.where(spike, p.v_reset, v), i_new, state.pending, ref)


def decay_to_tau(dt: float, decay: float, what: str) -> float:
    """τ = −dt / ln(decay) of a per-step decay in (0, 1)."""
    decay = float(decay)
    if not 0.0 < decay < 1.0:
        raise ValueError(f"{what}: a per-step decay of {decay!r} has no finite time constant (expected 0 < decay < 1)")
    return -float(dt) / math.log(decay)
