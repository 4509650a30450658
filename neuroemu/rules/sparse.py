"""Sparse spiking gradient descent (Perez-Nieves & Goodman 2021) for a feed-forward LIF network.

Network (the paper's): input spikes S_0 (T, B, n_0) → LIF hidden layers → a non-spiking leaky
readout, weights W_l of shape (n_l, n_{l−1}), no biases. Per hidden layer and step t (state zero
at t = −1), with β = exp(−dt/τ_mem) and θ = 1:

    I_t = S_{l−1,t} W_lᵀ,   v_t = β v_{t−1} + I_t − z_{t−1} θ   (reset by subtraction),
    z_t = H(v_t − θ)        (H(0) = 0; v_t is recorded before the reset)

Readout (the authors'): y_t = β_out y_{t−1} + (1 − β_out) I_t and logits_{b,k} = max_t y_{t,b,k}
(``readout_scale`` sets the factor on I_t; 1 gives y_t = β_out y_{t−1} + I_t). Loss = mean softmax
cross-entropy + the paper's spike-count regularisers on every hidden layer
(:func:`neuroemu.rules.surrogate.spike_count_reg`, default :data:`PAPER_REG`).

Backward (reset not differentiated), surrogate σ'(v) = 1 / (scale · |v − θ| + 1)², scale 100:

    gv_t = gz_t σ'(v_t) + β gv_{t+1},   ∂L/∂W = Σ_t gv_tᵀ S_t,   ∂L/∂S_t = gv_t W

where gz is the gradient from the layer above plus ∂R/∂count (the same at every t). The readout
gradient enters y only at the argmax step t* (first maximum): gy_t = ∂L/∂logits · [t = t*] +
β_out gy_{t+1}, and reaches I_t times the readout scale.

Forward: the spikes of every layer (and spike inputs) are binary and sparse, so without a
``matmul`` hook the currents I_t = S_t Wᵀ are event-driven: each row t·B + b adds the rows of Wᵀ of
its spikes (:func:`~neuroemu.rules.surrogate.event_currents`, from the spikes' event list
:class:`~neuroemu.rules.surrogate.Events`); an input with other values than 0 and 1 takes the
dense product. With a hook the hook computes every layer's currents from the dense spikes.

``backward="dense"`` runs this recursion on every entry (numba) and the two matmuls in BLAS; it
keeps v (T, B, n) and the layer's input spikes S (T, B, n_in). ``backward="sparse"`` is the
paper's algorithm: the surrogate is kept only on the active set A = {(t, b, j): |v_t − θ| < b_th}
(b_th = 0.2), stored as CSR over the rows t·B + b (int64 row pointers, int32 neuron indices,
σ'(v) at each entry; see :class:`ActiveSet`), plus the presynaptic trace
tr_t = β tr_{t−1} + S_t, kept as the event list of S (the trace is never formed: see the first
point below; no dense array of the layer's spikes or voltages is kept either). With ds = gz σ' on A:

* ∂L/∂W[j, i] = Σ_{(t,b,j) ∈ A} ds_{t,b,j} tr_{t,b,i}, because gv_t = Σ_{t' ≥ t} β^{t'−t} ds_{t'}
  and Σ_{t ≤ t'} β^{t'−t} S_t = tr_{t'}. Read the other way round, this is Σ over the input
  events (t, b, i) of gv_{t,b,j}: a reverse-time scan per sample carries gv (n) from the active
  entries (gv_t = β gv_{t+1} + ds_t) and adds it to column i of dW at every input event
  (O(T·B·n + events · n), no trace and no dense matmul);
* the gradient to the layer below, gS_t = gv_t W, is needed only at the lower layer's active
  entries (its σ' is zero elsewhere). Since gv_t = β gv_{t+1} + ds_t, gS obeys the same
  recursion in the input space, gS_t = β gS_{t+1} + Σ_{j active at (t, b)} ds_{t,b,j} W[j, :]; in
  the same reverse scan as dW it is read as (gv_t W)[i] = Σ_j gv_{t,b,j} W[j, i] at each of the
  lower layer's active entries (O(nnz_below · n) instead of the dense O(T·B·n·n_in) matmul);
  the samples are independent and run in parallel;
* the readout's gradient to the last hidden layer, gy_t W_out, is likewise computed only at that
  layer's active entries, and ∂R/∂count is added only there; the readout's dW is scattered from
  the last layer's spike events (:func:`~neuroemu.rules.surrogate.event_weight_grad`).

So the sparse backward equals the dense one with σ' multiplied by [|v − θ| < b_th]; with b_th =
inf it equals the dense backward. Weight init: W_l ~ N(0, std²) with std = gain (1 − β)/√n_{l−1},
gain = 20 (the paper's "N(0, 20(1 − β)/√N_in)", read as the standard deviation); the readout
uses β_out.

Hardware in the loop: :meth:`SparseSNN.predict` takes a ``matmul`` hook (crossbar tiles) and a
``neurons`` hook (analog neurons), as :meth:`neuroemu.rules.surrogate.SpikingMLP.forward`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from neuroemu._kernels import sparse as K
from neuroemu.hardware.neurons import decay
from neuroemu.rng import as_rng
from neuroemu.rules.surrogate import (
    PAPER_INIT_GAIN,
    PAPER_REG,
    Adam,
    Events,
    MatmulHook,
    NeuronsHook,
    SpikeCountReg,
    SpikingNet,
    SurrogateBPTT,
    _check_reg,
    event_currents,
    event_weight_grad,
    fast_sigmoid_grad,
    spike_count_reg,
    spike_events,
)

__all__ = [
    "ActiveSet",
    "DeadNetworkError",
    "SparseBPTT",
    "DenseSaved",
    "SparseForward",
    "SparseSaved",
    "SparseSNN",
    "dead_layers",
    "dense_layer_backward",
    "leaky_readout",
    "lif_layer",
    "lif_layer_active",
    "lif_layer_events",
    "masked_surrogate",
    "presynaptic_trace",
    "sparse_layer_backward",
]

#: Firing threshold of the hidden LIF neurons (the paper's θ = 1).
THETA = 1.0
#: Default mean spike count per neuron and sample below which a hidden layer counts as dead.
DEAD_RATE = 1e-3
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_GUARDS = ("flag", "warn", "raise")


class DeadNetworkError(RuntimeError):
    """A hidden layer fell silent: no spikes over a whole batch, so no gradient reaches it."""


# ----------------------------------------------------------------------------- data layout
class ActiveSet(NamedTuple):
    """Active entries (t, b, j) of one LIF layer, |v_t − θ| < b_th, in CSR over rows r = t·B + b.

    ptr: (T·B + 1,) int64, entries of row r are ptr[r] .. ptr[r+1]−1; idx: (nnz,) int32 neuron j
    (ascending within a row); sg: (nnz,) σ'(v) at the entry; shape: (T, B, n) of the layer."""

    ptr: np.ndarray
    idx: np.ndarray
    sg: np.ndarray
    shape: tuple

    @property
    def nnz(self) -> int:
        return int(self.idx.shape[0])

    @property
    def fraction(self) -> float:
        """Active entries / (T·B·n)."""
        return self.nnz / max(1, math.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return int(self.ptr.nbytes + self.idx.nbytes + self.sg.nbytes)

    def to_dense(self) -> np.ndarray:
        """σ' on the active set and 0 elsewhere, shape (T, B, n) (for checks; not used in training)."""
        t, b, n = self.shape
        out = np.zeros((t * b, n), self.sg.dtype)
        out[np.repeat(np.arange(t * b), np.diff(self.ptr)), self.idx] = self.sg
        return out.reshape(self.shape)


class DenseSaved(NamedTuple):
    """What the dense backward of a hidden layer keeps: v (T, B, n) and its input S (T, B, n_in)."""

    v: np.ndarray
    s: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.v.nbytes + self.s.nbytes)


class SparseSaved(NamedTuple):
    """What the sparse backward of a hidden layer keeps: the active set and the event list of its
    input (:class:`~neuroemu.rules.surrogate.Events`), which stands for the presynaptic trace
    tr (T, B, n_in) (the trace is a decaying sum of the events; it is never stored)."""

    active: ActiveSet
    events: Events

    @property
    def nbytes(self) -> int:
        return int(self.active.nbytes + self.events.nbytes)


class SparseForward(NamedTuple):
    """What :meth:`SparseSNN.forward` records.

    logits: (B, K) max over time of the readout; spike_counts: per hidden layer (B, n_l);
    active_fraction: per hidden layer, fraction of entries with |v − θ| < b_th; saved: per hidden
    layer a :class:`DenseSaved` or :class:`SparseSaved`; s_last: spikes of the last hidden layer
    (input of the readout), a dense (T, B, n) array (dense backward) or their event list
    (:class:`~neuroemu.rules.surrogate.Events`, sparse backward); t_star: (B, K) int argmax step
    of the readout."""

    logits: np.ndarray
    spike_counts: list
    active_fraction: list
    saved: list
    s_last: np.ndarray
    t_star: np.ndarray


# ----------------------------------------------------------------------------- layer functions
def _float_array(x, what: str, ndim: int) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != ndim or a.dtype not in _FLOATS:
        raise ValueError(f"{what}: expected a float32 or float64 array with {ndim} dimensions, "
                         f"got shape {a.shape} dtype {a.dtype}")
    return np.ascontiguousarray(a)


def lif_layer(cur, beta: float, theta: float = THETA, b_th: float = math.inf,
              with_count: bool = False) -> tuple:
    """LIF with reset by subtraction over input currents cur (T, B, n). Returns (z, v), v before
    the reset, or (z, v, number of entries with |v − θ| < b_th) when ``with_count``."""
    cur = _float_array(cur, "cur", 3)
    z, v = np.empty_like(cur), np.empty_like(cur)
    count = K.lif_forward(cur, float(beta), float(theta), float(b_th), z, v)
    return (z, v, int(count)) if with_count else (z, v)


def lif_layer_active(cur, beta: float, theta: float = THETA, b_th: float = 0.2,
                     scale: float = 100.0) -> tuple[np.ndarray, ActiveSet]:
    """LIF over cur (T, B, n) keeping the voltage only on the active set. Returns (z, ActiveSet)."""
    cur = _float_array(cur, "cur", 3)
    z = np.empty_like(cur)
    ptr, idx, sg = K.lif_forward_active(cur, float(beta), float(theta), float(b_th), float(scale), z)
    return z, ActiveSet(ptr, idx, sg, cur.shape)


def lif_layer_events(cur, beta: float, theta: float = THETA, b_th: float = 0.2,
                     scale: float = 100.0) -> tuple[ActiveSet, Events, np.ndarray]:
    """LIF over cur (T, B, n) keeping only the active set and the spikes' event list (no dense
    array of spikes or voltages). Returns (ActiveSet, Events, spike counts (B, n))."""
    cur = _float_array(cur, "cur", 3)
    counts = np.zeros(cur.shape[1:], cur.dtype)
    ptr, idx, sg, eptr, eidx = K.lif_forward_events(cur, float(beta), float(theta), float(b_th), float(scale),
                                                    counts)
    return ActiveSet(ptr, idx, sg, cur.shape), Events(eptr, eidx, None, cur.shape), counts


def leaky_readout(cur, beta: float) -> np.ndarray:
    """Non-spiking readout y_t = β y_{t−1} + I_t over cur (T, B, K)."""
    cur = _float_array(cur, "cur", 3)
    y = np.empty_like(cur)
    K.leaky_forward(cur, float(beta), y)
    return y


def presynaptic_trace(s, beta: float) -> np.ndarray:
    """tr_t = β tr_{t−1} + S_t over s (T, B, n_in)."""
    s = _float_array(s, "s", 3)
    out = np.empty_like(s)
    K.presyn_trace(s, float(beta), out)
    return out


def masked_surrogate(v, theta: float = THETA, scale: float = 100.0, b_th: float = math.inf) -> np.ndarray:
    """σ'(v) [|v − θ| < b_th] (b_th compared in v's dtype): the surrogate the sparse backward uses."""
    v = np.asarray(v)
    d = v.dtype.type if v.dtype in _FLOATS else float
    return np.where(np.abs(v - d(theta)) < d(b_th), fast_sigmoid_grad(v, theta, scale), d(0))


def dense_layer_backward(gz, v, s, w, *, beta: float, theta: float = THETA, scale: float = 100.0,
                         b_th: float = math.inf, input_grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Dense BPTT of one hidden layer: gz, v (T, B, n), s (T, B, n_in), w (n, n_in) → (dW, gS).

    gv_t = gz_t σ'(v_t) [|v_t − θ| < b_th] + β gv_{t+1} (numba), dW = Σ_t gv_tᵀ S_t and
    gS_t = gv_t W (BLAS); gS is None when ``input_grad`` is false."""
    gz = _float_array(gz, "gz", 3)
    nt, nb, n = gz.shape
    gv = np.empty_like(gz)
    K.dense_bptt(gz, _float_array(v, "v", 3), float(beta), float(theta), float(scale), float(b_th), gv)
    gflat = gv.reshape(nt * nb, n)
    dw = gflat.T @ np.asarray(s).reshape(nt * nb, -1)
    gs = (gflat @ w).reshape(nt, nb, -1) if input_grad else None
    return dw, gs


def sparse_layer_backward(active: ActiveSet, gz, dcount, inputs, w, *, beta: float,
                          below: ActiveSet | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Sparse backward of one hidden layer.

    active: this layer's active set; gz (nnz,): gradient from the layer above at the active
    entries; dcount (B, n): ∂R/∂count of this layer; inputs: the event list of the layer's input
    (:class:`~neuroemu.rules.surrogate.Events`; what :meth:`SparseSNN.forward` keeps), or its
    presynaptic trace (T, B, n_in) as a dense array; w (n, n_in). Returns dW (n, n_in) and, when
    ``below`` (the lower layer's active set) is given, the gradient ∂L/∂S at the lower layer's
    active entries (nnz_below,), else None.

    With the event list, one reverse-time scan per sample (``active_backward``, samples in
    parallel) carries gv_t = β gv_{t+1} + ds_t over the layer's neurons, adds it to dW at the
    input events and reads gv_t W at the lower layer's active entries. With a dense trace, dW is
    the scatter of ds times the trace over the active entries and the gradient below a scan in
    the input space (the paper's formulation, kept for comparison)."""
    nt, nb, n = active.shape
    dtype = active.sg.dtype
    ds = K.active_ds(active.ptr, active.idx, np.ascontiguousarray(gz, dtype), np.ascontiguousarray(dcount, dtype),
                     active.sg, nb)
    if isinstance(inputs, Events):
        lo_ptr = np.zeros(nt * nb + 1, np.int64) if below is None else below.ptr
        lo_idx = np.zeros(0, np.int32) if below is None else below.idx
        val = np.empty(0, dtype) if inputs.val is None else np.ascontiguousarray(inputs.val, dtype)
        dwt, gz_below = K.active_backward(active.ptr, active.idx, ds, nt, nb, float(beta), inputs.ptr, inputs.idx,
                                          val, lo_ptr, lo_idx, np.ascontiguousarray(w.T, dtype))
        return np.ascontiguousarray(dwt.T), (None if below is None else gz_below)
    trace = inputs
    dw = np.zeros(w.shape, dtype)
    K.sparse_weight_grad(active.ptr, active.idx, ds, trace.reshape(nt * nb, -1), dw)
    if below is None:
        return dw, None
    gz_below = K.sparse_input_grad(active.ptr, active.idx, ds, nt, nb, float(beta), below.ptr, below.idx,
                                   np.ascontiguousarray(w, dtype))
    return dw, gz_below


def dead_layers(spike_counts: Sequence[np.ndarray], dead_rate: float = DEAD_RATE) -> list[int]:
    """Indices of the hidden layers whose mean spike count per neuron and sample is <= dead_rate
    (0 = only completely silent layers)."""
    return [k for k, c in enumerate(spike_counts) if float(np.mean(c)) <= dead_rate]


# ----------------------------------------------------------------------------- network
def _positive(name, val, *, allow_inf=False, allow_zero=False):
    try:
        val = float(val)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {val!r}") from None
    ok = (val >= 0 if allow_zero else val > 0) and (allow_inf or math.isfinite(val))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a {'' if allow_inf else 'finite '}value {bound}, got {val}")
    return val


class SparseSNN(SpikingNet):
    """Two-hidden-layer (or deeper) LIF network with a max-over-time leaky readout, trained with
    the dense or the sparse surrogate-gradient backward (equations in the module docstring).

    Parameters
    ----------
    sizes : sequence of int
        Layer widths (n_in, hidden..., n_classes); at least one hidden layer.
    dt, tau_mem, tau_out : float
        Step and time constants in seconds; β = exp(−dt/τ_mem), β_out = exp(−dt/τ_out).
    b_th : float
        Half-width of the active band |v − θ| < b_th (>= 0; inf keeps every entry). Used by the
        sparse backward and reported as the active fraction in both modes.
    backward : "dense" or "sparse"
    reg : SpikeCountReg or None
        Spike-count regularisers on every hidden layer (paper defaults); None switches them off.
    surrogate_scale : float
        Steepness of σ'(v) = 1/(scale |v − θ| + 1)².
    init_gain : float
        Weight std = init_gain (1 − β)/√n_in (20 in the paper).
    guard : "flag", "warn" or "raise"
        What :meth:`loss_and_grads` does when a hidden layer is dead (mean spike count per neuron
        and sample <= dead_rate): always listed in stats["dead_layers"]; "warn" also warns and
        "raise" raises :class:`DeadNetworkError`.
    dead_rate : float
        Threshold of the dead-layer test.
    rng : numpy Generator, int seed or None
    dtype : float32 or float64
    readout_scale : float or None
        Factor on the read-out's input currents; None: 1 − β_out, the authors' read-out.
    """

    def __init__(self, sizes: Sequence[int] = (784, 200, 200, 10), *, dt: float = 1e-3, tau_mem: float = 10e-3,
                 tau_out: float = 10e-3, b_th: float = 0.2, backward: str = "dense",
                 reg: SpikeCountReg | None = PAPER_REG, surrogate_scale: float = 100.0,
                 init_gain: float = PAPER_INIT_GAIN, guard: str = "flag", dead_rate: float = DEAD_RATE, rng=None,
                 dtype=np.float32, readout_scale: float | None = None):
        sizes = tuple(sizes)
        if len(sizes) < 3 or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
                                     for n in sizes):
            raise ValueError("sizes: expected at least three integer layer widths >= 1 (n_in, hidden..., n_classes), "
                             f"got {sizes}")
        self.sizes = tuple(int(n) for n in sizes)
        self.dtype = np.dtype(dtype)
        if self.dtype not in _FLOATS:
            raise ValueError(f"dtype: expected float32 or float64, got {self.dtype}")
        dt = _positive("dt", dt)
        self.beta = decay(dt, _positive("tau_mem", tau_mem))
        self.beta_out = decay(dt, _positive("tau_out", tau_out))
        self.readout_scale = 1.0 - self.beta_out if readout_scale is None else _positive("readout_scale", readout_scale)
        self.b_th = _positive("b_th", b_th, allow_inf=True, allow_zero=True)
        if backward not in ("dense", "sparse"):
            raise ValueError(f"backward: expected 'dense' or 'sparse', got {backward!r}")
        self.backward_mode = backward
        self.reg = None if reg is None else _check_reg(reg)
        self.surrogate_scale = _positive("surrogate_scale", surrogate_scale)
        self.init_gain = _positive("init_gain", init_gain)
        if guard not in _GUARDS:
            raise ValueError(f"guard: expected one of {', '.join(map(repr, _GUARDS))}, got {guard!r}")
        self.guard = guard
        self.dead_rate = _positive("dead_rate", dead_rate, allow_zero=True)
        self.theta = THETA

        gen = as_rng(rng)
        self.weights: list[np.ndarray] = []
        for layer, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            b = self.beta_out if layer == len(self.sizes) - 2 else self.beta
            std = self.init_gain * (1.0 - b) / math.sqrt(n_in)
            self.weights.append(gen.normal(0.0, std, (n_out, n_in)).astype(self.dtype))

    # ------------------------------------------------------------------ weights
    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Replace the weights (shapes must match; copied into the model dtype)."""
        weights = list(weights)
        if len(weights) != self.n_layers:
            raise ValueError(f"weights: expected {self.n_layers} arrays, got {len(weights)}")
        new = []
        for k, (w, old) in enumerate(zip(weights, self.weights)):
            w = np.asarray(w)
            if w.shape != old.shape or w.dtype.kind not in "iuf" or not np.all(np.isfinite(w)):
                raise ValueError(f"weights[{k}]: expected finite numbers of shape {old.shape}, "
                                 f"got shape {w.shape} dtype {w.dtype}")
            new.append(np.array(w, dtype=self.dtype))
        self.weights[:] = new

    def save_weights(self, path) -> Path:
        """Write the weights to an .npz file (arrays w0, w1, ...); returns its path."""
        from ..io import atomic_write_npz

        return atomic_write_npz(path, self.arrays())

    def arrays(self) -> dict[str, np.ndarray]:
        """The weights as named arrays w0, w1, ... (the layout of :meth:`save_weights`)."""
        return {f"w{k}": w for k, w in enumerate(self.weights)}

    def load_weights(self, path) -> None:
        """Read weights written by :meth:`save_weights` (arrays w0, w1, ... or arr_0, arr_1, ...)."""
        with np.load(path) as f:
            keys = [f"w{k}" for k in range(self.n_layers)]
            if not all(k in f for k in keys):
                keys = [f"arr_{k}" for k in range(self.n_layers)]
            if not all(k in f for k in keys):
                raise ValueError(f"path: expected an .npz with arrays w0..w{self.n_layers - 1}, "
                                 f"got {sorted(f.keys())} in {path}")
            self.set_weights([f[k] for k in keys])

    # ------------------------------------------------------------------ forward
    def _currents(self, mm: MatmulHook, layer: int, x: np.ndarray) -> np.ndarray:
        nt, nb, n_in = x.shape
        n = self.weights[layer].shape[0]
        cur = self._hook_array(mm(layer, x.reshape(nt * nb, n_in)), (nt * nb, n), f"matmul output (layer {layer})")
        return cur.reshape(nt, nb, n)

    def forward(self, s_in, *, matmul: MatmulHook | None = None) -> SparseForward:
        """Forward pass on input spikes s_in (T, B, n_in), recording what the configured backward
        needs (see :class:`SparseForward`); ``matmul`` as in :meth:`predict`."""
        sparse = self.backward_mode == "sparse"
        # the dense backward keeps the dense input spikes; the sparse one only their event list
        x = self._check_input(s_in, convert=not sparse)
        ev = spike_events(x)
        event_driven = matmul is None and ev.binary
        x = None if sparse and event_driven else np.ascontiguousarray(x, dtype=self.dtype)
        mm = self.ideal_matmul if matmul is None else matmul
        counts, fractions, saved = [], [], []
        for layer in range(self.n_layers):
            if matmul is None and ev.binary:
                cur = event_currents(ev, self.weights[layer])
            else:
                cur = self._currents(mm, layer, ev.to_dense(self.dtype) if x is None else x)
            if layer == self.n_layers - 1:
                break
            if sparse and matmul is None:
                act, ev_out, count = lif_layer_events(cur, self.beta, self.theta, self.b_th, self.surrogate_scale)
                x = None
            elif sparse:
                x, act = lif_layer_active(cur, self.beta, self.theta, self.b_th, self.surrogate_scale)
                count, ev_out = x.sum(axis=0), spike_events(x)
            else:
                z, v, n_act = lif_layer(cur, self.beta, self.theta, self.b_th, with_count=True)
                saved.append(DenseSaved(v, x))
                fractions.append(n_act / v.size)
                count, ev_out, x = z.sum(axis=0), (spike_events(z) if matmul is None else ev), z
            if sparse:
                saved.append(SparseSaved(act, ev))
                fractions.append(act.fraction)
            counts.append(count)
            ev = ev_out
        y = leaky_readout(self.readout_scale * cur, self.beta_out)
        return SparseForward(y.max(axis=0), counts, fractions, saved, ev if sparse else x, np.argmax(y, axis=0))

    def ideal_matmul(self, layer: int, s_flat: np.ndarray) -> np.ndarray:
        """Default current function: I = S Wᵀ for S of shape (T·B, n_in) → (T·B, n_out)."""
        return s_flat @ self.weights[layer].T

    def ideal_neurons(self, layer: int, currents: np.ndarray, spiking: bool) -> tuple:
        """Default neuron function on currents (T, B, n): (z, v) of the LIF layer, or (None, y) of
        the leaky readout when spiking is False."""
        if spiking:
            return lif_layer(currents, self.beta, self.theta)
        return None, leaky_readout(self.readout_scale * currents, self.beta_out)

    def predict(self, s_in, *, matmul: MatmulHook | None = None, neurons: NeuronsHook | None = None) -> np.ndarray:
        """Logits (B, n_classes) on input spikes s_in (T, B, n_in).

        Per layer l (the last is the readout): ``matmul(l, S_flat)`` with S_flat (T·B, n_in_l)
        returns the currents (T·B, n_l) (default :meth:`ideal_matmul`); ``neurons(l, currents
        (T, B, n_l), spiking)`` returns (z, v) (default :meth:`ideal_neurons`); for the readout
        (spiking False) z is ignored and v is the readout trace y."""
        return self.run(s_in, matmul=matmul, neurons=neurons)[0]

    def run(self, s_in, *, matmul: MatmulHook | None = None,
            neurons: NeuronsHook | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """(logits (B, n_classes), spike counts (B, n_l) per hidden layer); hooks as in :meth:`predict`."""
        s = self._check_input(s_in)
        nt, nb, _ = s.shape
        mm = self.ideal_matmul if matmul is None else matmul
        nf = self.ideal_neurons if neurons is None else neurons
        x, counts = s, []
        for layer, w in enumerate(self.weights):
            shape = (nt, nb, w.shape[0])
            ev = spike_events(x) if matmul is None else None
            if ev is not None and ev.binary:
                cur = event_currents(ev, w).reshape(nt * nb, -1)
            else:
                cur = self._hook_array(mm(layer, x.reshape(nt * nb, -1)), (nt * nb, w.shape[0]),
                                       f"matmul output (layer {layer})")
            spiking = layer < self.n_layers - 1
            out = nf(layer, np.ascontiguousarray(cur.reshape(shape)), spiking)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise ValueError(f"neurons output (layer {layer}): expected a tuple (z, v), got {type(out).__name__}")
            if spiking:
                x = self._hook_array(out[0], shape, f"neurons output z (layer {layer})")
                counts.append(x.sum(axis=0))
            else:
                y = self._hook_array(out[1], shape, f"neurons output v (layer {layer})")
        return y.max(axis=0), counts

    def dead_network(self, s_in, *, matmul: MatmulHook | None = None, neurons: NeuronsHook | None = None) -> list[int]:
        """Hidden layers (0-based) that are dead on s_in: mean spike count per neuron and sample
        <= dead_rate. An empty list means every hidden layer spikes."""
        return dead_layers(self.run(s_in, matmul=matmul, neurons=neurons)[1], self.dead_rate)

    # ------------------------------------------------------------------ backward
    def backward(self, fwd: SparseForward, labels) -> tuple[float, float, list[np.ndarray], dict]:
        """Loss, accuracy, gradients ∂L/∂W_l and statistics from a recorded forward pass."""
        dt = self.dtype
        nt, nb = fwd.s_last.shape[:2]
        lab = self._check_labels(labels, nb)
        logits = fwd.logits.astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(shifted).sum(axis=1))
        ce = float(np.mean(log_z - shifted[np.arange(nb), lab]))
        dlogits = np.exp(shifted - log_z[:, None])
        dlogits[np.arange(nb), lab] -= 1.0
        dlogits /= nb
        acc = float(np.mean(np.argmax(fwd.logits, axis=1) == lab))
        reg_loss, dcounts = spike_count_reg(fwd.spike_counts, self.reg)
        dcounts = [d.astype(dt) for d in dcounts]

        n_hidden = self.n_layers - 1
        grads: list[np.ndarray] = [None] * self.n_layers
        times = [0.0] * self.n_layers
        sparse = self.backward_mode == "sparse"

        # readout
        t0 = time.perf_counter()
        g = np.zeros((nt, nb, self.sizes[-1]), dt)
        bb, kk = np.indices(fwd.t_star.shape)
        g[fwd.t_star, bb, kk] = dlogits
        gy = np.empty_like(g)
        K.leaky_backward(g, self.beta_out, gy)
        gy *= dt.type(self.readout_scale)  # the gradient to the read-out's input currents
        gy_flat = gy.reshape(nt * nb, -1)
        w_out = self.weights[-1]
        if isinstance(fwd.s_last, Events):
            grads[-1] = event_weight_grad(fwd.s_last, gy_flat)
        else:
            grads[-1] = gy_flat.T @ fwd.s_last.reshape(nt * nb, -1)
        if sparse:
            top = fwd.saved[-1].active
            gz = K.gather_rows_dot(top.ptr, top.idx, gy_flat, np.ascontiguousarray(w_out.T))
        else:
            gz = (gy_flat @ w_out).reshape(nt, nb, -1)
        times[-1] = time.perf_counter() - t0

        for h in range(n_hidden - 1, -1, -1):
            t0 = time.perf_counter()
            saved = fwd.saved[h]
            if sparse:
                below = fwd.saved[h - 1].active if h > 0 else None
                grads[h], gz = sparse_layer_backward(saved.active, gz, dcounts[h], saved.events, self.weights[h],
                                                     beta=self.beta, below=below)
            else:
                gz += dcounts[h][None]
                grads[h], gz = dense_layer_backward(gz, saved.v, saved.s, self.weights[h], beta=self.beta,
                                                    theta=self.theta, scale=self.surrogate_scale,
                                                    input_grad=h > 0)
            times[h] = time.perf_counter() - t0

        counts = fwd.spike_counts
        dead = dead_layers(counts, self.dead_rate)
        stats = {
            "ce": ce,
            "reg": reg_loss,
            "mean_count": [float(c.mean()) for c in counts],
            "silent_fraction": [float(np.mean(c == 0)) for c in counts],
            "active_fraction": list(fwd.active_fraction),
            "backward_s": times,
            "backward_bytes": [s.nbytes for s in fwd.saved] + [int(fwd.s_last.nbytes + fwd.t_star.nbytes)],
            "dead_layers": dead,
        }
        if dead and self.guard != "flag":
            msg = (f"hidden layer(s) {dead} silent over the whole batch (mean spike count per neuron and sample "
                   f"<= {self.dead_rate:g}): {stats['mean_count']}")
            if self.guard == "raise":
                raise DeadNetworkError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return ce + reg_loss, acc, grads, stats

    def loss_and_grads(self, s_in, labels, *, matmul: MatmulHook | None = None,
                       neurons: NeuronsHook | None = None) -> tuple[float, float, list[np.ndarray], dict]:
        """Forward and backward on one batch: returns (loss, accuracy, grads, stats).

        loss = CE + regulariser; grads[l] = ∂loss/∂W_l (model dtype). stats: "ce", "reg"; per
        hidden layer "mean_count" (spikes per neuron and sample), "silent_fraction" and
        "active_fraction" (entries with |v − θ| < b_th); per weight layer (hidden layers, then the
        readout) "backward_s" (perf_counter time of that layer's backward) and "backward_bytes"
        (memory kept from the forward for it: dense v and input spikes, or the active set and
        the presynaptic trace; the readout keeps the last spikes and the argmax steps);
        "forward_s"; "dead_layers" (see ``guard``). ``matmul``: the layers' currents as in
        :meth:`predict` (the LIF units are the network's own: the sparse backward needs their
        voltages near the threshold, so ``neurons`` must be None)."""
        if neurons is not None:
            raise ValueError("neurons: the sparse backward runs on the network's own LIF units; expected None")
        t0 = time.perf_counter()
        fwd = self.forward(s_in, matmul=matmul)
        t_fwd = time.perf_counter() - t0
        out = self.backward(fwd, labels)
        out[3]["forward_s"] = t_fwd
        return out

    def train_step(self, s_in, labels, optimizer: Adam) -> tuple[float, float, dict]:
        """loss_and_grads then ``optimizer.step(self.weights, grads)``; returns (loss, acc, stats)."""
        loss, acc, grads, stats = self.loss_and_grads(s_in, labels)
        optimizer.step(self.weights, grads)
        return loss, acc, stats


class SparseBPTT(SurrogateBPTT):
    """:class:`~neuroemu.rules.surrogate.SurrogateBPTT` with the backward of Perez-Nieves & Goodman
    (2021) chosen by the rule: ``"sparse"`` (the surrogate kept on the active set |v − θ| < b_th
    only) or ``"dense"``, for a :class:`SparseSNN` network (set on it when the rule is bound). Its
    measurements add the statistics of :meth:`SparseSNN.loss_and_grads` (active fraction, backward
    time and memory per layer)."""

    def __init__(self, lr=2e-4, *, backward: str = "sparse", **adam):
        if backward not in ("dense", "sparse"):
            raise ValueError(f"backward: expected 'dense' or 'sparse', got {backward!r}")
        super().__init__(lr, **adam)
        self.backward = backward

    def bind(self, chip) -> None:
        from neuroemu.rules.base import RuleError

        super().bind(chip)
        net = chip.model.net
        if not isinstance(net, SparseSNN):
            raise RuleError(f"rule {self.name} needs a SparseSNN network (LIF with reset by subtraction); the chip's "
                            f"model runs {type(net).__name__}")
        if getattr(chip.model, "neurons", None) is not None:
            raise RuleError(f"rule {self.name}: the sparse backward needs the network's own LIF units, not a substrate")
        net.backward_mode = self.backward
