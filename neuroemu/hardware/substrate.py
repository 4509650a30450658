"""Neuron substrates: the neuron side of a chip, ideal or analog, behind one interface.

A substrate holds ``n`` current-based LIF neurons and runs them over a sequence of input currents
in *normalised units*: 0 is the rest (leak) potential, 1 the threshold, and an input x raises the
synaptic current by x. Both substrates answer ``run(currents, spiking=...) -> (z, v)`` with spikes
z and membranes v of shape (T, batch, n) (``membranes=False``: None for v, not recorded):

* :class:`IdealNeurons` — the float model of :mod:`neuroemu.hardware.neurons` (CUBA, reset to a value,
  refractory steps).
* :class:`AnalogNeurons` — an emulated analog chip (an ``analog_chip`` card such as
  ``brainscales2``): every neuron has its own leak, reset and threshold potentials, τ_mem, τ_syn and
  synaptic gain, set by 10-bit parameter cells through a transfer law with fixed-pattern mismatch
  (drawn once per chip from its seed); the membrane has temporal noise and rails, the threshold
  jitters from trial to trial, and the refractory time is a digital counter. Voltages inside are
  in CADC LSB; the card's calibration targets define the normalised units, so a perfectly
  calibrated noise-free chip is the ideal substrate (with reset equal to leak, exactly).
  :meth:`AnalogNeurons.calibrate` trims the cells toward the targets by measurement
  (:mod:`neuroemu.hardware.calibration`).

Transfer laws from code c (0 .. capmem_max) to parameter, per neuron j:

    V_j(c) = off_j + slope_j · volt_per_code · c        leak, reset, threshold (LSB)
    τ_j(c) = k_j / c,  k_j = tau_k · exp(σ·N(0, 1))     τ_mem, τ_syn (a bias current ∝ c)
    g_j(c) = (c / gain_code) · exp(σ·N(0, 1))            synaptic gain (1 = target)

:class:`SpikingLayer` composes a substrate with any crossbar tile (ideal, PCM, RRAM, the analog
chip's synapse array): the tile turns input spikes into currents, the substrate into spikes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._kernels import analog as _A
from .cards import Card, load_card
from ..rng import as_rng, draw_seed
from ..errors import ConfigError, did_you_mean
from .neurons import CubaParams, cuba_sequence, decay

__all__ = ["IdealNeurons", "AnalogNeurons", "AnalogState", "SpikingLayer", "chip_targets", "PARAMETERS"]

#: Neuron parameters of an analog chip, each held in one 10-bit cell per neuron.
PARAMETERS = ("v_leak", "v_reset", "v_th", "tau_mem", "tau_syn", "gain")
VOLTAGES = ("v_leak", "v_reset", "v_th")
_MISMATCH = {"v_leak": "leak_mismatch", "v_reset": "reset_mismatch", "v_th": "threshold_mismatch",
             "tau_mem": "tau_mem_mismatch", "tau_syn": "tau_syn_mismatch", "gain": "gain_mismatch"}
_NO_SPIKE = 1e30  # a threshold no membrane reaches: non-spiking (read-out) neurons


def _chip_card(card: Card | str) -> Card:
    card = card if isinstance(card, Card) else load_card(card)
    if card.kind != "analog_chip":
        raise ConfigError(f"{card.path or card.name}: expected an analog_chip card (e.g. brainscales2), got kind "
                          f"'{card.kind}'")
    return card


_TARGETS = ("v_leak", "v_reset", "v_th", "tau_mem", "tau_syn", "refractory")


def chip_targets(card: Card | str, targets: dict[str, float] | None = None) -> dict[str, float]:
    """The calibration targets of an analog chip card, with ``targets`` overriding some of them
    (potentials in LSB, times in seconds). An override must be one a parameter cell can reach on a
    neuron without mismatch, and keep the threshold above the leak."""
    card = _chip_card(card)
    p = card.params
    out = {k: float(p[k]) for k in _TARGETS}
    for k, v in (targets or {}).items():
        if k not in _TARGETS:
            raise ConfigError(f"{card.name} targets.{k}: unknown target{did_you_mean(k, _TARGETS)}; "
                              f"expected one of {', '.join(_TARGETS)}")
        v = float(v)
        if k in VOLTAGES:
            lo, hi = 0.0, p["capmem_max"] * p["volt_per_code"]
        elif k == "refractory":
            lo, hi = 0.0, 1e30
        else:  # τ = k / code with code 1 .. capmem_max
            lo, hi = p[f"{k}_k"] / p["capmem_max"], p[f"{k}_k"]
        if not (np.isfinite(v) and lo <= v <= hi):
            raise ConfigError(f"{card.name} targets.{k}: expected a value in [{lo:g}, {hi:g}] the parameter cells "
                              f"can reach, got {v:g}")
        out[k] = v
    if out["v_th"] <= out["v_leak"]:
        raise ConfigError(f"{card.name} targets.v_th: expected a threshold above the leak ({out['v_leak']:g}), "
                          f"got {out['v_th']:g}")
    return out


def _check_currents(x, n, what):
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != n:
        raise ValueError(f"{what}: expected currents of shape (T, batch, {n}), got {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)


class IdealNeurons:
    """Ideal current-based LIF neurons (normalised units: rest 0, threshold 1).

    dt, tau_mem, tau_syn, refractory in seconds (any consistent time base); v_reset normalised.
    """

    kind = "ideal"

    def __init__(self, n: int, *, dt: float, tau_mem: float, tau_syn: float, v_reset: float = 0.0,
                 refractory: float = 0.0):
        self.n = int(n)
        self.dt = float(dt)
        steps = round(float(refractory) / self.dt)
        self.params = CubaParams(decay(dt, tau_mem), decay(dt, tau_syn), 1.0, float(v_reset), 1.0, float(steps))

    @classmethod
    def from_card(cls, n: int, card: Card | str = "brainscales2", *,
                  targets: dict[str, float] | None = None) -> "IdealNeurons":
        """The neuron an analog chip is calibrated to: its targets (some overridden by ``targets``,
        see :func:`chip_targets`), in normalised units."""
        t = chip_targets(card, targets)
        return cls(n, dt=_chip_card(card).params["dt"], tau_mem=t["tau_mem"], tau_syn=t["tau_syn"],
                   v_reset=(t["v_reset"] - t["v_leak"]) / (t["v_th"] - t["v_leak"]), refractory=t["refractory"])

    def run(self, currents, *, spiking: bool = True, rng: Any = None,
            membranes: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Spikes and membranes (T, batch, n) for input currents (T, batch, n). ``rng`` is unused
        (the ideal substrate is deterministic); non-spiking neurons integrate without threshold.
        ``membranes`` False: None for the membranes (the interface of :meth:`AnalogNeurons.run`)."""
        x = _check_currents(currents, self.n, "IdealNeurons.run")
        p = self.params if spiking else self.params._replace(v_th=_NO_SPIKE)
        z, v, _ = cuba_sequence(x, p)
        return z, (v if membranes else None)

    def __repr__(self) -> str:
        return f"IdealNeurons(n={self.n}, {self.params})"


@dataclasses.dataclass
class AnalogState:
    """Running state of an analog chip's neurons (:meth:`AnalogNeurons.start`): membranes v (LSB),
    synaptic currents i, refractory counters r, this trial's thresholds th, each (batch, n); the
    generator of the temporal noise; whether that noise is on."""

    v: np.ndarray
    i: np.ndarray
    r: np.ndarray
    th: np.ndarray
    rng: np.random.Generator
    noise: bool


@dataclasses.dataclass
class _Mismatch:
    """Fixed-pattern deviations of one chip (drawn once from its seed)."""

    offset: dict[str, np.ndarray]  # voltage offsets (LSB)
    slope: dict[str, np.ndarray]  # relative slopes of the voltage transfer
    factor: dict[str, np.ndarray]  # log-normal factors of τ_mem, τ_syn, gain


class AnalogNeurons:
    """``n`` analog neurons of an emulated chip described by an ``analog_chip`` card.

    rng: seed or Generator of the chip (its fixed-pattern mismatch); same seed, same chip.
    targets: overrides of the card's calibration targets (:func:`chip_targets`), e.g. a shorter
    ``tau_syn``. The parameter cells start at the nominal codes of the targets (the uncalibrated chip).
    """

    kind = "analog"

    def __init__(self, n: int, card: Card | str = "brainscales2", *, rng: Any = None,
                 targets: dict[str, float] | None = None):
        self.card = _chip_card(card)
        p = self.card.params
        self.n = int(n)
        if not 1 <= self.n:
            raise ConfigError(f"AnalogNeurons: n: expected at least 1 neuron, got {n}")
        if self.n > p["n_neurons"]:
            raise ConfigError(f"AnalogNeurons: n: the {self.card.name} chip has {p['n_neurons']} neurons, asked for {n}")
        g = as_rng(rng)
        self.mismatch = _Mismatch(
            offset={k: p[_MISMATCH[k]] * g.standard_normal(self.n) for k in VOLTAGES},
            slope={k: 1.0 + p["volt_slope_mismatch"] * g.standard_normal(self.n) for k in VOLTAGES},
            factor={k: np.exp(p[_MISMATCH[k]] * g.standard_normal(self.n)) for k in ("tau_mem", "tau_syn", "gain")},
        )
        t = chip_targets(self.card, targets)
        self.targets = {k: t[k] for k in ("v_leak", "v_reset", "v_th", "tau_mem", "tau_syn")} | {"gain": 1.0}
        self.refractory = t["refractory"]
        self.codes = {k: np.full(self.n, self.nominal_code(k)) for k in PARAMETERS}
        self.calibrated = False
        self.steps_run = 0  # emulated steps so far (chip time = steps_run · dt)

    # ------------------------------------------------------------------ parameters
    def nominal_code(self, name: str, target: float | None = None) -> int:
        """The code that gives ``target`` (default: the card's) on a neuron without mismatch."""
        p = self.card.params
        t = self.targets[name] if target is None else float(target)
        if name in VOLTAGES:
            c = t / p["volt_per_code"]
        elif name in ("tau_mem", "tau_syn"):
            c = p[f"{name}_k"] / t
        elif name == "gain":
            c = t * p["gain_code"]
        else:
            raise ValueError(f"nominal_code: unknown parameter {name!r}; expected one of {', '.join(PARAMETERS)}")
        return int(np.clip(np.rint(c), 0, p["capmem_max"]))

    def value(self, name: str, codes: np.ndarray | None = None) -> np.ndarray:
        """True per-neuron value of a parameter for the given codes (default: the current ones)."""
        p, m = self.card.params, self.mismatch
        c = np.asarray(self.codes[name] if codes is None else codes, dtype=np.float64)
        if name in VOLTAGES:
            return m.offset[name] + m.slope[name] * p["volt_per_code"] * c
        if name in ("tau_mem", "tau_syn"):
            return p[f"{name}_k"] * m.factor[name] / np.maximum(c, 0.5)  # code 0: the slowest bias (half a step)
        if name == "gain":
            return c / p["gain_code"] * m.factor[name]
        raise ValueError(f"value: unknown parameter {name!r}; expected one of {', '.join(PARAMETERS)}")

    def values(self) -> dict[str, np.ndarray]:
        """All true parameter values, per neuron (LSB, seconds, relative gain)."""
        return {k: self.value(k) for k in PARAMETERS}

    def spread(self, values: dict[str, np.ndarray] | None = None) -> dict[str, float]:
        """Neuron-to-neuron spread: std in LSB for potentials, relative std (std/mean) otherwise."""
        vals = self.values() if values is None else values
        return {k: float(np.std(v) if k in VOLTAGES else np.std(v) / np.mean(v)) for k, v in vals.items()}

    @property
    def gap(self) -> float:
        """Target threshold − leak (LSB): one normalised unit."""
        return self.targets["v_th"] - self.targets["v_leak"]

    @property
    def refractory_steps(self) -> int:
        return int(round(self.refractory / self.card.params["dt"]))

    def chip_time(self, steps: int | None = None) -> float:
        """Emulated chip time (s) of ``steps`` emulation steps (default: all run so far)."""
        return (self.steps_run if steps is None else steps) * self.card.params["dt"]

    def biological_time(self, steps: int | None = None) -> float:
        """The biological time the chip time stands for (chip time × acceleration)."""
        return self.chip_time(steps) * self.card.params["acceleration"]

    # ------------------------------------------------------------------ dynamics
    def start(self, batch: int, *, rng: Any = None, v0=None, noise: bool = True) -> "AnalogState":
        """The state of ``batch`` runs of the chip about to start: membranes at ``v0`` (LSB; default
        each neuron's leak), no synaptic current, nothing refractory, and this trial's thresholds
        (the card's threshold noise drawn from ``rng`` unless ``noise`` is False), which
        :meth:`advance` keeps using."""
        p = self.card.params
        g = as_rng(rng)
        vals = self.values()
        th = np.broadcast_to(vals["v_th"], (batch, self.n)).copy()
        if noise and p["threshold_noise"] > 0:
            th += p["threshold_noise"] * g.standard_normal((batch, self.n))
        v = np.broadcast_to(vals["v_leak"] if v0 is None else np.asarray(v0, np.float64), (batch, self.n)).copy()
        return AnalogState(v, np.zeros((batch, self.n)), np.zeros((batch, self.n), np.int32), th, g, bool(noise))

    def advance(self, state: "AnalogState", currents, *, spiking: bool = True, refractory_steps=None,
                record_current: bool = False, membranes: bool = True):
        """Run ``state`` on through input currents (T, batch, n) in chip units, updating it in
        place: spikes, membranes (LSB, float64) and, with ``record_current``, synaptic currents,
        (T, batch, n). With ``membranes`` False the membranes are not recorded (None in their place)."""
        x = _check_currents(currents, self.n, "AnalogNeurons.run")
        return self._advance(state, x, spiking, refractory_steps, record_current, "lsb" if membranes else None)

    def _advance(self, state, x, spiking, refractory_steps, record_current, membranes):
        """:meth:`advance` on checked currents; membranes: "lsb" (float64), "normalised" ((v − leak
        target) / gap, in the currents' dtype, written by the kernel) or None (not recorded)."""
        p = self.card.params
        vals = self.values()
        dt = p["dt"]
        alpha = np.exp(-dt / vals["tau_mem"])
        beta = np.exp(-dt / vals["tau_syn"])
        gscale = vals["gain"] * self.gap
        noise_std = p["membrane_noise"] * np.sqrt(1.0 - alpha**2) if state.noise else np.zeros(self.n)
        nref = self.refractory_steps if refractory_steps is None else int(refractory_steps)
        zs = np.empty(x.shape, x.dtype)
        v_off, v_scale = 0.0, 1.0
        if membranes == "lsb":
            vs = np.empty(x.shape)
        elif membranes == "normalised":
            vs = np.empty(x.shape, x.dtype)
            v_off, v_scale = float(self.targets["v_leak"]), float(self.gap)
        else:
            vs = np.empty((0, 0, 0))
        is_ = np.empty(x.shape) if record_current else np.empty((0, 0, 0))
        _A.neuron_sequence(x, vals["v_leak"], vals["v_reset"], state.th, alpha, beta, gscale, noise_std, nref,
                           float(p["v_min"]), float(p["v_max"]), bool(spiking), draw_seed(state.rng), state.v,
                           state.i, state.r, zs, vs, is_, v_off, v_scale)
        self.steps_run += x.shape[0]
        v_rec = vs if membranes else None
        return (zs, v_rec, is_) if record_current else (zs, v_rec)

    def simulate(self, currents, *, spiking: bool = True, rng: Any = None, v0=None, refractory_steps=None,
                 record_current: bool = False, noise: bool = True, membranes: bool = True):
        """Run in chip units: spikes, membranes (LSB, float64) and optionally synaptic currents, (T, batch, n).

        v0: initial membrane (LSB; default the neuron's leak). refractory_steps overrides the
        card's counter (measurements hold a neuron in reset with it). noise False switches the
        temporal noise off (membrane and threshold). membranes False skips recording the
        membranes (None in their place; spikes and currents are the same). One :meth:`start` and
        one :meth:`advance`.
        """
        x = _check_currents(currents, self.n, "AnalogNeurons.run")
        state = self.start(x.shape[1], rng=rng, v0=v0, noise=noise)
        return self._advance(state, x, spiking, refractory_steps, record_current, "lsb" if membranes else None)

    def run(self, currents, *, spiking: bool = True, rng: Any = None,
            membranes: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Spikes and normalised membranes (T, batch, n), both in the currents' dtype (float32 or
        float64), for normalised input currents; ``membranes`` False: None for the membranes."""
        x = _check_currents(currents, self.n, "AnalogNeurons.run")
        state = self.start(x.shape[1], rng=rng)
        return self._advance(state, x, spiking, None, False, "normalised" if membranes else None)

    def __repr__(self) -> str:
        state = "calibrated" if self.calibrated else "uncalibrated"
        return f"AnalogNeurons(n={self.n}, card={self.card.name}, {state})"


class SpikingLayer:
    """A layer of spiking (or, with ``spiking=False``, integrating read-out) neurons whose weights
    sit on a crossbar tile: ``tile`` computes the input currents from the spikes (one read per time
    step and sample, through the tile's periphery), ``neurons`` (a substrate) integrates them."""

    def __init__(self, tile, neurons, *, spiking: bool = True):
        if tile.shape[0] != neurons.n:
            raise ConfigError(f"SpikingLayer: the tile has {tile.shape[0]} outputs but the substrate {neurons.n} neurons")
        self.tile, self.neurons, self.spiking = tile, neurons, bool(spiking)

    def currents(self, spikes) -> np.ndarray:
        """Input currents (T, batch, n_out) from input spikes (T, batch, n_in)."""
        s = np.asarray(spikes)
        if s.ndim != 3 or s.shape[2] != self.tile.shape[1]:
            raise ValueError(f"SpikingLayer: expected spikes of shape (T, batch, {self.tile.shape[1]}), got {s.shape}")
        flat = s.reshape(-1, s.shape[2]).astype(bool)
        return self.tile.forward(flat).reshape(s.shape[0], s.shape[1], -1)

    def __call__(self, spikes, *, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return self.neurons.run(self.currents(spikes), spiking=self.spiking, rng=rng)
