"""Pre-processing fitted on training data and reused: ZCA whitening.

ZCA whitening (Bell & Sejnowski 1997), as Hebbian feature learners use it (Lagani et al. 2022):
with the training mean μ and covariance Σ = U diag(λ) Uᵀ of the flattened samples,

    x ↦ U diag(1 / √(λ + ε)) Uᵀ (x − μ)

decorrelates the inputs while staying as close as possible to them (the whitened image still looks
like an image, with edges enhanced). ε (``eps``, relative to the mean eigenvalue) keeps the noise
directions from being blown up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["ZCA"]


class ZCA:
    """ZCA whitening of samples (N, ...) (flattened inside; the output keeps the input's shape)."""

    def __init__(self, eps: float = 0.1):
        if not (np.isfinite(eps) and eps > 0):
            raise ValueError(f"eps: expected a finite value > 0, got {eps!r}")
        self.eps = float(eps)
        self.mean: np.ndarray | None = None
        self.matrix: np.ndarray | None = None

    def fit(self, x, max_samples: int | None = None) -> "ZCA":
        """Fit on training samples x (N, ...) (the first ``max_samples`` of them when given)."""
        flat = self._flat(x, fitted=False)
        if max_samples is not None:
            flat = flat[:max_samples]
        if len(flat) < 2:
            raise ValueError(f"x: expected at least 2 samples to fit a covariance, got {len(flat)}")
        flat = flat.astype(np.float64)
        self.mean = flat.mean(axis=0)
        cov = np.cov(flat - self.mean, rowvar=False)
        lam, u = np.linalg.eigh(cov)
        lam = np.maximum(lam, 0.0)
        scale = 1.0 / np.sqrt(lam + self.eps * max(float(lam.mean()), 1e-30))
        self.matrix = (u * scale) @ u.T
        return self

    def transform(self, x, batch: int = 10000) -> np.ndarray:
        """Whitened samples, same shape as x, float32 (float64 stays float64)."""
        flat = self._flat(x, fitted=True)
        dtype = np.float64 if flat.dtype == np.float64 else np.float32
        m, mu = self.matrix.astype(dtype), self.mean.astype(dtype)
        out = np.empty(flat.shape, dtype)
        for i in range(0, len(flat), batch):
            out[i:i + batch] = (flat[i:i + batch].astype(dtype) - mu) @ m
        return out.reshape(np.shape(x))

    def fit_transform(self, x) -> np.ndarray:
        return self.fit(x).transform(x)

    def save(self, path) -> Path:
        from ..io import atomic_write_npz

        if self.matrix is None:
            raise ValueError("ZCA.save: not fitted; call fit() first")
        return atomic_write_npz(path, {"mean": self.mean, "matrix": self.matrix, "eps": np.array(self.eps)})

    @classmethod
    def load(cls, path) -> "ZCA":
        with np.load(path) as f:
            z = cls(float(f["eps"]))
            z.mean, z.matrix = f["mean"], f["matrix"]
        return z

    def _flat(self, x, fitted: bool) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 2 or x.dtype.kind not in "iuf":
            raise ValueError(f"x: expected numeric samples of shape (N, ...), got shape {x.shape} dtype {x.dtype}")
        flat = x.reshape(len(x), -1)
        if fitted:
            if self.matrix is None:
                raise ValueError("ZCA.transform: not fitted; call fit() first")
            if flat.shape[1] != len(self.mean):
                raise ValueError(f"x: expected samples of {len(self.mean)} values (as fitted), got {flat.shape[1]}")
        return flat
