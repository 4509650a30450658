"""Sampling neurons: LIF neurons that sample from Boltzmann distributions (Petrovici et al. 2016,
PRE 94:042312; Kungl et al. 2019, Front. Neurosci. 13:1201), ideal or on an emulated analog chip.

A neuron in the high-conductance state, bombarded by excitatory and inhibitory background, fires
stochastically; reading it as a binary variable z = 1 for τ_ref after each of its spikes, a network
of them samples from p(z) ∝ exp(½ zᵀWz + bᵀz) when the leak potentials and synaptic weights are
set from (W, b) by the activation function of each neuron:

* :class:`SamplingNeurons` — the neurons' parameters, per neuron, in biological units (ms, mV,
  nF, µS, nA): ``coba`` (conductance-based, the BrainScaleS-1 kind; parameters of the example
  sampler of the group's reference code, sbs), ``cuba`` (current-based) and ``analog`` (the
  current-based neurons of an ``analog_chip`` card such as ``brainscales2``: fixed-pattern
  mismatch drawn from the chip's seed, membrane noise and rails, leak potentials set through
  10-bit parameter cells, optionally calibrated by :func:`neuroemu.hardware.calibration.calibrate`;
  potentials in CADC LSB, its chip time mapped to biological time by the acceleration).
* :class:`Poisson` or :class:`NoiseNetwork` — the background: explicit Poisson events, or a sparse
  random network of further neurons of the same substrate (Kungl et al.'s source of noise; its
  shared inputs correlate the samplers' noise).
* :class:`Sampler` — the neurons with their background; :meth:`Sampler.sample` runs chains with
  given synaptic weights, leak potentials and clamps (kernel :mod:`neuroemu._kernels.sampling`).
* :func:`activation_curves` / :func:`fit_activation` — the activation-function calibration:
  sweep the leak potential, measure the fraction of time each neuron is on, fit
  p = σ((E_l − v_p05)/α) per neuron.
* :func:`synaptic_weights` and :meth:`Activation.leak` — the mapping of (W, b) onto the chip:
  E_l = v_p05 + α·b, and synaptic weights whose post-synaptic potential has, over τ_ref, the
  area of the rectangular interaction the Boltzmann machine assumes (closed forms for
  current-based and conductance-based exponential synapses).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from .._kernels import sampling as _K
from ..errors import ConfigError
from ..rng import as_rng, draw_seed

__all__ = ["SamplingNeurons", "Poisson", "NoiseNetwork", "Sampler", "Activation", "activation_curves",
           "calibrate_activation", "fit_activation", "free_membrane", "synaptic_weights", "NEURON_KINDS", "IDEAL"]

NEURON_KINDS = ("coba", "cuba", "analog")

#: Ideal sampling neurons (biological units: ms, mV, nF, µS, nA; rates in kHz). ``coba``: the example
#: sampler of the reference code (electronicvisions/spike-based-sampling, example/tutorial.py: cm 0.2 nF,
#: τ_m 1 ms, E_I −100 mV, threshold −50 mV, reset −50.001 mV, τ_syn = τ_ref = 10 ms) with its default
#: calibration noise (3 kHz excitatory and inhibitory Poisson, 0.001 µS). ``cuba``: the same neuron with
#: current-based synapses; the background weight (0.08 nA) is our choice, giving a free-membrane spread
#: of about 2 mV like the conductance-based one.
IDEAL = {
    "coba": dict(c_m=0.2, tau_m=1.0, v_th=-50.0, v_reset=-50.001, e_exc=0.0, e_inh=-100.0, tau_syn=10.0,
                 tau_ref=10.0, noise=0.0, rate=3.0, w_bg=0.001, v_lo=-1e9, v_hi=1e9),
    "cuba": dict(c_m=0.2, tau_m=1.0, v_th=-50.0, v_reset=-50.001, e_exc=0.0, e_inh=0.0, tau_syn=10.0,
                 tau_ref=10.0, noise=0.0, rate=3.0, w_bg=0.08, v_lo=-1e9, v_hi=1e9),
}

#: Calibration targets of an analog chip run as samplers (chip time, s; potentials in LSB): τ_ref =
#: τ_syn as LIF sampling asks, a membrane about three times faster (3.5 µs: near the fastest the
#: card's cells reach on most neurons), the reset 3 LSB under the threshold (as the reference code's
#: sampler resets just under its threshold: a neuron driven above threshold bursts, so that its
#: on-fraction follows a logistic curve up to 1). Uncalibrated, the 6 LSB mismatch of reset and
#: threshold puts some resets above their thresholds: those neurons fire on and on.
ANALOG_TARGETS = {"tau_mem": 3.5e-6, "tau_syn": 10e-6, "refractory": 10e-6, "v_reset": 122.0}
#: Background of the analog chip's samplers: 3 kHz (biological) each way, 0.18 LSB/ms per event (our
#: choice: a free-membrane spread of about 4 LSB of the 45 LSB from leak to threshold).
ANALOG_BACKGROUND = {"rate": 3.0, "w_bg": 0.18}


@dataclasses.dataclass
class Poisson:
    """Explicit Poisson background: ``rate`` (kHz) of excitatory and of inhibitory events per
    neuron, each adding ``w`` (default: the substrate's background weight) to its channel."""

    rate: float | None = None
    w: float | None = None

    kind = "poisson"


@dataclasses.dataclass
class NoiseNetwork:
    """Background from ``size`` further neurons of the same substrate, without external noise
    (Kungl et al. 2019): each is driven above threshold (leak ``drive`` above its threshold) and
    inhibited by ``recurrent`` random others with weight ``w_rec`` (× the background weight), which
    makes their firing irregular; the drives differ from neuron to neuron (normal, std
    ``drive_spread``), without which identical neurons lock into regular firing. Each sampler
    receives ``in_degree`` excitatory and ``in_degree`` inhibitory connections from random noise
    neurons, with the background weight × ``w_in``. The wiring is drawn from ``seed``. Ideal
    neurons have no noise of their own: a network of them is deterministic, and its chains settle
    onto one trajectory; on an analog chip the membrane noise keeps it stochastic."""

    size: int = 200
    in_degree: int = 60
    recurrent: int = 30
    w_rec: float = 80.0
    w_in: float = 3.0
    drive: float = 5.0
    drive_spread: float = 10.0
    seed: int = 0

    kind = "network"


class SamplingNeurons:
    """``n`` sampling neurons: per-neuron parameters in biological units (see the module docstring).

    Build with :meth:`ideal` or :meth:`analog`. ``par`` gives the kernel's parameter rows
    (:mod:`neuroemu._kernels.sampling`) for a background; ``leak(requested)`` the leak potentials a
    request realises (exact on ideal neurons; through the parameter cells on a chip); ``gain`` the
    per-neuron synaptic gain (analog mismatch; 1 on ideal neurons) that multiplies every weight onto
    a neuron; ``nominal`` the parameters a user of the chip knows (its targets), which the mapping
    uses.
    """

    def __init__(self, kind: str, *, conductance: bool, c_m, g_l, v_th, v_reset, e_exc, e_inh, tau_syn, tau_ref: float,
                 noise, w_bg, rate: float, dt: float = 0.1, v_lo: float = -1e9, v_hi: float = 1e9,
                 chip: dict[str, Any] | None = None, leak_cells: dict[str, Any] | None = None,
                 nominal: dict[str, float] | None = None, gain=1.0):
        n = np.size(v_th)
        self.kind, self.n, self.conductance, self.dt = kind, int(n), bool(conductance), float(dt)
        arr = lambda x: np.broadcast_to(np.asarray(x, np.float64), (self.n,)).copy()  # noqa: E731
        self.c_m, self.g_l, self.v_th, self.v_reset = arr(c_m), arr(g_l), arr(v_th), arr(v_reset)
        self.e_exc, self.e_inh, self.tau_syn, self.noise = arr(e_exc), arr(e_inh), arr(tau_syn), arr(noise)
        self.w_bg, self.rate, self.gain = arr(w_bg), float(rate), arr(gain)
        self.tau_ref = float(tau_ref)
        self.n_ref = int(round(self.tau_ref / self.dt))
        if self.n_ref < 1:
            raise ConfigError(f"SamplingNeurons: tau_ref {tau_ref} ms is shorter than one step of {dt} ms")
        self.v_lo, self.v_hi = float(v_lo), float(v_hi)
        self.chip = chip or {"name": "ideal", "acceleration": 1.0}
        self.leak_cells = leak_cells
        self.nominal = nominal or {"c_m": float(np.mean(self.c_m)), "g_l": float(np.mean(self.g_l)),
                                   "tau_syn": float(np.mean(self.tau_syn)), "e_exc": float(np.mean(self.e_exc)),
                                   "e_inh": float(np.mean(self.e_inh)), "w_bg": float(np.mean(self.w_bg)),
                                   "v_th": float(np.mean(self.v_th))}

    # ------------------------------------------------------------------ construction
    @classmethod
    def ideal(cls, n: int, kind: str = "coba", *, dt: float = 0.1, **changes: Any) -> "SamplingNeurons":
        """``n`` identical ideal neurons, ``coba`` or ``cuba`` (:data:`IDEAL`, some values
        replaced by ``changes``)."""
        if kind not in IDEAL:
            raise ConfigError(f"SamplingNeurons.ideal: kind: expected one of {', '.join(IDEAL)}, got {kind!r}")
        p = dict(IDEAL[kind])
        unknown = set(changes) - set(p)
        if unknown:
            raise ConfigError(f"SamplingNeurons.ideal: unknown parameter {sorted(unknown)[0]!r}; expected some of "
                              f"{', '.join(p)}")
        p.update({k: float(v) for k, v in changes.items()})
        for k in ("c_m", "tau_m", "tau_syn", "tau_ref"):
            if not p[k] > 0:
                raise ConfigError(f"SamplingNeurons.ideal: {k}: expected a value > 0, got {p[k]}")
        ones = np.ones(int(n))
        return cls(kind, conductance=kind == "coba", c_m=p["c_m"] * ones, g_l=p["c_m"] / p["tau_m"] * ones,
                   v_th=p["v_th"] * ones, v_reset=p["v_reset"] * ones, e_exc=p["e_exc"], e_inh=p["e_inh"],
                   tau_syn=p["tau_syn"], tau_ref=p["tau_ref"], noise=p["noise"], w_bg=p["w_bg"], rate=p["rate"],
                   dt=dt, v_lo=p["v_lo"], v_hi=p["v_hi"])

    @classmethod
    def analog(cls, n: int, card: Any = "brainscales2", *, rng: Any = None, calibrate: bool = False,
               calibration_rng: Any = None, targets: dict[str, float] | None = None, dt: float = 0.1,
               rate: float | None = None, w_bg: float | None = None) -> "SamplingNeurons":
        """``n`` neurons of an emulated analog chip (current-based; mismatch from ``rng``), with the
        sampling targets :data:`ANALOG_TARGETS` (some replaced by ``targets``) and, when
        ``calibrate``, their parameter cells calibrated to them. ``dt`` in biological ms."""
        from .factory import make_substrate

        chip = make_substrate("analog", n, card, rng=rng, calibrate=calibrate, calibration_rng=calibration_rng,
                              targets={**ANALOG_TARGETS, **(targets or {})})
        p, vals = chip.card.params, chip.values()
        to_ms = p["acceleration"] * 1e3  # chip seconds -> biological ms
        tau_m = vals["tau_mem"] * to_ms
        leak_code = chip.codes["v_leak"].astype(np.float64)
        cells = {"offset": chip.mismatch.offset["v_leak"].copy(),
                 "slope": chip.mismatch.slope["v_leak"].copy(), "volt_per_code": float(p["volt_per_code"]),
                 "max": int(p["capmem_max"]),
                 # the code that realises a requested leak: the cell's code for the target (nominal, or
                 # trimmed by calibration) moved by the request's distance from the target at the
                 # nominal slope
                 "zero": leak_code - chip.targets["v_leak"] / p["volt_per_code"]}
        rate = ANALOG_BACKGROUND["rate"] if rate is None else rate
        w = (ANALOG_BACKGROUND["w_bg"] if w_bg is None else w_bg) * vals["gain"]
        t = chip.targets
        nominal = {"c_m": 1.0, "g_l": 1.0 / (t["tau_mem"] * to_ms), "tau_syn": t["tau_syn"] * to_ms, "e_exc": 0.0,
                   "e_inh": 0.0, "w_bg": ANALOG_BACKGROUND["w_bg"] if w_bg is None else w_bg, "v_th": t["v_th"]}
        out = cls("analog", conductance=False, c_m=1.0, g_l=1.0 / tau_m, v_th=vals["v_th"], v_reset=vals["v_reset"],
                  e_exc=0.0, e_inh=0.0, tau_syn=vals["tau_syn"] * to_ms, tau_ref=chip.refractory * to_ms,
                  noise=p["membrane_noise"], w_bg=w, rate=rate, dt=dt, v_lo=p["v_min"], v_hi=p["v_max"],
                  chip={"name": chip.card.name, "acceleration": float(p["acceleration"]),
                        "weight_bits": int(p["weight_bits"]), "calibrated": bool(calibrate)},
                  leak_cells=cells, nominal=nominal, gain=vals["gain"])
        return out

    # ------------------------------------------------------------------ parameters
    def leak(self, requested, index: slice = slice(None)) -> np.ndarray:
        """The leak potentials that requests (…, n) realise: the values themselves on ideal neurons;
        on a chip, each goes through its neuron's 10-bit cell (rounded code, clipped to the cell's
        range, with the cell's offset and slope mismatch); ``index``: the neurons the requests are for."""
        e = np.asarray(requested, np.float64)
        c = self.leak_cells
        if c is None:
            return e
        code = np.clip(np.rint(c["zero"][index] + e / c["volt_per_code"]), 0, c["max"])
        return c["offset"][index] + c["slope"][index] * c["volt_per_code"] * code

    def par(self, rate: float, w_bg: np.ndarray) -> np.ndarray:
        """The kernel's parameter rows with Poisson background ``rate`` (kHz) and weights ``w_bg``."""
        p = np.zeros((_K.N_PAR, self.n))
        p[_K.P_GL], p[_K.P_C], p[_K.P_TH], p[_K.P_RESET] = self.g_l, self.c_m, self.v_th, self.v_reset
        p[_K.P_EE], p[_K.P_EI] = self.e_exc, self.e_inh
        p[_K.P_DE] = p[_K.P_DI] = np.exp(-self.dt / self.tau_syn)
        p[_K.P_LDE] = p[_K.P_LDI] = -self.dt / self.tau_syn
        tau_m = self.c_m / self.g_l
        p[_K.P_DM] = np.exp(-self.dt / tau_m)
        lam = np.broadcast_to(rate * self.dt, (self.n,))
        p[_K.P_LE] = p[_K.P_LI] = lam
        p[_K.P_XE] = p[_K.P_XI] = np.exp(-lam)
        p[_K.P_WE] = p[_K.P_WI] = w_bg
        p[_K.P_NOISE] = self.noise * np.sqrt(1.0 - np.exp(-2.0 * self.dt / tau_m))
        return p

    def biological_to_chip(self, ms: float) -> float:
        """Chip time (s) of ``ms`` biological milliseconds (divided by the acceleration)."""
        return ms * 1e-3 / self.chip["acceleration"]

    def __repr__(self) -> str:
        return f"SamplingNeurons({self.kind}, n={self.n}, chip={self.chip['name']})"


@dataclasses.dataclass
class SampleRun:
    """States z (n_samples, chains, n) uint8, one every ``every_ms``; spike counts (chains, n); the
    biological and chip time sampled per chain (after the burn-in)."""

    states: np.ndarray
    counts: np.ndarray
    every_ms: float
    duration_ms: float
    chip_time_s: float

    def on_fraction(self) -> np.ndarray:
        """Fraction of time each neuron was on, per chain (chains, n)."""
        return self.states.mean(axis=0)


class Sampler:
    """``n`` samplers on ``neurons`` with a background (:class:`Poisson` or :class:`NoiseNetwork`).

    With a noise network, ``neurons`` must hold ``n + size`` neurons: the first ``n`` sample, the
    others make the noise (on a chip, they are further neurons of the same chip). ``renewing``:
    the synapses between neurons saturate (short-term depression with U = 1 and recovery time
    τ_syn, the reference code's "saturating synapses"; the synapse circuits of both BrainScaleS
    generations have short-term plasticity): a burst of spikes holds the conductance at its weight
    instead of adding up post-synaptic potentials, which brings the interaction closer to the
    rectangle the Boltzmann machine assumes (the samplers' synapses only: a noise network's stay
    additive). False: plain additive exponential synapses."""

    def __init__(self, neurons: SamplingNeurons, n: int, background: Poisson | NoiseNetwork | None = None, *,
                 renewing: bool = True):
        self.neurons, self.n, self.renewing = neurons, int(n), bool(renewing)
        self.background = Poisson() if background is None else background
        bg = self.background
        extra = bg.size if isinstance(bg, NoiseNetwork) else 0
        if neurons.n != self.n + extra:
            raise ConfigError(f"Sampler: {self.n} samplers with a background of {extra} neurons need {self.n + extra} "
                              f"neurons; got {neurons.n}")
        if isinstance(bg, Poisson):
            rate = neurons.rate if bg.rate is None else float(bg.rate)
            w = neurons.w_bg if bg.w is None else float(bg.w) * neurons.gain
            self._par = neurons.par(rate, w)
            self._noise = None
        else:
            self._par = neurons.par(0.0, 0.0)
            self._noise = self._wire(bg)

    def _wire(self, bg: NoiseNetwork) -> dict[str, np.ndarray]:
        """The noise network's connections (Wᵀ blocks) and its neurons' leak potentials."""
        g = np.random.default_rng(bg.seed)
        n, m, nb = self.n, bg.size, self.neurons
        if not 1 <= 2 * bg.in_degree <= m or not 0 <= bg.recurrent < m:
            raise ConfigError(f"NoiseNetwork: in_degree must be in 1..size/2 ({m // 2}: an excitatory and an inhibitory "
                              f"source each) and recurrent in 0..size-1 ({m - 1}); got {bg.in_degree}, {bg.recurrent}")
        w_in = bg.w_in * nb.nominal["w_bg"]
        to_samplers = np.zeros((m, n))  # Wᵀ: row = presynaptic noise neuron
        for k in range(n):
            src = g.choice(m, 2 * bg.in_degree, replace=False)
            to_samplers[src[:bg.in_degree], k] += w_in * nb.gain[k]
            to_samplers[src[bg.in_degree:], k] -= w_in * nb.gain[k]
        within = np.zeros((m, m))
        for k in range(m):
            src = g.choice(np.delete(np.arange(m), k), bg.recurrent, replace=False)
            within[src, k] -= bg.w_rec * nb.nominal["w_bg"] * nb.gain[n + k]
        leak = nb.leak(nb.nominal["v_th"] + bg.drive + bg.drive_spread * g.standard_normal(m), slice(n, None))
        return {"to_samplers": to_samplers, "within": within, "leak": leak}

    def weights(self, w_syn: np.ndarray) -> np.ndarray:
        """Wᵀ of the whole network (presynaptic rows) for sampler weights ``w_syn`` (post, pre)."""
        w_syn = np.asarray(w_syn, np.float64)
        if w_syn.shape != (self.n, self.n):
            raise ValueError(f"Sampler: expected synaptic weights of shape {(self.n, self.n)}, got {w_syn.shape}")
        w = w_syn * self.neurons.gain[:self.n, None]
        np.fill_diagonal(w, 0.0)  # no sampler has a synapse onto itself
        if self._noise is None:
            return np.ascontiguousarray(w.T)
        m = self._noise["within"].shape[0]
        full = np.zeros((self.n + m, self.n + m))
        full[:self.n, :self.n] = w.T
        full[self.n:, :self.n] = self._noise["to_samplers"]
        full[self.n:, self.n:] = self._noise["within"]
        return full

    def sample(self, w_syn, leak, duration_ms: float, *, clamp=None, chains: int | None = None,
               burn_in_ms: float = 100.0, every_ms: float | None = None, rng: Any = None,
               record_all: bool = False) -> SampleRun:
        """Run chains for ``burn_in_ms`` + ``duration_ms`` (biological ms) and record the samplers'
        states every ``every_ms`` (default: one step) after the burn-in.

        w_syn (n, n): synaptic weights (post, pre; on-chip units); leak: requested leak potentials,
        (n,) or (chains, n), realised through :meth:`SamplingNeurons.leak`; clamp: None, or (n,) /
        (chains, n) of −1 (free), 0 (held off) and 1 (held on: fires whenever it may; an
        idealised strong input). ``rng`` seeds the background and the initial membranes;
        ``record_all`` keeps the noise network's neurons in the record too."""
        nb_ = self.neurons
        leak = np.atleast_2d(np.asarray(leak, np.float64))
        if leak.shape[-1] != self.n:
            raise ValueError(f"Sampler.sample: expected leak potentials for {self.n} samplers, got shape {leak.shape}")
        clamp_ = -np.ones((1, self.n), np.int8) if clamp is None else np.atleast_2d(np.asarray(clamp, np.int8))
        chains = max(leak.shape[0], clamp_.shape[0], chains or 1)
        leak = np.broadcast_to(leak, (chains, self.n))
        clamp_ = np.broadcast_to(clamp_, (chains, self.n))
        every = max(1, int(round((every_ms or nb_.dt) / nb_.dt)))
        burn = int(round(burn_in_ms / nb_.dt))
        steps = int(round(duration_ms / nb_.dt)) // every * every
        if steps < every:
            raise ValueError(f"Sampler.sample: duration {duration_ms} ms is shorter than one sample ({every * nb_.dt} ms)")
        e_l = nb_.leak(leak, slice(0, self.n))
        total = nb_.n
        if self._noise is not None:
            m = total - self.n
            e_l = np.concatenate([e_l, np.broadcast_to(self._noise["leak"], (chains, m))], axis=1)
            clamp_ = np.concatenate([clamp_, -np.ones((chains, m), np.int8)], axis=1)
        e_l = np.ascontiguousarray(e_l)
        clamp_ = np.ascontiguousarray(clamp_)
        wt = self.weights(w_syn)
        g = as_rng(rng)
        seed = draw_seed(g)
        v = np.ascontiguousarray(e_l + (nb_.v_th - e_l) * g.random((chains, total)))  # spread initial membranes
        ge, gi = np.zeros((chains, total)), np.zeros((chains, total))
        r = np.zeros((chains, total), np.int32)
        fired = np.zeros((chains, total), np.uint8)
        since, gap = np.full((chains, total), 10 ** 9, np.int64), np.full((chains, total), 10 ** 9, np.int64)
        counts = np.zeros((chains, total), np.int64)
        scratch = np.zeros((0, chains, total), np.uint8)
        renew = np.zeros(total, np.uint8)
        renew[:self.n] = self.renewing  # the noise network's synapses stay additive
        args = (nb_.dt, nb_.conductance, self._par, e_l, wt, clamp_, nb_.v_lo, nb_.v_hi, nb_.n_ref, seed, renew)
        state = (v, ge, gi, r, fired, since, gap)
        if burn:
            _K.sampling_run(burn, 0, burn + 1, *args, *state, scratch, counts)
            counts[:] = 0
        rec = np.zeros((steps // every, chains, total), np.uint8)
        _K.sampling_run(steps, burn, every, *args, *state, rec, counts)
        ms = steps * nb_.dt
        keep = slice(None) if record_all else slice(0, self.n)
        return SampleRun(rec[:, :, keep], counts[:, keep], every * nb_.dt, ms,
                         nb_.biological_to_chip(ms + burn * nb_.dt))

    def noise_activity(self, duration_ms: float = 1000.0, rng: Any = None) -> dict[str, float]:
        """Mean rate (Hz) of the noise network's neurons and the mean coefficient of variation of
        their inter-spike intervals (samplers held off); for a Poisson background its rate and 1."""
        if self._noise is None:
            rate = self.neurons.rate if self.background.rate is None else self.background.rate
            return {"rate_hz": rate * 1e3, "cv": 1.0}
        run = self.sample(np.zeros((self.n, self.n)), self.neurons.v_th[:self.n], duration_ms, rng=rng,
                          clamp=np.zeros(self.n), record_all=True)
        z = run.states[:, 0, self.n:].astype(np.int8)
        onsets = np.diff(np.concatenate([np.zeros((1, z.shape[1]), np.int8), z]), axis=0) == 1
        cvs = [np.std(d) / np.mean(d) for d in (np.diff(np.flatnonzero(onsets[:, k])) for k in range(z.shape[1]))
               if len(d) > 2]
        return {"rate_hz": float(run.counts[:, self.n:].mean() / (run.duration_ms * 1e-3)),
                "cv": float(np.mean(cvs)) if cvs else float("nan")}


# ---------------------------------------------------------------------------------------- calibration
@dataclasses.dataclass
class Activation:
    """Per-neuron logistic activation p(z = 1) = σ((E_l − v_p05)/α) in requested-leak units."""

    v_p05: np.ndarray
    alpha: np.ndarray

    def leak(self, b) -> np.ndarray:
        """Leak potentials for biases b: E_l = v_p05 + α·b."""
        return self.v_p05 + self.alpha * np.asarray(b, np.float64)

    def p_on(self, e_l) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(np.asarray(e_l, np.float64) - self.v_p05) / self.alpha))

    def mean(self, n: int) -> "Activation":
        """One activation for all ``n`` neurons: the mean fit (what a mapping without per-neuron
        calibration uses)."""
        return Activation(np.full(n, float(np.mean(self.v_p05))), np.full(n, float(np.mean(self.alpha))))


def activation_curves(sampler: Sampler, leaks, duration_ms: float = 2000.0, *, rng: Any = None) -> np.ndarray:
    """Fraction of time each free sampler is on, (m, n), for the requested leak potentials
    ``leaks``: (m,) the same sweep for every sampler, or (m, n) one per sampler; one chain per
    sweep point, no synapses between the samplers."""
    leaks = np.asarray(leaks, np.float64)
    if leaks.ndim == 1:
        leaks = np.repeat(leaks[:, None], sampler.n, axis=1)
    run = sampler.sample(np.zeros((sampler.n, sampler.n)), leaks, duration_ms, rng=rng,
                         every_ms=sampler.neurons.tau_ref / 10)
    return run.on_fraction()


def calibrate_activation(sampler: Sampler, *, points: int = 20, duration_ms: float = 10000.0, span: float = 40.0,
                         rng: Any = None) -> tuple[Activation, dict[str, np.ndarray]]:
    """Each sampler's activation, measured as the chip's calibration does it (sbs ``calibrate``): a
    coarse sweep of the leak over the threshold ± ``span`` finds where each neuron's on-fraction
    rises from 5 % to 95 %; a fine sweep of ``points`` values over that range (widened by half of it
    each way), ``duration_ms`` each, is fitted by :func:`fit_activation`. Returns the activation and
    the fine sweep (``leaks``, ``p_on``, both (points, n))."""
    g = as_rng(rng)
    th = sampler.neurons.nominal["v_th"]
    coarse = np.linspace(th - span, th + span, 41)
    p = activation_curves(sampler, coarse, min(duration_ms, 500.0), rng=g)
    lo = np.array([coarse[max(np.argmax(p[:, k] > 0.05) - 1, 0)] if (p[:, k] > 0.05).any() else coarse[-1]
                   for k in range(sampler.n)])
    hi = np.array([coarse[min(np.argmax(p[:, k] > 0.95) + 1, len(coarse) - 1)] if (p[:, k] > 0.95).any()
                   else coarse[-1] for k in range(sampler.n)])
    hi = np.maximum(hi, lo + (coarse[1] - coarse[0]))
    width = hi - lo
    leaks = np.linspace(lo - width / 2, hi + width / 2, points)
    p_on = activation_curves(sampler, leaks, duration_ms, rng=g)
    return fit_activation(leaks, p_on), {"leaks": leaks, "p_on": p_on}


def _logistic(x, v, a):
    from scipy.special import expit

    return expit((x - v) / a)


def fit_activation(leaks, p_on) -> Activation:
    """Least-squares fit of σ((E_l − v_p05)/α) to each neuron's measured curve: columns of
    ``p_on`` (m, n) against ``leaks`` (m,) or (m, n)."""
    from scipy.optimize import OptimizeWarning, curve_fit

    p_on = np.asarray(p_on, np.float64)
    leaks = np.broadcast_to(np.asarray(leaks, np.float64).reshape(len(p_on), -1), p_on.shape)
    v05, alpha = np.empty(p_on.shape[1]), np.empty(p_on.shape[1])
    for k in range(p_on.shape[1]):
        x, p = leaks[:, k], p_on[:, k]
        span = float(x.max() - x.min()) or 1.0
        guess = float(x[np.argmin(np.abs(p - 0.5))])
        try:
            with warnings.catch_warnings():  # a step-like curve has no covariance estimate; the fit stands
                warnings.simplefilter("ignore", OptimizeWarning)
                (v, a), _ = curve_fit(_logistic, x, p, p0=(guess, span / 8), maxfev=5000)
        except RuntimeError:
            v, a = guess, span / 8
        v05[k], alpha[k] = v, abs(a)
    return Activation(v05, alpha)


# ---------------------------------------------------------------------------------------- mapping
def _psp_area(c_m, g_tot, tau_syn, tau_ref):
    """∫₀^τ_ref of the membrane response to a synaptic input w·exp(−t/τ_syn) per unit w (current-based,
    or a conductance times the driving force), for a membrane of capacitance c_m and conductance g_tot."""
    tau_eff = c_m / g_tot
    if np.any(np.isclose(tau_eff, tau_syn)):
        tau_syn = tau_syn * (1 + 1e-9)
    return tau_syn / (c_m - g_tot * tau_syn) * (-tau_eff * np.expm1(-tau_ref / tau_eff) + tau_syn * np.expm1(-tau_ref / tau_syn))


def free_membrane(neurons: SamplingNeurons, e_l, rate_exc: float, rate_inh: float | None = None):
    """Mean free membrane potential ū and total conductance of the high-conductance state (per neuron)
    for leak ``e_l`` and a background of ``rate_exc``/``rate_inh`` (kHz) events of the nominal
    background weight (Petrovici et al. 2016; sbs utils.IF_cond_exp_distribution)."""
    p = neurons.nominal
    rate_inh = rate_exc if rate_inh is None else rate_inh
    if not neurons.conductance:
        return np.asarray(e_l, np.float64), np.full(np.shape(e_l), p["g_l"])
    g_e = p["w_bg"] * rate_exc * p["tau_syn"]
    g_i = p["w_bg"] * rate_inh * p["tau_syn"]
    g_tot = p["g_l"] + g_e + g_i
    return (p["g_l"] * np.asarray(e_l) + g_e * p["e_exc"] + g_i * p["e_inh"]) / g_tot, np.full(np.shape(e_l), g_tot)


def synaptic_weights(w, activation: Activation, neurons: SamplingNeurons, background_rate: float) -> np.ndarray:
    """Synaptic weights (post, pre; µS, nA or the chip's units) for Boltzmann weights ``w``: each
    post-synaptic potential's area over τ_ref equals α_eff·W·τ_ref, the rectangular interaction of
    the Boltzmann machine (α_eff = α·g_l/g_tot: the activation's width in free-membrane units).
    Nominal membrane and synapse parameters are used (what a user knows of the chip), with each
    neuron's own activation; conductance-based weights are divided by the driving force at its
    ū(v_p05). ``background_rate``: the background events per ms and channel (for g_tot)."""
    w = np.asarray(w, np.float64)
    p = neurons.nominal
    mu, g_tot = free_membrane(neurons, activation.v_p05, background_rate)
    alpha_eff = activation.alpha * p["g_l"] / g_tot
    area = _psp_area(p["c_m"], g_tot, p["tau_syn"], neurons.tau_ref)
    scale = alpha_eff * neurons.tau_ref / area  # per post-synaptic neuron (rows)
    if neurons.conductance:
        exc = scale / (p["e_exc"] - mu)
        inh = scale / (mu - p["e_inh"])
        return np.where(w > 0, w * exc[:, None], w * inh[:, None])
    return w * scale[:, None]
