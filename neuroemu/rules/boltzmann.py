"""Boltzmann-machine learning with the model's statistics sampled on the chip (Kungl et al. 2019).

    Δb = η(t)·(⟨z⟩_data − ⟨z⟩_model),   ΔW_ij = η(t)·(⟨z_i z_j⟩_data − ⟨z_i z_j⟩_model),
    η(t) = η₀·τ/(τ + t)

The model phase samples the chip's network freely (``chains`` chains of ``duration_ms``); what the
chip does wrong (mismatch, noise correlations, weight resolution, device noise) is in those
statistics, so the parameters learn to compensate it ("training in the loop"). The data phase
needs no sampling when every unit is visible (the batch gives its moments: :class:`Moments`, exact
for a target distribution); with hidden units (a batch of visible patterns as a
:class:`Clamped`), the visible units are clamped to each pattern and the hidden ones sampled. The
update is a symmetric ΔW (both synapses of a connection get the same change), zero on the
diagonal and outside the model's mask, applied through the layer's update scheme.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..boltzmann import sample_moments
from ..chip import Chip, Update
from .base import Rule, Step


@dataclasses.dataclass
class Moments:
    """Data statistics given directly: ⟨z⟩ (n,) and ⟨z zᵀ⟩ (n, n)."""

    mean: np.ndarray
    corr: np.ndarray


@dataclasses.dataclass
class Clamped:
    """A batch of visible patterns (batch, n_visible) 0/1, for the units ``visible`` (indices)."""

    patterns: np.ndarray
    visible: np.ndarray


class Boltzmann(Rule):
    """The Boltzmann-machine rule (module docstring). ``lr`` η₀, ``decay`` τ (None: constant rate),
    ``chains`` and ``duration_ms`` of the model phase, ``data_ms`` of each clamped pattern's chain
    in the data phase (default ``duration_ms``), ``momentum`` (0: none)."""

    requires = frozenset({"sampling"})

    def __init__(self, lr: float = 0.5, *, decay: float | None = 100.0, chains: int = 4, duration_ms: float = 1000.0,
                 data_ms: float | None = None, momentum: float = 0.0):
        self.lr, self.decay, self.chains, self.duration_ms = float(lr), decay, int(chains), float(duration_ms)
        self.data_ms = float(data_ms) if data_ms is not None else self.duration_ms
        self.momentum = float(momentum)
        self.t = 0
        self._velocity: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def name(self) -> str:
        return "boltzmann"

    def rate(self) -> float:
        return self.lr if self.decay is None else self.lr * self.decay / (self.decay + self.t)

    def _data(self, chip: Chip, batch) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(batch, Moments):
            return np.asarray(batch.mean, np.float64), np.asarray(batch.corr, np.float64)
        if isinstance(batch, Clamped):
            n = chip.model.n
            clamp = -np.ones((len(batch.patterns), n), np.int8)
            clamp[:, batch.visible] = batch.patterns
            run = chip.model.sample(chip, clamp, duration_ms=self.data_ms)
            return sample_moments(run.states)
        raise TypeError(f"rule boltzmann: expected a Moments or Clamped batch, got {type(batch).__name__}")

    def step(self, chip: Chip, batch) -> Step:
        mean_d, corr_d = self._data(chip, batch)
        run = chip.model.sample(chip, None, duration_ms=self.duration_ms, chains=self.chains)
        mean_m, corr_m = sample_moments(run.states)
        dw = corr_d - corr_m
        np.fill_diagonal(dw, 0.0)
        mask = chip.model.mask
        if mask is not None:
            dw = np.where(mask, dw, 0.0)
        db = mean_d - mean_m
        yield {"loss": float(np.abs(dw).mean() + np.abs(db).mean()), "lr": self.rate()}
        if self.momentum:
            vw, vb = self._velocity or (np.zeros_like(dw), np.zeros_like(db))
            vw, vb = self.momentum * vw + dw, self.momentum * vb + db
            self._velocity = (vw, vb)
            dw, db = vw, vb
        eta = self.rate()
        self.t += 1
        yield Update("W", dw=eta * dw, db=eta * db)
