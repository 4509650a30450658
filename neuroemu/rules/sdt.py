"""Self-defined targets: winner-take-all plus homeostasis (Liu, Laydevant, Pontlevy, Querlioz, Grollier 2024).

A network built for supervised learning gets a target for unlabelled data from its own outputs y
(batch, N): the k units with the largest y − H win,

    d = one-hot of top-k(y − H)                       (k-WTA after a homeostatic shift)
    H ← H + γ (mean_b d − k / N)                      (after every mini-batch; H = 0 at each epoch start)

so that a unit that wins too often is handicapped until every unit wins about k/N of the time. The
target is then learned like a label: MSE(y, d) by backprop, or as the nudging target of
equilibrium propagation. Options as in the authors' code: an output dropout mask (dropped units
neither compete nor count; the homeostatic rate is the rate among the samples where a unit was
present, against k / (units present), which corrects for the dropout) and label smoothing (d ← (1 − ε) d + ε k / N).

Read-outs of the unsupervised outputs: :class:`DirectAssociation` labels every output unit with the
class it wins most often on a labelled subset and predicts the class of the winning unit; a linear
classifier on the frozen outputs is :func:`neuroemu.nn.linear_probe` (or
:func:`neuroemu.nn.train_classifier`) on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["SelfDefinedTarget", "DirectAssociation"]


class SelfDefinedTarget:
    """k-WTA + homeostasis target of ``n_out`` output units (see the module doc)."""

    def __init__(self, n_out: int, *, k: int = 1, gamma: float = 0.4, smoothing: float = 0.0,
                 output_dropout: float = 0.0):
        if isinstance(n_out, bool) or not isinstance(n_out, (int, np.integer)) or n_out < 1:
            raise ConfigError(f"sdt n_out: expected an integer >= 1, got {n_out!r}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_out:
            raise ConfigError(f"sdt k: expected an integer in [1, {n_out}] (winners among the outputs), got {k!r}")
        if not (np.isfinite(gamma) and gamma >= 0):
            raise ConfigError(f"sdt gamma: expected a finite value >= 0, got {gamma!r}")
        for name, v in (("smoothing", smoothing), ("output_dropout", output_dropout)):
            if not (np.isfinite(v) and 0 <= v < 1):
                raise ConfigError(f"sdt {name}: expected a value in [0, 1), got {v!r}")
        self.n_out, self.k, self.gamma = int(n_out), int(k), float(gamma)
        self.smoothing, self.output_dropout = float(smoothing), float(output_dropout)
        self.h = np.zeros(self.n_out)

    def reset(self) -> None:
        """Homeostatic shifts back to 0 (the start of every epoch)."""
        self.h[:] = 0.0

    def mask(self, batch: int, rng: Any = None) -> np.ndarray | None:
        """An output dropout mask (batch, N), 1 = present, or None without output dropout."""
        if self.output_dropout == 0.0:
            return None
        g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        m = (g.random((batch, self.n_out)) >= self.output_dropout).astype(np.float64)
        # at least k units compete in every sample
        short = np.flatnonzero(m.sum(axis=1) < self.k)
        for b in short:
            m[b, g.choice(self.n_out, self.k, replace=False)] = 1.0
        return m

    def winners(self, y, mask=None) -> np.ndarray:
        """One-hot k-WTA of y − H (batch, N) among the present units (no smoothing, no update)."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != self.n_out:
            raise ValueError(f"y: expected outputs of shape (batch, {self.n_out}), got {y.shape}")
        z = y - self.h
        if mask is not None:
            z = np.where(np.asarray(mask) > 0, z, -np.inf)
        d = np.zeros_like(z)
        top = np.argsort(-z, axis=1, kind="stable")[:, :self.k]
        np.put_along_axis(d, top, 1.0, axis=1)
        return d

    def homeostasis(self, d, mask=None) -> None:
        """H ← H + γ (rate − k/N). With an output dropout mask: rate = winning rate of each unit
        over the samples where it was present, against k / (mean number of present units)."""
        d = np.asarray(d, dtype=np.float64)
        if mask is None:
            rate, goal = d.mean(axis=0), self.k / self.n_out
        else:
            m = np.asarray(mask, dtype=np.float64)
            rate = (d * m).sum(axis=0) / np.maximum(m.sum(axis=0), 1.0)
            goal = self.k / max(float(m.sum(axis=1).mean()), 1.0)
        self.h += self.gamma * (rate - goal)

    def __call__(self, y, mask=None) -> np.ndarray:
        """The target of a batch of outputs y; updates H. Returns d (batch, N), smoothed when asked."""
        d = self.winners(y, mask)
        self.homeostasis(d, mask)
        if self.smoothing:
            d = (1.0 - self.smoothing) * d + self.smoothing * self.k / self.n_out
        return d


class DirectAssociation:
    """Each output unit labelled with the class it wins most often (is the most active unit) on a
    labelled subset; a sample's class is the label of its most active unit. A unit that never wins
    there takes the class to which its mean response is highest above its mean over the classes."""

    def __init__(self, n_classes: int = 10):
        self.n_classes = int(n_classes)
        self.unit_class: np.ndarray | None = None

    def fit(self, outputs, labels) -> "DirectAssociation":
        y = np.asarray(outputs, dtype=np.float64)
        lab = np.asarray(labels)
        if y.ndim != 2 or lab.shape != (len(y),):
            raise ValueError(f"outputs, labels: expected shapes (N, units) and (N,), got {y.shape} and {lab.shape}")
        if lab.dtype.kind not in "iu" or lab.min() < 0 or lab.max() >= self.n_classes:
            raise ValueError(f"labels: expected integers in [0, {self.n_classes}), got {lab.dtype} "
                             f"{lab.min() if len(lab) else ''}..{lab.max() if len(lab) else ''}")
        wins = np.zeros((y.shape[1], self.n_classes))
        np.add.at(wins, (y.argmax(axis=1), lab), 1.0)
        present = [c for c in range(self.n_classes) if np.any(lab == c)]
        means = np.stack([y[lab == c].mean(axis=0) for c in present], axis=1)
        fallback = np.asarray(present)[(means - means.mean(axis=1, keepdims=True)).argmax(axis=1)]
        self.unit_class = np.where(wins.sum(axis=1) > 0, wins.argmax(axis=1), fallback)
        return self

    def predict(self, outputs) -> np.ndarray:
        if self.unit_class is None:
            raise ValueError("DirectAssociation.predict: not fitted; call fit() first")
        y = np.asarray(outputs)
        if y.ndim != 2 or y.shape[1] != len(self.unit_class):
            raise ValueError(f"outputs: expected shape (N, {len(self.unit_class)}), got {y.shape}")
        return self.unit_class[y.argmax(axis=1)]

    def accuracy(self, outputs, labels) -> float:
        return float(np.mean(self.predict(outputs) == np.asarray(labels)))
