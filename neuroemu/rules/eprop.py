"""e-prop (Bellec et al., "A solution to the learning dilemma for recurrent networks of spiking
neurons", Nat. Commun. 11:3625, 2020) for a recurrent network of LIF/ALIF neurons with a leaky
linear readout. Like every rule in :mod:`neuroemu.rules` it returns gradients ∂E/∂W in weight
units (the caller applies ΔW = −lr·grad, e.g. through an update scheme) and never touches devices.

Network (arrays are time-major (T, batch, n); float64 inside)
--------------------------------------------------------------
Recurrent neurons j = 0..n_rec−1, the LAST ``n_alif`` of them ALIF, inputs x (T, B, n_in), readout
units k. Per step t = 0..T−1, with the state at t−1 (all zero at t = −1):

    I_j(t) = Σ_i W_in[j,i] x_i(t) + Σ_{i≠j} W_rec[j,i] z_i(t−1)        (no autapses: diag(W_rec) ignored)
    v_j(t) = α v_j(t−1) + I_j(t) − z_j(t−1) v_th                      (reset by subtraction)
    a_j(t) = ρ a_j(t−1) + z_j(t−1)            (ALIF; a = 0 for LIF)
    A_j(t) = v_th + β a_j(t)
    z_j(t) = H(v_j(t) − A_j(t)), H(0) = 0, except while refractory: a spike at t blocks spikes at
             t+1 .. t+n_ref (the membrane keeps integrating, as in the authors' code)
    ψ_j(t) = (γ / v_th) · max(0, 1 − |v_j(t) − A_j(t)| / v_th)    (pseudo-derivative; 0 while refractory)

    y_k(t) = ỹ_k(t) + b_k,   ỹ_k(t) = κ ỹ_k(t−1) + Σ_j W_out[k,j] z_j(t)

with α = exp(−dt/τ_m), ρ = exp(−dt/τ_a), κ = exp(−dt/τ_out). The bias is added after the readout
filter (so ∂y(t)/∂b = 1 and db = Σ_t err(t)); the authors' pattern-generation code has no bias.
A refractory period of n_ref here is ``n_refractory = n_ref + 1`` in the authors' code, whose
count includes the step of the spike.

Losses (mask m(t, b) ≥ 0 selects or weights the steps that count; sums over time and batch):
* ``"mse"``: E = ½ Σ_{t,b,k} m (y − y*)²,       err = m · (y − y*)
* ``"ce"``:  E = Σ_{t,b} m · CE(softmax(y), y*),  err = m · (softmax(y) − onehot(y*))
* firing-rate regulariser (Bellec): E_reg = ½ c_reg Σ_j (f_j − f_target)², f_j = mean_{t,b} z_j / dt (Hz).

Eligibility traces (computed forward in time, O(T) per synapse)
---------------------------------------------------------------
Presynaptic trace ē_i(t) = α ē_i(t−1) + s_i(t), with s = x(t) for input synapses and s = z(t−1)
for recurrent ones. With ε^a the synapse's ALIF adaptation trace (zero at t = 0):

    LIF:   e_ji(t) = ψ_j(t) ē_i(t)
    ALIF:  ε^a_ji(t) = ψ_j(t−1) ē_i(t−1) + (ρ − ψ_j(t−1) β) ε^a_ji(t−1)
           e_ji(t) = ψ_j(t) (ē_i(t) − β ε^a_ji(t))

(ē = ∂v(t)/∂W and ε^a = ∂a(t)/∂W with z_i of other neurons and the reset held constant.)
Learning signal L_j(t) = Σ_k B[j,k] err_k(t); B is W_outᵀ ("symmetric"), a fixed random matrix
("random") or a matrix updated like W_outᵀ ("adaptive", :func:`adapt_feedback`). Gradients,
summed over the batch, with F_κ(e)(t) = κ F_κ(e)(t−1) + e(t) the readout's filter:

    dW_in[j,i]  = Σ_t L_j(t) F_κ(e^in_ji)(t)  + c_reg (f_j − f_target)/(T·B·dt) Σ_t e^in_ji(t)
    dW_rec[j,i] = Σ_t L_j(t) F_κ(e^rec_ji)(t) + c_reg (f_j − f_target)/(T·B·dt) Σ_t e^rec_ji(t),  dW_rec[j,j] = 0
    dW_out[k,j] = Σ_t err_k(t) F_κ(z_j)(t),    db_k = Σ_t err_k(t)

``reg_form = "signal"`` puts the regulariser into the learning signal instead, as Demirag et al.'s
e-prop-on-PCM code (srnn-pcm ``SRNN.acc_gradient``) does: L_j(t) ← L_j(t) + c_reg (f_j − f_target)
at every step, so its term is c_reg (f_j − f_target) Σ_t F_κ(e_ji)(t) — not the gradient of E_reg
(it is about T·B·dt/(1 − κ) times the "loss" form's term with the same c_reg; the two agree on
the direction). ``loss_reg`` is reported as ½ c_reg Σ_j (f_j − f_target)² either way.

Gradient clamp (Demirag et al.'s code clamps each entry of one sequence's summed gradient to ±100
in its units): with ``grad_clip`` finite, every entry of dW_in and dW_rec is clamped to
±grad_clip after the sums over time and batch, and every entry of dW_out and db to
±grad_clip_out (default: no clamp). Their code's pseudo-derivative is γ·max(0, 1 − |v − v_th|/v_th),
without the 1/v_th of ψ here, so their input and recurrent gradients are v_th × ours and their
±100 is grad_clip = 100/v_th here; the read-out gradient has no ψ, so grad_clip_out = 100 (and
their learning rate η for W_in, W_rec is η·v_th here). ``clipped`` in the returned dict counts
the entries that hit a clamp.

With B = W_outᵀ, reg_form "loss" and no clamp this is exactly the gradient of E + E_reg by BPTT
with ψ standing for dz/dv and the gradient stopped through the spikes z_i(t−1) entering other
neurons and through the reset term z_j(t−1)·v_th, but kept through each neuron's own v and a and
through the readout (the identity the authors verify numerically; tests/test_eprop.py checks it
to 1e-10).

Hardware hooks
--------------
* :func:`simulate` takes the input currents I_in = W_in x precomputed (T, B, n_rec), so they can
  be read through a crossbar tile.
* Recurrent reads with per-device read noise in output-referred form: given the effective W_rec
  and a variance matrix var_rec, the recurrent current of (b, j) at step t is
  Σ_{i≠j} W_rec[j,i] z_i + sqrt(Σ_{i≠j} z_i var_rec[j,i]) · N(0, 1) (z ∈ {0, 1}), the normal
  drawn by the counter-based generator as ``normal_k(key(seed, t), b·n_rec + j)``: the same seed
  gives the same result bit for bit.
* :func:`readout` takes either spikes and W_out or the readout currents W_out z precomputed.
* :class:`Eprop` is the rule on a chip (:mod:`neuroemu.rules.base`): it runs the network of
  :class:`neuroemu.models.rsnn.RSNN` on the hardware, measures, and yields the three updates
  through the layers' schemes. :class:`EpropNetwork` is the same network with float weights.

Defaults (:class:`EpropConfig`): dt = 1 ms, τ_m = τ_out = 30 ms and v_th = 0.03 are the pattern-
generation task of the authors' code (Bellec Fig. S7, papers.md §3); γ = 0.3 (Bellec). ALIF:
τ_a = 200 ms and β = 1.6·(1 − e^{−1/200}) ≈ 0.008, the authors' ``LightALIF`` defaults
(β = 1.6 on an adaptation variable that grows by 1 − ρ per spike) written for the a(t) above,
which grows by 1 per spike.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from neuroemu._kernels import eprop as _K
from neuroemu._kernels import neurons as _NK

from ..chip import Update
from ..data.sequences import nmse
from .base import Rule, RuleError, Step, check_traits
from .surrogate import Adam
from ..rng import as_rng

__all__ = [
    "Eprop",
    "EpropConfig",
    "EpropNetwork",
    "LEARNING",
    "Trace",
    "adapt_feedback",
    "eprop_gradients",
    "initial_weight",
    "initial_weights",
    "random_feedback",
    "readout",
    "simulate",
    "task_loss",
]

_LOSSES = ("mse", "ce")
_FEEDBACK = ("symmetric", "random", "adaptive")
#: How :class:`Eprop` turns a gradient into ΔW: plain steps −lr·g, or Adam's steps.
OPTIMIZERS = ("sgd", "adam")
_REG_FORMS = ("loss", "signal")


# ----------------------------------------------------------------------------- configuration
@dataclasses.dataclass(frozen=True)
class EpropConfig:
    """Parameters of the e-prop network (see the module docstring for equations and sources).

    dt, tau_m, tau_out, tau_a: step and time constants (s); beta: ALIF threshold increase per unit
    of a (a grows by 1 per spike); v_th: threshold; gamma: pseudo-derivative amplitude; n_ref:
    refractory steps after a spike (0 = none); n_alif: how many of the recurrent neurons (the last
    ones) are ALIF; loss: "mse" (regression) or "ce" (softmax cross-entropy); c_reg, f_target:
    firing-rate regulariser strength (per Hz²) and target rate (Hz); reg_form: "loss" (the
    gradient of E_reg, Bellec) or "signal" (c_reg (f − f_target) added to the learning signal,
    Demirag et al.'s code); grad_clip, grad_clip_out: clamp on each entry of one call's input and
    recurrent gradients, and of its read-out weight and bias gradients (inf = none). See the module
    docstring for the forms and for converting the authors' numbers.
    """

    dt: float = 1e-3
    tau_m: float = 30e-3
    tau_out: float = 30e-3
    tau_a: float = 200e-3
    beta: float = 1.6 * (1.0 - math.exp(-1.0 / 200.0))
    v_th: float = 0.03
    gamma: float = 0.3
    n_ref: int = 0
    n_alif: int = 0
    loss: str = "mse"
    c_reg: float = 0.0
    f_target: float = 10.0
    reg_form: str = "loss"
    grad_clip: float = math.inf
    grad_clip_out: float = math.inf

    def __post_init__(self):
        for name in ("dt", "tau_m", "tau_out", "tau_a", "v_th"):
            val = getattr(self, name)
            if not (isinstance(val, (int, float, np.floating, np.integer)) and math.isfinite(val) and val > 0):
                raise ValueError(f"EpropConfig.{name}: expected a finite number > 0, got {val!r}")
        for name in ("beta", "gamma", "c_reg", "f_target"):
            val = getattr(self, name)
            if not (isinstance(val, (int, float, np.floating, np.integer)) and math.isfinite(val) and val >= 0):
                raise ValueError(f"EpropConfig.{name}: expected a finite number >= 0, got {val!r}")
        for name in ("n_ref", "n_alif"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
                raise ValueError(f"EpropConfig.{name}: expected an integer >= 0, got {val!r}")
        if self.loss not in _LOSSES:
            raise ValueError(f"EpropConfig.loss: expected one of {_LOSSES}, got {self.loss!r}")
        if self.reg_form not in _REG_FORMS:
            raise ValueError(f"EpropConfig.reg_form: expected one of {_REG_FORMS}, got {self.reg_form!r}")
        for name in ("grad_clip", "grad_clip_out"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, float, np.floating, np.integer)) \
                    or math.isnan(val) or val <= 0:
                raise ValueError(f"EpropConfig.{name}: expected a number > 0 (inf for no clamp), got {val!r}")

    @property
    def alpha(self) -> float:
        """Membrane decay per step, exp(−dt/τ_m)."""
        return math.exp(-self.dt / self.tau_m)

    @property
    def rho(self) -> float:
        """Adaptation decay per step, exp(−dt/τ_a)."""
        return math.exp(-self.dt / self.tau_a)

    @property
    def kappa(self) -> float:
        """Readout decay per step, exp(−dt/τ_out)."""
        return math.exp(-self.dt / self.tau_out)


class Trace(NamedTuple):
    """Recorded network state, each (T, batch, n_rec) float64: spikes z (0/1), membrane v (before
    the reset of the next step), adaptation a (0 for LIF neurons) and pseudo-derivative psi."""

    z: np.ndarray
    v: np.ndarray
    a: np.ndarray
    psi: np.ndarray


# ----------------------------------------------------------------------------- validation helpers
def _check_cfg(cfg) -> EpropConfig:
    if not isinstance(cfg, EpropConfig):
        raise ValueError(f"cfg: expected an EpropConfig, got {type(cfg).__name__}")  # noqa: TRY004
    return cfg


def _array(name: str, a, ndim: int, shape: tuple | None = None) -> np.ndarray:
    """a as a C-contiguous finite float64 array with ``ndim`` dimensions; ``shape`` entries that
    are not None must match."""
    try:
        out = np.ascontiguousarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a numeric array, got {type(a).__name__}") from exc
    if out.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {out.shape}")
    if shape is not None:
        for ax, (got, want) in enumerate(zip(out.shape, shape)):
            if want is not None and got != want:
                want_s = tuple("?" if w is None else w for w in shape)
                raise ValueError(f"{name}: expected shape {want_s}, got {out.shape} (axis {ax})")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name}: expected finite values (found NaN or inf)")
    return out


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed: expected an integer in [0, 2**63), got {seed!r}")
    return int(seed)


def _lowpass(x: np.ndarray, decay: float) -> np.ndarray:
    """F(x)(t) = decay·F(x)(t−1) + x(t) over axis 0 of a (T, B, n) float64 array."""
    out = np.empty_like(x)
    _NK.readout_sequence(x, decay, np.zeros(x.shape[1:]), out)
    return out


# ----------------------------------------------------------------------------- forward pass
def simulate(cfg: EpropConfig, i_in, w_rec, *, var_rec=None, seed: int = 0) -> Trace:
    """Run the recurrent LIF/ALIF network on precomputed input currents.

    i_in: (T, B, n_rec) input currents Σ_i W_in[j,i] x_i(t) (exact, or as read from a crossbar);
    w_rec: (n_rec, n_rec) effective recurrent weights (diagonal ignored); var_rec: None (or an
    empty array) for noise-free recurrent reads, else an (n_rec, n_rec) array of per-device read
    variances in output units, giving the output-referred noise
    sqrt(Σ_{i≠j} z_i(t−1) var_rec[j,i]) · normal_k(key(seed, t), b·n_rec + j); seed: integer in
    [0, 2**63) keying that noise. Returns the :class:`Trace`.
    """
    cfg = _check_cfg(cfg)
    i_in = _array("i_in", i_in, 3)
    nt, nb, n = i_in.shape
    w_rec = _array("w_rec", w_rec, 2, (n, n))
    if cfg.n_alif > n:
        raise ValueError(f"EpropConfig.n_alif: expected at most n_rec = {n} ALIF neurons, got {cfg.n_alif}")
    if var_rec is None or np.size(var_rec) == 0:
        var = np.zeros((0, 0))
    else:
        var = _array("var_rec", var_rec, 2, (n, n))
        if np.any(var < 0):
            raise ValueError("var_rec: expected variances >= 0 (found a negative entry)")
    seed = _check_seed(seed)
    z, v, a, psi = (np.empty((nt, nb, n)) for _ in range(4))
    _K.simulate(i_in, w_rec, var, np.int64(seed), cfg.alpha, cfg.rho, float(cfg.beta), float(cfg.v_th),
                float(cfg.gamma), np.int64(cfg.n_ref), np.int64(cfg.n_alif), z, v, a, psi)
    return Trace(z, v, a, psi)


def readout(cfg: EpropConfig, z, w_out=None, b_out=None) -> np.ndarray:
    """Leaky readout y(t) = ỹ(t) + b, ỹ(t) = κ ỹ(t−1) + c(t), returned as (T, B, n_out).

    With ``w_out`` (n_out, n_rec), ``z`` holds spikes (T, B, n_rec) and c(t) = W_out z(t); without
    it, ``z`` holds the readout currents c (T, B, n_out) already computed (e.g. read through a
    crossbar tile). b_out: (n_out,) bias, or None for none.
    """
    cfg = _check_cfg(cfg)
    if w_out is None:
        cur = _array("z", z, 3)
    else:
        zz = _array("z", z, 3)
        w = _array("w_out", w_out, 2, (None, zz.shape[2]))
        cur = np.ascontiguousarray(zz @ w.T)
    y = _lowpass(cur, cfg.kappa)
    if b_out is not None:
        y += _array("b_out", b_out, 1, (cur.shape[2],))
    return y


# ----------------------------------------------------------------------------- losses and gradients
def _mask(mask, nt: int, nb: int) -> np.ndarray:
    if mask is None:
        return np.ones((nt, nb))
    m = np.asarray(mask)
    if m.ndim == 1:
        m = _array("mask", m, 1, (nt,))[:, None] * np.ones((1, nb))
    else:
        m = _array("mask", m, 2, (nt, nb))
    if np.any(m < 0):
        raise ValueError("mask: expected weights >= 0 (booleans or non-negative numbers)")
    return m


def task_loss(cfg: EpropConfig, y, target, mask=None) -> tuple[float, np.ndarray]:
    """Task loss E and output error err = ∂E/∂y (T, B, n_out), mask included.

    ``"mse"``: target (T, B, n_out), E = ½ Σ m (y − y*)², err = m (y − y*).
    ``"ce"``: target integer labels (T, B) or (B,) (the same label at every step), or class
    probabilities (T, B, n_out); E = −Σ_{t,b} m Σ_k p_k log softmax(y)_k, err = m (softmax(y) − p).
    mask: None (every step counts), (T, B) or (T,) non-negative weights.
    """
    cfg = _check_cfg(cfg)
    y = _array("y", y, 3)
    nt, nb, nk = y.shape
    m = _mask(mask, nt, nb)
    if cfg.loss == "mse":
        tgt = _array("target", target, 3, y.shape)
        diff = y - tgt
        err = m[:, :, None] * diff
        return 0.5 * float(np.sum(err * diff)), err
    tg = np.asarray(target)
    if tg.ndim == 3:
        p = _array("target", tg, 3, y.shape)
        if np.any(p < 0):
            raise ValueError("target: expected class probabilities >= 0 for loss='ce'")
    else:
        if tg.dtype.kind not in "iu":
            raise ValueError(f"target: expected integer class labels of shape (T, B) or (B,) for loss='ce', "
                             f"got dtype {tg.dtype} and shape {tg.shape}")
        if tg.shape not in ((nt, nb), (nb,)):
            raise ValueError(f"target: expected class labels of shape ({nt}, {nb}) or ({nb},), got {tg.shape}")
        if tg.size and (tg.min() < 0 or tg.max() >= nk):
            raise ValueError(f"target: expected class labels in [0, {nk}), got values in [{tg.min()}, {tg.max()}]")
        p = np.zeros(y.shape)
        lab = np.broadcast_to(tg, (nt, nb))
        np.put_along_axis(p, lab[:, :, None].astype(np.int64), 1.0, axis=2)
    shifted = y - y.max(axis=2, keepdims=True)
    logz = np.log(np.sum(np.exp(shifted), axis=2, keepdims=True))
    logpi = shifted - logz
    loss = -float(np.sum(m[:, :, None] * p * logpi))
    err = m[:, :, None] * (np.exp(logpi) - p)
    return loss, err


def eprop_gradients(cfg: EpropConfig, x, trace: Trace, y, target, feedback, *, mask=None) -> dict:
    """e-prop gradients ∂E/∂W of one batch of sequences (module docstring for the equations).

    x: (T, B, n_in) inputs; trace: the :class:`Trace` of :func:`simulate`; y: (T, B, n_out)
    readout of :func:`readout`; target and mask: see :func:`task_loss`; feedback: (n_rec, n_out)
    matrix B of the learning signal L = err Bᵀ (pass W_outᵀ for symmetric e-prop).

    Returns a dict: ``w_in`` (n_rec, n_in), ``w_rec`` (n_rec, n_rec, zero diagonal), ``w_out``
    (n_out, n_rec), ``b_out`` (n_out,), ``loss`` (E + E_reg), ``loss_task``, ``loss_reg``,
    ``rate_hz`` (n_rec,) the firing rate f_j used by the regulariser and ``clipped`` (how many
    gradient entries the clamps of ``cfg.grad_clip``/``grad_clip_out`` changed; 0 without them).
    """
    cfg = _check_cfg(cfg)
    if not isinstance(trace, Trace):
        raise ValueError(f"trace: expected the Trace returned by simulate, got {type(trace).__name__}")  # noqa: TRY004
    z = _array("trace.z", trace.z, 3)
    nt, nb, n_rec = z.shape
    psi = _array("trace.psi", trace.psi, 3, z.shape)
    x = _array("x", x, 3, (nt, nb, None))
    y = _array("y", y, 3, (nt, nb, None))
    n_out = y.shape[2]
    fb = _array("feedback", feedback, 2, (n_rec, n_out))
    if cfg.n_alif > n_rec:
        raise ValueError(f"EpropConfig.n_alif: expected at most n_rec = {n_rec} ALIF neurons, got {cfg.n_alif}")
    if nt == 0 or nb == 0:
        raise ValueError(f"x: expected at least one time step and one batch element, got shape {x.shape}")
    loss_task, err = task_loss(cfg, y, target, mask)
    ls = np.ascontiguousarray(err @ fb.T)
    rate = z.mean(axis=(0, 1)) / cfg.dt
    creg = np.zeros(n_rec)
    loss_reg = 0.0
    if cfg.c_reg > 0:
        loss_reg = 0.5 * cfg.c_reg * float(np.sum((rate - cfg.f_target) ** 2))
        if cfg.reg_form == "signal":
            ls += cfg.c_reg * (rate - cfg.f_target)
        else:
            creg = cfg.c_reg * (rate - cfg.f_target) / (nt * nb * cfg.dt)
    args = (cfg.alpha, cfg.kappa, cfg.rho, float(cfg.beta), np.int64(cfg.n_alif))
    g_in = np.zeros((n_rec, x.shape[2]))
    _K.accumulate(x, psi, ls, creg, *args, g_in)
    z_prev = np.zeros_like(z)
    z_prev[1:] = z[:-1]
    g_rec = np.zeros((n_rec, n_rec))
    _K.accumulate(z_prev, psi, ls, creg, *args, g_rec)
    np.fill_diagonal(g_rec, 0.0)
    zf = _lowpass(z, cfg.kappa)
    g_out = err.reshape(-1, n_out).T @ zf.reshape(-1, n_rec)
    g_b = err.sum(axis=(0, 1))
    clipped = 0
    for g, bound in ((g_in, cfg.grad_clip), (g_rec, cfg.grad_clip), (g_out, cfg.grad_clip_out),
                     (g_b, cfg.grad_clip_out)):
        if math.isfinite(bound):
            clipped += int(np.count_nonzero(np.abs(g) > bound))
            np.clip(g, -bound, bound, out=g)
    return {
        "w_in": g_in,
        "w_rec": g_rec,
        "w_out": g_out,
        "b_out": g_b,
        "loss": loss_task + loss_reg,
        "loss_task": loss_task,
        "loss_reg": loss_reg,
        "rate_hz": rate,
        "clipped": clipped,
    }


def adapt_feedback(feedback, grad_w_out, lr: float, weight_decay: float = 0.0) -> np.ndarray:
    """Adaptive e-prop: the feedback matrix B (n_rec, n_out) takes the same step as W_outᵀ,
    B ← B − lr·(dW_outᵀ + weight_decay·B), with grad_w_out the (n_out, n_rec) gradient of
    :func:`eprop_gradients`. Returns the new matrix (the input is not modified)."""
    b = _array("feedback", feedback, 2)
    g = _array("grad_w_out", grad_w_out, 2, (b.shape[1], b.shape[0]))
    lr, weight_decay = float(lr), float(weight_decay)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a finite learning rate > 0, got {lr}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay: expected a finite value >= 0, got {weight_decay}")
    return b - lr * (g.T + weight_decay * b)


def initial_weight(n_out: int, n_in: int, gain: float, rng: np.random.Generator, *,
                   recurrent: bool = False) -> np.ndarray:
    """One initial weight matrix (n_out, n_in) ~ N(0, 1)·gain/√n_in from ``rng``; ``recurrent``:
    with a zero diagonal (no autapses)."""
    w = rng.standard_normal((n_out, n_in)) * (gain / math.sqrt(n_in))
    if recurrent:
        np.fill_diagonal(w, 0.0)
    return w


def initial_weights(n_in: int, n_rec: int, n_out: int, rng: np.random.Generator, *, in_gain: float,
                    rec_gain: float, out_gain: float) -> dict[str, np.ndarray]:
    """Bellec-style initial weights (:func:`initial_weight`), drawn from ``rng`` in this order:
    ``input`` (n_rec, n_in) with in_gain, ``recurrent`` (n_rec, n_rec, zero diagonal) with
    rec_gain, ``output`` (n_out, n_rec) with out_gain."""
    return {"input": initial_weight(n_rec, n_in, in_gain, rng),
            "recurrent": initial_weight(n_rec, n_rec, rec_gain, rng, recurrent=True),
            "output": initial_weight(n_out, n_rec, out_gain, rng)}


def random_feedback(n_rec: int, n_out: int, gain: float, rng: np.random.Generator) -> np.ndarray:
    """A random feedback matrix B (n_rec, n_out) ~ N(0, 1)·gain/√n_rec (one draw from ``rng``)."""
    return rng.standard_normal((n_rec, n_out)) * gain / math.sqrt(n_rec)


# ----------------------------------------------------------------------------- the rule on a chip
#: The fields of :class:`EpropConfig` that belong to the learning rule (the others describe the
#: network's dynamics, which the chip's model holds).
LEARNING = ("loss", "c_reg", "f_target", "reg_form", "grad_clip", "grad_clip_out")


class Eprop(Rule):
    """e-prop on a chip whose model is a recurrent spiking network with e-prop dynamics
    (:class:`neuroemu.models.rsnn.RSNN`: layers ``input``, ``recurrent``, ``output`` and an
    :class:`EpropConfig` ``cfg``).

    A step takes a batch of sequences (``x`` (T, B, n_in), ``target``, ``mask``: a
    :class:`neuroemu.data.tasks.Task`), runs the network on the chip (noisy reads included) and

    * measures ``loss`` (the task loss E; NaN when the output is not finite), ``nmse`` (regression:
      the mean over the sequences of their normalised MSE, :func:`neuroemu.data.sequences.nmse`),
      ``rate_hz`` (the mean firing rate) and ``y`` (the read-out, (T, B, n_out));
    * then, from the same pass, the e-prop gradients (:func:`eprop_gradients`, feedback matrix B)
      and ``clipped`` (entries the gradient clamp changed), with the run's totals ``clipped_entries``
      and ``clip_updates`` (updates with any clamped entry);
    * then the updates ΔW = −lr·g of ``input`` and ``recurrent`` (the diagonal never written: no
      autapses) and ΔW = −lr_out·g of ``output`` (``lr_out`` default ``lr``), with its bias when the
      layer has one (−lr_out·db, digital). With ``optimizer="adam"`` each ΔW is instead the step of
      Adam (Kingma & Ba 2015; β 0.9, 0.999, eps 1e-8, as the authors' TensorFlow code) on g: one Adam
      at ``lr`` for the input and recurrent weights, one at ``lr_out`` for the read-out; the chip
      applies that ΔW through the layer's scheme like any other. Its moments live on the rule (and
      so in a trainer checkpoint).

    The weights change through each layer's update scheme as a dense ΔW (e-prop's gradient is a
    sum over time, not one outer product), so any scheme applies. ``loss``, ``c_reg``, ``f_target``,
    ``reg_form``, ``grad_clip``, ``grad_clip_out``: the learning fields of :class:`EpropConfig`
    (:data:`LEARNING`), combined with the model's dynamics when the rule is bound.

    ``feedback``: ``symmetric`` (B = W_outᵀ as the chip holds it), ``random`` (a fixed matrix,
    never updated, read-only) or ``adaptive`` (a matrix that takes W_out's step,
    :func:`adapt_feedback`). The matrix is ``b_feedback`` when given, else drawn when the rule is
    bound, N(0, 1)·``fb_gain``/√n_rec from ``rng``."""

    requires = frozenset({"recurrent", "spiking", "sequence"})

    def __init__(self, lr: float, lr_out: float | None = None, *, feedback: str = "symmetric", b_feedback=None,
                 fb_gain: float = 1.0, rng=None, optimizer: str = "sgd", **learning):
        unknown = sorted(set(learning) - set(LEARNING))
        if unknown:
            raise TypeError(f"Eprop: unknown option {unknown[0]!r}; expected lr, lr_out, feedback, b_feedback, "
                            f"fb_gain, rng, optimizer or one of {', '.join(LEARNING)}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"Eprop.optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
        EpropConfig(**learning)  # bad values fail here, not when the rule is bound
        for name, val in (("lr", lr), ("lr_out", lr if lr_out is None else lr_out)):
            if not (isinstance(val, (int, float, np.floating, np.integer)) and math.isfinite(val) and val > 0):
                raise ValueError(f"Eprop.{name}: expected a finite learning rate > 0, got {val!r}")
        if feedback not in _FEEDBACK:
            raise ValueError(f"Eprop.feedback: expected one of {_FEEDBACK}, got {feedback!r}")
        if feedback == "symmetric" and b_feedback is not None:
            raise ValueError("Eprop.b_feedback: expected None for feedback='symmetric' (B = W_out transposed)")
        self.lr = lr
        self.lr_out = lr if lr_out is None else lr_out
        self.optimizer = optimizer
        self._adam = None if optimizer == "sgd" else (Adam(float(self.lr)), Adam(float(self.lr_out)))
        self.learning = dict(learning)
        self.feedback_mode, self.fb_gain, self.rng = feedback, fb_gain, rng
        self.feedback = None if b_feedback is None else _array("b_feedback", b_feedback, 2).copy()
        self.cfg: EpropConfig | None = None
        self.clipped_entries = 0
        self.clip_updates = 0

    def bind(self, chip) -> None:
        check_traits(self, chip)
        model = chip.model
        if not isinstance(getattr(model, "cfg", None), EpropConfig) or \
                not {"input", "recurrent", "output"} <= set(chip.layers):
            raise RuleError(f"rule {self.name} needs a network with e-prop dynamics (an EpropConfig 'cfg') and "
                            f"layers input, recurrent, output; the chip's model {model!r} has layers "
                            f"{', '.join(chip.layers)}")
        self.cfg = dataclasses.replace(model.cfg, **self.learning)
        n_out, n_rec = chip["output"].shape
        if self.feedback_mode != "symmetric":
            if self.feedback is None:
                g = self.rng if isinstance(self.rng, np.random.Generator) else np.random.default_rng(self.rng)
                self.feedback = random_feedback(n_rec, n_out, self.fb_gain, g)
            if self.feedback.shape != (n_rec, n_out):
                raise RuleError(f"rule {self.name}: b_feedback: expected shape ({n_rec}, {n_out}) for this chip, "
                                f"got {self.feedback.shape}")
            if self.feedback_mode == "random":  # drawn once, never updated: a write raises
                self.feedback.setflags(write=False)

    def feedback_matrix(self, chip) -> np.ndarray:
        """The matrix B (n_rec, n_out) of the learning signal."""
        return chip["output"].weights().T if self.feedback_mode == "symmetric" else self.feedback

    def step(self, chip, batch) -> Step:
        cfg = self.cfg
        x = batch.x
        trace, y = chip.forward(x)
        measured = {"loss": task_loss(cfg, y, batch.target, batch.mask)[0] if np.all(np.isfinite(y)) else math.nan}
        if cfg.loss == "mse":
            measured["nmse"] = nmse(y, batch.target, batch.mask)
        measured.update(rate_hz=float(trace.z.mean() / cfg.dt), y=y)
        yield measured
        g = eprop_gradients(cfg, x, trace, y, batch.target, self.feedback_matrix(chip), mask=batch.mask)
        self.clipped_entries += g["clipped"]
        self.clip_updates += g["clipped"] > 0
        yield {"clipped": g["clipped"], "clipped_entries": self.clipped_entries, "clip_updates": self.clip_updates}
        out = chip["output"]
        if self._adam is None:
            dw_in, dw_rec, dw_out = -self.lr * g["w_in"], -self.lr * g["w_rec"], -self.lr_out * g["w_out"]
            db = None if out.bias is None else -self.lr_out * g["b_out"]
        else:
            dw_in, dw_rec = self._adam[0].change([g["w_in"], g["w_rec"]])
            dw_out, *db = self._adam[1].change([g["w_out"]] + ([] if out.bias is None else [g["b_out"]]))
            db = db[0] if db else None
        yield Update("input", dw=dw_in)
        np.fill_diagonal(dw_rec, 0.0)  # no autapses
        yield Update("recurrent", dw=dw_rec)
        yield Update("output", dw=dw_out, db=db)
        if self.feedback_mode == "adaptive":
            self.feedback = adapt_feedback(self.feedback, g["w_out"], self.lr_out)

    def __setstate__(self, state):  # a checkpoint gives the random feedback back writeable
        self.__dict__.update(state)
        if self.feedback_mode == "random" and self.feedback is not None:
            self.feedback.setflags(write=False)


# ----------------------------------------------------------------------------- convenience network
class EpropNetwork:
    """Float weights of an e-prop network plus its config: W_in (n_rec, n_in), W_rec (n_rec, n_rec,
    diagonal kept at 0), W_out (n_out, n_rec), b_out (n_out,) and the feedback mode with its
    matrix (``b_feedback``, (n_rec, n_out); None for "symmetric", where B = W_outᵀ).

    :meth:`init` draws Bellec-style weights: W_in ~ N(0, 1)·in_gain/√n_in, W_rec ~
    N(0, 1)·rec_gain/√n_rec with zero diagonal, W_out ~ N(0, 1)·out_gain/√n_rec, b_out = 0, and for
    "random"/"adaptive" feedback B ~ N(0, 1)·fb_gain/√n_rec (fb_gain = 1: Bellec's pattern-generation
    code). The default gains in_gain = rec_gain = 1 − α, out_gain = 1 reproduce that code's LIF,
    which scales its input current by (1 − α) where the equations here do not. PyTorch's
    ``kaiming_normal_`` × g (Demirag et al.'s code) is every gain = √2·g.
    """

    def __init__(self, cfg: EpropConfig, w_in, w_rec, w_out, b_out=None, *, feedback: str = "symmetric",
                 b_feedback=None):
        self.cfg = _check_cfg(cfg)
        self.w_in = _array("w_in", w_in, 2).copy()
        n_rec, _ = self.w_in.shape
        self.w_rec = _array("w_rec", w_rec, 2, (n_rec, n_rec)).copy()
        np.fill_diagonal(self.w_rec, 0.0)
        self.w_out = _array("w_out", w_out, 2, (None, n_rec)).copy()
        n_out = self.w_out.shape[0]
        self.b_out = np.zeros(n_out) if b_out is None else _array("b_out", b_out, 1, (n_out,)).copy()
        if feedback not in _FEEDBACK:
            raise ValueError(f"feedback: expected one of {_FEEDBACK}, got {feedback!r}")
        self.feedback = feedback
        if feedback == "symmetric":
            if b_feedback is not None:
                raise ValueError("b_feedback: expected None for feedback='symmetric' (B = W_out transposed)")
            self.b_feedback = None
        else:
            if b_feedback is None:
                raise ValueError(f"b_feedback: expected an (n_rec, n_out) = ({n_rec}, {n_out}) matrix for "
                                 f"feedback={feedback!r}")
            self.b_feedback = _array("b_feedback", b_feedback, 2, (n_rec, n_out)).copy()
        if cfg.n_alif > n_rec:
            raise ValueError(f"EpropConfig.n_alif: expected at most n_rec = {n_rec} ALIF neurons, got {cfg.n_alif}")

    @classmethod
    def init(cls, cfg: EpropConfig, n_in: int, n_rec: int, n_out: int, *, feedback: str = "symmetric",
             rng=None, in_gain: float | None = None, rec_gain: float | None = None,
             out_gain: float = 1.0, fb_gain: float = 1.0) -> "EpropNetwork":
        """Random initial network (class docstring). rng: seed or numpy Generator."""
        cfg = _check_cfg(cfg)
        for name, val in (("n_in", n_in), ("n_rec", n_rec), ("n_out", n_out)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {val!r}")
        gains = {"in_gain": 1.0 - cfg.alpha if in_gain is None else in_gain,
                 "rec_gain": 1.0 - cfg.alpha if rec_gain is None else rec_gain, "out_gain": out_gain,
                 "fb_gain": fb_gain}
        for name, val in gains.items():
            if not (math.isfinite(float(val)) and float(val) >= 0):
                raise ValueError(f"{name}: expected a finite number >= 0, got {val!r}")
        if feedback not in _FEEDBACK:
            raise ValueError(f"feedback: expected one of {_FEEDBACK}, got {feedback!r}")
        g = as_rng(rng)
        w = initial_weights(n_in, n_rec, n_out, g, in_gain=gains["in_gain"], rec_gain=gains["rec_gain"],
                            out_gain=gains["out_gain"])
        b_fb = None if feedback == "symmetric" else random_feedback(n_rec, n_out, gains["fb_gain"], g)
        return cls(cfg, w["input"], w["recurrent"], w["output"], feedback=feedback, b_feedback=b_fb)

    def feedback_matrix(self) -> np.ndarray:
        """The matrix B (n_rec, n_out) of the learning signal: W_outᵀ or the stored one."""
        return self.w_out.T.copy() if self.b_feedback is None else self.b_feedback

    def forward(self, x, *, var_rec=None, seed: int = 0) -> tuple[Trace, np.ndarray]:
        """Simulate on inputs x (T, B, n_in); returns (trace, y) with y (T, B, n_out)."""
        x = _array("x", x, 3, (None, None, self.w_in.shape[1]))
        trace = simulate(self.cfg, x @ self.w_in.T, self.w_rec, var_rec=var_rec, seed=seed)
        return trace, readout(self.cfg, trace.z, self.w_out, self.b_out)

    def gradients(self, x, target, mask=None) -> dict:
        """Forward pass (noise-free) and the :func:`eprop_gradients` dict for inputs x (T, B, n_in)."""
        x = _array("x", x, 3, (None, None, self.w_in.shape[1]))
        trace, y = self.forward(x)
        return eprop_gradients(self.cfg, x, trace, y, target, self.feedback_matrix(), mask=mask)

    def apply(self, grads: dict, lr) -> None:
        """Plain gradient descent W ← W − lr·grad on every weight (diag(W_rec) stays 0); with
        "adaptive" feedback, B also takes W_outᵀ's step (:func:`adapt_feedback`).

        lr: one learning rate > 0 for all weights, or a dict {"w_in", "w_rec", "w_out", "b_out"}
        of rates >= 0 (a missing key or 0 freezes that weight). Input and recurrent gradients are
        typically orders of magnitude larger than the readout's (ψ ~ γ/v_th), so per-weight rates
        are the usual choice.
        """
        names = ("w_in", "w_rec", "w_out", "b_out")
        if isinstance(lr, dict):
            bad = set(lr) - set(names)
            if bad:
                raise ValueError(f"lr: expected keys among {names}, got {sorted(bad)}")
            rates = {n: float(lr.get(n, 0.0)) for n in names}
            if not all(math.isfinite(r) and r >= 0 for r in rates.values()):
                raise ValueError(f"lr: expected finite learning rates >= 0, got {lr}")
        else:
            r = float(lr)
            if not (math.isfinite(r) and r > 0):
                raise ValueError(f"lr: expected a finite learning rate > 0 (or a dict per weight), got {lr}")
            rates = dict.fromkeys(names, r)
        for name in names:
            if rates[name] == 0.0:
                continue
            if name not in grads:
                raise ValueError(f"grads: expected the dict of eprop_gradients, missing key {name!r}")
            w = getattr(self, name)
            g = _array(f"grads[{name!r}]", grads[name], w.ndim, w.shape)
            setattr(self, name, w - rates[name] * g)
        np.fill_diagonal(self.w_rec, 0.0)
        if self.feedback == "adaptive" and rates["w_out"] > 0:
            self.b_feedback = adapt_feedback(self.b_feedback, grads["w_out"], rates["w_out"])
