"""Ideal neuron substrates: discrete-time LIF, current-based LIF (CUBA), ALIF, leaky readout,
and rate units.

Functional core: every model is a pair of pure functions over arrays,

    z, new_state = lif_step(state, params, x)            x: (batch, n)
    z, v, final_state = lif_sequence(xs, params, state0)  xs: (T, batch, n)

(``cuba_*``, ``alif_*`` and ``readout_*`` alike). Inputs are float32 or float64; the state takes
the input's dtype and spikes are returned as 0/1 in that dtype (ready for the next matmul).
Nothing passed in is modified.

Dynamics (e-prop convention, Bellec et al. 2020; with reset by subtraction this is also the
Perez-Nieves & Goodman 2021 LIF, v(t+1) = β v(t) + I(t) − R(t)), with x = I(t+1):

* LIF: v(t+1) = α v(t) + I(t+1) − z(t) v_th (``reset_mode=0``), or with ``reset_mode=1``
  v(t+1) = α v_reset + I(t+1) after a spike (v(t) is replaced by v_reset);
  z(t+1) = H(v(t+1) − v_th), H(0) = 0 (strictly above threshold).
* Refractory period: after a spike the neuron is refractory for ``refractory_steps`` steps.
  Our choice: while refractory the input is *ignored* (the voltage keeps its leak and reset) and
  no spike is emitted, whatever the voltage.
* CUBA: i(t+1) = β_syn i(t) + x(t+1); v is driven by i in place of x.
* ALIF: a(t+1) = ρ a(t) + z(t), threshold A(t+1) = v_th + β_adapt a(t+1), z = H(v − A);
  the reset still subtracts v_th (as in the e-prop equations).
* Readout: y(t+1) = κ y(t) + x(t+1), non-spiking.
* Rate units: :func:`hard_sigmoid` clip(x, 0, 1) and :func:`relu`.

Decay factors come from time constants by α = exp(−dt/τ): see the ``*_params_from_tau`` helpers.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._kernels import neurons as _K

__all__ = [
    "LIFParams", "CubaParams", "ALIFParams", "ReadoutParams",
    "LIFState", "CubaState", "ALIFState", "ReadoutState",
    "lif_step", "lif_sequence", "cuba_step", "cuba_sequence", "alif_step", "alif_sequence",
    "readout_step", "readout_sequence",
    "lif_params_from_tau", "cuba_params_from_tau", "alif_params_from_tau",
    "readout_params_from_tau", "decay", "hard_sigmoid", "relu",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------- parameters
class LIFParams(NamedTuple):
    """LIF parameters. alpha: membrane decay per step exp(−dt/τ_mem); v_th: threshold;
    v_reset: voltage after a spike when reset_mode = 1; reset_mode: 0 subtract v_th, 1 set to
    v_reset; refractory_steps: steps after a spike with input ignored and no spike."""

    alpha: float
    v_th: float = 1.0
    v_reset: float = 0.0
    reset_mode: float = 0.0
    refractory_steps: float = 0.0


class CubaParams(NamedTuple):
    """Current-based LIF: LIF parameters plus beta_syn = exp(−dt/τ_syn)."""

    alpha: float
    beta_syn: float
    v_th: float = 1.0
    v_reset: float = 0.0
    reset_mode: float = 0.0
    refractory_steps: float = 0.0


class ALIFParams(NamedTuple):
    """Adaptive LIF: rho = exp(−dt/τ_a) adaptation decay, beta_adapt threshold increase per unit
    of adaptation (A = v_th + beta_adapt·a), and the LIF parameters."""

    alpha: float
    rho: float
    beta_adapt: float
    v_th: float = 1.0
    v_reset: float = 0.0
    reset_mode: float = 0.0
    refractory_steps: float = 0.0


class ReadoutParams(NamedTuple):
    """Leaky readout: alpha_out = κ = exp(−dt/τ_out)."""

    alpha_out: float


def decay(dt: float, tau: float) -> float:
    """exp(−dt/τ); τ = inf gives 1 (no leak), τ = 0 gives 0."""
    dt, tau = float(dt), float(tau)
    if not dt > 0 or not tau >= 0 or math.isnan(tau):
        raise ValueError(f"decay: need dt > 0 and tau >= 0 (seconds), got dt={dt}, tau={tau}")
    return 0.0 if tau == 0 else math.exp(-dt / tau)


def lif_params_from_tau(dt, tau_mem, v_th=1.0, v_reset=0.0, reset_mode=0, refractory=0.0) -> LIFParams:
    """LIFParams from a time step and membrane time constant (seconds). ``refractory`` is a
    duration in seconds, rounded to whole steps."""
    return _check_lif(LIFParams(decay(dt, tau_mem), float(v_th), float(v_reset), float(reset_mode),
                                float(round(float(refractory) / float(dt)))), "LIFParams")


def cuba_params_from_tau(dt, tau_mem, tau_syn, v_th=1.0, v_reset=0.0, reset_mode=0,
                         refractory=0.0) -> CubaParams:
    """CubaParams from dt, τ_mem and τ_syn (seconds)."""
    p = lif_params_from_tau(dt, tau_mem, v_th, v_reset, reset_mode, refractory)
    return _check_lif(CubaParams(p.alpha, decay(dt, tau_syn), *p[1:]), "CubaParams")


def alif_params_from_tau(dt, tau_mem, tau_adapt, beta_adapt, v_th=1.0, v_reset=0.0, reset_mode=0,
                         refractory=0.0) -> ALIFParams:
    """ALIFParams from dt, τ_mem, τ_adapt (seconds) and the adaptation strength beta_adapt."""
    p = lif_params_from_tau(dt, tau_mem, v_th, v_reset, reset_mode, refractory)
    return _check_lif(ALIFParams(p.alpha, decay(dt, tau_adapt), float(beta_adapt), *p[1:]), "ALIFParams")


def readout_params_from_tau(dt, tau_out) -> ReadoutParams:
    """ReadoutParams from dt and τ_out (seconds)."""
    return ReadoutParams(decay(dt, tau_out))


# ----------------------------------------------------------------------------- states
class LIFState(NamedTuple):
    """v: voltage, z: last spikes (0/1, same dtype), ref: refractory steps left (int32)."""

    v: np.ndarray
    z: np.ndarray
    ref: np.ndarray

    @classmethod
    def zeros(cls, batch: int, n: int, dtype=np.float32) -> "LIFState":
        return cls(*_zeros(batch, n, dtype, 2))


class CubaState(NamedTuple):
    """i: synaptic current, plus the LIF state."""

    i: np.ndarray
    v: np.ndarray
    z: np.ndarray
    ref: np.ndarray

    @classmethod
    def zeros(cls, batch: int, n: int, dtype=np.float32) -> "CubaState":
        return cls(*_zeros(batch, n, dtype, 3))


class ALIFState(NamedTuple):
    """v: voltage, a: adaptation variable, z: last spikes, ref: refractory steps left."""

    v: np.ndarray
    a: np.ndarray
    z: np.ndarray
    ref: np.ndarray

    @classmethod
    def zeros(cls, batch: int, n: int, dtype=np.float32) -> "ALIFState":
        return cls(*_zeros(batch, n, dtype, 3))


class ReadoutState(NamedTuple):
    """y: readout value."""

    y: np.ndarray

    @classmethod
    def zeros(cls, batch: int, n: int, dtype=np.float32) -> "ReadoutState":
        return cls(np.zeros((batch, n), _float_dtype(dtype, "dtype")))


def _zeros(batch, n, dtype, n_float):
    dt = _float_dtype(dtype, "dtype")
    return [np.zeros((int(batch), int(n)), dt) for _ in range(n_float)] + [np.zeros((int(batch), int(n)), np.int32)]


# ----------------------------------------------------------------------------- validation
def _float_dtype(dtype, what):
    dt = np.dtype(dtype)
    if dt not in _FLOATS:
        raise ValueError(f"{what}: expected float32 or float64, got {dt}")
    return dt


def _check_input(x, ndim, what):
    x = np.asarray(x)
    if x.ndim != ndim:
        shape = "(batch, n)" if ndim == 2 else "(T, batch, n)"
        raise ValueError(f"{what}: expected a {ndim}-d array {shape}, got shape {x.shape}")
    _float_dtype(x.dtype, what)
    return np.ascontiguousarray(x)


def _check_lif(p, name):
    for f, val in zip(p._fields, p):
        if not math.isfinite(float(val)):
            raise ValueError(f"{name}.{f}: must be finite, got {val}")
    if p.reset_mode not in (0.0, 1.0):
        raise ValueError(f"{name}.reset_mode: expected 0 (subtract) or 1 (to value), got {p.reset_mode}")
    if p.refractory_steps < 0 or p.refractory_steps != int(p.refractory_steps):
        raise ValueError(f"{name}.refractory_steps: expected a whole number >= 0, got {p.refractory_steps}")
    return p


def _dyn(params) -> _K.DynParams:
    """Map the public parameter tuples onto the shared kernel parameters (all floats)."""
    if isinstance(params, LIFParams):
        p = _check_lif(params, "LIFParams")
        bs, rho, ba = 0.0, 0.0, 0.0
    elif isinstance(params, CubaParams):
        p = _check_lif(params, "CubaParams")
        bs, rho, ba = p.beta_syn, 0.0, 0.0
    elif isinstance(params, ALIFParams):
        p = _check_lif(params, "ALIFParams")
        bs, rho, ba = 0.0, p.rho, p.beta_adapt
    else:
        raise ValueError(f"params: expected LIFParams, CubaParams or ALIFParams, got {type(params).__name__}")
    return _K.DynParams(float(p.alpha), float(p.v_th), float(p.v_reset), float(p.reset_mode),
                        float(p.refractory_steps), float(bs), float(rho), float(ba))


def _state_arrays(state, cls, shape, dtype):
    """Copies of the state's arrays (checked against shape and dtype), or zeros for None."""
    if state is None:
        return list(cls.zeros(shape[0], shape[1], dtype))
    if not isinstance(state, cls):
        raise ValueError(f"state: expected {cls.__name__}, got {type(state).__name__}")
    out = []
    for f, arr in zip(state._fields, state):
        arr = np.asarray(arr)
        if arr.shape != shape:
            raise ValueError(f"{cls.__name__}.{f}: expected shape {shape} (batch, n) to match the input, got {arr.shape}")
        want = np.dtype(np.int32) if f == "ref" else dtype
        if f != "ref" and arr.dtype != dtype:
            raise ValueError(f"{cls.__name__}.{f}: dtype {arr.dtype} does not match the input dtype {dtype}")
        out.append(np.array(arr, dtype=want, order="C", copy=True))
    return out


_EMPTY = {np.dtype(np.float32): np.zeros((0, 0, 0), np.float32), np.dtype(np.float64): np.zeros((0, 0, 0))}


def _run_step(cls, state, params, x, what):
    x = _check_input(x, 2, what)
    p = _dyn(params)
    arrs = dict(zip(cls._fields, _state_arrays(state, cls, x.shape, x.dtype)))
    a = arrs.get("a", np.zeros(x.shape, x.dtype))
    i = arrs.get("i", np.zeros(x.shape, x.dtype))
    _K.neuron_step(x, p, arrs["v"], arrs["z"], arrs["ref"], a, i)
    new = cls(**arrs)
    return arrs["z"].copy(), new


def _run_sequence(cls, xs, params, state0, what):
    xs = _check_input(xs, 3, what)
    p = _dyn(params)
    shape = xs.shape[1:]
    arrs = dict(zip(cls._fields, _state_arrays(state0, cls, shape, xs.dtype)))
    a = arrs.get("a", np.zeros(shape, xs.dtype))
    i = arrs.get("i", np.zeros(shape, xs.dtype))
    zs = np.empty(xs.shape, xs.dtype)
    vs = np.empty(xs.shape, xs.dtype)
    as_ = np.empty(xs.shape, xs.dtype) if "a" in arrs else _EMPTY[xs.dtype]
    _K.neuron_sequence(xs, p, arrs["v"], arrs["z"], arrs["ref"], a, i, zs, vs, as_)
    return zs, vs, as_, cls(**arrs)


# ----------------------------------------------------------------------------- public API
def lif_step(state: LIFState | None, params: LIFParams, x) -> tuple[np.ndarray, LIFState]:
    """One LIF step. x: input current I(t+1), (batch, n). state None = all zeros.
    Returns (z(t+1), new state)."""
    if not isinstance(params, LIFParams):
        raise ValueError(f"params: expected LIFParams, got {type(params).__name__}")
    return _run_step(LIFState, state, params, x, "lif_step input")


def lif_sequence(xs, params: LIFParams, state0: LIFState | None = None):
    """LIF over T steps. xs: input currents (T, batch, n). Returns (z, v, final_state), z and v
    of shape (T, batch, n)."""
    if not isinstance(params, LIFParams):
        raise ValueError(f"params: expected LIFParams, got {type(params).__name__}")
    zs, vs, _, st = _run_sequence(LIFState, xs, params, state0, "lif_sequence inputs")
    return zs, vs, st


def cuba_step(state: CubaState | None, params: CubaParams, x) -> tuple[np.ndarray, CubaState]:
    """One current-based LIF step; x is added to the synaptic current. Returns (z, new state)."""
    if not isinstance(params, CubaParams):
        raise ValueError(f"params: expected CubaParams, got {type(params).__name__}")
    return _run_step(CubaState, state, params, x, "cuba_step input")


def cuba_sequence(xs, params: CubaParams, state0: CubaState | None = None):
    """Current-based LIF over T steps. Returns (z, v, final_state)."""
    if not isinstance(params, CubaParams):
        raise ValueError(f"params: expected CubaParams, got {type(params).__name__}")
    zs, vs, _, st = _run_sequence(CubaState, xs, params, state0, "cuba_sequence inputs")
    return zs, vs, st


def alif_step(state: ALIFState | None, params: ALIFParams, x) -> tuple[np.ndarray, ALIFState]:
    """One adaptive-LIF step. Returns (z, new state)."""
    if not isinstance(params, ALIFParams):
        raise ValueError(f"params: expected ALIFParams, got {type(params).__name__}")
    return _run_step(ALIFState, state, params, x, "alif_step input")


def alif_sequence(xs, params: ALIFParams, state0: ALIFState | None = None):
    """Adaptive LIF over T steps. Returns (z, v, a, final_state), each trace (T, batch, n)."""
    if not isinstance(params, ALIFParams):
        raise ValueError(f"params: expected ALIFParams, got {type(params).__name__}")
    return _run_sequence(ALIFState, xs, params, state0, "alif_sequence inputs")


def _readout_state(state, shape, dtype):
    if state is None:
        return np.zeros(shape, dtype)
    if not isinstance(state, ReadoutState):
        raise ValueError(f"state: expected ReadoutState, got {type(state).__name__}")
    y = np.asarray(state.y)
    if y.shape != shape:
        raise ValueError(f"ReadoutState.y: expected shape {shape} (batch, n) to match the input, got {y.shape}")
    if y.dtype != dtype:
        raise ValueError(f"ReadoutState.y: dtype {y.dtype} does not match the input dtype {dtype}")
    return np.array(y, order="C", copy=True)


def _alpha_out(params):
    if not isinstance(params, ReadoutParams):
        raise ValueError(f"params: expected ReadoutParams, got {type(params).__name__}")
    k = float(params.alpha_out)
    if not math.isfinite(k):
        raise ValueError(f"ReadoutParams.alpha_out: must be finite, got {k}")
    return k


def readout_step(state: ReadoutState | None, params: ReadoutParams, x) -> tuple[np.ndarray, ReadoutState]:
    """One leaky-readout step y = κ y + x. Returns (y, new state)."""
    k = _alpha_out(params)
    x = _check_input(x, 2, "readout_step input")
    y = _readout_state(state, x.shape, x.dtype)
    _K.readout_step(x, k, y)
    return y.copy(), ReadoutState(y)


def readout_sequence(xs, params: ReadoutParams, state0: ReadoutState | None = None):
    """Leaky readout over T steps. Returns (y (T, batch, n), final_state)."""
    k = _alpha_out(params)
    xs = _check_input(xs, 3, "readout_sequence inputs")
    y = _readout_state(state0, xs.shape[1:], xs.dtype)
    ys = np.empty(xs.shape, xs.dtype)
    _K.readout_sequence(xs, k, y, ys)
    return ys, ReadoutState(y)


def hard_sigmoid(x):
    """Rate unit clip(x, 0, 1)."""
    return np.clip(x, 0, 1)


def relu(x):
    """Rate unit max(x, 0)."""
    return np.maximum(x, 0)
