"""Analog matrix multiplication of a BrainScaleS-2-like chip ("hagen" mode), as a function.

BrainScaleS-2 can run its synapse array as an analog multiply-accumulate unit: 5-bit unsigned
inputs drive the rows, signed 6-bit weights (two synapse rows per weight) sit in the array, and an
8-bit ADC reads each column. The chip's software ships a mock of this mode (hxtorch
``mac_mock_forward``, defaults in ``include/hxtorch/perceptron/constants.h``: gain 0.002,
noise 2 LSB), which this module implements: per 128-row block

    y_b = clamp(floor(gain · num_sends · Σ_{i in b} x_i w_ij + N(0, noise_std²)), −128, 127),

summed over blocks and clamped again (Weis et al. 2020, arXiv:2006.13177, for the mode; the
numbers are the mock's defaults, not measurements of a particular chip). Inputs are scaled by
31/max(x) and weights by 63/max|w| before the call, as hxtorch does.

``analog_matmul(x, w)`` wraps the integer MAC for float data: quantise, run, and scale back.
:class:`MACTile` puts the mode where a crossbar tile goes (``make_tile`` builds it for an
``analog_chip`` card), so networks and update schemes run on it unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._kernels import analog as _K
from .cards import Card, load_card
from ..rng import as_rng, draw_seed
from .crossbar import Periphery, Tile, nonzero_and_kind
from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class MACParams:
    """Parameters of the analog MAC (defaults: the hxtorch mock of BrainScaleS-2)."""

    gain: float = 0.002  # output LSB per unit of Σ x·w (integer units)
    noise_std: float = 2.0  # Gaussian read noise per block and output, in output LSB
    input_bits: int = 5  # unsigned inputs 0 .. 2^bits − 1
    weight_bits: int = 6  # signed weights −(2^bits − 1) .. 2^bits − 1
    block: int = 128  # rows read together through one ADC conversion
    out_bits: int = 8  # signed ADC output −2^(bits−1) .. 2^(bits−1) − 1

    def __post_init__(self):
        if not self.gain > 0 or not self.noise_std >= 0:
            raise ValueError(f"MACParams: expected gain > 0 and noise_std >= 0, got {self.gain}, {self.noise_std}")
        for name in ("input_bits", "weight_bits", "block", "out_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"MACParams.{name}: expected a positive integer, got {v!r}")

    @classmethod
    def from_card(cls, card: Card) -> "MACParams":
        """The MAC mode of an ``analog_chip`` card."""
        p = card.params
        return cls(float(p["mac_gain"]), float(p["mac_noise"]), int(p["mac_input_bits"]), int(p["weight_bits"]),
                   int(p["mac_block"]), int(p["mac_out_bits"]))

    @property
    def x_max(self) -> int:
        return 2**self.input_bits - 1

    @property
    def w_max(self) -> int:
        return 2**self.weight_bits - 1

    @property
    def out_range(self) -> tuple[int, int]:
        return -(2 ** (self.out_bits - 1)), 2 ** (self.out_bits - 1) - 1


def quantize_inputs(x: np.ndarray, params: MACParams = MACParams()) -> tuple[np.ndarray, float]:
    """Unsigned integer inputs round(x·x_max/max x) and the scale back to x's units."""
    x = np.asarray(x, dtype=np.float64)
    if np.any(x < 0):
        raise ValueError("quantize_inputs: the analog MAC takes non-negative inputs (e.g. ReLU activations)")
    top = float(x.max()) if x.size else 0.0
    scale = top / params.x_max if top > 0 else 1.0
    return np.rint(x / scale), scale


def quantize_weights(w: np.ndarray, params: MACParams = MACParams()) -> tuple[np.ndarray, float]:
    """Signed integer weights round(w·w_max/max|w|) and the scale back to w's units."""
    w = np.asarray(w, dtype=np.float64)
    top = float(np.abs(w).max()) if w.size else 0.0
    scale = top / params.w_max if top > 0 else 1.0
    return np.rint(w / scale), scale


def hagen_mac(x_int: np.ndarray, w_int: np.ndarray, params: MACParams = MACParams(), *, num_sends: int = 1,
              rng: Any = None) -> np.ndarray:
    """Integer MAC: x_int (batch, n_in) in [0, x_max], w_int (n_out, n_in) in [−w_max, w_max].

    ``num_sends`` repeats each input event (hxtorch's way of raising the signal); returns the
    ADC outputs (batch, n_out) as float64 integers in the output range.
    """
    x = np.asarray(x_int, dtype=np.float64)
    w = np.asarray(w_int, dtype=np.float64)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"hagen_mac: expected x (batch, n_in) and w (n_out, n_in), got {x.shape} and {w.shape}")
    if np.any(x != np.rint(x)) or np.any(x < 0) or np.any(x > params.x_max):
        raise ValueError(f"hagen_mac: inputs must be integers in [0, {params.x_max}]")
    if np.any(w != np.rint(w)) or np.any(np.abs(w) > params.w_max):
        raise ValueError(f"hagen_mac: weights must be integers in [-{params.w_max}, {params.w_max}]")
    if isinstance(num_sends, bool) or not isinstance(num_sends, int) or num_sends < 1:
        raise ValueError(f"hagen_mac: num_sends: expected an integer >= 1, got {num_sends!r}")
    lo, hi = params.out_range
    out = np.empty((x.shape[0], w.shape[0]))
    return _K.hagen_mac(np.ascontiguousarray(x), np.ascontiguousarray(w.T), params.gain * num_sends,
                        float(params.noise_std), params.block, float(lo), float(hi), draw_seed(as_rng(rng)), out)


def analog_matmul(x: np.ndarray, w: np.ndarray, params: MACParams = MACParams(), *, num_sends: int = 1,
                  rng: Any = None) -> np.ndarray:
    """x @ w.T through the analog MAC: quantise x (≥ 0) and w, run :func:`hagen_mac`, scale back."""
    xq, sx = quantize_inputs(x, params)
    wq, sw = quantize_weights(w, params)
    y = hagen_mac(xq, wq, params, num_sends=num_sends, rng=rng)
    return y * (sx * sw / (params.gain * num_sends))


class MACTile(Tile):
    """The synapse array of an analog chip (``analog_chip`` card) as a tile.

    Weights are signed integers ±(2^weight_bits − 1) (a row pair per weight) standing for
    ±``w_max``; writes round to the nearest integer (train with the ``digital`` scheme, which
    accumulates what a write cannot take). ``forward`` of float inputs (≥ 0) runs the analog MAC
    mode: each sample is scaled to the full 5-bit input range by its own maximum (a digital
    pre-scale), sent ``num_sends`` times, read per 128-row block with the mode's gain, noise and
    8-bit saturation, and scaled back to weight × input units. ``forward`` of bool spikes is the
    spiking mode: the exact sum of the active rows' weights (the neurons integrate it). ``backward``
    is the exact transposed product with the stored weights, computed off-chip as in hxtorch.
    """

    def __init__(self, out_size: int, in_size: int, card: Card | str = "brainscales2", *, w_max: float = 1.0,
                 scale: float | None = None, num_sends: int = 1, rng: Any = None):
        chip = card if isinstance(card, Card) else load_card(card)
        if chip.kind != "analog_chip":
            raise ConfigError(f"MACTile: expected an analog_chip card, got {chip.name} (kind '{chip.kind}')")
        if isinstance(num_sends, bool) or not isinstance(num_sends, int) or num_sends < 1:
            raise ConfigError(f"MACTile: num_sends: expected an integer >= 1, got {num_sends!r}")
        super().__init__(out_size, in_size, chip.synapse_card(), n_devices=1, w_max=w_max, scale=scale,
                         periphery=Periphery.ideal(), rng=rng)
        self.chip = chip
        self.mac = MACParams.from_card(chip)
        self.num_sends = num_sends

    def int_weights(self) -> np.ndarray:
        """The stored integer weights (out, in)."""
        return np.rint(self.weights() * self.scale)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype == np.bool_:
            return super().forward(x)
        squeeze = x.ndim == 1
        x2 = x.reshape(1, -1) if squeeze else x
        if x2.ndim != 2 or x2.shape[1] != self.shape[1]:
            raise ValueError(f"tile read: expected input of shape (batch, {self.shape[1]}), got {x.shape}")
        if np.any(x2 < 0):
            raise ValueError("MACTile.forward: the analog MAC takes non-negative inputs (e.g. ReLU activations)")
        n, (nnz, _) = x2.shape[0], nonzero_and_kind(x2)
        self.count_reads(n, nnz, False, *self.shape[::-1])  # products and device reads (ideal periphery)
        ops = self.ops  # the MAC's own converters: 5-bit inputs, one 8-bit conversion per 128-row block
        ops["dac"] += n * self.shape[1] * self.num_sends
        ops["adc"] += n * self.shape[0] * -(-self.shape[1] // self.mac.block)
        ops["device_reads"] += nnz * self.shape[0]  # the second row of each weight's pair
        top = x2.max(axis=1, keepdims=True).astype(np.float64)
        top[top == 0] = 1.0
        xq = np.rint(x2 * (self.mac.x_max / top))
        w = np.ascontiguousarray(self.int_weights().T)
        lo, hi = self.mac.out_range
        out = np.empty((x2.shape[0], self.shape[0]))
        gain = self.mac.gain * self.num_sends
        _K.hagen_mac(np.ascontiguousarray(xq), w, gain, float(self.mac.noise_std), self.mac.block, float(lo), float(hi),
                     draw_seed(self.rng), out)
        y = (out * (top / (self.mac.x_max * self.scale * gain))).astype(np.float32)
        return y[0] if squeeze else y

    def compensate_drift(self) -> float:
        """The synapses are digital (SRAM) and do not drift: nothing to compensate."""
        return 1.0

    def __repr__(self) -> str:
        return f"MACTile({self.shape[0]}x{self.shape[1]}, card={self.chip.name}, w_max={self.w_range[1]:g})"
