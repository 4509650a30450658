"""Surrogate-gradient BPTT for a feed-forward spiking network (dense backward, plain numpy).

Network (the Perez-Nieves & Goodman 2021 set-up, with current-based neurons): input spikes
S_0 (T, B, n_0) → hidden CUBA-LIF layers l = 1..L−1 → a non-spiking CUBA readout; weights
W_l of shape (n_l, n_{l−1}), no biases. Per hidden layer and step t (state zero at t = −1),
exactly the ideal kernel :func:`neuroemu.hardware.neurons.cuba_sequence` with ``reset_mode=1``:

    I_t  = S_{l−1,t} W_lᵀ
    i_t  = β_syn i_{t−1} + I_t
    rf_t = [r_{t−1} > 0]                       refractory (r counts down; a spike sets r = n_ref)
    u_t  = 0 if rf_t else i_t
    v_t  = α (v_reset if z_{t−1} else v_{t−1}) + u_t
    z_t  = H(v_t − v_th) · (1 − rf_t),  H(0) = 0

so a spike at t makes steps t+1 .. t+n_ref refractory. Readout (same CUBA, never spikes):
i_t = β_out i_{t−1} + I_t, y_t = α_out y_{t−1} + i_t, and logits_{b,k} = max_t y_{t,b,k}.

Loss = mean_b CE(softmax(logits_b), label_b) + spike-count regularisers (:func:`spike_count_reg`).

Backward (BPTT with a surrogate derivative): H'(v) is replaced by the fast sigmoid

    σ'(v) = 1 / (scale · |v − v_th| + 1)²,    scale = 100 (Perez-Nieves & Goodman 2021),

masked by (1 − rf_t). The reset is not differentiated (z_{t−1} selecting v_reset is a constant)
and neither are the refractory flags. With g·_t = ∂L/∂·_t and g_{T} = 0, for each hidden layer

    gv_t = gz_t σ'(v_t)(1 − rf_t) + α (1 − z_t) gv_{t+1}
    gi_t = gv_t (1 − rf_t) + β_syn gi_{t+1}
    gI_t = gi_t,   ∂L/∂W_l = Σ_t gI_tᵀ S_{l−1,t},   gS_{l−1,t} = gI_t W_l

where gz_t is what layer l+1 sends back plus the regulariser gradient. Readout: the CE
gradient reaches y only at the argmax step t*_{b,k} (first maximum),
gy_t = ∂L/∂logits · [t = t*] + α_out gy_{t+1}, gI_t = gi_t = gy_t + β_out gi_{t+1}.

Event-driven products: the spikes S of every layer are binary and sparse (a few per cent of the
entries), so without a ``matmul`` hook the currents S Wᵀ are computed from the spikes' event list
(:class:`Events`): each row adds the rows of Wᵀ of its events (:func:`event_currents`), and the
weight gradient gᵀ S adds each event's row of g (:func:`event_weight_grad`). Inputs with a value
other than 0 or 1 take the dense products (BLAS). The results equal the dense products up to the
order of the float sums.

Hardware in the loop: :meth:`SpikingMLP.forward` takes a ``matmul`` hook (crossbar tiles) and a
``neurons`` hook (analog neurons); :meth:`SpikingMLP.loss_and_grads` accepts the same hooks and
then differentiates the *recorded* traces (spikes, membrane voltages, readout) with the ideal
model's Jacobian above.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from neuroemu._kernels import events as EK
from neuroemu._kernels.optim import adam_step
from neuroemu.chip import Chip, Update
from neuroemu.hardware.neurons import CubaParams, cuba_sequence, decay
from neuroemu.rules.base import Rule, RuleError, Step
from ..rng import as_rng

__all__ = [
    "Adam",
    "Events",
    "SurrogateBPTT",
    "ForwardResult",
    "SpikeCountReg",
    "SpikingMLP",
    "SpikingNet",
    "event_currents",
    "event_weight_grad",
    "fast_sigmoid_grad",
    "psp_peak",
    "spike_count_reg",
    "spike_events",
]

#: Threshold given to the readout's CUBA kernel so that it never spikes (y stays far below it).
READOUT_V_TH = 1e30
#: Weight multiplier of the paper's init N(0, 20(1 − β)/√N_in) (Perez-Nieves & Goodman 2021).
PAPER_INIT_GAIN = 20.0
#: Steps searched for the peak of the CUBA post-synaptic potential (only reached when α or β_syn
#: is within ~1e-4 of 1, i.e. τ ≥ ~10⁴ dt).
_PSP_MAX_STEPS = 10_000

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

MatmulHook = Callable[[int, np.ndarray], np.ndarray]
NeuronsHook = Callable[[int, np.ndarray, bool], tuple]


# ----------------------------------------------------------------------------- helpers
def fast_sigmoid_grad(v, v_th: float = 1.0, scale: float = 100.0):
    """Surrogate spike derivative σ'(v) = 1 / (scale · |v − v_th| + 1)² (keeps v's dtype)."""
    v = np.asarray(v)
    one = v.dtype.type(1) if v.dtype in _FLOATS else 1.0
    return one / (scale * np.abs(v - v_th) + one) ** 2


def psp_peak(alpha: float, beta_syn: float) -> float:
    """Peak of the membrane response of a CUBA neuron to one unit input at step 0:
    i_k = β_syn^k, v_k = α v_{k−1} + i_k, peak = max_k v_k (1 for β_syn = 0; (k+1) α^k at
    k ≈ τ/dt, about τ/(e·dt), for α = β_syn = exp(−dt/τ)). The sequence is unimodal, so the
    search stops at the first decrease (or after 10⁴ steps when there is none)."""
    alpha, beta_syn = float(alpha), float(beta_syn)
    i = v = peak = 0.0
    for k in range(_PSP_MAX_STEPS):
        i = beta_syn * i + (1.0 if k == 0 else 0.0)
        v = alpha * v + i
        if v < peak:
            break
        peak = v
    return peak


class SpikeCountReg(NamedTuple):
    """Spike-count regularisers of Perez-Nieves & Goodman (2021), as in the authors' code.

    For each hidden layer with N neurons and counts c_{b,j} = Σ_t z_{t,b,j}, m_b = mean_j c_{b,j}:

        R = (1/B) Σ_b [ upper · relu(m_b − upper_target)^upper_power
                        + lower · (1/N) Σ_j relu(lower_target − c_{b,j})² ]

    summed over hidden layers. Defaults are the paper's Fashion-MNIST values: at most ~1 spike
    per neuron per sample on average, and a push on neurons silent for a sample (with integer
    counts and lower_target = 1e-3 the lower term acts on c = 0 only). Set a strength to 0 (or
    pass ``reg=None`` to :class:`SpikingMLP`) to switch a term off.
    """

    upper: float = 0.06
    upper_target: float = 1.0
    upper_power: float = 1.0
    lower: float = 100.0
    lower_target: float = 1e-3


#: The paper's regulariser settings (Fashion-MNIST), the default of :class:`SpikingMLP`.
PAPER_REG = SpikeCountReg()


def _check_reg(reg: SpikeCountReg) -> SpikeCountReg:
    if not isinstance(reg, SpikeCountReg):
        raise ValueError(f"reg: expected a SpikeCountReg or None, got {type(reg).__name__}")  # noqa: TRY004
    for f, val in zip(reg._fields, reg):
        if not (math.isfinite(float(val)) and float(val) >= 0):
            raise ValueError(f"SpikeCountReg.{f}: expected a finite value >= 0, got {val}")
    if reg.upper_power < 1:
        raise ValueError(f"SpikeCountReg.upper_power: expected >= 1 (differentiable), got {reg.upper_power}")
    return SpikeCountReg(*(float(x) for x in reg))


def spike_count_reg(counts: Sequence[np.ndarray], reg: SpikeCountReg | None) -> tuple[float, list[np.ndarray]]:
    """Regulariser R of :class:`SpikeCountReg` and its gradient ∂R/∂c per layer.

    counts: one (B, N_l) array of spike counts per hidden layer. Returns (R, [∂R/∂c_l]) with

        ∂R/∂c_{b,j} = (1/B) [ upper · p · relu(m_b − f_up)^(p−1) · [m_b > f_up] / N
                              − 2 · lower · relu(f_low − c_{b,j}) / N ].
    """
    grads = []
    total = 0.0
    for c in counts:
        c = np.asarray(c, dtype=np.float64)
        if c.ndim != 2:
            raise ValueError(f"counts: expected (batch, n) arrays, got shape {c.shape}")
        if reg is None:
            grads.append(np.zeros_like(c))
            continue
        b, n = c.shape
        excess = c.mean(axis=1) - reg.upper_target  # (B,)
        pos = np.maximum(excess, 0.0)
        deficit = np.maximum(reg.lower_target - c, 0.0)  # (B, N)
        total += (reg.upper * np.sum(pos ** reg.upper_power) + reg.lower * np.sum(deficit ** 2) / n) / b
        d_up = np.where(excess > 0, reg.upper * reg.upper_power * pos ** (reg.upper_power - 1), 0.0) / n
        grads.append((d_up[:, None] - 2.0 * reg.lower * deficit / n) / b)
    return float(total), grads


# ----------------------------------------------------------------------------- event lists
class Events(NamedTuple):
    """Event list of a train x (T, B, n): its non-zero entries in CSR over the rows r = t·B + b.

    ptr: (T·B + 1,) int64, the entries of row r are ptr[r] .. ptr[r+1]−1; idx: (nnz,) int32 the
    column (neuron) of each, ascending within a row; val: (nnz,) their values, or None for spikes
    (every value 1: ``binary``); shape: (T, B, n)."""

    ptr: np.ndarray
    idx: np.ndarray
    val: np.ndarray | None
    shape: tuple

    @property
    def binary(self) -> bool:
        return self.val is None

    @property
    def nnz(self) -> int:
        return int(self.idx.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.ptr.nbytes + self.idx.nbytes + (0 if self.val is None else self.val.nbytes))

    def rows(self) -> np.ndarray:
        """Row index t·B + b of every event."""
        return np.repeat(np.arange(len(self.ptr) - 1), np.diff(self.ptr))

    def to_dense(self, dtype=np.float32) -> np.ndarray:
        """The train as a dense (T, B, n) array."""
        out = np.zeros((len(self.ptr) - 1, self.shape[2]), dtype)
        out[self.rows(), self.idx] = 1 if self.val is None else self.val
        return out.reshape(self.shape)


def spike_events(x) -> Events:
    """Event list of a train x (T, B, n) (any numeric or boolean dtype; one pass over x). Values
    are kept (``val``) only when some non-zero entry is not 1."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x: expected a (T, batch, n) train, got shape {x.shape}")
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[2])
    ptr, idx, binary = EK.spike_events(x2)
    ev = Events(ptr, idx, None, x.shape)
    return ev if binary else ev._replace(val=x2[ev.rows(), idx])


def event_currents(ev: Events, w: np.ndarray) -> np.ndarray:
    """S Wᵀ of a spike train (binary ``ev``) for W (n_out, n_in): (T, B, n_out) in W's dtype, each
    row the sum of the rows of Wᵀ of its events (O(events · n_out))."""
    if not ev.binary:
        raise ValueError("ev: expected spikes (values 0 and 1); take the dense product for other inputs")
    nt, nb, _ = ev.shape
    out = np.empty((nt * nb, w.shape[0]), w.dtype)
    EK.event_currents(ev.ptr, ev.idx, np.ascontiguousarray(w.T), out)
    return out.reshape(nt, nb, -1)


def event_weight_grad(ev: Events, g: np.ndarray) -> np.ndarray:
    """gᵀ S (n_out, n_in) for g (T·B, n_out) and the train S with the event list ``ev``: each event
    (r, i) adds its value times g[r] to column i (O(events · n_out))."""
    g = np.ascontiguousarray(g)
    val = np.empty(0, g.dtype) if ev.val is None else np.ascontiguousarray(ev.val, g.dtype)
    return np.ascontiguousarray(EK.event_outer(ev.ptr, ev.idx, val, g, ev.shape[2]).T)


class ForwardResult(NamedTuple):
    """What :meth:`SpikingMLP.forward` records.

    logits: (B, K) max over time of the readout; spike_counts: per hidden layer, (B, n_l) spikes
    per sample and neuron; s_in: the input spikes (T, B, n_0) in the model dtype; spikes and
    voltages: per hidden layer, z and v traces (T, B, n_l); readout: y trace (T, B, K); events:
    the event list (:class:`Events`) of every layer's input (s_in, then the hidden spikes) when
    the forward was event-driven (no ``matmul`` hook), else None."""

    logits: np.ndarray
    spike_counts: list
    s_in: np.ndarray
    spikes: list
    voltages: list
    readout: np.ndarray
    events: list | None = None


class Adam:
    """Adam (Kingma & Ba 2015), updating parameter arrays in place.

    With g the gradient and step count k = 1, 2, ...:
    m ← β₁ m + (1 − β₁) g,  s ← β₂ s + (1 − β₂) g²,  m̂ = m / (1 − β₁^k),  ŝ = s / (1 − β₂^k),
    p ← p − lr · m̂ / (√ŝ + eps).  The default lr is the paper's 2e-4.
    """

    def __init__(self, lr: float = 2e-4, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        lr, eps = float(lr), float(eps)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr: expected a finite learning rate > 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
            raise ValueError(f"betas: expected two decay rates in [0, 1), got {betas}")
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps: expected a finite value > 0, got {eps}")
        self.lr, self.betas, self.eps = lr, (float(betas[0]), float(betas[1])), eps
        self.t = 0
        self._m: list[np.ndarray] | None = None
        self._s: list[np.ndarray] | None = None

    def change(self, grads: Sequence[np.ndarray], like: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """The change one :meth:`step` makes (−lr·m̂/(√ŝ + eps), exactly, advancing the state), as new
        arrays shaped and typed like ``like`` (default: the gradients): for a rule that hands the step
        to a chip as ΔW instead of applying it."""
        changes = [np.zeros_like(a) for a in (grads if like is None else like)]
        self.step(changes, grads)
        return changes

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """One update of every array in params (in place) from the matching gradient."""
        if len(params) != len(grads):
            raise ValueError(f"grads: expected {len(params)} arrays to match params, got {len(grads)}")
        for k, (p, g) in enumerate(zip(params, grads)):
            if np.shape(p) != np.shape(g):
                raise ValueError(f"grads[{k}]: expected shape {np.shape(p)} to match params[{k}], got {np.shape(g)}")
        if self._m is None:
            self._m = [np.zeros_like(p) for p in params]
            self._s = [np.zeros_like(p) for p in params]
        elif len(self._m) != len(params) or any(m.shape != p.shape for m, p in zip(self._m, params)):
            raise ValueError("params: expected the same list of array shapes as in the first step")
        self.t += 1
        b1, b2 = self.betas
        a, r = self.lr / (1.0 - b1 ** self.t), 1.0 / math.sqrt(1.0 - b2 ** self.t)
        for k, (p, g, m, s) in enumerate(zip(params, grads, self._m, self._s)):
            if not p.flags.c_contiguous:
                raise ValueError(f"params[{k}]: expected a C-contiguous array (updated in place)")
            g = np.ascontiguousarray(g, dtype=p.dtype)
            adam_step(p.reshape(-1), g.reshape(-1), m.reshape(-1), s.reshape(-1), a, b1, b2, r, self.eps)


# ----------------------------------------------------------------------------- network
def _positive(name, val, allow_zero=False):
    val = float(val)
    ok = val >= 0 if allow_zero else val > 0
    if not (ok and not math.isnan(val)):
        raise ValueError(f"{name}: expected a value {'>=' if allow_zero else '>'} 0, got {val}")
    return val


class SpikingNet:
    """What the feed-forward spiking networks share: ``sizes``, ``dtype`` and ``weights`` (one
    (n_out, n_in) array per layer), and the checks of their inputs, labels and hook outputs."""

    sizes: tuple[int, ...]
    dtype: np.dtype
    weights: list[np.ndarray]

    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + readout)."""
        return len(self.weights)

    @property
    def params(self) -> list[np.ndarray]:
        """The weight arrays (updated in place by optimisers)."""
        return self.weights

    def _check_input(self, s_in, convert: bool = True) -> np.ndarray:
        """s_in checked, as a C-contiguous array in the model dtype (``convert``) or in its own."""
        s = np.asarray(s_in)
        if s.ndim != 3 or s.shape[2] != self.sizes[0]:
            raise ValueError(f"s_in: expected input spikes of shape (T, batch, {self.sizes[0]}), got {s.shape}")
        if s.dtype.kind not in "biuf":
            raise ValueError(f"s_in: expected numeric 0/1 spikes, got dtype {s.dtype}")
        if s.shape[0] < 1 or s.shape[1] < 1:
            raise ValueError(f"s_in: expected at least one step and one sample, got shape {s.shape}")
        return np.ascontiguousarray(s, dtype=self.dtype if convert else None)

    def _hook_array(self, arr, shape, what) -> np.ndarray:
        arr = np.asarray(arr)
        if arr.shape != shape:
            raise ValueError(f"{what}: expected an array of shape {shape}, got {arr.shape}")
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
        return np.ascontiguousarray(arr, dtype=self.dtype)

    def _check_labels(self, labels, batch) -> np.ndarray:
        lab = np.asarray(labels)
        if lab.shape != (batch,) or lab.dtype.kind not in "iu":
            raise ValueError(f"labels: expected {batch} integer class labels (shape ({batch},)), "
                             f"got shape {lab.shape} dtype {lab.dtype}")
        if lab.size and (lab.min() < 0 or lab.max() >= self.sizes[-1]):
            raise ValueError(f"labels: expected values in [0, {self.sizes[-1] - 1}], "
                             f"got values in [{lab.min()}, {lab.max()}]")
        return lab.astype(np.intp)


class SpikingMLP(SpikingNet):
    """Feed-forward CUBA-LIF network with a max-over-time CUBA readout, trained by
    surrogate-gradient BPTT (equations in the module docstring).

    Parameters
    ----------
    sizes : sequence of int
        Layer widths [n_in, n_hidden..., n_classes] (at least input and readout).
    dt, tau_mem, tau_syn : float
        Step and time constants in seconds; α = exp(−dt/τ_mem), β_syn = exp(−dt/τ_syn).
    v_th, v_reset : float
        Threshold and reset value (reset to value, ``reset_mode=1``).
    refractory_steps : int
        Steps after a spike with the input ignored and no spike.
    tau_out, tau_out_syn : float or None
        Readout time constants (default τ_mem and τ_syn).
    surrogate_scale : float
        Steepness of the fast-sigmoid surrogate.
    init : "paper" or float
        Weight init W_l ~ N(0, std_l²). A float g gives std_l = g / √n_{l−1}. "paper" adapts the
        paper's LIF init N(0, 20(1 − α)/√N_in) to CUBA neurons: the std is divided by the peak
        :func:`psp_peak` (α, β_syn) of the membrane response to one input spike, so one input
        spike moves the membrane by the same peak amount as in the paper's LIF
        (std_l = 20 (1 − α) / (psp_peak(α, β_syn) √n_{l−1}); the readout uses α_out, β_out).
        For β_syn = 0 this is the paper's init exactly.
    reg : SpikeCountReg or None
        Spike-count regularisers (paper defaults); None switches them off.
    rng : numpy Generator, int seed or None
        Source of the initial weights.
    dtype : float32 or float64
        Dtype of weights, traces and gradients.
    """

    def __init__(self, sizes: Sequence[int], *, dt: float = 1e-3, tau_mem: float = 10e-3, tau_syn: float = 10e-3,
                 v_th: float = 1.0, v_reset: float = 0.0, refractory_steps: int = 0, tau_out: float | None = None,
                 tau_out_syn: float | None = None, surrogate_scale: float = 100.0, init: str | float = "paper",
                 reg: SpikeCountReg | None = PAPER_REG, rng=None, dtype=np.float32):
        sizes = tuple(sizes)
        if len(sizes) < 2 or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
                                     for n in sizes):
            raise ValueError(f"sizes: expected at least two integer layer widths >= 1 [n_in, ..., n_classes], got {sizes}")
        self.sizes = tuple(int(n) for n in sizes)
        self.dtype = np.dtype(dtype)
        if self.dtype not in _FLOATS:
            raise ValueError(f"dtype: expected float32 or float64, got {self.dtype}")
        dt = _positive("dt", dt)
        tau_mem = _positive("tau_mem", tau_mem, allow_zero=True)
        tau_syn = _positive("tau_syn", tau_syn, allow_zero=True)
        tau_out = tau_mem if tau_out is None else _positive("tau_out", tau_out, allow_zero=True)
        tau_out_syn = tau_syn if tau_out_syn is None else _positive("tau_out_syn", tau_out_syn, allow_zero=True)
        for name, val in (("v_th", v_th), ("v_reset", v_reset)):
            if not math.isfinite(float(val)):
                raise ValueError(f"{name}: expected a finite voltage, got {val}")
        if (isinstance(refractory_steps, bool) or not float(refractory_steps).is_integer()
                or refractory_steps < 0):
            raise ValueError(f"refractory_steps: expected a whole number >= 0, got {refractory_steps}")
        self.surrogate_scale = _positive("surrogate_scale", surrogate_scale)
        if not math.isfinite(self.surrogate_scale):
            raise ValueError(f"surrogate_scale: expected a finite value > 0, got {surrogate_scale}")
        self.reg = None if reg is None else _check_reg(reg)

        self.hidden_params = CubaParams(decay(dt, tau_mem), decay(dt, tau_syn), float(v_th), float(v_reset),
                                        reset_mode=1.0, refractory_steps=float(int(refractory_steps)))
        self.readout_params = CubaParams(decay(dt, tau_out), decay(dt, tau_out_syn), READOUT_V_TH, 0.0,
                                         reset_mode=1.0, refractory_steps=0.0)

        gen = as_rng(rng)
        self.weights: list[np.ndarray] = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            std = self._init_std(init, len(self.weights) == len(self.sizes) - 2) / math.sqrt(n_in)
            self.weights.append(gen.normal(0.0, std, (n_out, n_in)).astype(self.dtype))

    def _init_std(self, init, readout: bool) -> float:
        """std · √N_in of the initial weights of one layer."""
        if isinstance(init, str):
            if init != "paper":
                raise ValueError(f"init: expected 'paper' or a gain > 0 (std = gain/sqrt(n_in)), got {init!r}")
            p = self.readout_params if readout else self.hidden_params
            gain = PAPER_INIT_GAIN * (1.0 - p.alpha) / psp_peak(p.alpha, p.beta_syn)
            if not gain > 0:
                raise ValueError("init: 'paper' gives zero weights without membrane leak (tau = inf); "
                                 "pass a gain > 0 instead")
            return gain
        gain = float(init)
        if not (math.isfinite(gain) and gain > 0):
            raise ValueError(f"init: expected 'paper' or a gain > 0 (std = gain/sqrt(n_in)), got {init!r}")
        return gain

    # ------------------------------------------------------------------ ideal layer functions
    def ideal_matmul(self, layer: int, s_flat: np.ndarray) -> np.ndarray:
        """Default current function: I = S Wᵀ for S of shape (T·B, n_in) → (T·B, n_out)."""
        return s_flat @ self.weights[layer].T

    def ideal_neurons(self, layer: int, currents: np.ndarray, spiking: bool) -> tuple[np.ndarray, np.ndarray]:
        """Default neuron function: the ideal CUBA kernel on currents (T, B, n) → (z, v).
        Hidden layers (spiking=True) use the hidden parameters; the readout (spiking=False) a
        CUBA neuron with a threshold of 1e30, whose v is the readout trace y."""
        params = self.hidden_params if spiking else self.readout_params
        z, v, _ = cuba_sequence(currents, params, None)
        return z, v

    # ------------------------------------------------------------------ forward
    def forward(self, s_in, *, matmul: MatmulHook | None = None, neurons: NeuronsHook | None = None) -> ForwardResult:
        """Run the network on input spikes s_in (T, B, n_in).

        For each layer l = 0 .. n_layers−1 (the last is the readout):
        ``matmul(l, S_flat)`` with S_flat (T·B, n_in_l) in the model dtype returns the currents
        (T·B, n_l) (default :meth:`ideal_matmul`); ``neurons(l, currents (T, B, n_l), spiking)``
        returns (z, v) traces (default :meth:`ideal_neurons`); spiking is False for the readout,
        whose z is ignored (may be None) and whose v is the readout trace y.
        Returns a :class:`ForwardResult` (logits = max over time of y). Without a ``matmul`` hook
        the currents of spike inputs are event-driven (:func:`event_currents`; module docstring).
        """
        s = self._check_input(s_in)
        t_steps, batch, _ = s.shape
        mm = self.ideal_matmul if matmul is None else matmul
        nf = self.ideal_neurons if neurons is None else neurons
        x = s
        spikes, volts, counts = [], [], []
        events = None if matmul is not None else []
        y = None
        for layer, w in enumerate(self.weights):
            n_out = w.shape[0]
            if events is not None:
                ev = spike_events(x)
                events.append(ev)
            if events is not None and ev.binary:
                cur = event_currents(ev, w)
            else:
                cur = self._hook_array(mm(layer, x.reshape(t_steps * batch, -1)), (t_steps * batch, n_out),
                                       f"matmul output (layer {layer})")
            spiking = layer < self.n_layers - 1
            out = nf(layer, cur.reshape(t_steps, batch, n_out), spiking)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise ValueError(f"neurons output (layer {layer}): expected a tuple (z, v), got {type(out).__name__}")
            shape = (t_steps, batch, n_out)
            v = self._hook_array(out[1], shape, f"neurons output v (layer {layer})")
            if spiking:
                z = self._hook_array(out[0], shape, f"neurons output z (layer {layer})")
                spikes.append(z)
                volts.append(v)
                counts.append(z.sum(axis=0))
                x = z
            else:
                y = v
        return ForwardResult(y.max(axis=0), counts, s, spikes, volts, y, events)

    def predict(self, s_in, *, matmul: MatmulHook | None = None, neurons: NeuronsHook | None = None) -> np.ndarray:
        """Logits (B, n_classes) of :meth:`forward`."""
        return self.forward(s_in, matmul=matmul, neurons=neurons).logits

    def run(self, s_in, *, matmul: MatmulHook | None = None,
            neurons: NeuronsHook | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """(logits (B, n_classes), spike counts (B, n_l) per hidden layer) of :meth:`forward`."""
        fwd = self.forward(s_in, matmul=matmul, neurons=neurons)
        return fwd.logits, fwd.spike_counts

    # ------------------------------------------------------------------ backward
    def refractory_flags(self, z: np.ndarray) -> np.ndarray:
        """rf_t = 1 if a spike occurred in steps t − n_ref .. t − 1 (as bool, shape of z)."""
        n_ref = int(self.hidden_params.refractory_steps)
        if n_ref == 0:
            return np.zeros(z.shape, bool)
        csum = np.zeros((z.shape[0] + 1,) + z.shape[1:], np.int64)
        np.cumsum(z > 0, axis=0, out=csum[1:])  # csum[k] = spikes in steps < k
        t = np.arange(z.shape[0])
        lo = np.maximum(t - n_ref, 0)
        return (csum[t] - csum[lo]) > 0

    def backward(self, fwd: ForwardResult, labels) -> tuple[float, float, list[np.ndarray], dict]:
        """Loss, accuracy, gradients ∂L/∂W_l and statistics from a recorded forward pass."""
        y = fwd.readout
        t_steps, batch, n_cls = y.shape
        lab = self._check_labels(labels, batch)
        dt = self.dtype

        # softmax cross-entropy on the max-over-time logits (in float64: (B, K) only)
        logits = fwd.logits.astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(shifted).sum(axis=1))
        ce = float(np.mean(log_z - shifted[np.arange(batch), lab]))
        dlogits = np.exp(shifted - log_z[:, None])
        dlogits[np.arange(batch), lab] -= 1.0
        dlogits /= batch
        acc = float(np.mean(np.argmax(fwd.logits, axis=1) == lab))
        reg_loss, dcounts = spike_count_reg(fwd.spike_counts, self.reg)

        # readout: gradient enters at the argmax step of each (b, k)
        gy = np.zeros(y.shape, dt)
        t_star = np.argmax(y, axis=0)
        bb, kk = np.indices((batch, n_cls))
        gy[t_star, bb, kk] = dlogits
        a_o, b_o = dt.type(self.readout_params.alpha), dt.type(self.readout_params.beta_syn)
        g_cur = np.empty_like(gy)
        acc_y = np.zeros((batch, n_cls), dt)
        acc_i = np.zeros((batch, n_cls), dt)
        for t in range(t_steps - 1, -1, -1):
            acc_y *= a_o
            acc_y += gy[t]
            acc_i *= b_o
            acc_i += acc_y
            g_cur[t] = acc_i

        grads: list[np.ndarray] = [None] * self.n_layers
        inputs = [fwd.s_in] + fwd.spikes
        alpha, beta = dt.type(self.hidden_params.alpha), dt.type(self.hidden_params.beta_syn)
        v_th = self.hidden_params.v_th
        for layer in range(self.n_layers - 1, -1, -1):
            g_flat = g_cur.reshape(t_steps * batch, -1)
            if fwd.events is not None:
                grads[layer] = event_weight_grad(fwd.events[layer], g_flat)
            else:
                grads[layer] = g_flat.T @ inputs[layer].reshape(t_steps * batch, -1)
            if layer == 0:
                break
            # gradient reaching the spikes of hidden layer `layer − 1`
            h = layer - 1
            gz = (g_flat @ self.weights[layer]).reshape(t_steps, batch, -1)
            gz += dcounts[h].astype(dt)[None]
            z, v = fwd.spikes[h], fwd.voltages[h]
            keep = ~self.refractory_flags(z)
            gzs = gz * fast_sigmoid_grad(v, v_th, self.surrogate_scale).astype(dt, copy=False)
            gzs *= keep
            carry = alpha * (1 - z)  # ∂v_{t+1}/∂v_t, reset not differentiated
            g_cur = np.empty_like(gzs)
            gv = np.zeros(gzs.shape[1:], dt)
            gi = np.zeros(gzs.shape[1:], dt)
            for t in range(t_steps - 1, -1, -1):
                gv *= carry[t]
                gv += gzs[t]
                gi *= beta
                gi += gv * keep[t]
                g_cur[t] = gi

        counts = fwd.spike_counts
        stats = {
            "ce": ce,
            "reg": reg_loss,
            "mean_count": [float(c.mean()) for c in counts],
            "silent_fraction": [float(np.mean(c == 0)) for c in counts],
        }
        return ce + reg_loss, acc, grads, stats

    def loss_and_grads(self, s_in, labels, *, matmul: MatmulHook | None = None,
                       neurons: NeuronsHook | None = None) -> tuple[float, float, list[np.ndarray], dict]:
        """Forward and backward on one batch: returns (loss, accuracy, grads, stats).

        loss = CE + regulariser; grads[l] = ∂loss/∂W_l (shape of W_l, model dtype); stats holds
        "ce", "reg", and per hidden layer "mean_count" (spikes per neuron per sample) and
        "silent_fraction" (fraction of (sample, neuron) pairs without a spike). With hooks the
        recorded traces are differentiated with the ideal model's Jacobian.
        """
        fwd = self.forward(s_in, matmul=matmul, neurons=neurons)
        return self.backward(fwd, labels)

    def train_step(self, s_in, labels, optimizer: Adam, *, matmul: MatmulHook | None = None,
                   neurons: NeuronsHook | None = None) -> tuple[float, float, dict]:
        """loss_and_grads then ``optimizer.step(self.weights, grads)``; returns (loss, acc, stats)."""
        loss, acc, grads, stats = self.loss_and_grads(s_in, labels, matmul=matmul, neurons=neurons)
        optimizer.step(self.weights, grads)
        return loss, acc, stats


# ----------------------------------------------------------------------------- the rule
class SurrogateBPTT(Rule):
    """Surrogate-gradient BPTT of a spiking network on the chip, with Adam.

    The model is a :class:`neuroemu.models.snn.SNN` (a network with ``loss_and_grads``: a
    :class:`SpikingMLP` or a :class:`~neuroemu.rules.sparse.SparseSNN`). The forward pass is the
    chip's: every layer's currents are a read of its tile (periphery, read noise, drift), the units
    the model's. The backward pass is the network's, off-chip, through the recorded traces and the
    weights as the chip holds them (in the network's dtype). Each layer gets Adam's step (one Adam
    over all layers, its moments on the rule) as a dense ΔW in the network's dtype, through its
    update scheme: on an exact chip (:meth:`~neuroemu.chip.Hardware.exact`) ``W += ΔW`` is the very
    operation of Adam's own update, so the weights are bit for bit the float network's after its
    step; on a device chip the scheme writes what it can (pulses of the sign of ΔW, an accumulator
    that transfers whole pulses, …), and the next step starts from what the devices hold. ``lr``: a
    number, or a function of the step number (0, 1, …) giving it. A batch whose loss is NaN/inf gets
    no update."""

    requires = frozenset({"feedforward", "spiking", "sequence", "differentiable"})

    def __init__(self, lr: float | Callable[[int], float] = 2e-4, *, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.lr = lr
        self.adam = Adam(self.rate(0), betas, eps)
        self.steps = 0

    def rate(self, step: int) -> float:
        """The learning rate of step ``step``."""
        return self.lr(step) if callable(self.lr) else self.lr

    def bind(self, chip: Chip) -> None:
        super().bind(chip)
        if not hasattr(getattr(chip.model, "net", None), "loss_and_grads"):
            raise RuleError(f"rule {self.name} needs a spiking network model with a surrogate gradient "
                            f"(neuroemu.models.snn.SNN); the chip's model is {chip.model!r}")

    def step(self, chip: Chip, batch: Any) -> Step:
        x, y = batch
        model = chip.model
        net = model.net
        net.weights = [layer.weights().astype(net.dtype) for layer in chip]
        self.adam.lr = self.rate(self.steps)
        self.steps += 1
        loss, acc, grads, stats = net.loss_and_grads(model.input(x), y, **model.hooks(chip))
        yield {"loss": loss, "acc": acc, "stats": stats}
        if not math.isfinite(loss):
            return
        # Adam's step from zero is exactly −step, and W + (−step) is exactly Adam's own W − step
        changes = self.adam.change(grads, like=net.weights)
        for layer, dw in zip(chip, changes):
            yield Update(layer.name, dw=dw)
