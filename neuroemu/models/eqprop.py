"""The layered energy-based network of equilibrium propagation on the chip
(:class:`neuroemu.rules.eqprop.EqPropNetwork` is its functional core).

Its weight matrices W_1 … W_L (and, with a cross-entropy read-out, W_out) are chip layers
``layer1`` … (``readout``), with digital biases; the initial weights and biases are drawn when the
model is made (:func:`neuroemu.rules.eqprop.init_params`, in the authors' order), so that
:meth:`Model.build` only places them on the hardware. The forward pass is the relaxation: the free
phase from s = 0, whose output (s_L, or the softmax read-out) it returns. Every phase reads the
weights as the hardware holds them (without read noise) in float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..chip import Chip, Hardware, LayerSpec
from ..rules.eqprop import EqPropConfig, EqPropNetwork
from . import Model
from .convnet import place


class EqPropModel(Model):
    """``sizes``: (n_0, n_1, …, n_L) for the ``"mse"`` output, (n_0, …, n_L, n_classes) for
    ``"xent"``; ``config``: the relaxation (:class:`~neuroemu.rules.eqprop.EqPropConfig`); ``rng``
    draws the initial weights (and is the network's own generator for the random nudging sign)."""

    traits = frozenset({"energy", "rate"})

    def __init__(self, sizes, *, config: EqPropConfig = EqPropConfig(), rng: Any = None):
        self.net = EqPropNetwork(sizes, config=config, rng=rng)
        n = len(self.net.weights)
        self.names = [f"layer{i + 1}" for i in range(n)]
        if self.net.xent:
            self.names[-1] = "readout"

    @property
    def config(self) -> EqPropConfig:
        return self.net.config

    def layers(self) -> list[LayerSpec]:
        return [LayerSpec(name, *w.shape, bias=w.dtype) for name, w in zip(self.names, self.net.weights)]

    def init_weights(self, spec: LayerSpec, rng: np.random.Generator) -> np.ndarray:
        """The weights drawn when the model was made (``rng`` is not used)."""
        return self.net.weights[self.names.index(spec.name)]

    def build(self, hardware: Hardware | None = None, rng: Any = None, **kwargs: Any) -> Chip:
        return place(self, {n: (w, b) for n, w, b in zip(self.names, self.net.weights, self.net.biases)},
                     hardware, rng, **kwargs)

    def network(self, chip: Chip) -> EqPropNetwork:
        """The functional network with the chip's present weights (float32 reads) and biases."""
        net = self.net
        net.weights = [np.asarray(chip[n].weights(), net.dtype) for n in self.names]
        net.biases = [chip[n].bias for n in self.names]
        return net

    def forward(self, chip: Chip, x: np.ndarray) -> np.ndarray:
        """The free-phase output (B, n_out) of a batch x (B, n_0)."""
        out = self.network(chip).predict(x)
        self.count(chip, len(x), self.config.t_free)
        return out

    def count(self, chip: Chip, batch: int, steps: int) -> None:
        """Count a relaxation of ``steps`` steps on ``batch`` samples on the chip's layers: the
        input's drive through the first layer once, then per step every other layer read forward
        (its lower state) and backward (its upper state), the states dense."""
        layers = list(chip)
        layers[0].count(batch, batch * layers[0].shape[1])
        for layer in layers[1:]:
            layer.count(2 * steps * batch, 2 * steps * batch * layer.shape[1])

    def __repr__(self) -> str:
        return f"EqPropModel({'-'.join(map(str, self.net.sizes))}, {self.config.output})"
