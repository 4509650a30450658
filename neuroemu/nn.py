"""Plain-numpy building blocks for training conventional (non-spiking) networks by backprop.

Conventions
-----------
* Images are ``(N, C, H, W)`` arrays (batch, channels, height, width); feature vectors are ``(N, n)``.
* Convolution is cross-correlation (no kernel flip), as in deep-learning libraries. With kernel size k,
  stride s and zero padding p, an output side is ``out_size(h, k, s, p) = (h + 2p − k) // s + 1`` (floor:
  trailing rows/columns that do not fill a whole window are ignored). Pooling uses the same rule with p = 0.
* im2col layout: :func:`patches` turns (N, C, H, W) into a matrix with one row per output position, rows
  ordered (n, i, j) with n slowest and columns ordered (c, ki, kj): a row is
  ``x[n, :, i*s:i*s+k, j*s:j*s+k].ravel()`` of the zero-padded input. :class:`Conv2d` stores its filters in
  the same layout, ``w`` of shape (c_out, c_in·k·k), so that its output is ``patches(x) @ w.T + b`` and each
  filter is a plain weight vector (what a Hebbian rule updates). :func:`fold_patches` is the adjoint (col2im).
* Layer protocol: ``forward(x, cache=True) -> y``; ``cache=False`` keeps nothing for backward (inference)
  and drops what an earlier call kept. ``backward(gy) -> gx`` takes gy = ∂L/∂y of the last cached forward,
  returns gx = ∂L/∂x and sets ``grads``, a list of arrays aligned with ``params`` (the layer's parameter
  arrays, which an optimiser such as :class:`neuroemu.rules.surrogate.Adam` updates in place). Layers
  without parameters have empty lists. :class:`Sequential` chains layers following this protocol.
* dtypes: float32 and float64 are both supported. Outputs keep the floating dtype of the input (a float64
  layer given float32 input computes in float32, and vice versa); other inputs (integers, bool, float16) are
  converted to the layer's ``dtype`` (to float64 for layers without one, except :class:`MaxPool2d`, which
  keeps any dtype). Returned input gradients have the dtype the forward computed in; the arrays in
  ``grads`` have the dtype of their parameter.
* The weight layers (:class:`Linear`, :class:`Conv2d`) set the subnormal entries of the gy they are given
  to zero (in a copy) before their matrix products: their share of a gradient lies below any
  weight's rounding, and on x86 each costs a slow path (a softmax that is sure of its class gives them).
* Random initialisation takes ``rng``: a numpy Generator (used as is), an int seed or None (fresh entropy).
  ``init="he"`` (default): weights He/Kaiming-uniform, U(−√(6/fan_in), √(6/fan_in)) with fan_in the number of
  inputs of one output unit, biases zero; ``init="fan_in"``: weights and biases U(±1/√fan_in) (PyTorch's
  default).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from neuroemu.rules.surrogate import Adam
from ._kernels import optim as _optim
from ._kernels import pool as _pool
from .rng import as_rng

__all__ = [
    "AvgPool2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "HardSigmoid",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "SGD",
    "Sequential",
    "accuracy",
    "fit_softmax_regression",
    "fold_patches",
    "linear_probe",
    "mse_loss",
    "out_size",
    "patches",
    "softmax_cross_entropy",
    "standardise",
    "train_classifier",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------- helpers
def _int(name: str, val: Any, minimum: int) -> int:
    if isinstance(val, (bool, np.bool_)) or not isinstance(val, numbers.Integral) or val < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {val!r}")
    return int(val)


def _float_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _FLOATS:
        raise ValueError(f"dtype: expected float32 or float64, got {dtype!r}")
    return dt


def _as_float(x: Any, dtype: np.dtype) -> np.ndarray:
    """x as an array, keeping float32/float64 and converting anything else to dtype."""
    x = np.asarray(x)
    return x if x.dtype in _FLOATS else x.astype(dtype)


def _check_images(x: np.ndarray, *, k: int = 1, pad: int = 0, channels: int | None = None, name: str = "x"):
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a 4-d array (N, C, H, W), got shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels (shape (N, {channels}, H, W)), got shape {x.shape}")
    if min(x.shape[2], x.shape[3]) + 2 * pad < k:
        raise ValueError(f"{name}: expected height and width >= k - 2*pad = {k - 2 * pad}, got shape {x.shape}")


def _check_labels(labels: Any, n: int, n_classes: int | None = None) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels: expected shape ({n},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels: expected an integer array, got dtype {y.dtype}")
    if n_classes is not None and y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels: expected class indices in [0, {n_classes - 1}], got values in "
                         f"[{y.min()}, {y.max()}]")
    return y


def _pad(x: np.ndarray, pad: int) -> np.ndarray:
    if pad == 0:
        return x
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
    out[:, :, pad:pad + h, pad:pad + w] = x
    return out


def _window(ki: int, kj: int, ho: int, wo: int, stride: int) -> tuple:
    """Index of the input elements seen at kernel offset (ki, kj) by all ho × wo output positions."""
    return (slice(None), slice(None), slice(ki, ki + (ho - 1) * stride + 1, stride),
            slice(kj, kj + (wo - 1) * stride + 1, stride))


def _fold(win: np.ndarray, shape: tuple, stride: int) -> np.ndarray:
    """Sum win (N, C, k, k, Ho, Wo) into an array of shape (N, C, H, W), one strided add per offset."""
    k, ho, wo = win.shape[2], win.shape[4], win.shape[5]
    out = np.zeros(shape, dtype=win.dtype)
    for ki in range(k):
        for kj in range(k):
            out[_window(ki, kj, ho, wo, stride)] += win[:, :, ki, kj]
    return out


def _for_kernel(x: np.ndarray) -> np.ndarray:
    """x in a dtype the numba kernels take: native byte order, float16 as float32 (exact)."""
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _no_cache(layer: Any) -> RuntimeError:
    return RuntimeError(f"{type(layer).__name__}.backward: call forward(x) with cache=True first")


def _check_grad(gy: Any, shape: tuple, dtype: np.dtype) -> np.ndarray:
    gy = np.asarray(gy)
    if gy.shape != tuple(shape):
        raise ValueError(f"gy: expected the forward output's shape {tuple(shape)}, got {gy.shape}")
    return gy.astype(dtype, copy=False)


def _normal(a: np.ndarray) -> np.ndarray:
    """a with its subnormal entries set to zero: a itself where it has none, else a flushed copy."""
    a = np.ascontiguousarray(a)
    if _optim.count_subnormal(a.reshape(-1)) == 0:
        return a
    a = a.copy()
    _optim.flush_subnormal(a.reshape(-1))
    return a


INITS = ("he", "fan_in")


def _init(rng: Any, shape: tuple, fan_in: int, dtype: np.dtype, init: str, bias: bool):
    """Weights and bias: ``he`` U(±√(6/fan_in)), bias 0; ``fan_in`` U(±1/√fan_in) for both (PyTorch's
    default, which keeps units near their linear range at the start)."""
    g = as_rng(rng)
    if init == "he":
        bound = math.sqrt(6.0 / fan_in)
        return g.uniform(-bound, bound, shape).astype(dtype), (np.zeros(shape[0], dtype) if bias else None)
    if init == "fan_in":
        bound = 1.0 / math.sqrt(fan_in)
        w = g.uniform(-bound, bound, shape).astype(dtype)
        return w, (g.uniform(-bound, bound, shape[0]).astype(dtype) if bias else None)
    raise ValueError(f"init: expected one of {', '.join(INITS)}, got {init!r}")


# ----------------------------------------------------------------------------- im2col
def out_size(h: int, k: int, stride: int = 1, pad: int = 0) -> int:
    """Output side (h + 2·pad − k) // stride + 1 of a k-window sliding over a side h."""
    h, k = _int("h", h, 1), _int("k", k, 1)
    stride, pad = _int("stride", stride, 1), _int("pad", pad, 0)
    if h + 2 * pad < k:
        raise ValueError(f"k: expected a kernel size <= the padded input size h + 2*pad = {h + 2 * pad}, got {k}")
    return (h + 2 * pad - k) // stride + 1


def patches(x: np.ndarray, k: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """im2col: the k × k patches of x (N, C, H, W) as a C-contiguous (N·Ho·Wo, C·k·k) array of x's dtype.

    Rows are ordered (n, i, j), n slowest; row (n, i, j) is ``xp[n, :, i*s:i*s+k, j*s:j*s+k].ravel()``
    with xp the input zero-padded by ``pad`` on each side of H and W, so columns are ordered (c, ki, kj).
    """
    x = np.asarray(x)
    _check_images(x)
    n, c, h, w = x.shape
    ho, wo = out_size(h, k, stride, pad), out_size(w, k, stride, pad)
    win = sliding_window_view(_pad(x, pad), (k, k), axis=(2, 3))[_window(0, 0, ho, wo, stride)]
    # (N, C, Ho, Wo, k, k) -> (N, Ho, Wo, C, k, k): one copy, then a free reshape
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * ho * wo, c * k * k)


def fold_patches(cols: np.ndarray, x_shape: tuple, k: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """col2im, the adjoint of :func:`patches`: sums every entry of cols (N·Ho·Wo, C·k·k) back onto the
    input element it was copied from, giving an array of shape x_shape = (N, C, H, W) and cols' dtype
    (entries copied from the zero padding are dropped). So <patches(x), cols> = <x, fold_patches(cols)>."""
    cols = np.asarray(cols)
    x_shape = tuple(x_shape)
    if len(x_shape) != 4 or not all(isinstance(s, numbers.Integral) and s >= 0 for s in x_shape):
        raise ValueError(f"x_shape: expected a shape (N, C, H, W), got {x_shape!r}")
    n, c, h, w = (int(s) for s in x_shape)
    ho, wo = out_size(h, k, stride, pad), out_size(w, k, stride, pad)
    expected = (n * ho * wo, c * k * k)
    if cols.shape != expected:
        raise ValueError(f"cols: expected shape {expected} for x_shape {x_shape}, k={k}, stride={stride}, "
                         f"pad={pad}, got {cols.shape}")
    win = np.ascontiguousarray(cols.reshape(n, ho, wo, c, k, k).transpose(0, 3, 4, 5, 1, 2))
    out = _fold(win, (n, c, h + 2 * pad, w + 2 * pad), stride)
    return np.ascontiguousarray(out[:, :, pad:pad + h, pad:pad + w]) if pad else out


# ----------------------------------------------------------------------------- layers
class _NoParams:
    """A layer without parameters (empty ``params`` and ``grads``)."""

    def __init__(self):
        self.params: list[np.ndarray] = []
        self.grads: list[np.ndarray] = []
        self._cache = None


class _Weighted:
    """A layer with a weight ``w`` and an optional bias ``b``; ``grads`` matches ``params``."""

    def _set_weights(self, rng, shape: tuple, fan_in: int, dtype, init: str, bias: bool) -> None:
        self.dtype = _float_dtype(dtype)
        self.w, self.b = _init(rng, shape, fan_in, self.dtype, init, bias)
        self.grads = [np.zeros_like(p) for p in self.params]
        self._cache = None

    @property
    def params(self) -> list[np.ndarray]:
        return [self.w] if self.b is None else [self.w, self.b]


class Conv2d(_Weighted):
    """2-d convolution (cross-correlation) with zero padding: y = patches(x) @ w.T + b, reshaped to
    (N, c_out, Ho, Wo). ``w`` has shape (c_out, c_in·k·k) in the :func:`patches` column order (c, ki, kj);
    ``b`` has shape (c_out,), or is None with ``bias=False``. Forward is one im2col and one matmul;
    backward is two matmuls and one :func:`fold_patches`."""

    def __init__(self, c_in: int, c_out: int, k: int, *, stride: int = 1, pad: int = 0, rng: Any = None,
                 dtype: Any = np.float32, bias: bool = True, init: str = "he"):
        self.c_in, self.c_out, self.k = _int("c_in", c_in, 1), _int("c_out", c_out, 1), _int("k", k, 1)
        self.stride, self.pad = _int("stride", stride, 1), _int("pad", pad, 0)
        fan_in = self.c_in * self.k * self.k
        self._set_weights(rng, (self.c_out, fan_in), fan_in, dtype, init, bias)

    def __repr__(self) -> str:
        return (f"Conv2d({self.c_in}, {self.c_out}, k={self.k}, stride={self.stride}, pad={self.pad}, "
                f"bias={self.b is not None}, dtype={self.dtype})")

    def output_shape(self, x_shape: tuple) -> tuple:
        """(N, c_out, Ho, Wo) for an input of shape x_shape = (N, c_in, H, W)."""
        n, _, h, w = x_shape
        return (n, self.c_out, out_size(h, self.k, self.stride, self.pad), out_size(w, self.k, self.stride, self.pad))

    def forward(self, x: np.ndarray, *, cache: bool = True) -> np.ndarray:
        x = _as_float(x, self.dtype)
        _check_images(x, k=self.k, pad=self.pad, channels=self.c_in)
        y_shape = self.output_shape(x.shape)
        cols = patches(x, self.k, self.stride, self.pad)
        y = cols @ self.w.astype(x.dtype, copy=False).T
        if self.b is not None:
            y += self.b.astype(x.dtype, copy=False)
        self._cache = (cols, x.shape, y_shape) if cache else None
        n, c, ho, wo = y_shape
        return np.ascontiguousarray(y.reshape(n, ho, wo, c).transpose(0, 3, 1, 2))

    def backward(self, gy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """Parameter gradients into ``grads``; returns the input gradient (None when not input_grad)."""
        if self._cache is None:
            raise _no_cache(self)
        cols, x_shape, y_shape = self._cache
        gy = _normal(_check_grad(gy, y_shape, cols.dtype))
        g = gy.transpose(0, 2, 3, 1).reshape(-1, self.c_out)  # rows (n, i, j), like cols
        grads = [(g.T @ cols).astype(self.w.dtype, copy=False)]
        if self.b is not None:
            grads.append(g.sum(axis=0).astype(self.b.dtype, copy=False))
        self.grads = grads
        if not input_grad:
            return None
        gcols = g @ self.w.astype(cols.dtype, copy=False)
        return fold_patches(gcols, x_shape, self.k, self.stride, self.pad)


class _Pool2d(_NoParams):
    """Shared set-up of the pooling layers: k × k windows, stride (default k), padding ``pad`` on every
    side (at most k // 2, as in PyTorch), floor size."""

    def __init__(self, k: int, stride: int | None = None, pad: int = 0):
        self.k = _int("k", k, 1)
        self.stride = self.k if stride is None else _int("stride", stride, 1)
        self.pad = _int("pad", pad, 0)
        if self.pad > self.k // 2:
            raise ValueError(f"pad: expected at most k // 2 = {self.k // 2}, got {self.pad}")
        super().__init__()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, stride={self.stride}, pad={self.pad})"

    def _sizes(self, x: np.ndarray) -> tuple[int, int]:
        _check_images(x, k=self.k, pad=self.pad)
        return (out_size(x.shape[2], self.k, self.stride, self.pad),
                out_size(x.shape[3], self.k, self.stride, self.pad))

    def _padded(self, x: np.ndarray, fill: float) -> np.ndarray:
        if not self.pad:
            return x
        out = _pad(x, self.pad)
        if fill:
            p, h, w = self.pad, x.shape[2], x.shape[3]
            out[:, :, :p], out[:, :, p + h:], out[:, :, :, :p], out[:, :, :, p + w:] = fill, fill, fill, fill
        return out

    def _padded_zeros(self, x_shape: tuple, dtype) -> np.ndarray:
        """The input gradient's buffer, padded like the input; :meth:`_crop` cuts the padding off."""
        n, c, h, w = x_shape
        return np.zeros((n, c, h + 2 * self.pad, w + 2 * self.pad), dtype)

    def _crop(self, gx: np.ndarray) -> np.ndarray:
        p = self.pad
        return gx[:, :, p:gx.shape[2] - p, p:gx.shape[3] - p] if p else gx

    def _offsets(self):
        return ((o, divmod(o, self.k)) for o in range(self.k * self.k))


class MaxPool2d(_Pool2d):
    """Max over k × k windows (stride defaults to k; padding counts as −∞). Backward routes each output
    gradient to the first maximum of its window (row-major within the window), via the window offset
    kept by forward."""

    def forward(self, x: np.ndarray, *, cache: bool = True) -> np.ndarray:
        x = np.asarray(x)
        ho, wo = self._sizes(x)
        shape = x.shape
        if self.pad:
            x = self._padded(x if x.dtype in _FLOATS else x.astype(np.float64), -np.inf)
        arg = np.empty((x.shape[0], x.shape[1], ho, wo) if cache else (0, 0, 0, 0),
                       np.int16 if self.k * self.k < 2**15 else np.int32)
        y = _pool.max_pool_forward(_for_kernel(x), self.k, self.stride, ho, wo, arg).astype(x.dtype, copy=False)
        arg = arg if cache else None
        dtype = x.dtype if x.dtype in _FLOATS else np.dtype(np.float64)
        self._cache = (arg, shape, dtype) if cache else None
        return y

    def backward(self, gy: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise _no_cache(self)
        arg, x_shape, dtype = self._cache
        gy = _check_grad(gy, arg.shape, dtype)
        gx = self._padded_zeros(x_shape, dtype)
        _pool.max_pool_backward(arg, gy, self.k, self.stride, gx)
        return self._crop(gx)


class AvgPool2d(_Pool2d):
    """Mean over k × k windows (stride defaults to k; padding counts as zeros in the mean, like
    PyTorch's default count_include_pad)."""

    def forward(self, x: np.ndarray, *, cache: bool = True) -> np.ndarray:
        x = _as_float(x, np.dtype(np.float64))
        ho, wo = self._sizes(x)
        shape, x = x.shape, self._padded(x, 0.0)
        y = np.zeros((x.shape[0], x.shape[1], ho, wo), x.dtype)
        for _, (ki, kj) in self._offsets():
            y += x[_window(ki, kj, ho, wo, self.stride)]
        y *= x.dtype.type(1.0 / (self.k * self.k))
        self._cache = (shape, y.shape, x.dtype) if cache else None
        return y

    def backward(self, gy: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise _no_cache(self)
        x_shape, y_shape, dtype = self._cache
        g = _check_grad(gy, y_shape, dtype) * dtype.type(1.0 / (self.k * self.k))
        ho, wo = y_shape[2:]
        gx = self._padded_zeros(x_shape, dtype)
        for _, (ki, kj) in self._offsets():
            gx[_window(ki, kj, ho, wo, self.stride)] += g
        return self._crop(gx)


class Linear(_Weighted):
    """Fully connected layer y = x @ w.T + b with w of shape (n_out, n_in) and b of shape (n_out,) (or None
    with ``bias=False``); x has shape (N, n_in)."""

    def __init__(self, n_in: int, n_out: int, *, rng: Any = None, dtype: Any = np.float32, bias: bool = True,
                 init: str = "he"):
        self.n_in, self.n_out = _int("n_in", n_in, 1), _int("n_out", n_out, 1)
        self._set_weights(rng, (self.n_out, self.n_in), self.n_in, dtype, init, bias)

    def __repr__(self) -> str:
        return f"Linear({self.n_in}, {self.n_out}, bias={self.b is not None}, dtype={self.dtype})"

    def forward(self, x: np.ndarray, *, cache: bool = True) -> np.ndarray:
        x = _as_float(x, self.dtype)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"x: expected shape (N, {self.n_in}), got {x.shape}")
        y = x @ self.w.astype(x.dtype, copy=False).T
        if self.b is not None:
            y += self.b.astype(x.dtype, copy=False)
        self._cache = x if cache else None
        return y

    def backward(self, gy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """Parameter gradients into ``grads``; returns the input gradient (None when not input_grad)."""
        if self._cache is None:
            raise _no_cache(self)
        x = self._cache
        gy = _normal(_check_grad(gy, (x.shape[0], self.n_out), x.dtype))
        grads = [(gy.T @ x).astype(self.w.dtype, copy=False)]
        if self.b is not None:
            grads.append(gy.sum(axis=0).astype(self.b.dtype, copy=False))
        self.grads = grads
        return gy @ self.w.astype(x.dtype, copy=False) if input_grad else None


class ReLU(_NoParams):
    """max(x, 0), elementwise; the gradient at 0 is taken as 0."""

    def __repr__(self) -> str:
        return "ReLU()"

    def forward(self, x: np.ndarray, *, cache: bool = True) -> np.ndarray:
        x = _as_float(x, np.dtype(np.float64))
        self._cache = (x > 0) if cache else None
        return np.maximum(x, x.dtype.type(0))

    def backward(self, gy: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise _no_cache(self)
        mask = self._cache
        gy = np.asarray(gy)
        if gy.shape != mask.shape:
            raise ValueError(f"gy: expected the forward output's shape {mask.shape}, got {gy.shape}")
        return np.where(mask, gy, gy.dtype.type(0))


class HardSigmoid(_NoParams):
    """clip(slope · x + offset, 0, 1), elementwise; the gradient is ``slope`` strictly inside, else 0.
    The default (slope 1/6, offset ½) is PyTorch's ``hardsigmoid``: a unit starts in its linear
    range, so outputs trained toward 0/1 targets do not start (and die) at the clip. slope 1,
    offset 0 gives the ρ = clip(x, 0, 1) of energy-based networks."""

    def __init__(self, slope: float = 1.0 / 6.0, offset: float = 0.5):
        self.slope, self.offset = float(slope), float(offset)
        if not (math.isfinite(self.slope) and self.slope > 0 and math.isfinite(self.offset)):
            raise ValueError(f"slope, offset: expected a finite slope > 0 and a finite offset, got {slope}, {offset}")
        super().__init__()

    def __repr__(self) -> str:
        return f"HardSigmoid(slope={self.slope:g}, offset={self.offset:g})"

    def forward(self, x: np.ndarray, *, cache: bool = True) -> np.ndarray:
        x = _as_float(x, np.dtype(np.float64))
        z = x * x.dtype.type(self.slope) + x.dtype.type(self.offset)
        self._cache = ((z > 0) & (z < 1)) if cache else None
        return np.clip(z, x.dtype.type(0), x.dtype.type(1))

    def backward(self, gy: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise _no_cache(self)
        gy = np.asarray(gy)
        if gy.shape != self._cache.shape:
            raise ValueError(f"gy: expected the forward output's shape {self._cache.shape}, got {gy.shape}")
        return np.where(self._cache, gy * gy.dtype.type(self.slope), gy.dtype.type(0))


class Dropout(_NoParams):
    """Inverted dropout: while training, each element is zeroed with probability ``p`` and the rest
    scaled by 1/(1 − p); at inference (``forward(..., cache=False)``, as :meth:`Sequential.predict`
    calls it) the identity. The masks come from ``rng``."""

    def __init__(self, p: float, *, rng: Any = None):
        p = float(p)
        if not (0.0 <= p < 1.0):
            raise ValueError(f"p: expected a dropout probability in [0, 1), got {p}")
        self.p, self.rng = p, as_rng(rng)
        super().__init__()

    def __repr__(self) -> str:
        return f"Dropout({self.p:g})"

    def forward(self, x: np.ndarray, *, cache: bool = True) -> np.ndarray:
        x = _as_float(x, np.dtype(np.float64))
        if not cache or self.p == 0.0:
            self._cache = np.ones((), x.dtype) if cache else None
            return x
        keep = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / x.dtype.type(1.0 - self.p)
        self._cache = keep
        return x * keep

    def backward(self, gy: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise _no_cache(self)
        return np.asarray(gy) * self._cache


class SGD:
    """Plain stochastic gradient descent, p ← p − lr · g, in place (the optimiser interface of
    :class:`neuroemu.rules.surrogate.Adam`)."""

    def __init__(self, lr: float):
        lr = float(lr)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr: expected a finite learning rate > 0, got {lr}")
        self.lr = lr

    def step(self, params, grads) -> None:
        if len(params) != len(grads):
            raise ValueError(f"grads: expected {len(params)} arrays to match params, got {len(grads)}")
        for p, g in zip(params, grads):
            p -= p.dtype.type(self.lr) * g


def mse_loss(y: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """½ Σ_units m (y − d)², averaged over the batch, and its gradient m (y − d) / N (mask m: 1 where
    an output counts, e.g. an output dropout mask; default all)."""
    y = _as_float(y, np.dtype(np.float64))
    d = np.asarray(target, dtype=y.dtype)
    if y.ndim != 2 or d.shape != y.shape:
        raise ValueError(f"target: expected the outputs' shape {y.shape} (N, units), got {d.shape}")
    diff = y - d
    if mask is not None:
        m = np.asarray(mask, dtype=y.dtype)
        if m.shape != y.shape:
            raise ValueError(f"mask: expected the outputs' shape {y.shape}, got {m.shape}")
        diff = diff * m
    n = len(y)
    return 0.5 * float(np.sum(diff.astype(np.float64) ** 2)) / n, diff / y.dtype.type(n)


class Flatten(_NoParams):
    """Reshape (N, ...) to (N, prod(...)), keeping the batch dimension."""

    def __repr__(self) -> str:
        return "Flatten()"

    def forward(self, x: np.ndarray, *, cache: bool = True) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"x: expected an array of shape (N, ...) with at least 2 dimensions, got shape {x.shape}")
        self._cache = x.shape if cache else None
        return x.reshape(x.shape[0], -1)

    def backward(self, gy: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise _no_cache(self)
        x_shape = self._cache
        gy = np.asarray(gy)
        expected = (x_shape[0], math.prod(x_shape[1:]))
        if gy.shape != expected:
            raise ValueError(f"gy: expected the forward output's shape {expected}, got {gy.shape}")
        return gy.reshape(x_shape)


class Sequential:
    """Layers applied in order. ``params`` and ``grads`` are the layers' lists concatenated, in layer order."""

    def __init__(self, *layers: Any):
        for i, layer in enumerate(layers):
            if not all(callable(getattr(layer, m, None)) for m in ("forward", "backward")):
                raise ValueError(f"layers[{i}]: expected an object with forward and backward methods, "
                                 f"got {type(layer).__name__}")
        self.layers = list(layers)

    def __repr__(self) -> str:
        return "Sequential(" + ", ".join(repr(layer) for layer in self.layers) + ")"

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Any:
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    @property
    def params(self) -> list[np.ndarray]:
        return [p for layer in self.layers for p in layer.params]

    @property
    def grads(self) -> list[np.ndarray]:
        return [g for layer in self.layers for g in layer.grads]

    def forward(self, x: np.ndarray, *, cache: bool = True) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, cache=cache)
        return x

    def backward(self, gy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """Backward through all layers; returns the input gradient. With input_grad false it stops at the
        lowest layer with parameters, which skips its input gradient, and returns None."""
        if input_grad:
            for layer in reversed(self.layers):
                gy = layer.backward(gy)
            return gy
        with_params = [i for i, layer in enumerate(self.layers) if layer.params]
        if with_params:
            for layer in reversed(self.layers[with_params[0] + 1:]):
                gy = layer.backward(gy)
            self.layers[with_params[0]].backward(gy, input_grad=False)
        return None

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Outputs (logits) for all of x, computed batch_size samples at a time without caching anything
        (caches from an earlier training forward are dropped)."""
        batch_size = _int("batch_size", batch_size, 1)
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"x: expected an array of shape (N, ...), got shape {x.shape}")
        starts = range(0, max(len(x), 1), batch_size)
        return np.concatenate([self.forward(x[i:i + batch_size], cache=False) for i in starts])


# ----------------------------------------------------------------------------- loss and training
def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) (N, n_classes) against integer labels (N,) or target
    distributions (N, n_classes) (e.g. smoothed one-hot rows), computed with log-sum-exp, and its
    gradient (softmax(logits) − targets) / N, of logits' dtype."""
    z = _as_float(logits, np.dtype(np.float64))
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"logits: expected a 2-d array (N, n_classes) with N, n_classes >= 1, got shape {z.shape}")
    n, n_classes = z.shape
    z = z - z.max(axis=1, keepdims=True)
    ez = np.exp(z)
    total = ez.sum(axis=1, keepdims=True)
    grad = ez / total
    if np.ndim(labels) == 2:
        d = np.asarray(labels, dtype=z.dtype)
        if d.shape != z.shape or not np.allclose(d.sum(axis=1), 1.0):
            raise ValueError(f"labels: expected target rows of shape {z.shape} that sum to 1, got shape {d.shape}")
        loss = -float(np.mean(((z - np.log(total)) * d).sum(axis=1), dtype=np.float64))
        grad -= d
    else:
        y = _check_labels(labels, n, n_classes)
        rows = np.arange(n)
        loss = -float(np.mean(z[rows, y] - np.log(total[:, 0]), dtype=np.float64))
        grad[rows, y] -= z.dtype.type(1)
    grad /= z.dtype.type(n)
    return loss, grad


def train_classifier(model: Any, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, lr: float | None,
                     rng: Any, optimizer: Any = None, weight_decay: float = 0.0,
                     progress: Callable[[int, dict], Any] | None = None) -> list[dict]:
    """Minibatch training of model (forward/backward/params/grads, e.g. a :class:`Sequential`) on samples x
    (N, ...) with integer labels y (N,), minimising :func:`softmax_cross_entropy` of the model's output.

    Each epoch visits the samples in an order drawn by ``rng`` (a Generator, a seed or None), in batches of
    batch_size (the last one may be smaller). The optimiser is ``optimizer`` (anything with
    ``step(params, grads)`` and an ``lr`` attribute) or, if None, a new ``Adam(lr=lr)``; an ``lr`` given with
    an optimiser replaces its learning rate (None keeps it). weight_decay > 0 adds the L2 gradient
    weight_decay · p to the parameters with 2 or more dimensions (weights, not biases).

    Returns one dict per epoch: "epoch" (1, 2, ...), "loss" (mean cross-entropy over the epoch's batches,
    weighted by batch size, without the decay term) and "train_acc" (fraction of the epoch's samples
    classified correctly by the forward pass that preceded their update). ``progress(epoch, row)``, if
    given, is called after every epoch.
    """
    x = np.asarray(x)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"x: expected an array of shape (N, ...) with N >= 1, got shape {x.shape}")
    n = len(x)
    y = _check_labels(y, n)
    epochs, batch_size = _int("epochs", epochs, 0), _int("batch_size", batch_size, 1)
    weight_decay = float(weight_decay)
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay: expected a finite value >= 0, got {weight_decay}")
    if lr is not None:
        lr = float(lr)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr: expected a finite learning rate > 0, got {lr}")
    if optimizer is None:
        if lr is None:
            raise ValueError("lr: expected a learning rate > 0 when no optimizer is given, got None")
        optimizer = Adam(lr=lr)
    elif lr is not None:
        optimizer.lr = lr
    rng = as_rng(rng)
    history = []
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yb = y[idx]
            logits = model.forward(x[idx])
            loss, grad = softmax_cross_entropy(logits, yb)
            model.backward(grad)
            params, grads = model.params, model.grads
            if weight_decay:
                grads = [g + weight_decay * p if p.ndim >= 2 else g for p, g in zip(params, grads)]
            optimizer.step(params, grads)
            loss_sum += loss * len(idx)
            correct += int(np.count_nonzero(np.argmax(logits, axis=1) == yb))
        row = {"epoch": epoch, "loss": loss_sum / n, "train_acc": correct / n}
        history.append(row)
        if progress is not None:
            progress(epoch, row)
    return history


def accuracy(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Fraction of samples whose largest output of ``model.predict(x, batch_size=batch_size)`` is the label."""
    x = np.asarray(x)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"x: expected an array of shape (N, ...) with N >= 1, got shape {x.shape}")
    y = _check_labels(y, len(x))
    logits = model.predict(x, batch_size=batch_size)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def standardise(train: np.ndarray, *others: np.ndarray, dtype: Any = None) -> list[np.ndarray]:
    """``train`` and each of ``others`` (N, n) minus the training set's feature means, divided by its
    feature standard deviations (+ 1e-6); cast to ``dtype`` when given."""
    mu, sd = train.mean(axis=0), train.std(axis=0) + 1e-6
    out = [(a - mu) / sd for a in (train, *others)]
    return out if dtype is None else [a.astype(dtype, copy=False) for a in out]


def fit_softmax_regression(x: np.ndarray, y: np.ndarray, *, l2: float = 0.0, n_classes: int | None = None,
                           max_iter: int = 500, init: Linear | None = None) -> Linear:
    """Multinomial logistic regression by full-batch L-BFGS (scipy): the :class:`Linear` layer (float32)
    minimising mean :func:`softmax_cross_entropy` + ½·l2·‖w‖² (the bias is not penalised) on features x
    (N, n) and integer labels y (N,). Deterministic; ``init`` (a Linear of the same shape) warm-starts it.
    Stops after ``max_iter`` iterations or at scipy's default tolerances."""
    from scipy.optimize import minimize

    x = np.ascontiguousarray(_as_float(x, np.dtype(np.float32)), dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x: expected features of shape (N, n) with N >= 1, got shape {x.shape}")
    n, d = x.shape
    y = _check_labels(y, n, n_classes)
    c = int(n_classes) if n_classes is not None else int(y.max()) + 1
    l2, max_iter = float(l2), _int("max_iter", max_iter, 1)
    if not (math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2: expected a finite value >= 0, got {l2}")

    def objective(theta):
        w = theta[:c * d].reshape(c, d)
        z = x @ w.T.astype(np.float32) + theta[c * d:].astype(np.float32)
        loss, g = softmax_cross_entropy(z, y)
        gw = (g.T.astype(np.float32) @ x).astype(np.float64) + l2 * w
        return loss + 0.5 * l2 * float(np.sum(w * w)), np.concatenate([gw.ravel(), g.sum(axis=0)])

    out = Linear(d, c, rng=0)
    if init is not None:
        if init.w.shape != (c, d) or init.b is None:
            raise ValueError(f"init: expected a Linear({d}, {c}) with a bias, got {init!r}")
        theta0 = np.concatenate([init.w.ravel(), init.b]).astype(np.float64)
    else:
        theta0 = np.zeros(c * d + c)
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    out.w[:] = res.x[:c * d].reshape(c, d)
    out.b[:] = res.x[c * d:]
    return out


def linear_probe(ftr: np.ndarray, ytr: np.ndarray, fte: np.ndarray, yte: np.ndarray, *,
                 l2: float | list[float] = (1e-4, 1e-3, 1e-2), validation: int = 10000, max_iter: int = 500,
                 rng: Any = 0) -> dict[str, Any]:
    """Test accuracy of a linear classifier on frozen features: the features standardised with the
    training set's mean and std, then :func:`fit_softmax_regression`. With several ``l2`` values, each is
    fitted on the training set less ``validation`` held-out samples (drawn by ``rng``) and the one with the
    best held-out accuracy is refitted on the whole training set; the test set plays no part in the choice.
    Returns {"test_acc", "l2", "val_acc": {l2: held-out accuracy}}."""
    ftr, fte = np.asarray(ftr), np.asarray(fte)
    if ftr.ndim != 2 or fte.ndim != 2 or ftr.shape[1] != fte.shape[1]:
        raise ValueError(f"ftr, fte: expected features (N, n) with the same n, got {ftr.shape} and {fte.shape}")
    ytr, yte = _check_labels(ytr, len(ftr)), _check_labels(yte, len(fte))
    grid = sorted({float(v) for v in np.atleast_1d(l2)})
    if not grid:
        raise ValueError("l2: expected at least one value")
    xtr, xte = standardise(ftr, fte, dtype=np.float32)
    c = int(max(ytr.max(), yte.max())) + 1
    val: dict[float, float] = {}
    best, layer = grid[0], None
    if len(grid) > 1:
        validation = _int("validation", validation, 1)
        if validation >= len(xtr):
            raise ValueError(f"validation: expected fewer held-out samples than the {len(xtr)} training ones, "
                             f"got {validation}")
        order = as_rng(rng).permutation(len(xtr))
        fit_i, val_i = order[validation:], order[:validation]
        fits = {}
        for v in reversed(grid):  # strongest first: each fit warm-starts the next
            layer = fit_softmax_regression(xtr[fit_i], ytr[fit_i], l2=v, n_classes=c, max_iter=max_iter, init=layer)
            fits[v], val[v] = layer, accuracy(Sequential(layer), xtr[val_i], ytr[val_i])
        best = max(val, key=val.get)
        layer = fits[best]
    layer = fit_softmax_regression(xtr, ytr, l2=best, n_classes=c, max_iter=max_iter, init=layer)
    return {"test_acc": accuracy(Sequential(layer), xte, yte), "l2": best, "val_acc": val}
