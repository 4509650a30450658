"""Classification tasks for :class:`neuroemu.train.Trainer`: mini-batches of (x, labels) drawn in a
new random order every epoch, and accuracy on held-out sets measured on the chip."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np

from ..errors import ConfigError

#: Which held-out sets are scored, in which order, at each stage of a run (the order matters on a
#: noisy chip: every read draws from its generator).
STAGES = {"epoch": ("test", "val"), "update": ("test", "val"), "final": ("val", "test"), "delay": ("test",)}


def validation_split(n: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices kept for training, indices of the validation images) of ``n`` training images: a
    uniformly drawn set of ``n_val`` held out by ``seed`` alone (the same for every run and job
    seed), both in ascending order."""
    if not 0 < n_val < n:
        raise ConfigError(f"data.validation: expected between 1 and {n - 1} of the {n} training images, got {n_val}")
    held = np.zeros(n, bool)
    held[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


class _Epoch:
    """The batches of one epoch (a sized iterable)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, order: np.ndarray, batch: int):
        self.x, self.y, self.order, self.batch = x, y, order, batch

    def __len__(self) -> int:
        return len(range(0, len(self.x) - self.batch + 1, self.batch))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(0, len(self.x) - self.batch + 1, self.batch):
            idx = self.order[i:i + self.batch]
            yield self.x[idx], self.y[idx]


def scores(chip: Any, x: np.ndarray) -> np.ndarray:
    """Class scores (batch, classes) of the chip's network: the model's ``scores`` when it has one,
    else the first element of a tuple ``forward`` returns, or what it returns."""
    own = getattr(chip.model, "scores", None)
    if own is not None:
        return own(chip, x)
    out = chip.forward(x)
    return out[0] if isinstance(out, tuple) else out


def accuracy(chip: Any, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    """Fraction of ``x`` the chip classifies as ``y``, read in batches of ``batch``."""
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((scores(chip, x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / len(x)


class ClassificationTask:
    """Train on (x, y) in batches of ``batch_size`` (a fresh order from ``rng`` every epoch; a last
    partial batch is dropped); evaluate ``<set>_acc`` on the named held-out sets (``test``, ``val``)
    at each stage, in the order of :data:`STAGES`."""

    def __init__(self, x: np.ndarray, y: np.ndarray, *, batch_size: int, rng: Any,
                 held_out: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None, eval_batch: int = 1000):
        if len(x) < batch_size:
            raise ConfigError(f"batch_size: expected at most the {len(x)} training samples, got {batch_size}")
        self.x, self.y, self.batch_size, self.rng = x, y, int(batch_size), np.random.default_rng(rng)
        self.held_out = dict(held_out or {})
        self.eval_batch = int(eval_batch)

    def batches(self, epoch: int) -> _Epoch:
        return _Epoch(self.x, self.y, self.rng.permutation(len(self.x)), self.batch_size)

    def evaluate(self, chip: Any, stage: str, last: dict[str, Any] | None = None) -> dict[str, float]:
        return {f"{name}_acc": accuracy(chip, *self.held_out[name], self.eval_batch)
                for name in STAGES.get(stage, ("test", "val")) if name in self.held_out}

    def inference_batch(self, n: int = 100) -> tuple[np.ndarray, int]:
        """The first ``n`` test images (training images without a test set), for the per-inference
        operation counts."""
        x = self.held_out["test"][0] if "test" in self.held_out else self.x
        return x[:n], len(x[:n])

    _DATA = ("x", "y", "held_out")

    def __getstate__(self):
        """A checkpoint keeps the order generator, not the data (loaded again on resume: :meth:`restore`)."""
        return {k: v for k, v in self.__dict__.items() if k not in self._DATA}

    def restore(self, fresh: "ClassificationTask") -> None:
        """Take the data of ``fresh`` (the same task, built anew) after a checkpoint was loaded."""
        for k in self._DATA:
            setattr(self, k, getattr(fresh, k))


def fashion_mnist_task(*, rng: np.random.Generator, batch_size: int = 100, validation: int = 0,
                       validation_seed: int = 0, test: bool = True, train_limit: int | None = None,
                       test_limit: int | None = None, dir: str | None = None, download: bool = True,
                       eval_batch: int = 1000) -> ClassificationTask:
    """Fashion-MNIST (flattened, scaled to [0, 1]) as a :class:`ClassificationTask`: ``validation``
    training images held out (drawn with ``validation_seed``, the same for every run) and scored as
    ``val_acc``; the test set scored as ``test_acc`` unless ``test`` is false (then it is not even
    loaded)."""
    from . import load_fashion_mnist

    xtr, ytr = load_fashion_mnist("train", data_dir=dir, download=download, limit=train_limit)
    held: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if validation:
        keep, val = validation_split(len(xtr), validation, validation_seed)
        held["val"] = (xtr[val], ytr[val])
        xtr, ytr = xtr[keep], ytr[keep]
    if test:
        held["test"] = load_fashion_mnist("test", data_dir=dir, download=download, limit=test_limit)
    return ClassificationTask(xtr, ytr, batch_size=batch_size, rng=rng, held_out=held, eval_batch=eval_batch)

