"""Node perturbation: a learning rule that needs no backward pass through the arrays.

Noise ξ is added to every unit's input in a second forward pass; the change of each sample's loss,
δL, says how the noise helped, and ΔW = −lr · (δL ξ / σ²)ᵀ x estimates the gradient step with
forward reads only (Williams 1992; Fiete & Seung 2006). On a chip this costs one extra inference
per batch instead of the transposed reads and error transport of backprop.
"""

import numpy as np

from neuroemu.chip import Update
from neuroemu.rules.base import Rule


def cross_entropy(logits, labels):
    """Softmax cross-entropy of each sample."""
    z = logits - logits.max(axis=1, keepdims=True)
    return np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]


class NodePerturbation(Rule):
    """ΔW = −lr·dᵀx per layer with d = δL·ξ/(σ²·batch): the node-perturbation gradient estimate."""

    requires = frozenset({"feedforward", "rate"})

    def __init__(self, lr=0.01, sigma=0.3, rng=None):
        self.lr, self.sigma = float(lr), float(sigma)
        self.rng = np.random.default_rng(rng)

    def step(self, chip, batch):
        x, y = batch
        logits, acts = chip.forward(x)
        loss = cross_entropy(logits, y)
        yield {"loss": float(loss.mean()), "acc": float((logits.argmax(axis=1) == y).mean())}
        noise = [self.sigma * self.rng.standard_normal((len(x), layer.shape[0])) for layer in chip]
        noisy, _ = chip.forward(x, perturb=noise)
        gain = (cross_entropy(noisy, y) - loss)[:, None] / (self.sigma ** 2 * len(x))
        for layer, a, xi in zip(chip, acts, noise):
            d = gain * xi
            yield Update(layer.name, x=a, d=d, lr=self.lr, db=-self.lr * d.sum(axis=0))
