"""One Hebbian layer as a network model: K units over D inputs (fully connected) or K filters over
image patches (convolutional), linear responses, weights initialised as random unit vectors.

The layer is what a Hebbian rule (:class:`neuroemu.rules.hebbian.Hebbian`) trains: the model says
which samples the rule sees of a batch (:meth:`DenseLayer.samples`: the flattened inputs, or every
(image, position) patch of a conv layer) and reads the responses from the chip's one layer
``hebbian`` (``forward``: (N, K) responses, or (N, K, Ho, Wo) feature maps).

:class:`HebbianStack` is a deep network of such layers (conv, then dense), each followed by its
rectified projections, max-pooling and a per-channel normalisation, after Lagani et al.'s six-layer
network; it is trained greedily, one layer at a time, each layer a one-layer model over the output of
the frozen layers below it (:meth:`HebbianStack.trainable`, a :class:`StackedLayer`).

On an exact float chip (:meth:`Hardware.exact <neuroemu.chip.Hardware.exact>`) the weights stay in
the model's dtype (float32): reads ``x @ Wᵀ`` and writes ``W += ΔW`` in that dtype, the arithmetic of
a plain numpy layer. A chip of :meth:`Hardware.ideal <neuroemu.chip.Hardware.ideal>` is exact too, but
holds its weights as float64 conductances (a float64 accumulation of the same updates).
"""

from __future__ import annotations

import dataclasses
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


# ---------------------------------------------------------------------------------------- a stack of layers
#: How a stack layer's output is normalised per channel: ``bn`` (batch norm at its statistics over the
#: training images: zero mean, unit variance per channel), ``bn_relative`` (the authors' modified batch
#: norm: zero mean per channel, divided by the root of the channels' mean variance, so that channels keep
#: their relative variance) or ``none``.
NORMS = ("none", "bn", "bn_relative")
#: The variance floor of the normalisation (torch's BatchNorm default, which the authors' network uses).
BN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class StackLayer:
    """One layer of a :class:`HebbianStack`: ``units`` filters of ``kernel`` × ``kernel`` over the input
    channels (``kind="conv"``) or ``units`` over the flattened input (``"dense"``). Its output: the
    projections x·w/|w| of its inputs on its weight vectors, rectified, max-pooled ``pool`` × ``pool``
    (stride ``pool``; 1: none; conv only), then normalised per channel (``norm``, one of :data:`NORMS`)."""

    kind: str = "conv"
    units: int = 96
    kernel: int = 5
    pool: int = 1
    norm: str = "bn"

    def __post_init__(self):
        if self.kind not in ("conv", "dense"):
            raise ValueError(f"StackLayer kind: expected 'conv' or 'dense', got {self.kind!r}")
        if self.norm not in NORMS:
            raise ValueError(f"StackLayer norm: expected one of {', '.join(NORMS)}, got {self.norm!r}")
        for name in ("units", "kernel", "pool"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"StackLayer {name}: expected an integer >= 1, got {v!r}")
        if self.kind == "dense" and self.pool != 1:
            raise ValueError(f"StackLayer pool: a dense layer has no pooling (pool 1), got {self.pool}")


class HebbianStack:
    """A stack of Hebbian layers (:class:`StackLayer`) over images of shape ``in_shape`` (C, H, W):
    the deep network of Lagani et al., trained greedily, one layer at a time (:meth:`trainable`).

    The stack holds the weights and the normalisation of every layer trained so far
    (:meth:`set_layer`); layer i's input is the output of layers 0..i−1 (:meth:`transform`). A conv
    layer after a dense one is refused; a kernel or pooling larger than its input's side too
    (``ValueError`` naming the layer)."""

    def __init__(self, in_shape: tuple[int, int, int], layers: list[StackLayer], *, dtype: Any = np.float32):
        from ..nn import out_size

        if len(in_shape) != 3 or not all(int(s) >= 1 for s in in_shape):
            raise ValueError(f"HebbianStack: expected an input shape (C, H, W), got {in_shape!r}")
        if not layers:
            raise ValueError("HebbianStack: expected at least one layer")
        self.in_shape = tuple(int(s) for s in in_shape)
        self.specs = tuple(layers)
        self.dtype = np.dtype(dtype)
        shapes = [self.in_shape]
        for i, s in enumerate(self.specs):
            shape = shapes[-1]
            if s.kind == "conv":
                if len(shape) != 3:
                    raise ValueError(f"HebbianStack layers[{i}].kind: a conv layer cannot follow a dense layer")
                side = min(shape[1:])
                if s.kernel > side:
                    raise ValueError(f"HebbianStack layers[{i}].kernel: expected at most the input side {side}, "
                                     f"got {s.kernel}")
                h, w = out_size(shape[1], s.kernel), out_size(shape[2], s.kernel)
                if s.pool > min(h, w):
                    raise ValueError(f"HebbianStack layers[{i}].pool: expected at most the feature-map side "
                                     f"{min(h, w)}, got {s.pool}")
                shapes.append((s.units, h // s.pool, w // s.pool))
            else:
                shapes.append((s.units,))
        self.shapes = shapes  # shapes[i]: layer i's input (per image); shapes[-1]: the stack's output
        self.weights: list[np.ndarray | None] = [None] * len(self.specs)
        self.norms: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __repr__(self) -> str:
        parts = [f"conv {s.units}x{s.kernel}x{s.kernel}" + (f" pool {s.pool}" if s.pool > 1 else "")
                 if s.kind == "conv" else f"dense {s.units}" for s in self.specs]
        return f"HebbianStack({self.in_shape} -> " + ", ".join(parts) + ")"

    # ------------------------------------------------------------------ layers and weights
    def layer(self, i: int) -> DenseLayer:
        """Layer i as a one-layer model over its own input (:class:`ConvLayer` or :class:`DenseLayer`)."""
        s, shape = self.specs[i], self.shapes[i]
        if s.kind == "conv":
            return ConvLayer(shape[0], s.units, s.kernel, dtype=self.dtype)
        return DenseLayer(int(np.prod(shape)), s.units, dtype=self.dtype)

    def init_weights(self, rng: Any) -> list[np.ndarray]:
        """Every layer's initial weights (random unit vectors, :meth:`DenseLayer.init_weights`), drawn in
        order from ``rng``; layer 0 draws what a lone :class:`ConvLayer` of its shape would."""
        from ..rng import as_rng

        rng = as_rng(rng)
        out = []
        for i in range(len(self)):
            model = self.layer(i)
            out.append(model.init_weights(model.layers()[0], rng))
        return out

    def set_layer(self, i: int, weights: np.ndarray, x: np.ndarray | None = None, *, batch: int = 1000) -> None:
        """Fix layer i's ``weights`` (K, D), and its normalisation from its output over the images ``x``
        (the stack's input; needed unless the layer's norm is ``none``). Layers below i must be set."""
        model = self.layer(i)
        spec = model.layers()[0]
        w = np.asarray(weights, self.dtype)
        if w.shape != (spec.n_out, spec.n_in):
            raise ValueError(f"HebbianStack layers[{i}]: expected weights of shape {(spec.n_out, spec.n_in)}, "
                             f"got {w.shape}")
        if any(v is None for v in self.weights[:i]):
            raise ValueError(f"HebbianStack layers[{i}]: the layers below it are not set yet")
        self.weights[i] = w
        self.norms[i] = None
        norm = self.specs[i].norm
        k = w.shape[0]
        if norm == "none":
            self.norms[i] = (np.zeros(k, self.dtype), np.ones(k, self.dtype))
            return
        if x is None:
            raise ValueError(f"HebbianStack layers[{i}]: norm {norm!r} needs the images its statistics come from")
        s1, s2, n = np.zeros(k), np.zeros(k), 0
        for j in range(0, len(x), batch):
            y = self._response(i, self.transform(x[j:j + batch], i)).astype(np.float64)
            axes = (0, 2, 3) if y.ndim == 4 else (0,)
            s1 += y.sum(axis=axes)
            s2 += np.square(y).sum(axis=axes)
            n += y.size // k
        mean = s1 / n
        var = np.maximum(s2 / n - mean ** 2, 0.0)
        scale = 1.0 / np.sqrt((var if norm == "bn" else np.full(k, var.mean())) + BN_EPS)
        self.norms[i] = (mean.astype(self.dtype), scale.astype(self.dtype))

    # ------------------------------------------------------------------ the forward pass
    def _response(self, i: int, x: np.ndarray) -> np.ndarray:
        """Layer i's output before normalisation: projections, rectified, pooled."""
        s, w = self.specs[i], self.weights[i]
        y = self.layer(i).samples(x) @ (w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)).T
        np.maximum(y, 0, out=y)
        if s.kind == "dense":
            return y
        maps = self.layer(i).maps(x, y)
        if s.pool > 1:
            n, k, h, wd = maps.shape
            ho, wo = h // s.pool, wd // s.pool
            maps = maps[:, :, :ho * s.pool, :wo * s.pool].reshape(n, k, ho, s.pool, wo, s.pool).max(axis=(3, 5))
        return maps

    def output(self, i: int, x: np.ndarray) -> np.ndarray:
        """Layer i's output for its input x: (N, K, H, W) or (N, K), in the stack's dtype."""
        if self.weights[i] is None or self.norms[i] is None:
            raise ValueError(f"HebbianStack layers[{i}]: not set yet (set_layer)")
        y = self._response(i, x)
        shift, scale = self.norms[i]
        shape = (1, -1, 1, 1) if y.ndim == 4 else (1, -1)
        y -= shift.reshape(shape)
        y *= scale.reshape(shape)
        return y

    def transform(self, x: np.ndarray, upto: int | None = None) -> np.ndarray:
        """The output of layers 0..upto−1 (all by default) for images x (N, C, H, W)."""
        x = np.asarray(x, self.dtype)
        if x.shape[1:] != self.in_shape:
            raise ValueError(f"HebbianStack: expected images of shape (N, {', '.join(map(str, self.in_shape))}), "
                             f"got {x.shape}")
        for i in range(len(self) if upto is None else upto):
            x = self.output(i, x)
        return x

    def features(self, x: np.ndarray, layers: list[int], *, batch: int = 1000) -> dict[int, np.ndarray]:
        """The flattened outputs (N, ·), float32, of the listed layers for the images x, one forward pass
        per batch."""
        top = max(layers) + 1
        out: dict[int, list[np.ndarray]] = {i: [] for i in layers}
        for j in range(0, len(x), batch):
            h = np.asarray(x[j:j + batch], self.dtype)
            for i in range(top):
                h = self.output(i, h)
                if i in out:
                    out[i].append(h.reshape(len(h), -1).astype(np.float32, copy=False))
        return {i: np.concatenate(v) for i, v in out.items()}

    # ------------------------------------------------------------------ greedy training
    def frozen(self, upto: int) -> "HebbianStack":
        """The stack of layers 0..upto−1 as they are now (their arrays shared, not copied)."""
        if upto < 1:
            raise ValueError(f"HebbianStack.frozen: expected at least one layer, got {upto}")
        below = HebbianStack(self.in_shape, list(self.specs[:upto]), dtype=self.dtype)
        below.weights, below.norms = list(self.weights[:upto]), list(self.norms[:upto])
        return below

    def trainable(self, i: int) -> "StackedLayer":
        """Layer i as a one-layer model fed by the layers below it, frozen: what
        :class:`~neuroemu.rules.hebbian.Hebbian` trains. The layers below must be set."""
        if any(v is None for v in self.norms[:i]):
            raise ValueError(f"HebbianStack layers[{i}]: the layers below it are not set yet")
        return StackedLayer(self.layer(i), self.frozen(i) if i > 0 else None)


class StackedLayer(Model):
    """A Hebbian layer model (``layer``) over the output of a frozen stack (``below``; None: over the
    images themselves): its samples of a batch of images are the layer's samples of what the stack
    below makes of them (:meth:`HebbianStack.trainable`)."""

    def __init__(self, layer: DenseLayer, below: HebbianStack | None):
        self.layer, self.below = layer, below
        self.traits = layer.traits
        self.dtype = layer.dtype

    def layers(self) -> list[LayerSpec]:
        return self.layer.layers()

    def init_weights(self, spec: LayerSpec, rng: np.random.Generator) -> np.ndarray:
        return self.layer.init_weights(spec, rng)

    def _input(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, self.dtype) if self.below is None else self.below.transform(x)

    def samples(self, x: np.ndarray) -> np.ndarray:
        return self.layer.samples(self._input(x))

    def forward(self, chip: Chip, x: np.ndarray) -> np.ndarray:
        return self.layer.forward(chip, self._input(x))

    def __repr__(self) -> str:
        return f"StackedLayer({self.layer!r} over {self.below!r})"
