"""A feed-forward spiking network on the chip: LIF hidden layers and a leaky read-out (logits = the
read-out's maximum over time), its weight layers on the chip's tiles, its units on any substrate.

The dynamics are those of a network of :mod:`neuroemu.rules` (:class:`~neuroemu.rules.sparse.SparseSNN`:
LIF with reset by subtraction; :class:`~neuroemu.rules.surrogate.SpikingMLP`: current-based LIF with
reset to rest and refractory time), which also draws the initial weights. :class:`SNN` wires them
to a chip:

* every layer's currents are a read of its tile (``chip[name].forward``: periphery, read noise,
  drift), with the spikes as numbers in the network's dtype (on an exact chip,
  :meth:`~neuroemu.chip.Hardware.exact`, exactly the network's own float product) or, with
  ``spike_reads``, as spikes (the tiles' spike path: no DAC);
* the units are the network's own (ideal float neurons) or, with ``neurons``, one substrate per
  layer (:func:`neuroemu.hardware.factory.make_substrate`: the ideal model of an analog chip, or its
  analog neurons with mismatch and temporal noise drawn from ``noise``), each layer's currents
  multiplied by ``gains[layer]`` on the way in;
* ``encode`` turns a batch of images (batch, pixels) into input spikes (T, batch, pixels), so that
  classification tasks of images serve (without it the input is already a spike sequence).

:meth:`Chip.deploy <neuroemu.chip.Chip.deploy>` programs a trained chip's layers onto other hardware
(the trained float network on PCM, RRAM or an analog chip's synapses). :func:`spiking_network`
builds one from config values (the ``snn`` model of a config).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from ..chip import Chip, LayerSpec
from . import Model


@dataclasses.dataclass
class SNN(Model):
    """The spiking network ``net`` on a chip (module docstring). Layers ``layer1`` … ``layerN`` (no
    biases), initial weights those ``net`` drew at construction."""

    net: Any
    encode: Callable[[np.ndarray], np.ndarray] | None = None
    neurons: Sequence[Any] | None = None
    gains: Sequence[float] | None = None
    noise: np.random.Generator | None = None
    spike_reads: bool = False

    traits = frozenset({"feedforward", "spiking", "sequence", "differentiable"})

    def layers(self) -> list[LayerSpec]:
        return [LayerSpec(f"layer{i + 1}", *w.shape) for i, w in enumerate(self.net.weights)]

    def init_weights(self, spec: LayerSpec, rng: np.random.Generator) -> np.ndarray:
        """The weights the network drew at construction, in its dtype (``rng`` is not used): an
        exact chip (:meth:`~neuroemu.chip.Hardware.exact`) holds them as the network does."""
        return np.array(self.net.weights[int(spec.name[5:]) - 1], dtype=self.net.dtype)

    def replace(self, **changes: Any) -> "SNN":
        """This network with other units, reads or encoder (the same ``net``)."""
        return dataclasses.replace(self, **changes)

    def input(self, x: np.ndarray) -> np.ndarray:
        """Input spikes (T, batch, n_in) of a batch: ``encode(x)``, or x itself."""
        return x if self.encode is None else self.encode(x)

    def weights(self, chip: Chip) -> list[np.ndarray]:
        """The weights as the chip holds them, in the network's dtype."""
        return [layer.weights().astype(self.net.dtype) for layer in chip]

    def hooks(self, chip: Chip) -> dict[str, Callable]:
        """The ``matmul`` and ``neurons`` hooks of the network's forward on ``chip``."""
        layers = list(chip)
        if self.spike_reads:
            def matmul(layer, s_flat):
                return layers[layer].forward(s_flat > 0)
        else:
            def matmul(layer, s_flat):
                return layers[layer].forward(s_flat)
        hooks = {"matmul": matmul}
        if self.neurons is not None:
            subs, noise = list(self.neurons), self.noise
            gains = [1.0] * len(subs) if self.gains is None else list(self.gains)

            def neurons(layer, cur, spiking):
                x = cur if self.gains is None else cur * gains[layer]
                return subs[layer].run(x, spiking=spiking, rng=noise)
            hooks["neurons"] = neurons
        return hooks

    def run(self, chip: Chip, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(logits (batch, classes), spike counts (batch, n) of every hidden layer) of a batch."""
        spikes = self.input(x)
        out = self.net.run(spikes, **self.hooks(chip))
        chip.add_ops(neuron_updates=spikes.shape[0] * spikes.shape[1] * sum(self.net.sizes[1:]))
        return out

    @property
    def analog_units(self) -> bool:
        """Whether the units sit on an analog chip (their energy is not costed)."""
        return any(getattr(n, "kind", "") == "analog" for n in self.neurons or ())

    def forward(self, chip: Chip, x: np.ndarray) -> np.ndarray:
        """Logits (batch, classes) of a batch (images with ``encode``, else spikes (T, batch, n_in))."""
        return self.run(chip, x)[0]

    def __repr__(self) -> str:
        units = "own units" if self.neurons is None else type(self.neurons[0]).__name__
        return f"SNN({type(self.net).__name__} {'-'.join(map(str, self.net.sizes))}, {units})"


def with_model(chip: Chip, model: Model) -> Chip:
    """The same layers behind another model (e.g. the network's units on a neuron substrate)."""
    return Chip(model, list(chip), chip.hardware)


def spiking_network(sizes: Sequence[int], *, dynamics: str = "sparse", t_steps: int = 100, tau_eff: float = 20.0,
                    theta: float = 0.2, rng: Any = None, **options: Any) -> SNN:
    """An :class:`SNN` from config values: layer ``sizes`` (inputs, hidden..., classes), the
    ``dynamics`` of :class:`~neuroemu.rules.sparse.SparseSNN` (``sparse``: for the dense and the
    sparse backward) or :class:`~neuroemu.rules.surrogate.SpikingMLP` (``surrogate``), further
    ``options`` of that network (e.g. ``tau_mem``), its initial weights from ``rng``; images are
    latency-coded (:func:`neuroemu.data.encoders.latency_encode` with ``t_steps``, ``tau_eff``,
    ``theta``)."""
    import functools

    from ..data.encoders import latency_encode
    from ..rules.sparse import SparseSNN
    from ..rules.surrogate import SpikingMLP

    kinds = {"sparse": SparseSNN, "surrogate": SpikingMLP}
    if dynamics not in kinds:
        raise ValueError(f"dynamics: expected one of {', '.join(kinds)}, got {dynamics!r}")
    net = kinds[dynamics](tuple(sizes), rng=rng, **options)
    return SNN(net, encode=functools.partial(latency_encode, t_steps=t_steps, tau_eff=tau_eff, theta=theta))
