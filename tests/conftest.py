"""Shared test setup: import paths, seeds and helpers for writing device cards."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `neuroemu` and `tests.reference` import without installing
    sys.path.insert(0, str(ROOT))

#: Seeds used by the kernel-vs-twin tests (several, including 0 and one above 2**62).
SEEDS = (0, 1, 12345, 2**62 + 7)


@pytest.fixture(params=SEEDS, ids=lambda s: f"seed{s}")
def seed(request) -> int:
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)
