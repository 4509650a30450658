"""Synthetic data files for tests that run whole experiments."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neuroemu.data.fashion_mnist import write_idx


def write_tiny_fashion_mnist(d: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write a tiny synthetic Fashion-MNIST (the four standard .gz IDX files) into ``d`` and return
    it: class-dependent images, so that a network can learn something."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = (rng.random((n, 28, 28)) * 60 + (y[:, None, None] * 19)).astype(np.uint8)
        write_idx(d / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", y)
    return d
