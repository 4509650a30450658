"""Backpropagation on the chip: softmax cross-entropy, the errors carried back through transposed
reads of the arrays (with their periphery and noise), SGD or Adam."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..chip import Chip, Update
from .base import Rule, Step

OPTIMIZERS = ("sgd", "adam")


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (batch, classes) scores."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Backprop(Rule):
    """Mini-batch backprop of the softmax cross-entropy of a differentiable feed-forward model.

    ``sgd``: every layer gets the factored update ΔW = −lr·dᵀx (d: the batch-mean error at its
    outputs), which pulse-coincidence schemes program directly; biases −lr·Σd. ``adam``: the Adam
    step of the same gradient (:class:`neuroemu.rules.surrogate.Adam`, one per layer) as a dense ΔW.
    The error of layer i−1 is read through layer i before layer i changes. A batch whose loss is
    NaN/inf gets no update."""

    requires = frozenset({"feedforward", "differentiable"})

    def __init__(self, lr: float, *, optimizer: str = "sgd", betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        self.lr, self.optimizer, self.betas, self.eps = float(lr), optimizer, betas, eps
        self._adam: dict[str, Any] = {}

    def _adam_step(self, name: str, g: np.ndarray) -> np.ndarray:
        from .surrogate import Adam

        return self._adam.setdefault(name, Adam(self.lr, self.betas, self.eps)).change([g])[0]

    def step(self, chip: Chip, batch: Any) -> Step:
        x, y = batch
        logits, acts = chip.forward(x)
        p = softmax(logits)
        n = x.shape[0]
        loss = float(-np.log(p[np.arange(n), y] + 1e-12).mean())
        yield {"loss": loss, "acc": float((logits.argmax(1) == y).mean())}
        if not np.isfinite(loss):
            return
        d = p
        d[np.arange(n), y] -= 1.0
        d /= n
        layers = list(chip)
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            d_prev = layer.backward(d) * chip.model.act_grad(i, acts) if i > 0 else None
            if self.optimizer == "sgd":
                yield Update(layer.name, x=acts[i], d=d, lr=self.lr, db=-self.lr * d.sum(axis=0))
            else:
                yield Update(layer.name, dw=self._adam_step(layer.name, d.T @ acts[i]),
                             db=self._adam_step(layer.name + ".bias", d.sum(axis=0)))
            d = d_prev
