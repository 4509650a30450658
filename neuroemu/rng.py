"""Random generators, one way everywhere: every public function takes ``rng`` (a
``numpy.random.Generator``, a seed or None) and turns it into a Generator here."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_rng(rng: Any) -> np.random.Generator:
    """A numpy Generator from a Generator (returned as it is, so its stream goes on), a seed or None."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def draw_seed(rng: np.random.Generator) -> int:
    """A kernel seed drawn from a Generator (kernels key their random numbers by it)."""
    return int(rng.integers(0, 2**63 - 1))
