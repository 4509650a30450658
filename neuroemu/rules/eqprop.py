"""Equilibrium propagation (EqProp) for layered energy-based networks.

Scellier & Bengio, "Equilibrium propagation: bridging the gap between energy-based models and
backpropagation", Front. Comput. Neurosci. 11:24, 2017; Laborieux et al., "Scaling equilibrium
propagation to deep ConvNets by drastically reducing its gradient estimator bias", Front.
Neurosci. 15:633674, 2021 (symmetric nudging, cross-entropy read-out); Scellier et al., "Energy-
based learning algorithms for analog computing: a comparative study", NeurIPS 2023. Like every
rule in :mod:`neuroemu.rules` it returns the update it wants, in weight units, and never touches
devices.

Network
-------
Layer sizes n_0 (inputs), n_1 … n_L; weights W_l (n_l, n_{l−1}) and biases b_l (n_l,), l = 1..L.
States s_l (batch, n_l), l ≥ 1, live in [0, 1]; ρ(s) = clip(s, 0, 1) (hard sigmoid), so ρ(s) = s
and ρ'(s) = 1 on the states. The input is clamped, s_0 = x, and enters linearly (as in Laborieux's
code), so standardised inputs outside [0, 1] are allowed. Energy per sample:

    E(s) = ½ Σ_l ‖s_l‖² − Σ_l ρ(s_l)·(W_l ρ(s_{l−1})) − Σ_l b_l·ρ(s_l)
    ∂E/∂s_l = s_l − h_l,   h_l = W_l ρ(s_{l−1}) + W_{l+1}ᵀ ρ(s_{l+1}) + b_l   (no second term for l = L)

Outputs (:class:`EqPropConfig` ``output``):

* ``"mse"``: the top state layer is the output, o = s_L; cost C = ½‖s_L − d‖²; F = E + β C, so the
  top layer feels ∂F/∂s_L = ∂E/∂s_L + β (s_L − d).
* ``"xent"`` (Laborieux et al. 2021): a read-out that is not part of the energy,
  o = softmax(W_out ρ(s_L) + b_out), cost C = −Σ_k d_k log o_k; the nudging force on s_L is
  −β ρ'(s_L) ⊙ W_outᵀ (o − d) = −β ∂C/∂s_L. W_out, b_out (stored as the last entries of
  ``weights``/``biases``, so sizes[-1] is the number of classes) learn by the plain gradient of C at
  the free fixed point: ΔW_out = −η (o − d)ᵀ s_L⁰ / B, Δb_out = −η mean_b (o − d).

Dynamics: projected Euler steps of ds/dt = −∂F/∂s, all layers at once,
s ← clip(s − dt ∂F/∂s, 0, 1). Free phase: ``t_free`` steps from s = 0 (or given states) with β = 0
→ s⁰; nudged phase: ``t_nudge`` steps from s⁰ with β ≠ 0 → s^β. The bottom layer's drive
W_1 x + b_1 is computed once (per phase, and once for all phases of an update); the loop runs in one numba kernel
(:mod:`neuroemu._kernels.eqprop`) with the other products through BLAS.

Update (batch mean over B samples, per-layer rates η_l)
-------------------------------------------------------
    ΔW_l = (η_l / β) [ρ(s_l^β) ρ(s_{l−1}^β)ᵀ − ρ(s_l⁰) ρ(s_{l−1}⁰)ᵀ] / B
    Δb_l = (η_l / β) mean_b [ρ(s_l^β) − ρ(s_l⁰)]

Nudging (``nudge``): ``"one_sided"`` uses +β; ``"random_sign"`` draws the sign of β once per batch
from the rng (β above is then the signed value); ``"symmetric"`` runs two nudged phases at +β and −β
from s⁰ and replaces s⁰ by s^{−β} and 1/β by 1/(2β), which removes the O(β) bias of the estimate.
As β → 0, ΔW → −η ∂C(s⁰(W))/∂W: the update descends the loss (Scellier & Bengio 2017, Thm 1).
The products are formed as (a_l − c_l)ᵀ a_{l−1} + c_lᵀ (a_{l−1} − c_{l−1}) (a, c the two phases,
a_0 = c_0 = x), the same quantity without the cancellation of two large products.

Initialisation (:func:`init_params`) as in Laborieux's code (PyTorch ``nn.Linear`` defaults):
W_l and b_l uniform in ±1/√n_{l−1} (fan-in); the read-out likewise with fan-in n_L.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba.typed import List

from neuroemu._kernels import eqprop as _K
from neuroemu.chip import Chip, Update
from neuroemu.errors import ConfigError
from neuroemu.rules.backprop import softmax
from neuroemu.rules.base import Rule, Step
from ..rng import as_rng

__all__ = [
    "NUDGES",
    "OUTPUTS",
    "EqProp",
    "EqPropConfig",
    "EqPropNetwork",
    "contrastive_update",
    "cost",
    "energy",
    "energy_grad",
    "init_params",
    "readout",
    "readout_update",
    "relax",
]

NUDGES = ("one_sided", "random_sign", "symmetric")
OUTPUTS = ("mse", "xent")


def _number(val) -> bool:
    return isinstance(val, (int, float, np.integer, np.floating)) and not isinstance(val, bool) and math.isfinite(val)


# ----------------------------------------------------------------------------- configuration
@dataclasses.dataclass(frozen=True)
class EqPropConfig:
    """Settings of equilibrium propagation (see the module docstring).

    dt: Euler step, 0 < dt <= 1 (dt = 1 is the fixed-point iteration s ← clip(h, 0, 1)); t_free,
    t_nudge: steps of the free and of each nudged phase; beta: nudging strength > 0; nudge: one of
    :data:`NUDGES`; output: ``"mse"`` (top state layer vs. target) or ``"xent"`` (softmax read-out,
    cross-entropy). Defaults: the one-layer EP run of Liu et al. 2024 (papers.md §6).
    """

    dt: float = 0.2
    t_free: int = 40
    t_nudge: int = 10
    beta: float = 0.2
    nudge: str = "random_sign"
    output: str = "mse"

    def __post_init__(self):
        if not (_number(self.dt) and 0 < self.dt <= 1):
            raise ConfigError(f"EqPropConfig.dt: expected a finite number in (0, 1], got {self.dt!r}")
        for name in ("t_free", "t_nudge"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ConfigError(f"EqPropConfig.{name}: expected an integer >= 1, got {val!r}")
        if not (_number(self.beta) and self.beta > 0):
            raise ConfigError(f"EqPropConfig.beta: expected a finite number > 0, got {self.beta!r}")
        if self.nudge not in NUDGES:
            raise ConfigError(f"EqPropConfig.nudge: expected one of {NUDGES}, got {self.nudge!r}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"EqPropConfig.output: expected one of {OUTPUTS}, got {self.output!r}")


# ----------------------------------------------------------------------------- validation helpers
def _check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise ConfigError(f"output: expected one of {OUTPUTS}, got {output!r}")
    return output


def _check_sizes(sizes, output: str) -> tuple[int, ...]:
    try:
        out = tuple(sizes)
    except TypeError:
        raise ConfigError(f"sizes: expected a sequence of layer sizes, got {sizes!r}") from None
    least = 3 if output == "xent" else 2
    if len(out) < least or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in out):
        parts = "inputs, state layers, classes" if output == "xent" else "inputs, state layers"
        raise ConfigError(f"sizes: expected at least {least} integers >= 1 ({parts}) for output {output!r}, "
                          f"got {sizes!r}")
    return tuple(int(n) for n in out)


def _writable(a: np.ndarray) -> np.ndarray:
    """a, or a copy when it is read-only (the kernels take one array type per list)."""
    return a if a.flags.writeable else a.copy()


def _dtype_of(a) -> np.dtype:
    dt = np.asarray(a).dtype
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float64)


def _params(weights, biases, output: str, dtype=None) -> tuple[list, list, int]:
    """C-contiguous copies-if-needed of the weights and biases in ``dtype`` (default: that of
    weights[0], float32 or float64), checked to chain; returns (ws, bs, number of state layers)."""
    output = _check_output(output)
    if len(weights) < (2 if output == "xent" else 1) or len(biases) != len(weights):
        raise ValueError(f"weights, biases: expected two lists of equal length >= {2 if output == 'xent' else 1} "
                         f"(output {output!r}), got {len(weights)} and {len(biases)}")
    dtype = _dtype_of(weights[0]) if dtype is None else np.dtype(dtype)
    ws, bs = [], []
    n_prev = None
    for i, (w, b) in enumerate(zip(weights, biases)):
        w = _writable(np.ascontiguousarray(w, dtype=dtype))
        b = _writable(np.ascontiguousarray(b, dtype=dtype))
        if w.ndim != 2 or (n_prev is not None and w.shape[1] != n_prev):
            want = f"(n_out, {n_prev})" if n_prev is not None else "(n_out, n_in)"
            raise ValueError(f"weights[{i}]: expected shape {want}, got {w.shape}")
        if b.shape != (w.shape[0],):
            raise ValueError(f"biases[{i}]: expected shape ({w.shape[0]},), got {b.shape}")
        ws.append(w)
        bs.append(b)
        n_prev = w.shape[0]
    return ws, bs, len(ws) - (output == "xent")


def _batch(x, n_in: int, dtype) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(f"x: expected shape (batch, {n_in}), got {x.shape}")
    x = np.ascontiguousarray(x, dtype=dtype)
    if not np.all(np.isfinite(x)):
        raise ValueError("x: expected finite values (found NaN or inf)")
    return x


def _states(states, nb: int, ns: Sequence[int], dtype, name: str = "states") -> list[np.ndarray]:
    """Fresh C-contiguous copies of the states projected onto [0, 1]; None gives zeros."""
    if states is None:
        return [np.zeros((nb, n), dtype) for n in ns]
    if len(states) != len(ns):
        raise ValueError(f"{name}: expected {len(ns)} state arrays, got {len(states)}")
    out = []
    for i, (s, n) in enumerate(zip(states, ns)):
        s = np.asarray(s)
        if s.shape != (nb, n):
            raise ValueError(f"{name}[{i}]: expected shape ({nb}, {n}), got {s.shape}")
        out.append(np.clip(s, 0, 1).astype(dtype, order="C"))
    return out


def _target(target, nb: int, n_out: int, dtype) -> np.ndarray:
    """The target as (B, n_out) in ``dtype``; integer labels (B,) become one-hot rows."""
    t = np.asarray(target)
    if t.ndim == 1 and t.shape[0] == nb and np.issubdtype(t.dtype, np.integer):
        if t.size and (t.min() < 0 or t.max() >= n_out):
            raise ValueError(f"target: expected labels in [0, {n_out}), got values in [{t.min()}, {t.max()}]")
        d = np.zeros((nb, n_out), dtype)
        d[np.arange(nb), t] = 1
        return d
    if t.shape != (nb, n_out):
        raise ValueError(f"target: expected shape ({nb}, {n_out}) or integer labels ({nb},), got {t.shape}")
    d = _writable(np.ascontiguousarray(t, dtype=dtype))
    if not np.all(np.isfinite(d)):
        raise ValueError("target: expected finite values (found NaN or inf)")
    return d


def _rates(lr, n: int) -> list[float]:
    if _number(lr):
        return [float(lr)] * n
    try:
        out = [float(v) for v in lr]
    except (TypeError, ValueError):
        raise ConfigError(f"lr: expected a number or a list of {n} numbers, got {lr!r}") from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise ConfigError(f"lr: expected a number or a list of {n} finite numbers (one per weight matrix), got {lr!r}")
    return out


# ----------------------------------------------------------------------------- functional core
def init_params(sizes, *, output: str = "mse", rng: Any = None, dtype=np.float32) -> tuple[list, list]:
    """Weights W_l (n_l, n_{l−1}) and biases b_l, uniform in ±1/√n_{l−1} (PyTorch ``nn.Linear``
    defaults, as in Laborieux's code). For ``"xent"`` the last pair is the read-out (sizes[-1]
    classes). rng: a Generator, a seed or None."""
    sizes = _check_sizes(sizes, _check_output(output))
    g = as_rng(rng)
    ws, bs = [], []
    for n_in, n_out in itertools.pairwise(sizes):
        a = 1.0 / math.sqrt(n_in)
        ws.append(g.uniform(-a, a, (n_out, n_in)).astype(dtype))
        bs.append(g.uniform(-a, a, n_out).astype(dtype))
    return ws, bs


def _drive(ws, bs, x) -> np.ndarray:
    """The bottom layer's drive W_1 x + b_1 (B, n_1), constant while x is clamped."""
    return np.ascontiguousarray(x @ ws[0].T + bs[0])


def _run(ws, bs, nl: int, drive, s, steps: int, dt: float, beta: float, d, xent: bool) -> None:
    """The relaxation on checked arrays; ``s`` (list of C-contiguous states) is updated in place."""
    dtype = drive.dtype
    empty2, empty1 = np.empty((0, 0), dtype), np.empty(0, dtype)
    if beta == 0 or d is None:
        mode, aux, w_out, b_out = 0, empty2, empty2, empty1
    elif xent:
        mode, aux, w_out, b_out = 2, d, ws[nl], bs[nl]
    else:
        mode, aux, w_out, b_out = 1, d, empty2, empty1
    _K.relax(drive, List(ws[:nl]), List(bs[:nl]), List(s), int(steps), float(dt), float(beta), mode, aux,
             w_out, b_out)


def relax(weights, biases, x, states=None, *, steps: int, dt: float, beta: float = 0.0, target=None,
          output: str = "mse") -> list[np.ndarray]:
    """``steps`` projected Euler steps of ds/dt = −∂(E + βC)/∂s from ``states`` (None: zeros);
    returns new state arrays (B, n_l), l = 1..L, in the dtype of weights[0]. The free phase is
    β = 0 (``target`` unused); a nudged phase needs the target (B, n_out) or labels (B,)."""
    ws, bs, nl = _params(weights, biases, output)
    x = _batch(x, ws[0].shape[1], ws[0].dtype)
    s = _states(states, x.shape[0], [w.shape[0] for w in ws[:nl]], x.dtype)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ConfigError(f"steps: expected an integer >= 0, got {steps!r}")
    if not (_number(dt) and 0 < dt <= 1):
        raise ConfigError(f"dt: expected a finite number in (0, 1], got {dt!r}")
    if not _number(beta):
        raise ConfigError(f"beta: expected a finite number, got {beta!r}")
    d = None
    if beta != 0:
        if target is None:
            raise ValueError("target: a nudged phase (beta != 0) needs a target")
        d = _target(target, x.shape[0], ws[-1].shape[0], x.dtype)
    _run(ws, bs, nl, _drive(ws, bs, x), s, steps, dt, beta, d, output == "xent")
    return s


def energy_grad(weights, biases, x, states, *, output: str = "mse") -> list[np.ndarray]:
    """∂E/∂s_l = s_l − h_l for each state layer (ρ' = 1 on [0, 1]), in float64."""
    ws, bs, nl = _params(weights, biases, output, np.float64)
    x = _batch(x, ws[0].shape[1], np.float64)
    s = [x] + _states(states, x.shape[0], [w.shape[0] for w in ws[:nl]], np.float64)
    out = []
    for i in range(1, nl + 1):
        h = s[i - 1] @ ws[i - 1].T + bs[i - 1]
        if i < nl:
            h = h + s[i + 1] @ ws[i]
        out.append(s[i] - h)
    return out


def energy(weights, biases, x, states, *, output: str = "mse") -> np.ndarray:
    """E(s) per sample (B,), in float64 (the read-out of ``"xent"`` is not part of it)."""
    ws, bs, nl = _params(weights, biases, output, np.float64)
    x = _batch(x, ws[0].shape[1], np.float64)
    s = [x] + _states(states, x.shape[0], [w.shape[0] for w in ws[:nl]], np.float64)
    e = np.zeros(x.shape[0])
    for i in range(1, nl + 1):
        e += 0.5 * np.sum(s[i] * s[i], axis=1) - np.sum(s[i] * (s[i - 1] @ ws[i - 1].T), axis=1) - s[i] @ bs[i - 1]
    return e


def readout(weights, biases, states, *, output: str = "mse") -> np.ndarray:
    """The network's output from its states: s_L (``"mse"``) or softmax(W_out s_L + b_out)
    (``"xent"``), (B, n_out)."""
    output = _check_output(output)
    top = np.asarray(states[-1])
    if output == "mse":
        return top.copy()
    w, b = np.asarray(weights[-1]), np.asarray(biases[-1])
    return softmax(top @ w.T.astype(top.dtype, copy=False) + b.astype(top.dtype, copy=False))


def cost(out, target, *, output: str = "mse") -> np.ndarray:
    """C per sample (B,): ½‖o − d‖² (``"mse"``) or −Σ d log o (``"xent"``, o the probabilities)."""
    o = np.asarray(out, dtype=np.float64)
    d = _target(target, o.shape[0], o.shape[1], np.float64)
    if _check_output(output) == "mse":
        return 0.5 * np.sum((o - d) ** 2, axis=1)
    return -np.sum(d * np.log(np.maximum(o, np.finfo(np.float64).tiny)), axis=1)


def contrastive_update(x, pos, neg, scale: float, lr) -> tuple[list, list]:
    """ΔW_l = η_l·scale·[a_l a_{l−1}ᵀ − c_l c_{l−1}ᵀ]/B and Δb_l = η_l·scale·mean_b(a_l − c_l) for
    the state lists a = ``pos``, c = ``neg`` (a_0 = c_0 = x); scale is 1/β (c = s⁰, a = s^β) or
    1/(2β) (a = s^{+β}, c = s^{−β}); lr a number or one per state layer. Arrays in the states'
    dtype."""
    x = np.asarray(x)
    nb = x.shape[0]
    lrs = _rates(lr, len(pos))
    dws, dbs = [], []
    a_prev = c_prev = np.asarray(x, dtype=pos[0].dtype)
    for i, (a, c) in enumerate(zip(pos, neg)):
        diff = a - c
        k = a.dtype.type(lrs[i] * scale / nb)
        dw = diff.T @ a_prev
        if i > 0:
            dw += c.T @ (a_prev - c_prev)
        dws.append(dw * k)
        dbs.append(diff.sum(axis=0) * k)
        a_prev, c_prev = a, c
    return dws, dbs


def readout_update(states, out, target, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """Plain gradient step of the cross-entropy read-out at the free state:
    ΔW_out = −η (o − d)ᵀ s_L / B, Δb_out = −η mean_b (o − d)."""
    top = np.asarray(states[-1])
    err = np.asarray(out, dtype=top.dtype) - _target(target, top.shape[0], np.shape(out)[1], top.dtype)
    k = top.dtype.type(-float(lr) / top.shape[0])
    return (err.T @ top) * k, err.sum(axis=0) * k


def _accuracy(out: np.ndarray, d: np.ndarray) -> float | None:
    """Fraction of argmax(out) == argmax(d) when every row of d is one-hot, else None."""
    if not (np.all((d == 0) | (d == 1)) and np.all(d.sum(axis=1) == 1)):
        return None
    return float(np.mean(np.argmax(out, axis=1) == np.argmax(d, axis=1)))


# ----------------------------------------------------------------------------- network
class EqPropNetwork:
    """A layered energy-based network trained by equilibrium propagation.

    sizes: (n_0, n_1, …, n_L) for ``"mse"``; (n_0, n_1, …, n_L, n_classes) for ``"xent"`` (the
    last pair is the read-out). ``weights`` and ``biases`` are plain lists (W_l (n_l, n_{l−1}),
    b_l (n_l,)) initialised by :func:`init_params`; they may be replaced from outside (e.g. by the
    weights read from a crossbar tile): every phase reads them anew. lr: default learning rate(s)
    of :meth:`wanted_update`, a number or one per weight matrix. rng (Generator, seed or None)
    initialises the weights and, continued, draws the random nudging signs when a call gives none.
    """

    def __init__(self, sizes, *, config: EqPropConfig = EqPropConfig(), rng: Any = None, dtype=np.float32,
                 lr=0.05):
        if not isinstance(config, EqPropConfig):
            raise ConfigError(f"config: expected an EqPropConfig, got {type(config).__name__}")
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ConfigError(f"dtype: expected float32 or float64, got {np.dtype(dtype)}")
        self.config = config
        self.sizes = _check_sizes(sizes, config.output)
        self.dtype = np.dtype(dtype)
        self._rng = as_rng(rng)
        self.weights, self.biases = init_params(self.sizes, output=config.output, rng=self._rng, dtype=self.dtype)
        self.lr = _rates(lr, len(self.weights))

    @property
    def xent(self) -> bool:
        return self.config.output == "xent"

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """(n_1, …, n_L): the sizes of the state layers."""
        return self.sizes[1:-1] if self.xent else self.sizes[1:]

    def _checked(self):
        ws, bs, nl = _params(self.weights, self.biases, self.config.output, self.dtype)
        want = self.sizes
        got = (ws[0].shape[1],) + tuple(w.shape[0] for w in ws)
        if got != want:
            raise ValueError(f"weights: expected layer sizes {want}, got {got}")
        return ws, bs, nl

    def _free(self, ws, bs, nl, drive, s0=None):
        s = _states(s0, drive.shape[0], self.state_sizes, self.dtype, "s0")
        _run(ws, bs, nl, drive, s, self.config.t_free, self.config.dt, 0.0, None, self.xent)
        return s

    def _nudged(self, ws, bs, nl, drive, states, d, beta):
        s = [a.copy() for a in states]
        _run(ws, bs, nl, drive, s, self.config.t_nudge, self.config.dt, beta, d, self.xent)
        return s

    def free(self, x, s0=None) -> list[np.ndarray]:
        """Free phase: ``t_free`` steps with β = 0 from s0 (None: zeros); returns the states s⁰."""
        ws, bs, nl = self._checked()
        return self._free(ws, bs, nl, _drive(ws, bs, _batch(x, self.sizes[0], self.dtype)), s0)

    def nudged(self, x, states, target, beta: float) -> list[np.ndarray]:
        """Nudged phase: ``t_nudge`` steps at nudging strength ``beta`` (signed) towards ``target``
        ((B, n_out) or integer labels (B,)) from ``states``; returns new states s^β."""
        ws, bs, nl = self._checked()
        x = _batch(x, self.sizes[0], self.dtype)
        if not _number(beta):
            raise ConfigError(f"beta: expected a finite number, got {beta!r}")
        s = _states(states, x.shape[0], self.state_sizes, self.dtype)
        d = _target(target, x.shape[0], self.sizes[-1], self.dtype)
        return self._nudged(ws, bs, nl, _drive(ws, bs, x), s, d, float(beta))

    def predict(self, x) -> np.ndarray:
        """The free-phase output (B, n_out): s_L (``"mse"``) or the softmax read-out (``"xent"``)."""
        ws, bs, nl = self._checked()
        s = self._free(ws, bs, nl, _drive(ws, bs, _batch(x, self.sizes[0], self.dtype)))
        return readout(ws, bs, s, output=self.config.output)

    def wanted_update(self, x, target, rng: Any = None, *, lr=None) -> tuple[list, list, dict]:
        """The update the rule wants for batch (x, target), not applied: (ΔW list, Δb list, info),
        in weight units with the learning rates included. target: (B, n_out), integer labels (B,),
        or a function of the free-phase output (B, n_out) returning either (e.g. a
        :class:`neuroemu.rules.sdt.SelfDefinedTarget`). lr: a number or one per weight matrix;
        None: ``self.lr``). rng (Generator, seed or None: the network's own) draws the random
        nudging sign. info: ``loss`` (mean C at the free state), ``accuracy`` (when the target rows
        are one-hot, else absent), ``beta`` (the signed β of the nudged phase; +β for symmetric),
        ``output`` (the free-phase output)."""
        cfg = self.config
        ws, bs, nl = self._checked()
        x = _batch(x, self.sizes[0], self.dtype)
        lrs = self.lr if lr is None else _rates(lr, len(ws))
        drive = _drive(ws, bs, x)  # shared by all phases
        s0 = self._free(ws, bs, nl, drive)
        out = readout(ws, bs, s0, output=cfg.output)
        if callable(target):  # a target defined by the free-phase output (e.g. a self-defined target)
            target = target(out)
        d = _target(target, x.shape[0], self.sizes[-1], self.dtype)
        if cfg.nudge == "symmetric":
            beta = cfg.beta
            sp = self._nudged(ws, bs, nl, drive, s0, d, beta)
            sm = self._nudged(ws, bs, nl, drive, s0, d, -beta)
            dws, dbs = contrastive_update(x, sp, sm, 1.0 / (2.0 * beta), lrs[:nl])
        else:
            sign = 1.0
            if cfg.nudge == "random_sign":
                g = self._rng if rng is None else as_rng(rng)
                sign = 1.0 if g.random() < 0.5 else -1.0
            beta = sign * cfg.beta
            sb = self._nudged(ws, bs, nl, drive, s0, d, beta)
            dws, dbs = contrastive_update(x, sb, s0, 1.0 / beta, lrs[:nl])
        if self.xent:
            dwo, dbo = readout_update(s0, out, d, lrs[nl])
            dws.append(dwo)
            dbs.append(dbo)
        info = {"loss": float(np.mean(cost(out, d, output=cfg.output))), "beta": beta, "output": out}
        acc = _accuracy(out, d)
        if acc is not None:
            info["accuracy"] = acc
        return dws, dbs, info

    def train_step(self, x, target, lr, rng: Any = None) -> dict:
        """One EqProp step: :meth:`wanted_update` with rates ``lr`` (a number or one per weight
        matrix), applied exactly (W ← W + ΔW, b ← b + Δb; the entries of ``weights`` and ``biases``
        are replaced by new arrays in the network's dtype; arrays given from outside are not
        written). Returns the info dict."""
        dws, dbs, info = self.wanted_update(x, target, rng, lr=lr)
        ws, bs, _ = self._checked()
        for i, (w, dw, b, db) in enumerate(zip(ws, dws, bs, dbs)):
            self.weights[i] = w + dw
            self.biases[i] = b + db
        return info


# ----------------------------------------------------------------------------- rule
class EqProp(Rule):
    """Equilibrium propagation on a chip whose model is an energy-based network
    (:class:`neuroemu.models.eqprop.EqPropModel`): a free phase, a nudged phase towards the batch's
    target, then every layer's contrastive update (:meth:`EqPropNetwork.wanted_update`) through its
    scheme; digital biases change exactly. ``lr``: a rate or one per weight matrix (None: the
    network's default); ``rng`` draws the random nudging signs (None: the network's own generator).

    A batch is (x, target, ...): target (B, n_out), integer labels (B,), or a function of the
    free-phase output that returns the target (e.g. a self-defined target). Measures ``loss`` (the
    mean cost at the free state); a batch whose loss is not finite gets no update."""

    requires = frozenset({"energy"})
    #: EqProp's energy has no output dropout: a self-defined target of it is drawn without a mask.
    output_mask = False
    OPTIMIZERS = ("sgd", "adam")

    def __init__(self, lr=None, *, rng: Any = None, optimizer: str = "sgd"):
        if optimizer not in self.OPTIMIZERS:
            raise ConfigError(f"optimizer: expected one of {', '.join(self.OPTIMIZERS)}, got {optimizer!r}")
        self.lr = lr
        self.rng = rng
        self.optimizer = optimizer
        self.adams: list[Any] = []  # optimizer "adam": one per weight matrix (its weights and bias)

    @property
    def lrs(self):
        """The learning rate(s), as :attr:`lr` (a number or one per weight matrix)."""
        return self.lr

    @lrs.setter
    def lrs(self, rates) -> None:
        self.lr = rates

    def step(self, chip: Chip, batch: Any) -> Step:
        x, target = batch[0], batch[1]
        net = chip.model.network(chip)
        lr = None if self.lr is None else _rates(self.lr, len(net.weights))
        adam = self.optimizer == "adam"
        dws, dbs, info = net.wanted_update(x, target, self.rng, lr=1.0 if adam else lr)
        cfg = net.config
        if hasattr(chip.model, "count"):  # the free and nudged relaxations on the chip's layers
            chip.model.count(chip, len(x), cfg.t_free + (2 if cfg.nudge == "symmetric" else 1) * cfg.t_nudge)
        yield {"loss": info["loss"]}
        if not np.isfinite(info["loss"]):
            return
        if adam:  # the contrastive estimate (at rate 1) is the negative gradient; Adam makes the step
            from .surrogate import Adam

            rates = lr or net.lr
            if not self.adams:
                self.adams = [Adam(lr=r) for r in rates]
            for opt, r in zip(self.adams, rates):
                opt.lr = r
            steps = [opt.change([-dw, -db], like=[dw, db]) for opt, dw, db in zip(self.adams, dws, dbs)]
            dws, dbs = [st[0] for st in steps], [st[1] for st in steps]
        for layer, dw, db in zip(chip, dws, dbs):
            yield Update(layer.name, dw=dw, db=db)
