"""Synthetic temporal tasks for recurrent spiking networks, seeded and frozen.

Both generators return a :class:`Task` with arrays laid out time first, like the encoders in
:mod:`neuroemu.data.encoders`: inputs ``x`` of shape (T, batch, n_in) holding 0/1 spikes
(float32), a target ``target`` of shape (T, batch, n_out) and a loss mask ``mask`` of shape
(T, batch) (1 where the loss counts). The same seed gives the same arrays, bit for bit.

* :func:`pattern_generation` — the regression task of Bellec et al. 2020 (Nat. Commun. 11:3625),
  Fig. S7, used for on-chip e-prop by Demirag et al. 2021 (arXiv 2108.01804): 100 frozen Poisson
  inputs at 50 Hz for 1000 steps of 1 ms; the target is a sum of sines at 1, 2, 3 and 5 Hz with
  amplitudes U(0.5, 2) and phases U(0, 2π), scaled to max |y*| = 1. ``n_patterns`` frozen
  input/target pairs side by side (Demirag et al. train three).
* :func:`evidence_accumulation` — the "store and recall" cue task of Bellec et al. 2020, Fig. 3:
  seven 100 ms cues on a left or a right input population, a delay, a 150 ms recall cue; the
  answer is the side that had more cues.

Where the paper leaves a detail open, the choice follows the authors' public code (the e-prop
tutorials in github.com/IGITUGraz/eligibility_propagation, ``tools.generate_click_task_data`` and
``models.sum_of_sines_target``); each function's docstring says what was taken from where.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["Task", "epoch_order", "evidence_accumulation", "pattern_generation"]


class Task(NamedTuple):
    """One batch of a synthetic task (time first).

    ``x``: (T, batch, n_in) float32 spikes in {0, 1}; ``target``: (T, batch, n_out) float32;
    ``mask``: (T, batch) float32, 1 where the loss counts; ``labels``: (batch,) int64 class labels,
    None for regression tasks; ``dt``: the time step in seconds; ``description``: one line of text.
    """

    x: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    labels: np.ndarray | None
    dt: float
    description: str


def _rng(rng) -> np.random.Generator:
    if rng is None or isinstance(rng, np.random.Generator):
        return rng if rng is not None else np.random.default_rng()
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng: expected a seed >= 0, got {rng}")
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng: expected a numpy Generator, an integer seed or None, got {type(rng).__name__}")


def _int(value, name: str, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name}: expected an integer >= {lo}, got {value!r}")
    return int(value)


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def _probability(rate_hz, dt: float, name: str) -> float:
    """Spike probability per step of a Poisson source at ``rate_hz`` (must be <= 1)."""
    if isinstance(rate_hz, bool) or not isinstance(rate_hz, (int, float, np.number)) or not math.isfinite(rate_hz) \
            or rate_hz < 0:
        raise ValueError(f"{name}: expected a rate in Hz >= 0, got {rate_hz!r}")
    p = float(rate_hz) * dt
    if p > 1.0:
        raise ValueError(f"{name}: {rate_hz:g} Hz at dt = {dt:g} s gives a spike probability of {p:g} per step; "
                         f"expected at most 1 (lower the rate or dt)")
    return p


def _steps(duration: float, dt: float, name: str, lo: int = 1) -> int:
    """Whole number of steps in ``duration`` seconds."""
    if isinstance(duration, bool) or not isinstance(duration, (int, float, np.number)) \
            or not math.isfinite(duration) or duration < 0:
        raise ValueError(f"{name}: expected a duration in seconds >= 0, got {duration!r}")
    n = round(duration / dt)
    if abs(n * dt - duration) > 1e-9 * max(1.0, abs(duration)) + 1e-12:
        raise ValueError(f"{name}: expected a whole number of time steps of dt = {dt:g} s, got {duration!r} s")
    if n < lo:
        raise ValueError(f"{name}: expected at least {lo} step(s) of dt = {dt:g} s, got {duration!r} s")
    return int(n)


def _pair(value, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a pair (low, high), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
        raise ValueError(f"{name}: expected 0 <= low <= high, finite, got {value!r}")
    return lo, hi


# -------------------------------------------------------------------------------- pattern generation
def pattern_generation(n_in: int = 100, t_steps: int = 1000, dt: float = 1e-3, rate_hz: float = 50.0,
                       freqs=(1, 2, 3, 5), amp_range=(0.5, 2.0), n_out: int = 1, rng=None, *,
                       start_at_zero: bool = False, n_patterns: int = 1) -> Task:
    """Frozen Poisson input and a sum-of-sines target (Bellec et al. 2020 Fig. S7; Demirag et al. 2021).

    * ``x`` (t_steps, n_patterns, n_in) float32: each input spikes at every step independently with
      probability ``rate_hz · dt`` (Bernoulli approximation of a Poisson process, as in the authors'
      code); drawn once ("frozen"). Pattern p is the fixed input/target pair ``x[:, p]``,
      ``target[:, p]``; the patterns are independent draws, each with its own input and its own
      target. ``n_patterns = 1`` (default) is the task of Bellec et al.; Demirag et al.'s code
      (srnn-pcm ``train.py``: six ``Sinusoids`` samples, half of them for training) trains three,
      one per update (batch 1), in a new random order every epoch — the caller picks pattern p
      for an update as ``x[:, p:p+1]`` (see :func:`epoch_order`).
    * ``target`` (t_steps, n_patterns, n_out) float32: for each pattern and output k independently,
      y*_k(t) = Σ_f A_f sin(2π f t + φ_f) at t = n·dt (n = 0 … t_steps−1), A_f ~ U(amp_range),
      φ_f ~ U(0, 2π), f in ``freqs`` (Hz), then divided by max_t |y*_k(t)| so that max |y*_k| = 1.
      With ``start_at_zero`` the sum is first shifted so that y*_k(0) = 0, as the authors' code
      (``sum_of_sines_target``) does; the paper does not mention the shift, so it is off by default.
      The authors' code lays each sine on ``linspace`` over the sequence with a whole number of
      periods; here the frequencies are exact at t = n·dt.
    * ``mask`` (t_steps, n_patterns) all ones; ``labels`` None.

    Draw order from ``rng`` (fixed, so a seed gives the same task bit for bit): the spikes
    (t_steps × n_patterns × n_in uniforms), then the amplitudes (n_patterns × n_out × 4), then
    the phases. With ``n_patterns = 1`` these are the draws of a single pattern, so the default
    task is the same arrays for a seed whatever version wrote them.
    """
    g = _rng(rng)
    n_in = _int(n_in, "n_in")
    t_steps = _int(t_steps, "t_steps")
    n_out = _int(n_out, "n_out")
    n_patterns = _int(n_patterns, "n_patterns")
    dt = _positive(dt, "dt")
    p = _probability(rate_hz, dt, "rate_hz")
    try:
        f = np.asarray(freqs, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"freqs: expected a sequence of frequencies in Hz, got {freqs!r}") from None
    if f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise ValueError(f"freqs: expected one or more finite frequencies > 0 Hz, got {freqs!r}")
    a_lo, a_hi = _pair(amp_range, "amp_range")
    if a_hi <= 0:
        raise ValueError(f"amp_range: expected a high end > 0, got {amp_range!r}")

    x = (g.random((t_steps, n_patterns, n_in)) < p).astype(np.float32)
    amps = g.uniform(a_lo, a_hi, (n_patterns, n_out, f.size))
    phases = g.uniform(0.0, 2.0 * np.pi, (n_patterns, n_out, f.size))
    t = np.arange(t_steps, dtype=np.float64) * dt
    y = np.einsum("pkf,tpkf->tpk", amps,
                  np.sin(2.0 * np.pi * f[None, None, None, :] * t[:, None, None, None] + phases[None]))
    if start_at_zero:
        y = y - y[:1]
    top = np.abs(y).max(axis=0)
    if np.any(top <= 1e-12):
        raise ValueError(f"t_steps: the target is zero over all {t_steps} step(s) (too short for freqs {freqs!r} "
                         f"at dt = {dt:g} s)")
    target = (y / top).astype(np.float32)
    mask = np.ones((t_steps, n_patterns), np.float32)
    what = "one frozen input/target pair" if n_patterns == 1 else f"{n_patterns} frozen input/target pairs"
    desc = (f"pattern generation: {what}, {n_in} Poisson inputs at {rate_hz:g} Hz, {t_steps} steps of {dt:g} s, "
            f"target = sum of sines at {', '.join(f'{v:g}' for v in f)} Hz (max |y*| = 1), {n_out} output(s)")
    return Task(x, target, mask, None, dt, desc)


def epoch_order(n_patterns: int, n_updates: int, rng=None) -> np.ndarray:
    """Which pattern each of ``n_updates`` updates trains on: every epoch of ``n_patterns``
    updates presents every pattern once, in a new random order (a PyTorch ``DataLoader`` with
    ``shuffle=True`` and batch 1, as Demirag et al.'s code draws its three training sequences).
    Returns an int64 array of length ``n_updates``; the last epoch may be cut short. Draws one
    permutation per epoch from ``rng``."""
    g = _rng(rng)
    n_patterns = _int(n_patterns, "n_patterns")
    n_updates = _int(n_updates, "n_updates", 0)
    epochs = -(-n_updates // n_patterns)
    order = [g.permutation(n_patterns) for _ in range(epochs)]
    return np.concatenate(order)[:n_updates].astype(np.int64) if order else np.zeros(0, np.int64)


# -------------------------------------------------------------------------------- evidence accumulation
def evidence_accumulation(batch: int, n_in: int = 40, n_cues: int = 7, *, dt: float = 1e-3,
                          cue_s: float = 0.1, gap_s: float = 0.05, recall_s: float = 0.15, trial_s: float = 2.25,
                          rate_hz: float = 40.0, background_hz: float = 10.0, p_group: float = 0.3,
                          rng=None) -> Task:
    """Evidence accumulation / "store and recall" of cues (Bellec et al. 2020, Fig. 3).

    Input neurons form 4 populations of ``n_in / 4`` neurons each, in this order along the last
    axis: left cues, right cues, recall cue, background noise. A trial of ``trial_s`` (2250 ms at
    1 ms steps by default) is laid out as

    * ``n_cues`` cue slots, one after the other from t = 0, each a ``gap_s`` (50 ms) silence
      followed by a ``cue_s`` (100 ms) cue, during which the left or the right population fires
      Poisson spikes at ``rate_hz`` (40 Hz); so cue k occupies [k·150 + 50, k·150 + 150) ms;
    * a delay (2250 − 7·150 − 150 = 1050 ms by default: whatever is left);
    * the recall cue: the last ``recall_s`` (150 ms) of the trial, recall population at ``rate_hz``.

    The background population fires at ``background_hz`` (10 Hz) throughout the trial; the cue and
    recall populations are silent outside their windows. Spikes are Bernoulli per step with
    probability rate·dt.

    Cue sides follow the authors' code (``generate_click_task_data``): per trial, one side is
    chosen at random (p = 1/2) as the favoured one, and every cue independently comes from that
    side with probability ``1 − p_group`` (0.7), from the other with ``p_group`` (0.3). The label is
    the side with more cues (0 = left, 1 = right); ``n_cues`` must be odd so that there are no ties
    (the authors' code, ``sum > n_cues // 2``, would call a tie "left").

    ``target`` (T, batch, 2) is the one-hot label during the recall window and 0 elsewhere;
    ``mask`` (T, batch) is 1 exactly during the recall window (the last ``recall_s``; the authors'
    loss is the cross-entropy averaged over those 150 steps, and the decision is the argmax of the
    read-out averaged over them). ``labels`` (batch,) int64.

    Draw order from ``rng``: favoured sides (batch), cue sides (batch × n_cues uniforms), then the
    spikes (T × batch × n_in uniforms).
    """
    g = _rng(rng)
    batch = _int(batch, "batch")
    n_in = _int(n_in, "n_in", 4)
    if n_in % 4:
        raise ValueError(f"n_in: expected a multiple of 4 (left, right, recall and background populations of "
                         f"n_in/4 neurons), got {n_in}")
    n_cues = _int(n_cues, "n_cues")
    if n_cues % 2 == 0:
        raise ValueError(f"n_cues: expected an odd number of cues (the label is the majority side), got {n_cues}")
    dt = _positive(dt, "dt")
    cue = _steps(cue_s, dt, "cue_s")
    gap = _steps(gap_s, dt, "gap_s", lo=0)
    recall = _steps(recall_s, dt, "recall_s")
    t_steps = _steps(trial_s, dt, "trial_s")
    slot = gap + cue
    if n_cues * slot + recall > t_steps:
        raise ValueError(f"trial_s: {n_cues} cue slots of {slot * dt:g} s and a {recall * dt:g} s recall cue need at "
                         f"least {(n_cues * slot + recall) * dt:g} s, got {trial_s!r} s")
    p_cue = _probability(rate_hz, dt, "rate_hz")
    p_bg = _probability(background_hz, dt, "background_hz")
    if isinstance(p_group, bool) or not isinstance(p_group, (int, float, np.number)) or not 0 <= p_group <= 0.5:
        raise ValueError(f"p_group: expected a probability in [0, 0.5] (of a cue from the less likely side), "
                         f"got {p_group!r}")

    favoured = g.integers(0, 2, batch)
    minority = g.random((batch, n_cues)) < p_group
    sides = np.where(minority, 1 - favoured[:, None], favoured[:, None]).astype(np.int64)  # (batch, n_cues)
    labels = (sides.sum(axis=1) > n_cues // 2).astype(np.int64)

    m = n_in // 4
    prob = np.zeros((t_steps, batch, n_in), np.float64)
    for k in range(n_cues):
        start = k * slot + gap
        for side in (0, 1):
            rows = sides[:, k] == side
            prob[start:start + cue, rows, side * m:(side + 1) * m] = p_cue
    prob[t_steps - recall:, :, 2 * m:3 * m] = p_cue
    prob[:, :, 3 * m:] = p_bg
    x = (g.random((t_steps, batch, n_in)) < prob).astype(np.float32)

    mask = np.zeros((t_steps, batch), np.float32)
    mask[t_steps - recall:] = 1.0
    target = np.zeros((t_steps, batch, 2), np.float32)
    target[t_steps - recall:, np.arange(batch), labels] = 1.0
    ms = dt * 1e3
    delay = t_steps - n_cues * slot - recall
    desc = (f"evidence accumulation: {n_cues} cues of {cue * ms:g} ms at {rate_hz:g} Hz after {gap * ms:g} ms gaps, "
            f"{delay * ms:g} ms delay, {recall * ms:g} ms recall cue, background {background_hz:g} Hz, "
            f"{n_in} inputs, {t_steps} steps of {dt:g} s, batch {batch}")
    return Task(x, target, mask, labels, dt, desc)
