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

As rules on a chip: :class:`SelfDefinedTargets` wraps a gradient rule that learns towards given
targets — :class:`TargetBackprop` (backprop through a model's own layers) or
:class:`neuroemu.rules.eqprop.EqProp` (the target nudges the relaxation) — and hands it, for every
unlabelled batch, the target of the network's own outputs. Batches are :class:`TargetBatch` es
(inputs, a target or None for a self-defined one, the epoch); H is reset when the epoch changes.

Read-outs of the unsupervised outputs: :class:`DirectAssociation` labels every output unit with the
class it wins most often on a labelled subset and predicts the class of the winning unit; a linear
classifier on the frozen outputs is :func:`neuroemu.nn.linear_probe` (or
:func:`neuroemu.nn.train_classifier`) on them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..chip import Chip, Update
from ..errors import ConfigError
from ..rng import as_rng
from .base import Rule, Step

__all__ = ["SelfDefinedTarget", "DirectAssociation", "SelfDefinedTargets", "TargetBackprop", "TargetBatch"]


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
        g = as_rng(rng)
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
    """Direct association: each output unit labelled with a class on a labelled subset, and a sample
    classified from its outputs through those labels. Three modes:

    * ``wins``: a unit is labelled with the class it wins most often (is the most active unit) on
      the labelled subset; a sample's class is the label of its most active unit. A unit that never
      wins there takes the class to which its mean response is highest above its mean over the
      classes.
    * ``av`` (the authors' headline read-out, Liu et al. 2024, ``One2one.average_predict``): a unit
      is labelled with the class of its highest mean response; a unit whose highest mean response
      is 0 (it never answers) stays unlabelled. A sample's class is the class whose labelled units
      have the highest mean output; a class without units is never chosen.
    * ``max`` (the authors' ``max_predict``): the same labels; a sample's class is the label of its
      most active labelled unit.
    """

    MODES = ("wins", "av", "max")

    def __init__(self, n_classes: int = 10, mode: str = "wins"):
        if mode not in self.MODES:
            raise ValueError(f"mode: expected one of {self.MODES}, got {mode!r}")
        self.n_classes, self.mode = int(n_classes), mode
        self.unit_class: np.ndarray | None = None

    def fit(self, outputs, labels) -> "DirectAssociation":
        y = np.asarray(outputs, dtype=np.float64)
        lab = np.asarray(labels)
        if y.ndim != 2 or lab.shape != (len(y),):
            raise ValueError(f"outputs, labels: expected shapes (N, units) and (N,), got {y.shape} and {lab.shape}")
        if lab.dtype.kind not in "iu" or lab.min() < 0 or lab.max() >= self.n_classes:
            raise ValueError(f"labels: expected integers in [0, {self.n_classes}), got {lab.dtype} "
                             f"{lab.min() if len(lab) else ''}..{lab.max() if len(lab) else ''}")
        present = np.asarray([c for c in range(self.n_classes) if np.any(lab == c)])
        means = np.stack([y[lab == c].mean(axis=0) for c in present], axis=1)  # (units, classes present)
        if self.mode == "wins":
            wins = np.zeros((y.shape[1], self.n_classes))
            np.add.at(wins, (y.argmax(axis=1), lab), 1.0)
            fallback = present[(means - means.mean(axis=1, keepdims=True)).argmax(axis=1)]
            self.unit_class = np.where(wins.sum(axis=1) > 0, wins.argmax(axis=1), fallback)
        else:
            self.unit_class = np.where(means.max(axis=1) == 0, -1, present[means.argmax(axis=1)])
        return self

    def predict(self, outputs) -> np.ndarray:
        if self.unit_class is None:
            raise ValueError("DirectAssociation.predict: not fitted; call fit() first")
        y = np.asarray(outputs)
        if y.ndim != 2 or y.shape[1] != len(self.unit_class):
            raise ValueError(f"outputs: expected shape (N, {len(self.unit_class)}), got {y.shape}")
        labelled = self.unit_class >= 0
        if self.mode == "av":
            score = np.full((len(y), self.n_classes), -np.inf)
            for c in np.unique(self.unit_class[labelled]):
                score[:, c] = y[:, self.unit_class == c].mean(axis=1)
            return score.argmax(axis=1)
        if self.mode == "max" and not labelled.all():
            y = np.where(labelled, y, -np.inf)
        return self.unit_class[y.argmax(axis=1)]

    def accuracy(self, outputs, labels) -> float:
        return float(np.mean(self.predict(outputs) == np.asarray(labels)))


# ----------------------------------------------------------------------------- rules
class TargetBatch(NamedTuple):
    """A batch of inputs ``x`` with its ``target``: (B, n_out) rows, a function of the network's
    outputs that returns them (or (rows, output mask)), or None (a self-defined target, made by
    :class:`SelfDefinedTargets`); ``epoch``: the epoch it belongs to (counted over the whole run)."""

    x: np.ndarray
    target: Any
    epoch: int = 1


def _targets(target: Any, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    d = target(y) if callable(target) else target
    return d if isinstance(d, tuple) else (d, None)


OPTIMIZERS = ("sgd", "adam")
LOSSES = ("mse", "xent")


class TargetBackprop(Rule):
    """Backprop towards given targets through a model that carries its errors back itself
    (``backward`` trait: :class:`neuroemu.models.convnet.SequentialNet`).

    Loss: ½Σ_units m (y − d)² (batch mean; m an output dropout mask, default 1) for ``"mse"``,
    softmax cross-entropy of the outputs as logits for ``"xent"``. Each trained layer has its own
    learning rate (``lr``: a number, or one per trained layer; :attr:`lrs` may be changed between
    epochs) and optimiser (``sgd`` or ``adam``, over its weights and bias); with ``lr_end`` ≠ 1 the
    rates follow a linear schedule per epoch, base·(1 + (lr_end − 1)·min(e, decay)/decay) in epoch
    e + 1. The optimiser's step (in the dtype of the weights as read, float32), with the model's
    pruning masks applied, is the change the layer gets: on an exact float chip
    (:meth:`neuroemu.chip.Hardware.exact`) the weights become what the optimiser would make of
    them in place. Measures ``loss``."""

    requires = frozenset({"backward"})
    output_mask = True

    def __init__(self, lr=0.008, *, optimizer: str = "sgd", loss: str = "mse", lr_end: float = 1.0,
                 decay_epochs: int = 1):
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        if loss not in LOSSES:
            raise ConfigError(f"loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
        self.lr, self.optimizer, self.loss = lr, optimizer, loss
        self.lr_end, self.decay_epochs = float(lr_end), max(int(decay_epochs), 1)
        self.opts: dict[str, Any] = {}
        self._lrs: list[float] | None = None  # rates set before the rule was bound
        self._epoch: int | None = None

    def bind(self, chip: Chip) -> None:
        from .eqprop import _rates

        super().bind(chip)
        if self.opts:  # bound before (a later phase on the same chip): keep the optimisers' state
            return
        names = chip.model.trained
        self.base = _rates(self.lr, len(names))
        self.opts = {name: self._optimizer(lr) for name, lr in zip(names, self._lrs or self.base)}

    def _optimizer(self, lr: float) -> Any:
        from ..nn import SGD
        from .surrogate import Adam

        return SGD(lr) if self.optimizer == "sgd" else Adam(lr=lr)

    @property
    def lrs(self) -> list[float]:
        """The present learning rates of the trained layers (before binding: ``lr``)."""
        if self.opts:
            return [opt.lr for opt in self.opts.values()]
        from .eqprop import _rates

        return self._lrs or (_rates(self.lr, len(self.lr)) if isinstance(self.lr, (list, tuple)) else [self.lr])

    @lrs.setter
    def lrs(self, rates: list[float]) -> None:
        if not self.opts:
            self._lrs = list(rates)
        for lr, opt in zip(rates[-len(self.opts):] if self.opts else (), self.opts.values()):
            opt.lr = lr

    def step(self, chip: Chip, batch: Any) -> Step:
        from ..nn import mse_loss, softmax_cross_entropy

        x, target, epoch = batch
        if epoch != self._epoch:
            self._epoch = epoch
            if self.lr_end != 1.0:
                f = 1.0 + (self.lr_end - 1.0) * min(epoch - 1, self.decay_epochs) / self.decay_epochs
                self.lrs = [lr * f for lr in self.base]
        model = chip.model
        y = model.forward(chip, x, train=True)
        d, mask = _targets(target, y)
        loss, g = softmax_cross_entropy(y, d) if self.loss == "xent" else mse_loss(y, d, mask)
        yield {"loss": loss}
        grads = model.backward(g)
        for name, opt in self.opts.items():
            # the optimiser's step taken from zero is the change, to the bit: w + (0 − s) = w − s
            dw, db = np.zeros_like(model.weights(name)), np.zeros_like(chip[name].bias)
            opt.step([dw, db], grads[name])
            if name in model.masks:
                dw *= model.masks[name]
            yield Update(name, dw=dw, db=db)


class SelfDefinedTargets(Rule):
    """Self-defined targets (k-WTA + homeostasis, :class:`SelfDefinedTarget` ``target``) learned by
    the gradient rule ``inner`` (:class:`TargetBackprop` or :class:`neuroemu.rules.eqprop.EqProp`):
    a :class:`TargetBatch` without a target gets the target of the network's own outputs (with an
    output dropout mask from ``rng`` where the inner rule has output masks); one with a target (a
    labelled batch of a semi-supervised run) goes to ``inner`` as it is. H is reset at every new
    epoch."""

    def __init__(self, inner: Rule, target: SelfDefinedTarget, *, rng: Any = None):
        self.inner, self.target, self.rng = inner, target, as_rng(rng)  # one stream for every batch's mask
        self.requires = inner.requires
        self._epoch: int | None = None

    @property
    def name(self) -> str:
        return f"SelfDefinedTargets({self.inner.name})"

    def bind(self, chip: Chip) -> None:
        self.inner.bind(chip)

    def _self_defined(self, y: np.ndarray) -> Any:
        mask = self.target.mask(len(y), self.rng) if getattr(self.inner, "output_mask", False) else None
        d = self.target(y, mask)
        return d if mask is None else (d, mask)

    def step(self, chip: Chip, batch: Any) -> Step:
        x, target, epoch = batch
        if epoch != self._epoch:
            self._epoch = epoch
            self.target.reset()
        yield from self.inner.step(chip, TargetBatch(x, self._self_defined if target is None else target, epoch))
