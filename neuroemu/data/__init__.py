"""Datasets and encoders."""

from neuroemu.data.encoders import latency_encode, latency_times, rate_encode

from neuroemu.data.fashion_mnist import (
    CLASS_NAMES,
    fetch_fashion_mnist,
    find_fashion_mnist,
    load_fashion_mnist,
    read_idx,
    verify_fashion_mnist,
    write_idx,
)

__all__ = [
    "CLASS_NAMES",
    "fetch_fashion_mnist",
    "latency_encode",
    "latency_times",
    "rate_encode",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
    "verify_fashion_mnist",
    "write_idx",
]
