"""A Boltzmann machine sampled by LIF neurons on the chip (Petrovici et al. 2016; Kungl et al. 2019).

:class:`SamplingBM` holds one layer ``W`` (n × n, post × pre) on the chip's tiles and its digital
bias b: the Boltzmann machine's parameters, in its own units. Sampling maps them onto the neurons
(:mod:`neuroemu.hardware.sampling`): each bias to a leak potential E_l = v_p05 + α·b through the
neurons' parameter cells, each weight to a synaptic weight by the post-synaptic-potential area
over τ_ref — with the activation (v_p05, α) the model was built with: the nominal neuron's
(``mapping: theory``) or each neuron's own, measured on the chip (``mapping: calibrated``). The
weights are read from the tile as it holds them (its resolution, programming noise and drift; the
two directions of a connection are two synapses), only where ``mask`` allows a connection.

:func:`sampling_network` builds one from config values: the neurons (``coba``, ``cuba`` or the
``analog`` neurons of a chip card, parameter-calibrated or not), the background (Poisson or a noise
network of further neurons), the activation calibration and the sampling times.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..chip import Chip, LayerSpec
from ..errors import ConfigError
from ..hardware.cards import Card
from ..hardware.sampling import (Activation, NoiseNetwork, Poisson, Sampler, SampleRun, SamplingNeurons,
                                 calibrate_activation, synaptic_weights)
from ..rng import as_rng
from . import Model


@dataclasses.dataclass
class SamplingBM(Model):
    """``n`` units sampled by ``sampler`` with the ``activation`` of the mapping (module docstring).
    ``rate``: the background events per ms and channel that the weight mapping assumes;
    ``duration_ms``/``burn_in_ms``/``every_ms``: default sampling times; ``noise``: the generator of
    the background and initial membranes; ``w0``: initial weights (default zeros)."""

    sampler: Sampler
    activation: Activation
    rate: float
    mask: np.ndarray | None = None
    duration_ms: float = 1000.0
    burn_in_ms: float = 50.0
    every_ms: float = 1.0
    noise: np.random.Generator | None = None
    w0: np.ndarray | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    traits = frozenset({"recurrent", "spiking", "sampling"})

    @property
    def n(self) -> int:
        return self.sampler.n

    def layers(self) -> list[LayerSpec]:
        return [LayerSpec("W", self.n, self.n, bias=np.float64)]

    def init_weights(self, spec: LayerSpec, rng: np.random.Generator) -> np.ndarray:
        return np.zeros((self.n, self.n)) if self.w0 is None else np.array(self.w0, np.float64)

    def parameters(self, chip: Chip) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) as the chip holds them: the tile's weights where the mask allows a synapse, zero
        diagonal; the digital bias."""
        layer = chip["W"]
        w = np.array(layer.weights(), np.float64)
        if self.mask is not None:
            w = np.where(self.mask, w, 0.0)
        np.fill_diagonal(w, 0.0)
        return w, np.array(layer.bias, np.float64)

    def sample(self, chip: Chip, clamp=None, *, duration_ms: float | None = None, chains: int | None = None,
               burn_in_ms: float | None = None) -> SampleRun:
        """Sample the chip's machine: ``clamp`` None (free) or (n,)/(chains, n) of −1 free, 0 off, 1 on."""
        w, b = self.parameters(chip)
        w_syn = synaptic_weights(w, self.activation, self.sampler.neurons, self.rate)
        if self.noise is None:
            self.noise = np.random.default_rng(0)
        burn = self.burn_in_ms if burn_in_ms is None else burn_in_ms
        run = self.sampler.sample(w_syn, self.activation.leak(b), duration_ms or self.duration_ms, clamp=clamp,
                                  chains=chains, burn_in_ms=burn, every_ms=self.every_ms, rng=self.noise)
        # the synapses between the samplers act inside the kernel: each spike reaches the other n - 1
        steps = round((run.duration_ms + burn) / self.sampler.neurons.dt)
        chip.add_ops(neuron_updates=steps * run.counts.shape[0] * self.sampler.neurons.n,
                     synaptic_events=int(run.counts.sum()) * (self.n - 1))
        return run

    @property
    def analog_units(self) -> bool:
        """Whether the samplers are an analog chip's neurons (their energy is not costed)."""
        return self.sampler.neurons.kind == "analog"

    def forward(self, chip: Chip, x: Any = None, **options: Any) -> SampleRun:
        """Sample with ``x`` as the clamp (see :meth:`sample`)."""
        return self.sample(chip, x, **options)

    def __repr__(self) -> str:
        return f"SamplingBM(n={self.n}, {self.sampler.neurons!r}, {self.info.get('mapping', '?')} mapping)"


BACKGROUNDS = ("poisson", "network")


def _quiet(card):
    """The card without fixed-pattern mismatch: the neuron its chip is calibrated to."""
    from ..hardware.substrate import _MISMATCH

    return card.with_params(**{k: 0.0 for k in (*_MISMATCH.values(), "volt_slope_mismatch")})


def build_neurons(kind: str, total: int, *, card: Any = "brainscales2", calibrated: bool = False, seed: int = 0,
                  dt: float = 0.1, params: dict[str, float] | None = None, nominal: bool = False) -> SamplingNeurons:
    """``total`` neurons of a kind (``coba``, ``cuba``, ``analog``); an analog chip (a card or its
    name) drawn from ``seed`` (calibrated when asked), or with ``nominal`` the chip's neuron without
    mismatch."""
    if kind == "analog":
        from ..hardware.cards import load_card

        card = card if isinstance(card, Card) else load_card(card)
        chip_card = _quiet(card) if nominal else card
        return SamplingNeurons.analog(total, chip_card, rng=seed, calibrate=calibrated and not nominal,
                                      calibration_rng=seed + 1, dt=dt, **(params or {}))
    if calibrated:
        raise ConfigError(f"neurons {kind!r}: only analog neurons have parameter cells to calibrate")
    return SamplingNeurons.ideal(total, kind, dt=dt, **(params or {}))


def sampling_network(n: int, *, neurons: str = "coba", card: Any = "brainscales2", calibrated: bool = False,
                     mapping: str = "theory", background: str | dict[str, Any] = "poisson", seed: int = 0,
                     dt: float = 0.1, mask=None, duration_ms: float = 1000.0, burn_in_ms: float = 50.0,
                     every_ms: float = 1.0, calibration_ms: float = 10000.0, neuron_params: dict | None = None,
                     nominal: bool = False, renewing: bool = True, rng: Any = None) -> SamplingBM:
    """A :class:`SamplingBM` of ``n`` units from config values.

    neurons: ``coba`` | ``cuba`` | ``analog`` (the neurons of the chip ``card``, a card or its name,
    mismatch drawn from ``seed``; ``calibrated``: its parameter cells calibrated first). mapping:
    ``theory`` (the activation of the nominal neuron: the ideal neuron, or the chip's neuron
    without mismatch) or ``calibrated`` (each neuron's activation measured on this chip). background: ``poisson`` or
    ``network`` / a mapping of :class:`NoiseNetwork` fields. ``nominal``: the chip's neuron without
    mismatch in place of the chip (its ideal twin). ``renewing``: saturating synapses
    (:class:`~neuroemu.hardware.sampling.Sampler`). ``rng``: the sampling noise."""
    if mapping not in ("theory", "calibrated"):
        raise ConfigError(f"mapping: expected 'theory' or 'calibrated', got {mapping!r}")
    if isinstance(background, str):
        if background not in BACKGROUNDS:
            raise ConfigError(f"background: expected one of {', '.join(BACKGROUNDS)} or a mapping of noise-network "
                              f"fields, got {background!r}")
        bg = Poisson() if background == "poisson" else NoiseNetwork(seed=seed)
    else:
        fields = {f.name for f in dataclasses.fields(NoiseNetwork)}
        bad = set(background) - fields
        if bad:
            raise ConfigError(f"background.{sorted(bad)[0]}: unknown noise-network field; expected some of "
                              f"{', '.join(sorted(fields))}")
        bg = NoiseNetwork(**{"seed": seed, **background})
    extra = bg.size if isinstance(bg, NoiseNetwork) else 0
    cal_rng = np.random.default_rng([seed, 7])
    chip_neurons = build_neurons(neurons, n + extra, card=card, calibrated=calibrated, seed=seed, dt=dt,
                                 params=neuron_params, nominal=nominal)
    sampler = Sampler(chip_neurons, n, bg, renewing=renewing)
    if mapping == "calibrated":
        activation, _ = calibrate_activation(sampler, duration_ms=calibration_ms, rng=cal_rng)
    else:  # the nominal neuron's activation, measured once on an ideal twin with the same background
        twin = Sampler(build_neurons(neurons, n + extra, card=card, seed=seed, dt=dt, params=neuron_params,
                                     nominal=True), n, bg, renewing=renewing)
        activation = calibrate_activation(twin, duration_ms=calibration_ms, rng=cal_rng)[0].mean(n)
    noise = sampler.noise_activity(rng=np.random.default_rng([seed, 8]))
    # background events per ms and channel, in events of the nominal background weight (for g_tot)
    rate = noise["rate_hz"] * 1e-3 * (bg.in_degree * bg.w_in if isinstance(bg, NoiseNetwork) else 1)
    info = {"neurons": neurons, "calibrated": calibrated, "mapping": mapping, "background": bg.kind, "nominal": nominal,
            "renewing": renewing,
            # samplers whose reset lies above their threshold fire again at once after every τ_ref
            "reset_above_threshold": int(np.sum(chip_neurons.v_reset[:n] >= chip_neurons.v_th[:n])),
            "noise_rate_hz": noise["rate_hz"], "noise_cv": noise["cv"]}
    return SamplingBM(sampler, activation, rate, mask=None if mask is None else np.asarray(mask, bool),
                      duration_ms=duration_ms, burn_in_ms=burn_in_ms, every_ms=every_ms, noise=as_rng(rng), info=info)
