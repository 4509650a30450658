"""Calibration of an emulated analog neuron chip, the way the real chip is calibrated.

On BrainScaleS-2 every neuron parameter is set by a 10-bit analog memory cell; because each circuit
is slightly different, the same code gives a different leak, threshold or time constant on every
neuron. The chip's calibration software (calix) therefore *measures* each neuron through the
chip's own read-out and searches each cell's code until the measurement meets the target. This
module does the same on an :class:`~neuroemu.hardware.substrate.AnalogNeurons` chip: it only looks at what
the emulated read-out shows (8-bit CADC samples with read-out noise of membrane traces and
synaptic-input traces, with the membrane's temporal noise), never at the hidden true values.

Measurements (all neurons at once, averaged over ``reps`` repetitions):

* leak: the membrane at rest, no input — mean of the settled samples;
* reset: the membrane held in reset by a long refractory period after a forced spike;
* threshold: the membrane at the first spike under a slow input ramp;
* τ_mem: log-linear fit of the decay from leak + 60 LSB back to the (measured) leak;
* τ_syn: log-linear fit of the decay of the synaptic input after one input event;
* gain: the synaptic input's jump at one input event, relative to the target's.

Each code is found by successive approximation (one bit at a time, most significant first, as a
binary search), then the better of the two neighbouring codes is kept. Order: leak, reset,
threshold, τ_mem, τ_syn, gain (later measurements use the calibrated leak).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from ..rng import as_rng
from ..errors import ConfigError
from .substrate import PARAMETERS, VOLTAGES, AnalogNeurons

__all__ = ["calibrate", "measure", "CalibrationReport", "MEASUREMENTS"]

_TRACE = 120  # steps of a decay trace (12 τ at the 10 µs / 1 µs defaults)
_RAMP = 600  # steps of the threshold ramp (about 0.3 LSB rise per step)
_START = 60.0  # LSB above the leak at which the τ_mem decay starts
_EVENT = 2.0  # size of the probing input event (normalised: two threshold gaps of current)


def _cadc(neurons: AnalogNeurons, v: np.ndarray, g: np.random.Generator) -> np.ndarray:
    """What the column ADC reports for analog values v (LSB): noisy, rounded, clipped to its range."""
    p = neurons.card.params
    noisy = v + p["cadc_noise"] * g.standard_normal(v.shape) if p["cadc_noise"] > 0 else v
    return np.clip(np.rint(noisy), 0, 2 ** p["cadc_bits"] - 1)


def _zeros(neurons, steps, reps):
    return np.zeros((steps, reps, neurons.n))


def measure_leak(neurons: AnalogNeurons, g: np.random.Generator, reps: int = 4) -> np.ndarray:
    _, v = neurons.simulate(_zeros(neurons, _TRACE, reps), spiking=False, rng=g,
                            v0=np.full(neurons.n, neurons.targets["v_leak"]))
    return _cadc(neurons, v[_TRACE // 2:], g).mean(axis=(0, 1))


def measure_reset(neurons: AnalogNeurons, g: np.random.Generator, reps: int = 4) -> np.ndarray:
    hold = 40
    p = neurons.card.params
    _, v = neurons.simulate(_zeros(neurons, hold, reps), spiking=True, rng=g, v0=np.full(neurons.n, p["v_max"]),
                            refractory_steps=hold + 10)
    return _cadc(neurons, v[5:], g).mean(axis=(0, 1))


def measure_threshold(neurons: AnalogNeurons, g: np.random.Generator, reps: int = 4) -> np.ndarray:
    p, t = neurons.card.params, neurons.targets
    a, b = np.exp(-p["dt"] / t["tau_mem"]), np.exp(-p["dt"] / t["tau_syn"])
    top = (p["v_max"] - t["v_leak"]) / neurons.gap * 1.2  # the ramp ends above the upper rail
    ramp = top * (1 - a) * (1 - b) * np.arange(1, _RAMP + 1) / _RAMP
    x = np.broadcast_to(ramp[:, None, None], (_RAMP, reps, neurons.n))
    z, v = neurons.simulate(x, spiking=True, rng=g, refractory_steps=_RAMP)
    read = _cadc(neurons, v, g)
    fired = z.any(axis=0)
    first = np.argmax(z, axis=0)
    at = np.take_along_axis(read, first[None], axis=0)[0]
    out = np.where(fired, at, np.inf)  # a neuron that never fires has a threshold above the rail
    return out.mean(axis=0)


def _decay_tau(trace: np.ndarray, base: np.ndarray, dt: float, floor: float) -> np.ndarray:
    """Time constant (s) per neuron from a log-linear fit of trace − base where it exceeds ``floor``."""
    y = trace - base[None, :]
    t = np.arange(trace.shape[0], dtype=np.float64)[:, None] * np.ones((1, trace.shape[1]))
    ok = y > floor
    ok &= np.cumprod(ok, axis=0).astype(bool)  # the first run above the floor only
    logy = np.log(np.where(ok, y, 1.0))
    n = ok.sum(axis=0)
    w = ok.astype(np.float64)
    tm = (w * t).sum(axis=0) / np.maximum(n, 1)
    lm = (w * logy).sum(axis=0) / np.maximum(n, 1)
    cov = (w * (t - tm) * (logy - lm)).sum(axis=0)
    var = (w * (t - tm) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = cov / var
        tau = np.where((n >= 3) & (slope < 0), -dt / slope, np.nan)
    return tau


def measure_tau_mem(neurons: AnalogNeurons, g: np.random.Generator, reps: int = 8) -> np.ndarray:
    leak = measure_leak(neurons, g)
    _, v = neurons.simulate(_zeros(neurons, _TRACE, reps), spiking=False, rng=g, v0=leak + _START)
    trace = _cadc(neurons, v, g).mean(axis=1)
    return _decay_tau(trace, leak, neurons.card.params["dt"], floor=4.0)


def _event_response(neurons: AnalogNeurons, g: np.random.Generator, reps: int) -> np.ndarray:
    """Synaptic input read-out (LSB per step) after one input event at step 0, mean over reps."""
    x = _zeros(neurons, _TRACE, reps)
    x[0] = _EVENT
    _, _, i = neurons.simulate(x, spiking=False, rng=g, record_current=True)
    return _cadc(neurons, i, g).mean(axis=1)


def measure_tau_syn(neurons: AnalogNeurons, g: np.random.Generator, reps: int = 8) -> np.ndarray:
    trace = _event_response(neurons, g, reps)
    return _decay_tau(trace, np.zeros(neurons.n), neurons.card.params["dt"], floor=3.0)


def measure_gain(neurons: AnalogNeurons, g: np.random.Generator, reps: int = 8) -> np.ndarray:
    return _event_response(neurons, g, reps)[0] / (_EVENT * neurons.gap)


#: name -> (measurement, True when the value grows with the code)
MEASUREMENTS: dict[str, tuple[Callable[..., np.ndarray], bool]] = {
    "v_leak": (measure_leak, True),
    "v_reset": (measure_reset, True),
    "v_th": (measure_threshold, True),
    "tau_mem": (measure_tau_mem, False),
    "tau_syn": (measure_tau_syn, False),
    "gain": (measure_gain, True),
}


def measure(neurons: AnalogNeurons, name: str, *, rng: Any = None) -> np.ndarray:
    """Measure one parameter of every neuron through the emulated read-out."""
    if name not in MEASUREMENTS:
        raise ConfigError(f"measure: unknown parameter {name!r}; expected one of {', '.join(PARAMETERS)}")
    return MEASUREMENTS[name][0](neurons, as_rng(rng))


def _search(neurons: AnalogNeurons, name: str, g: np.random.Generator) -> np.ndarray:
    fn, increasing = MEASUREMENTS[name]
    target = neurons.targets[name]
    cmax = int(neurons.card.params["capmem_max"])
    code = np.zeros(neurons.n, np.int64)
    for bit in reversed(range(cmax.bit_length())):
        trial = code + (1 << bit)
        inside = trial <= cmax
        neurons.codes[name] = np.minimum(trial, cmax)
        m = fn(neurons, g)
        with np.errstate(invalid="ignore"):
            ok = (m <= target) if increasing else (m >= target)
        code = np.where(inside & ok, trial, code)
    neurons.codes[name] = code
    m0 = fn(neurons, g)
    up = np.minimum(code + 1, cmax)
    neurons.codes[name] = up
    m1 = fn(neurons, g)
    with np.errstate(invalid="ignore"):
        better = np.abs(m1 - target) < np.abs(m0 - target)
    neurons.codes[name] = np.where(better, up, code)
    return neurons.codes[name]


@dataclasses.dataclass
class CalibrationReport:
    """True and measured parameter values before and after calibration, per neuron."""

    parameters: tuple[str, ...]
    targets: dict[str, float]
    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray]
    measured_before: dict[str, np.ndarray]
    measured_after: dict[str, np.ndarray]
    codes_before: dict[str, np.ndarray]
    codes_after: dict[str, np.ndarray]

    @staticmethod
    def _spread(vals: dict[str, np.ndarray]) -> dict[str, float]:
        return {k: float(np.nanstd(v) if k in VOLTAGES else np.nanstd(v) / np.nanmean(v)) for k, v in vals.items()}

    @property
    def spread_before(self) -> dict[str, float]:
        """Neuron-to-neuron spread of the true values: std (LSB) of potentials, relative std otherwise."""
        return self._spread(self.before)

    @property
    def spread_after(self) -> dict[str, float]:
        return self._spread(self.after)

    def ratio(self) -> dict[str, float]:
        """Spread after / spread before, per calibrated parameter (the acceptance bound is 0.3)."""
        b, a = self.spread_before, self.spread_after
        return {k: a[k] / b[k] if b[k] > 0 else float("nan") for k in self.parameters}

    def rows(self) -> list[dict[str, Any]]:
        b, a, r = self.spread_before, self.spread_after, self.ratio()
        rows = []
        for k in self.parameters:
            unit = "LSB" if k in VOLTAGES else "relative"
            rows.append({"parameter": k, "target": self.targets[k], "unit": unit, "spread_before": b[k],
                         "spread_after": a[k], "ratio": r[k],
                         "mean_before": float(np.mean(self.before[k])), "mean_after": float(np.mean(self.after[k]))})
        return rows

    def markdown(self) -> str:
        lines = ["| parameter | target | spread before | spread after | after / before | mean after |",
                 "|---|---|---|---|---|---|"]
        for r in self.rows():
            fmt = (lambda v: f"{v:.3g} LSB") if r["unit"] == "LSB" else (lambda v: f"{100 * v:.2f} %")
            tgt = f"{r['target'] * 1e6:g} µs" if r["parameter"].startswith("tau") else f"{r['target']:g}"
            mean = f"{r['mean_after'] * 1e6:.3g} µs" if r["parameter"].startswith("tau") else f"{r['mean_after']:.4g}"
            lines.append(f"| {r['parameter']} | {tgt} | {fmt(r['spread_before'])} | {fmt(r['spread_after'])} | "
                         f"{r['ratio']:.3f} | {mean} |")
        return "\n".join(lines)


def calibrate(neurons: AnalogNeurons, *, rng: Any = None, parameters=PARAMETERS,
              targets: dict[str, float] | None = None) -> CalibrationReport:
    """Calibrate ``neurons`` in place (its codes change) and return a :class:`CalibrationReport`.

    targets: optional new targets (LSB for potentials, seconds for time constants, relative gain);
    the default is the card's. Parameters are calibrated in the canonical order whatever order
    they are given in.
    """
    if not isinstance(neurons, AnalogNeurons):
        raise ConfigError(f"calibrate: expected AnalogNeurons, got {type(neurons).__name__}")
    bad = [p for p in parameters if p not in PARAMETERS]
    if bad:
        raise ConfigError(f"calibrate: unknown parameter {bad[0]!r}; expected some of {', '.join(PARAMETERS)}")
    for k, v in (targets or {}).items():
        if k not in PARAMETERS:
            raise ConfigError(f"calibrate: targets.{k}: unknown parameter; expected one of {', '.join(PARAMETERS)}")
        if not float(v) > 0:
            raise ConfigError(f"calibrate: targets.{k}: expected a positive value, got {v!r}")
        neurons.targets[k] = float(v)
    g = as_rng(rng)
    order = tuple(p for p in PARAMETERS if p in parameters)
    codes_before = {k: v.copy() for k, v in neurons.codes.items()}
    before = neurons.values()
    measured_before = {k: MEASUREMENTS[k][0](neurons, g) for k in order}
    for name in order:
        _search(neurons, name, g)
    after = neurons.values()
    measured_after = {k: MEASUREMENTS[k][0](neurons, g) for k in order}
    neurons.calibrated = True
    return CalibrationReport(order, {k: neurons.targets[k] for k in order}, {k: before[k] for k in order},
                             {k: after[k] for k in order}, measured_before, measured_after, codes_before,
                             {k: v.copy() for k, v in neurons.codes.items()})
