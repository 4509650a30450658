"""Network models: how a chip's layers are wired and which units sit behind them.

A model says which weight layers it needs (:meth:`Model.layers`), draws their initial weights
(:meth:`Model.init_weights`) and runs the network on a chip (:meth:`Model.forward`, which reads
every layer through ``chip[name].forward``: the hardware's periphery, read noise and drift). Its
:attr:`Model.traits` tell rules what it is, so that a rule can refuse a network it has no meaning
for (e-prop needs a recurrent spiking network):

``feedforward`` / ``recurrent``
    the wiring;
``rate`` / ``spiking``
    the units;
``differentiable``
    the model gives the derivative of its units (``act_grad``) and ``forward`` returns
    (logits, activations), so :class:`~neuroemu.rules.backprop.Backprop` applies;
``backward``
    the model backpropagates through its own layers (``backward``; the CNN and MLPs of
    :mod:`.convnet`, for :class:`~neuroemu.rules.sdt.TargetBackprop`);
``energy``
    an energy-based network whose forward is a relaxation (:mod:`.eqprop`, for equilibrium
    propagation);
``single_layer``, ``conv``
    one weight layer (the Hebbian layers of :mod:`.hebbian`), convolutional;
``sequence``
    ``forward`` takes (T, batch, n_in) sequences.

:mod:`.mlp` is the rate MLP; :mod:`.rsnn` the recurrent spiking network of e-prop; :mod:`.snn` the
feed-forward spiking network (units on ideal or analog neuron substrates); :mod:`.convnet` the
MLP/CNN of the self-defined-targets study; :mod:`.eqprop` the layered network of equilibrium
propagation; :mod:`.hebbian` the Hebbian layers. Their dynamics' kernels stay with their rules
(:mod:`neuroemu.rules`). A model of one's own is any class with these methods, named in a config
(:mod:`neuroemu.plugins`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..chip import Chip, Hardware, LayerSpec, build_chip


class Model:
    """Base of the network models (see the module docstring)."""

    #: What the network is, for rules to check (see the module docstring).
    traits: frozenset[str] = frozenset()

    def layers(self) -> list[LayerSpec]:
        raise NotImplementedError

    def init_weights(self, spec: LayerSpec, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def forward(self, chip: Chip, x: Any, **options: Any) -> Any:
        raise NotImplementedError

    def build(self, hardware: Hardware | None = None, rng: Any = None, **kwargs: Any) -> Chip:
        """This network on ``hardware`` (see :func:`neuroemu.chip.build_chip`)."""
        return build_chip(self, hardware, rng, **kwargs)
