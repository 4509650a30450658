"""One Hebbian layer as a network model: K units over D inputs (fully connected) or K filters over
image patches (convolutional), linear responses, weights initialised as random unit vectors.

The layer is what a Hebbian rule (:class:`neuroemu.rules.hebbian.Hebbian`) trains: the model says
which samples the rule sees of a batch (:meth:`DenseLayer.samples`: the flattened inputs, or every
(image, position) patch of a conv layer) and reads the responses from the chip's one layer
``hebbian`` (``forward``: (N, K) responses, or (N, K, Ho, Wo) feature maps).

On an exact float chip (:meth:`Hardware.exact <neuroemu.chip.Hardware.exact>`) the weights stay in
the model's dtype (float32): reads ``x @ Wᵀ`` and writes ``W += ΔW`` in that dtype, the arithmetic of
a plain numpy layer. A chip of :meth:`Hardware.ideal <neuroemu.chip.Hardware.ideal>` is exact too, but
holds its weights as float64 conductances (a float64 accumulation of the same updates).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..chip import Chip, LayerSpec
from . import Model

#: The name of the model's one weight layer.
LAYER = "hebbian"


class DenseLayer(Model):
    """A fully connected Hebbian layer: ``units`` linear units over ``n_in`` inputs (inputs of any
    shape (N, ...) are flattened)."""

    traits = frozenset({"feedforward", "rate", "single_layer"})

    def __init__(self, n_in: int, units: int, *, dtype: Any = np.float32):
        if n_in < 1 or units < 1:
            raise ValueError(f"{type(self).__name__}: expected n_in and units >= 1, got {n_in}, {units}")
        self.n_in, self.units, self.dtype = int(n_in), int(units), np.dtype(dtype)

    def layers(self) -> list[LayerSpec]:
        return [LayerSpec(LAYER, self.units, self.n_in)]

    def init_weights(self, spec: LayerSpec, rng: np.random.Generator) -> np.ndarray:
        """Random unit vectors (normalised Gaussian rows), in the model's dtype."""
        w = rng.standard_normal((spec.n_out, spec.n_in))
        return (w / np.linalg.norm(w, axis=1, keepdims=True)).astype(self.dtype)

    def samples(self, x: np.ndarray) -> np.ndarray:
        """The rule's samples of a batch: the flattened inputs (N, D)."""
        x = np.asarray(x)
        return x.reshape(len(x), -1)

    def forward(self, chip: Chip, x: np.ndarray) -> np.ndarray:
        """Linear responses (N, K) read from the chip."""
        return chip[LAYER].forward(self.samples(x))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.n_in}->{self.units})"


class ConvLayer(DenseLayer):
    """A convolutional Hebbian layer: ``units`` filters of ``c_in``×``kernel``×``kernel`` over images
    (N, c_in, H, W); every (image, position) patch is one sample of the rule."""

    traits = DenseLayer.traits | {"conv"}

    def __init__(self, c_in: int, units: int, kernel: int, *, stride: int = 1, dtype: Any = np.float32):
        super().__init__(c_in * kernel * kernel, units, dtype=dtype)
        self.c_in, self.kernel, self.stride = int(c_in), int(kernel), int(stride)

    def samples(self, x: np.ndarray) -> np.ndarray:
        """Every patch of the images, (N·Ho·Wo, c_in·k·k) (:func:`neuroemu.nn.patches`)."""
        from ..nn import patches

        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.c_in:
            raise ValueError(f"{type(self).__name__}: expected images of shape (N, {self.c_in}, H, W), got {x.shape}")
        return patches(x, self.kernel, self.stride)

    def maps(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Responses y (N·Ho·Wo, K) of the patches of images x as feature maps (N, K, Ho, Wo)."""
        from ..nn import out_size

        ho, wo = out_size(x.shape[2], self.kernel, self.stride), out_size(x.shape[3], self.kernel, self.stride)
        return np.ascontiguousarray(np.asarray(y).reshape(len(x), ho, wo, -1).transpose(0, 3, 1, 2))

    def forward(self, chip: Chip, x: np.ndarray) -> np.ndarray:
        """Feature maps (N, K, Ho, Wo) of the linear responses read from the chip."""
        x = np.asarray(x)
        return self.maps(x, super().forward(chip, x))

    def __repr__(self) -> str:
        return f"ConvLayer({self.units}x{self.c_in}x{self.kernel}x{self.kernel})"


# ---------------------------------------------------------------------------------------- exact float weights
