"""Counter-based random numbers for kernels.

``uniform(seed, a, b)`` is a pure function of its three integer arguments: the SplitMix64
finaliser (Steele, Lea & Flood 2014) applied twice. ``normal(seed, a, b)`` turns the same hash into
a standard normal with the ziggurat method (Marsaglia & Tsang 2000, 128 layers; the layer index
and the value come from disjoint bits of one 64-bit hash). Kernels key each random number by what
it belongs to (device index, pulse number, output element...), so a kernel can draw numbers only
where it needs them (sparse updates), in any order, and still be reproducible bit for bit. The
numpy twin in ``tests/reference/rng.py`` computes the same numbers.
"""

import math

import numpy as np
from numba import njit, uint64

_GOLDEN = uint64(0x9E3779B97F4A7C15)
_M1 = uint64(0xBF58476D1CE4E5B9)
_M2 = uint64(0x94D049BB133111EB)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53
_SALT = uint64(0xD1B54A32D192ED03)  # stream for the ziggurat's rejection steps

# Ziggurat tables (Marsaglia & Tsang 2000, "The ziggurat method for generating random variables").
ZIG_R = 3.442619855899
_ZIG_V = 9.91256303526217e-3
_M31 = 2147483648.0


def _zig_tables():
    kn = np.zeros(128, np.int64)
    wn = np.zeros(128)
    fn = np.zeros(128)
    dn = tn = ZIG_R
    q = _ZIG_V / math.exp(-0.5 * dn * dn)
    kn[0] = int((dn / q) * _M31)
    kn[1] = 0
    wn[0] = q / _M31
    wn[127] = dn / _M31
    fn[0] = 1.0
    fn[127] = math.exp(-0.5 * dn * dn)
    for i in range(126, 0, -1):
        dn = math.sqrt(-2.0 * math.log(_ZIG_V / dn + math.exp(-0.5 * dn * dn)))
        kn[i + 1] = int((dn / tn) * _M31)
        tn = dn
        fn[i] = math.exp(-0.5 * dn * dn)
        wn[i] = dn / _M31
    return kn, wn, fn


ZIG_K, ZIG_W, ZIG_F = _zig_tables()


@njit(cache=True, inline="always")
def mix64(z):
    """SplitMix64 finaliser of a uint64."""
    z = (z ^ (z >> uint64(30))) * _M1
    z = (z ^ (z >> uint64(27))) * _M2
    return z ^ (z >> uint64(31))


@njit(cache=True, inline="always")
def key(seed, a):
    """Stream key of (seed, a); ``*_k`` functions take it so that loops can hoist it."""
    return mix64(uint64(seed) + uint64(a) * _GOLDEN)


@njit(cache=True, inline="always")
def hash_k(k, b):
    """64-bit hash of element b of stream k."""
    # uint64(k): an int64 k would make numba promote the sum to float64 and lose the hash.
    return mix64(uint64(k) + uint64(b) * _GOLDEN + uint64(1))


@njit(cache=True, inline="always")
def uniform_k(k, b):
    """Uniform double in [0, 1) for element b of stream k."""
    return float(hash_k(k, b) >> uint64(11)) * _INV53


@njit(cache=True, inline="always")
def uniform(seed, a, b):
    """Uniform double in [0, 1) keyed by (seed, a, b)."""
    return uniform_k(key(seed, a), b)


@njit(cache=True, inline="always")
def _split(h):
    """Layer index (low 7 bits) and signed 32-bit value (high 32 bits) of a hash."""
    iz = np.int64(h & uint64(127))
    hz = np.int64(h >> uint64(32))
    if hz >= 2147483648:
        hz -= 4294967296
    return iz, hz


@njit(cache=True)
def _normal_slow(k, b, iz, hz):
    """Ziggurat rejection path (about 1.2 % of draws), on streams derived from (k, retry count)."""
    c = 0
    while True:
        k2 = mix64((k ^ _SALT) + uint64(c))
        x = hz * ZIG_W[iz]
        if iz == 0:  # tail beyond R
            while True:
                xt = -math.log(1.0 - uniform_k(k2, 4 * b)) / ZIG_R
                yt = -math.log(1.0 - uniform_k(k2, 4 * b + 1))
                c += 1
                k2 = mix64((k ^ _SALT) + uint64(c))
                if yt + yt >= xt * xt:
                    break
            return ZIG_R + xt if hz > 0 else -ZIG_R - xt
        if ZIG_F[iz] + uniform_k(k2, 4 * b + 2) * (ZIG_F[iz - 1] - ZIG_F[iz]) < math.exp(-0.5 * x * x):
            return x
        iz, hz = _split(hash_k(k2, 4 * b + 3))
        c += 1
        if abs(hz) < ZIG_K[iz]:
            return hz * ZIG_W[iz]


@njit(cache=True, inline="always")
def normal_k(k, b):
    """Standard normal for element b of stream k (ziggurat)."""
    iz, hz = _split(hash_k(k, b))
    if abs(hz) < ZIG_K[iz]:
        return hz * ZIG_W[iz]
    return _normal_slow(k, b, iz, hz)


@njit(cache=True, inline="always")
def normal(seed, a, b):
    """Standard normal keyed by (seed, a, b)."""
    return normal_k(key(seed, a), b)


@njit(cache=True)
def normals(seed, a, out):
    """Fill the 1-d array ``out`` with normal(seed, a, i), i = 0..len-1."""
    k = key(seed, a)
    for i in range(out.size):
        out[i] = normal_k(k, i)
    return out
