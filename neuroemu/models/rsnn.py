"""A recurrent network of LIF/ALIF neurons with a leaky linear read-out on the chip: the e-prop
network (Bellec et al. 2020; dynamics and units in :mod:`neuroemu.rules.eprop`)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..chip import Chip, Hardware, LayerSpec, build_chip
from ..rng import as_rng, draw_seed
from ..rules.eprop import EpropConfig, Trace, initial_weight, readout, simulate
from . import Model


class RSNN(Model):
    """``n_in`` inputs → ``n_rec`` recurrent neurons (the last ``cfg.n_alif`` ALIF) → ``n_out``
    leaky read-out units; layers ``input`` (n_rec × n_in), ``recurrent`` (n_rec × n_rec, the
    diagonal never used: no autapses) and ``output`` (n_out × n_rec, with a digital float64 bias when
    ``readout_bias``). ``cfg``: an :class:`~neuroemu.rules.eprop.EpropConfig` (or a mapping of its
    fields; default: its defaults) whose dynamics fields
    (dt, time constants, threshold, β, γ, refractory steps, n_alif) the network runs with (its
    learning fields are the rule's).

    Initial weights (:func:`~neuroemu.rules.eprop.initial_weight`): N(0, 1)·gain/√fan_in with
    ``in_gain``, ``rec_gain``, ``out_gain``, clipped to the tile's range when programmed.

    ``forward(chip, x)`` on x (T, B, n_in) spikes returns ``(trace, y)`` (the
    :class:`~neuroemu.rules.eprop.Trace` and the read-out (T, B, n_out)): the input currents are one
    read of the input tile per time step (its periphery and read noise), the recurrent currents are
    computed inside the neuron loop from the recurrent tile's weights with its exact output-referred
    per-device read noise (when its periphery reads with noise), keyed by a seed drawn per pass from
    ``noise_rng`` (default: the recurrent tile's generator), and the read-out currents are one read
    of the output tile per step."""

    traits = frozenset({"recurrent", "spiking", "sequence"})

    def __init__(self, n_in: int, n_rec: int, n_out: int, cfg: EpropConfig | Mapping[str, Any] | None = None, *, in_gain: float = 1.0,
                 rec_gain: float = 1.0, out_gain: float = 1.0, readout_bias: bool = False, noise_rng: Any = None):
        for name, val in (("n_in", n_in), ("n_rec", n_rec), ("n_out", n_out)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"RSNN.{name}: expected an integer >= 1, got {val!r}")
        if cfg is None or isinstance(cfg, Mapping):  # a config's mapping of EpropConfig fields
            cfg = EpropConfig(**(cfg or {}))
        if not isinstance(cfg, EpropConfig):
            raise ValueError(f"RSNN.cfg: expected an EpropConfig or a mapping of its fields, got {type(cfg).__name__}")
        self.cfg = cfg
        if self.cfg.n_alif > n_rec:
            raise ValueError(f"RSNN: cfg.n_alif: expected at most n_rec = {n_rec} ALIF neurons, got {self.cfg.n_alif}")
        self.n_in, self.n_rec, self.n_out = int(n_in), int(n_rec), int(n_out)
        self.gains = {"in_gain": in_gain, "rec_gain": rec_gain, "out_gain": out_gain}
        self.readout_bias = bool(readout_bias)
        self.noise_rng = None if noise_rng is None else as_rng(noise_rng)

    def layers(self) -> list[LayerSpec]:
        return [LayerSpec("input", self.n_rec, self.n_in, clip=True),
                LayerSpec("recurrent", self.n_rec, self.n_rec, clip=True),
                LayerSpec("output", self.n_out, self.n_rec, bias=np.float64 if self.readout_bias else None, clip=True)]

    def initial_weights(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Every layer's initial weights, drawn from ``rng`` in the layers' order."""
        return {spec.name: self.init_weights(spec, rng) for spec in self.layers()}

    def init_weights(self, spec: LayerSpec, rng: np.random.Generator) -> np.ndarray:
        gain = self.gains[{"input": "in_gain", "recurrent": "rec_gain", "output": "out_gain"}[spec.name]]
        return initial_weight(spec.n_out, spec.n_in, gain, rng, recurrent=spec.name == "recurrent")

    def build(self, hardware: Hardware | None = None, rng: Any = None, *, scheme_rng: Any = None,
              weights: Mapping[str, np.ndarray] | None = None) -> Chip:
        """This network on ``hardware``: all the initial weights (``weights``, or drawn from ``rng``
        first), then per layer its tile (devices from ``rng``) and scheme (``scheme_rng``, default
        ``rng``)."""
        rng = as_rng(rng)
        if weights is None:
            weights = self.initial_weights(rng)
        return build_chip(self, hardware, rng, scheme_rng=scheme_rng, weights=weights)

    def forward(self, chip: Chip, x: np.ndarray) -> tuple[Trace, np.ndarray]:
        t_steps, batch, n_in = x.shape
        i_in = chip["input"].forward(x.reshape(-1, n_in) > 0).reshape(t_steps, batch, -1)
        rec = chip["recurrent"].tile
        if rec is None:  # an exact float chip: the layer's own array, no read noise
            w_rec, var_rec = chip["recurrent"].weights(), None
            seed = 0 if self.noise_rng is None else draw_seed(self.noise_rng)
        else:
            w_rec, var_rec = rec.weights_and_variance()
            var_rec = var_rec if rec.periphery.read_noise else None
            seed = draw_seed(rec.rng if self.noise_rng is None else self.noise_rng)
        trace = simulate(self.cfg, i_in, w_rec, var_rec=var_rec, seed=seed)
        out = chip["output"].forward(trace.z.reshape(t_steps * batch, -1) > 0).reshape(t_steps, batch, -1)
        # the recurrent currents are summed inside the neuron kernel: each spike reaches n_rec neurons
        chip.add_ops(neuron_updates=t_steps * batch * (self.n_rec + self.n_out),
                     synaptic_events=int(trace.z.sum()) * self.n_rec)
        return trace, readout(self.cfg, out, b_out=chip["output"].bias)

    def __repr__(self) -> str:
        return f"RSNN({self.n_in}-{self.n_rec}({self.cfg.n_alif} ALIF)-{self.n_out})"
