"""Plain-numpy twin of :mod:`neuroemu._kernels.rng` (counter-based SplitMix64 hash + ziggurat).

Every function accepts scalars or arrays (broadcast against each other) and returns the same
numbers as the kernel. Integer arithmetic is done in ``np.uint64`` with wraparound (overflow
warnings silenced locally). The ziggurat's fast path (≈ 98.8 % of draws) is vectorised; the
rejection path is a scalar loop, as in the kernel.
"""

from __future__ import annotations

import math

import numpy as np

from neuroemu._kernels.rng import ZIG_K, ZIG_R, ZIG_W, ZIG_F  # tables are data, not code under test

U64 = np.uint64
GOLDEN = U64(0x9E3779B97F4A7C15)
M1 = U64(0xBF58476D1CE4E5B9)
M2 = U64(0x94D049BB133111EB)
SALT = U64(0xD1B54A32D192ED03)
INV53 = 1.0 / 9007199254740992.0  # 2**-53


def _as_u64(x) -> np.ndarray:
    """Integers (Python int, signed or unsigned numpy ints) as uint64 modulo 2**64, like numba's
    ``uint64(x)`` (two's complement for negative int64)."""
    if isinstance(x, (int, np.integer)):
        return np.asarray(int(x) % 2**64, dtype=np.uint64)
    a = np.asarray(x)
    if a.dtype == np.uint64:
        return a
    if a.dtype.kind == "i":
        return a.astype(np.int64).view(np.uint64)
    if a.dtype.kind in "ub":
        return a.astype(np.uint64)
    raise TypeError(f"expected integers, got {a.dtype}")


def mix64(z):
    """SplitMix64 finaliser of uint64 values."""
    z = _as_u64(z)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> U64(30))) * M1
        z = (z ^ (z >> U64(27))) * M2
        return z ^ (z >> U64(31))


def key(seed, a):
    """Stream key of (seed, a)."""
    with np.errstate(over="ignore"):
        return mix64(_as_u64(seed) + _as_u64(a) * GOLDEN)


def hash_k(k, b):
    """64-bit hash of element b of stream k."""
    with np.errstate(over="ignore"):
        return mix64(_as_u64(k) + _as_u64(b) * GOLDEN + U64(1))


def uniform_k(k, b):
    """Uniform double in [0, 1) for element b of stream k."""
    return (hash_k(k, b) >> U64(11)).astype(np.float64) * INV53


def uniform(seed, a, b):
    """Uniform double in [0, 1) keyed by (seed, a, b)."""
    return uniform_k(key(seed, a), b)


def _split(h):
    """Layer index (low 7 bits) and signed 32-bit value (high 32 bits) of hashes."""
    h = _as_u64(h)
    iz = (h & U64(127)).astype(np.int64)
    hz = (h >> U64(32)).astype(np.int64)
    hz = np.where(hz >= 2147483648, hz - 4294967296, hz)
    return iz, hz


def _normal_slow(k: int, b: int, iz: int, hz: int) -> float:
    """Scalar ziggurat rejection path (same stream layout as the kernel)."""
    c = 0
    base = int(k) ^ int(SALT)

    def k2_of(c):
        return int(mix64((base + c) % 2**64))

    k2 = k2_of(c)
    while True:
        x = hz * float(ZIG_W[iz])
        if iz == 0:  # tail beyond R
            while True:
                xt = -math.log(1.0 - float(uniform_k(k2, 4 * b))) / ZIG_R
                yt = -math.log(1.0 - float(uniform_k(k2, 4 * b + 1)))
                c += 1
                k2 = k2_of(c)
                if yt + yt >= xt * xt:
                    break
            return ZIG_R + xt if hz > 0 else -ZIG_R - xt
        if float(ZIG_F[iz]) + float(uniform_k(k2, 4 * b + 2)) * (float(ZIG_F[iz - 1]) - float(ZIG_F[iz])) \
                < math.exp(-0.5 * x * x):
            return x
        iz2, hz2 = _split(hash_k(k2, 4 * b + 3))
        iz, hz = int(iz2), int(hz2)
        c += 1
        k2 = k2_of(c)
        if abs(hz) < ZIG_K[iz]:
            return hz * float(ZIG_W[iz])


def normal_k(k, b):
    """Standard normals for elements b of streams k (arrays broadcast; scalars give a float)."""
    k, b = np.broadcast_arrays(_as_u64(k), _as_u64(b))
    shape = k.shape
    k, b = k.reshape(-1), b.reshape(-1)
    iz, hz = _split(hash_k(k, b))
    out = hz * ZIG_W[iz]
    for j in np.flatnonzero(~(np.abs(hz) < ZIG_K[iz])):
        out[j] = _normal_slow(int(k[j]), int(b[j]), int(iz[j]), int(hz[j]))
    return out.reshape(shape) if shape else float(out[0])


def normal(seed, a, b):
    """Standard normals keyed by (seed, a, b)."""
    return normal_k(key(seed, a), b)


def normals(seed, a, n: int) -> np.ndarray:
    """normal(seed, a, i) for i = 0..n-1."""
    return np.asarray(normal_k(key(seed, a), np.arange(n, dtype=np.uint64)), dtype=np.float64).reshape(n)
