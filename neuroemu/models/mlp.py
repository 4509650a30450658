"""A multi-layer perceptron of rate units on the chip: ReLU hidden layers, a linear read-out,
digital biases."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..chip import Chip, LayerSpec
from . import Model


class MLP(Model):
    """``sizes`` = [n_in, hidden..., n_out]; layers ``layer1`` … ``layerN``, each with a digital bias
    (float32, starting at 0). Initial weights uniform in ±``init_gain``·√(1/fan_in)."""

    traits = frozenset({"feedforward", "rate", "differentiable"})

    def __init__(self, sizes: Sequence[int], *, init_gain: float = 1.0):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"MLP: expected at least two layer sizes >= 1, got {sizes}")
        self.sizes, self.init_gain = sizes, float(init_gain)

    def layers(self) -> list[LayerSpec]:
        return [LayerSpec(f"layer{i + 1}", n_out, n_in, bias=np.float32)
                for i, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]))]

    def init_weights(self, spec: LayerSpec, rng: np.random.Generator) -> np.ndarray:
        bound = self.init_gain * np.sqrt(1.0 / spec.n_in)
        return rng.uniform(-bound, bound, (spec.n_out, spec.n_in))

    def forward(self, chip: Chip, x: np.ndarray, *, perturb: Sequence[np.ndarray] | None = None
                ) -> tuple[np.ndarray, list[np.ndarray]]:
        """(output logits, [input, every layer's activation]) of a batch x (batch, n_in).
        ``perturb``: one array (batch, n_out) per layer added to its units' input (node
        perturbation, noise injection)."""
        acts = [x]
        h = x
        layers = list(chip)
        for i, layer in enumerate(layers):
            z = layer.forward(h) + layer.bias
            if perturb is not None:
                z = z + perturb[i]
            h = np.maximum(z, 0.0) if i < len(layers) - 1 else z
            acts.append(h)
        return h, acts

    def act_grad(self, i: int, acts: list[np.ndarray]) -> np.ndarray:
        """The derivative of the units whose activation is ``acts[i]`` (the input of layer i)."""
        return acts[i] > 0

    def __repr__(self) -> str:
        return f"MLP({'-'.join(map(str, self.sizes))})"
