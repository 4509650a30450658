"""Boltzmann machines over binary units: exact distributions, moments and distances.

p(z) ∝ exp(½ zᵀWz + bᵀz), z ∈ {0, 1}^K, W symmetric with zero diagonal. State s of z is the
integer Σ_k z_k 2^k (unit 0 the least significant bit). Everything here is exact enumeration over
the 2^K states, for the K ≤ ~16 machines whose sampling quality is measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .rng import as_rng

__all__ = ["random_bm", "states", "exact_distribution", "moments", "state_histogram", "state_index", "dkl", "sampled_dkl", "sample_moments"]

MAX_K = 20


def random_bm(k: int, rng: Any = None, *, scale_w: float = 1.0, scale_b: float = 1.0, beta: float = 0.5):
    """A random Boltzmann machine (W, b): entries scale·(Beta(β, β) − ½)·2, i.e. in (−scale, scale),
    W symmetric with zero diagonal. Beta(0.5, 0.5) puts mass at the ends of the range (strong
    interactions), as in the random machines of the LIF-sampling studies."""
    g = as_rng(rng)
    upper = np.triu(scale_w * 2 * (g.beta(beta, beta, (k, k)) - 0.5), 1)
    return upper + upper.T, scale_b * 2 * (g.beta(beta, beta, k) - 0.5)


def states(k: int) -> np.ndarray:
    """All 2^k states as rows of 0/1 (uint8), row s = the binary digits of s (unit 0 first)."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"states: K must be in 1..{MAX_K} for exact enumeration, got {k}")
    return ((np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1).astype(np.uint8)


def exact_distribution(w, b) -> np.ndarray:
    """p(s) over the 2^K states of the machine (W, b)."""
    w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
    z = states(len(b)).astype(np.float64)
    energy = 0.5 * np.einsum("si,ij,sj->s", z, w - np.diag(np.diag(w)), z) + z @ b
    p = np.exp(energy - energy.max())
    return p / p.sum()


def moments(p, k: int) -> tuple[np.ndarray, np.ndarray]:
    """⟨z⟩ (K,) and ⟨z zᵀ⟩ (K, K) of a distribution p over the 2^K states."""
    z = states(k).astype(np.float64)
    return p @ z, (z * p[:, None]).T @ z


def state_index(z) -> np.ndarray:
    """The state numbers of binary vectors z (..., K)."""
    z = np.asarray(z)
    return (z.astype(np.int64) << np.arange(z.shape[-1])).sum(axis=-1)


def state_histogram(z) -> np.ndarray:
    """Relative frequency of each of the 2^K states in samples z (n_samples, K)."""
    z = np.asarray(z)
    return np.bincount(state_index(z), minlength=2 ** z.shape[-1]) / len(z)


def dkl(p, q) -> float:
    """D_KL(p ‖ q) = Σ p ln(p/q) over the states where p > 0 (natural log). q = 0 there gives inf:
    for sampled distributions use :func:`sampled_dkl`."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = p > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(p[m] * (np.log(p[m]) - np.log(q[m]))))


def sampled_dkl(p, z) -> float:
    """D_KL(p ‖ q) for the distribution q of samples z (n_samples, K): a state never visited counts
    as half a visit (then q is normalised), so that the distance stays finite and is not biased low
    by leaving such states out."""
    z = np.asarray(z)
    counts = np.bincount(state_index(z), minlength=2 ** z.shape[-1]).astype(np.float64)
    q = np.where(counts > 0, counts, 0.5)
    return dkl(p, q / q.sum())


def sample_moments(z) -> tuple[np.ndarray, np.ndarray]:
    """⟨z⟩ and ⟨z zᵀ⟩ of samples z (n_samples, K) or (n_samples, chains, K) (pooled)."""
    z = np.asarray(z, np.float32).reshape(-1, np.shape(z)[-1])
    return z.mean(axis=0).astype(np.float64), (z.T @ z / len(z)).astype(np.float64)
