"""Spike encoders: time-to-first-spike (latency) and Bernoulli rate codes.

Both turn intensities x in [0, 1] into spike trains of shape (T, batch, n), time first, 0/1
valued, ready for :func:`neuroemu.hardware.neurons.cuba_sequence` and the spiking networks in
:mod:`neuroemu.rules`.

* Latency code (Perez-Nieves & Goodman 2021, after Zenke & Vogels 2021): a pixel spikes once,
  at the step

      t(x) = ⌊τ_eff · ln(x / (x − θ))⌋    for x > θ,

  the time a leaky integrator v(t) = x (1 − exp(−t/τ_eff)) driven by the constant current x
  (τ_eff in steps) takes to reach the threshold θ. Brighter pixels spike earlier (x = 1, τ_eff = 20, θ = 0.2 gives
  ⌊20 ln 1.25⌋ = 4); x ≤ θ never spikes, and neither does a pixel with t(x) ≥ T.
* Rate code: at every step, independently, a pixel spikes with probability x · max_prob.
"""

from __future__ import annotations

import math

import numpy as np
from ..rng import as_rng

__all__ = ["latency_encode", "latency_times", "rate_encode"]

#: Marker for "never spikes" in :func:`latency_times`.
NO_SPIKE = -1


def _intensities(x, what: str) -> np.ndarray:
    """x as a float64 array, checked to be finite and within [0, 1]."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what}: expected a numeric array of intensities in [0, 1], got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        raise ValueError(f"{what}: expected finite values in [0, 1], got {np.count_nonzero(~finite)} NaN/inf")
    if arr.size and not (arr.min() >= 0.0 and arr.max() <= 1.0):
        raise ValueError(f"{what}: expected values in [0, 1] (scale pixels by 1/255 first), "
                         f"got values in [{arr.min()}, {arr.max()}]")
    return arr


def _batch_2d(x: np.ndarray, what: str) -> np.ndarray:
    """(n,) -> (1, n); (batch, n) unchanged; anything else is an error."""
    if x.ndim == 1:
        return x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{what}: expected shape (batch, n) or (n,), got {x.shape}")
    return x


def _t_steps(t_steps) -> int:
    if isinstance(t_steps, bool) or not isinstance(t_steps, (int, np.integer)) or t_steps < 1:
        raise ValueError(f"t_steps: expected an integer >= 1, got {t_steps!r}")
    return int(t_steps)


def _out_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind not in "biuf":
        raise ValueError(f"dtype: expected a numeric or bool dtype for the 0/1 spikes, got {dt}")
    return dt


def latency_times(x, *, tau_eff: float = 20.0, theta: float = 0.2, t_steps: int = 100) -> np.ndarray:
    """Spike step of each intensity under the latency code, -1 for "never".

    t = ⌊τ_eff · ln(x / (x − θ))⌋ for x > θ; x ≤ θ and t ≥ t_steps give -1.

    Parameters
    ----------
    x : array_like
        Intensities in [0, 1], any shape.
    tau_eff : float
        Effective time constant in steps (> 0); the paper uses 20 ms at dt = 1 ms.
    theta : float
        Threshold in [0, 1).
    t_steps : int
        Number of steps T of the spike train (>= 1).

    Returns
    -------
    np.ndarray of int64, same shape as x.
    """
    xs = _intensities(x, "x")
    t_steps = _t_steps(t_steps)
    tau_eff, theta = float(tau_eff), float(theta)
    if not (tau_eff > 0 and math.isfinite(tau_eff)):
        raise ValueError(f"tau_eff: expected a finite time constant > 0 (in steps), got {tau_eff}")
    if not 0.0 <= theta < 1.0:
        raise ValueError(f"theta: expected a threshold in [0, 1), got {theta}")
    fires = xs > theta
    safe = np.where(fires, xs, 1.0)  # avoid log(0) and division by zero where x <= θ
    t = np.floor(tau_eff * np.log(safe / (safe - theta)))
    fires &= t < t_steps
    return np.where(fires, t, NO_SPIKE).astype(np.int64)


def latency_encode(x, *, t_steps: int = 100, tau_eff: float = 20.0, theta: float = 0.2,
                   dtype=np.float32) -> np.ndarray:
    """Latency-coded spike train: out[t, b, j] = 1 iff t = latency_times(x)[b, j].

    x has shape (batch, n) or (n,) (treated as batch 1). Every pixel spikes at most once.
    Returns a 0/1 array of shape (t_steps, batch, n) and the given dtype.
    """
    xs = _batch_2d(_intensities(x, "x"), "x")
    dt = _out_dtype(dtype)
    times = latency_times(xs, tau_eff=tau_eff, theta=theta, t_steps=t_steps)
    out = np.zeros((_t_steps(t_steps),) + xs.shape, dt)
    b, j = np.nonzero(times != NO_SPIKE)
    out[times[b, j], b, j] = 1
    return out


def rate_encode(x, *, t_steps: int = 100, max_prob: float = 0.2, rng=None, dtype=np.float32) -> np.ndarray:
    """Bernoulli rate code: out[t, b, j] = 1 with probability x[b, j] · max_prob, independently
    for every step t.

    x has shape (batch, n) or (n,) (treated as batch 1). rng is a numpy Generator, an integer
    seed or None (fresh entropy). Returns a 0/1 array of shape (t_steps, batch, n).
    """
    xs = _batch_2d(_intensities(x, "x"), "x")
    t_steps = _t_steps(t_steps)
    dt = _out_dtype(dtype)
    max_prob = float(max_prob)
    if not 0.0 <= max_prob <= 1.0:
        raise ValueError(f"max_prob: expected a spike probability per step in [0, 1], got {max_prob}")
    gen = as_rng(rng)
    p = xs * max_prob
    return (gen.random((t_steps,) + xs.shape) < p).astype(dt)
