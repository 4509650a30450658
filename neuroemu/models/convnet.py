"""Feed-forward networks of :mod:`neuroemu.nn` layers on the chip: every weight layer (``Linear``,
``Conv2d``: c_out × c_in·k·k in the im2col layout) is a chip layer, everything between them (units,
pooling, dropout, flatten) stays digital.

The initial weights and biases are drawn when the network is made (in layer order, from the
generator that also draws its dropout masks), so that :meth:`Model.build` only places them on the
hardware. Each forward reads the weights as the hardware holds them (without read noise) into the
float32 layers (on an exact float chip, the chip's own arrays) and runs them in float; :meth:`SequentialNet.backward` carries the error back
through the same layers (``backward`` trait). ``masks``: pruning masks (1 = kept) that a rule
applies after every update (:class:`neuroemu.rules.sdt.TargetBackprop`).

:func:`clip_mlp` and :func:`sdt_cnn` are the two networks of the self-defined-target study
(Liu et al. 2024).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import nn
from ..chip import Chip, Hardware, LayerSpec
from . import Model
from ..rng import as_rng

CNN_FEATURES = 128 * 7 * 7


class SequentialNet(Model):
    """``layers``: :mod:`neuroemu.nn` layers in order; the weight layers are named ``conv1``, ``conv2``,
    … and ``layer1``, ``layer2``, … (Linear). ``start``: the first layer trained; the layers before it
    are a fixed feature extractor (:meth:`features`, computed once), and :meth:`forward` then takes
    its features. ``masks``: {name: 0/1 array of the weights' shape}, the pruned weights."""

    traits = frozenset({"feedforward", "rate", "backward"})

    def __init__(self, layers: Sequence[Any], *, start: int = 0, masks: dict[str, np.ndarray] | None = None):
        self.net = nn.Sequential(*layers)
        self.start = int(start)
        self.names: dict[str, Any] = {}
        counts = {"conv": 0, "layer": 0}
        for layer in self.net:
            if layer.params:
                kind = "conv" if isinstance(layer, nn.Conv2d) else "layer"
                counts[kind] += 1
                self.names[f"{kind}{counts[kind]}"] = layer
        self.masks = dict(masks or {})
        for name, m in self.masks.items():
            self.names[name].w *= m
        self.trained = [name for name, layer in self.names.items()
                        if any(layer is t for t in list(self.net)[self.start:])]

    def layers(self) -> list[LayerSpec]:
        return [LayerSpec(name, *layer.w.shape, bias=None if layer.b is None else layer.b.dtype)
                for name, layer in self.names.items()]

    def init_weights(self, spec: LayerSpec, rng: np.random.Generator) -> np.ndarray:
        """The weights drawn when the network was made (``rng`` is not used)."""
        return self.names[spec.name].w

    def build(self, hardware: Hardware | None = None, rng: Any = None, **kwargs: Any) -> Chip:
        return place(self, {n: (layer.w, layer.b) for n, layer in self.names.items()}, hardware, rng, **kwargs)

    def _read(self, chip: Chip, names: Sequence[str]) -> None:
        for name in names:
            layer = self.names[name]
            layer.w = np.asarray(chip[name].weights(), layer.dtype)
            layer.b = chip[name].bias

    def weights(self, name: str) -> np.ndarray:
        """The float32 weights of layer ``name`` as the last forward read them."""
        return self.names[name].w

    def forward(self, chip: Chip, x: np.ndarray, *, train: bool = False) -> np.ndarray:
        """The outputs of a batch (inputs, or the features when ``start`` > 0); ``train``: dropout on,
        and every layer keeps what :meth:`backward` needs."""
        self._read(chip, self.trained)
        for layer in list(self.net)[self.start:]:
            x = self._counted(chip, layer, x, layer.forward(x, cache=train))
        return x

    def _counted(self, chip: Chip, layer: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Count a weight layer's products (y from x) on its chip layer: one input vector per output
        position, the non-zero entries at x's density (exact for dense layers)."""
        name = self._layer_names.get(id(layer))
        if name is not None:
            vectors = y.size // layer.w.shape[0]
            nnz = round(np.count_nonzero(x) / max(x.size, 1) * vectors * layer.w.shape[1])
            chip[name].count(vectors, nnz)
        return y

    @property
    def _layer_names(self) -> dict[int, str]:
        return {id(layer): name for name, layer in self.names.items()}

    def backward(self, grad: np.ndarray) -> dict[str, list[np.ndarray]]:
        """The gradients {name: [∂L/∂w, ∂L/∂b]} of the trained layers, from ∂L/∂outputs of the last
        ``forward(..., train=True)``."""
        nn.Sequential(*list(self.net)[self.start:]).backward(grad, input_grad=False)
        return {name: self.names[name].grads for name in self.trained}

    def features(self, chip: Chip, x: np.ndarray, batch: int) -> np.ndarray:
        """What the trained part sees of inputs x: x itself, or the fixed layers' features of x
        (computed ``batch`` samples at a time)."""
        if not self.start:
            return x
        self._read(chip, [n for n in self.names if n not in self.trained])
        fixed = list(self.net)[:self.start]
        h = x[:1]  # one image through the fixed layers: each weight layer's outputs per image
        for layer in fixed:
            y = nn.Sequential(layer).predict(h, batch_size=1)
            name = self._layer_names.get(id(layer))
            if name is not None:  # its products for every image, counted dense
                vectors = len(x) * (y.size // layer.w.shape[0])
                chip[name].count(vectors, vectors * layer.w.shape[1])
            h = y
        return nn.Sequential(*fixed).predict(x, batch_size=batch)

    def __repr__(self) -> str:
        return f"SequentialNet({', '.join(f'{n} {l.w.shape[1]}->{l.w.shape[0]}' for n, l in self.names.items())})"


def place(model: Model, params: dict[str, tuple[np.ndarray, np.ndarray | None]], hardware: Hardware | None,
          rng: Any, **kwargs: Any) -> Chip:
    """``model``'s layers on ``hardware`` with the weights and biases already drawn (``params``:
    {name: (w, b)}): tiles and schemes from ``rng``, the biases copied onto the chip."""
    from ..chip import build_chip

    chip = build_chip(model, hardware, rng, weights={n: w for n, (w, _) in params.items()}, **kwargs)
    for name, (_, b) in params.items():
        if b is not None:
            chip[name].bias[:] = b
    return chip


def clip_mlp(sizes: Sequence[int], *, logits: bool = False, input_dropout: float = 0.0,
             rng: Any = None) -> SequentialNet:
    """[input dropout], then Linear + clip(x, 0, 1) per layer of ``sizes`` (weights and biases
    U(±1/√fan_in)); with ``logits`` the last layer's units are linear (class logits)."""
    layers: list[Any] = [nn.Dropout(input_dropout, rng=rng)] if input_dropout else []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, rng=rng, init="fan_in"), nn.HardSigmoid(1.0, 0.0)]
    if logits:
        layers.pop()
    return SequentialNet(layers)


def sdt_cnn(n_out: int, *, prune: float = 0.0, train_conv: bool = True, input_dropout: float = 0.0,
            rng: Any = None) -> SequentialNet:
    """The CNN of Liu et al. 2024: conv 32 5×5 (pad 2), ReLU, max-pool 4×4 stride 2 (pad 1), conv 128
    3×3 (pad 1), ReLU, the same pooling, flatten (128·7·7), dropout ``input_dropout``, a linear layer
    of ``n_out`` (weights and biases U(±1/√fan_in)). A random fraction ``prune`` of the conv weights
    is held at 0; with ``train_conv`` false the conv layers are a fixed feature extractor."""
    rng = as_rng(rng)
    convs = [nn.Conv2d(1, 32, 5, pad=2, rng=rng, init="fan_in"), nn.Conv2d(32, 128, 3, pad=1, rng=rng, init="fan_in")]
    masks = {f"conv{i + 1}": (rng.random(c.w.shape) >= prune).astype(c.w.dtype)
             for i, c in enumerate(convs)} if prune else {}
    front = [convs[0], nn.ReLU(), nn.MaxPool2d(4, 2, 1), convs[1], nn.ReLU(), nn.MaxPool2d(4, 2, 1), nn.Flatten()]
    layers = [*front, *([nn.Dropout(input_dropout, rng=rng)] if input_dropout else []),
              nn.Linear(CNN_FEATURES, n_out, rng=rng, init="fan_in")]
    net = SequentialNet(layers, start=0 if train_conv else len(front), masks=masks)
    if not train_conv:  # pruned once; the fixed layers keep it
        net.masks = {}
    return net
