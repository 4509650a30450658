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
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._kernels import analog as _K
from .crossbar import as_rng, draw_seed


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
