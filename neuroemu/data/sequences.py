"""Sequence tasks for the trainer (:class:`neuroemu.train.Trainer`, update protocol): batches of
time-first sequences (:class:`neuroemu.data.tasks.Task`), for a recurrent network whose forward pass
returns ``(trace, y)`` (:class:`neuroemu.models.rsnn.RSNN`), and their errors.

* :class:`FrozenPatterns` — pattern generation: frozen input/target pairs, one per update, in a
  given order (each epoch a new permutation, :func:`neuroemu.data.tasks.epoch_order`). The error
  of the learning curve is the mean over the patterns of each one's error on its latest training
  pass (no extra forward pass); the final and after-drift errors come from one pass over all the
  patterns.
* :class:`FreshTrials` — a classification task drawn anew for every update (evidence
  accumulation), scored on a test set drawn once; the learning curve scores the latest training
  batch.

:func:`pattern_generation_task` and :func:`evidence_accumulation_task` build them from the
generators of :mod:`neuroemu.data.tasks`.

The normalised MSE of one sequence is mean_t (y − y*)² / mean_t (y* − mean y*)² over its masked
steps (1 = predicting the mean; the plain MSE where the target is constant).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from . import tasks
from .tasks import Task

__all__ = ["FreshTrials", "FrozenPatterns", "evidence_accumulation_task", "nmse", "nmse_each",
           "pattern_generation_task", "sequence_accuracy"]


def nmse_each(y: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalised MSE of each sequence b over its masked steps: mean (y − y*)² / variance of y*
    (the MSE where y* is constant). y, target (T, B, n_out), mask (T, B); returns (B,)."""
    out = np.empty(y.shape[1])
    for b in range(y.shape[1]):
        m = np.broadcast_to(mask[:, b, None] > 0, y[:, b].shape)
        err = ((y[:, b] - target[:, b]) ** 2)[m].mean()
        var = target[:, b][m].var()
        out[b] = err / var if var > 0 else err
    return out


def nmse(y: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """The mean over the sequences of :func:`nmse_each`."""
    return float(nmse_each(y, target, mask).mean())


def sequence_accuracy(y: np.ndarray, task: Task) -> float:
    """Classification: the class with the larger summed output over the masked steps, against
    ``task.labels``."""
    score = (y * task.mask[..., None]).sum(axis=0)
    return float((score.argmax(axis=1) == task.labels).mean())


class FrozenPatterns:
    """Train on the frozen patterns of ``task`` (its batch axis), pattern ``order[step − 1]`` at
    update ``step`` (batch 1). Measures (``evaluate``): ``rate_hz`` of the latest update and
    ``nmse`` — during training the mean of each pattern's latest training error (NaN-free once
    every pattern was trained), after training (stages ``final``, ``delay``) from one pass over all
    the patterns, with ``nmse_each`` and the read-out ``y``. ``check_final``: a final NMSE above
    the divergence bound (or NaN) marks the run diverged."""

    def __init__(self, task: Task, order: np.ndarray):
        self.task = task
        n = task.x.shape[1]
        self.patterns = [task._replace(x=np.ascontiguousarray(task.x[:, k:k + 1]),
                                       target=np.ascontiguousarray(task.target[:, k:k + 1]),
                                       mask=np.ascontiguousarray(task.mask[:, k:k + 1])) for k in range(n)]
        self.order = np.asarray(order)
        self.latest = np.full(n, np.nan)  # each pattern's error on its latest training pass
        self._current = -1

    def batch(self, step: int) -> Task:
        self._current = int(self.order[step - 1])
        return self.patterns[self._current]

    def observe(self, batch: Task, measured: dict[str, Any]) -> None:
        self.latest[self._current] = measured["nmse"]

    def evaluate(self, chip: Any, stage: str, last: dict[str, Any]) -> dict[str, Any]:
        if stage == "update":
            return {"rate_hz": last["rate_hz"], "nmse": float(np.nanmean(self.latest))}
        _, y = chip.forward(self.task.x)
        each = nmse_each(y, self.task.target, self.task.mask)
        return {"nmse": float(np.mean(each)), "nmse_each": each, "y": y}

    def check_final(self, final: dict[str, Any], watch: Any, at: int) -> dict[str, Any] | None:
        return watch.test(at, final["nmse"], metric="nmse after training")


class FreshTrials:
    """Train on a new batch ``draw(rng=rng)`` at every update; score ``accuracy``
    (:func:`sequence_accuracy`) — during training on the latest training batch, after training
    (stages ``final``, ``delay``) on ``test``, with the read-out ``y``. ``check_final``: a
    non-finite read-out after training marks the run diverged. A checkpoint keeps the generator,
    not the test set (:meth:`restore`).

    ``stop_accuracy``: end the training at the first evaluation whose training batch scored at
    least this (``stop``, read by the trainer). The batch is scored before its own update, on
    trials the network has not seen: Bellec et al.'s stopping rule on a validation batch."""

    def __init__(self, draw: Callable[..., Task], rng: np.random.Generator, test: Task, *,
                 stop_accuracy: float | None = None):
        self.draw, self.rng, self.test = draw, rng, test
        self.latest_accuracy = float("nan")
        self.stop_accuracy, self.stop = stop_accuracy, False

    def batch(self, step: int) -> Task:
        return self.draw(rng=self.rng)

    def observe(self, batch: Task, measured: dict[str, Any]) -> None:
        self.latest_accuracy = sequence_accuracy(measured["y"], batch)

    def evaluate(self, chip: Any, stage: str, last: dict[str, Any]) -> dict[str, Any]:
        if stage == "update":
            limit = getattr(self, "stop_accuracy", None)  # None in a checkpoint of an earlier version
            if limit is not None and self.latest_accuracy >= limit:
                self.stop = True
            return {"rate_hz": last["rate_hz"], "accuracy": self.latest_accuracy}
        _, y = chip.forward(self.test.x)
        return {"accuracy": sequence_accuracy(y, self.test), "y": y}

    def check_final(self, final: dict[str, Any], watch: Any, at: int) -> dict[str, Any] | None:
        return watch.test(at, np.abs(final["y"]).max(), bound=False, metric="output after training")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "test"}

    def restore(self, fresh: "FreshTrials") -> None:
        """Take the test set of ``fresh`` (the same task, built anew) after a checkpoint was loaded."""
        self.test = fresh.test


def pattern_generation_task(*, n_in: int = 100, t_steps: int = 1000, patterns: int = 1, updates: int,
                            rng: np.random.Generator, order_rng: np.random.Generator | None = None,
                            **options: Any) -> FrozenPatterns:
    """:func:`neuroemu.data.tasks.pattern_generation` (``patterns`` frozen pairs, from ``rng``) as
    :class:`FrozenPatterns`, trained in :func:`~neuroemu.data.tasks.epoch_order` for ``updates``
    updates (the order from ``order_rng``, default ``rng`` after the patterns)."""
    task = tasks.pattern_generation(n_in=n_in, t_steps=t_steps, rng=rng, n_patterns=patterns, **options)
    order = tasks.epoch_order(patterns, updates, rng if order_rng is None else order_rng)
    return FrozenPatterns(task, order)


def evidence_accumulation_task(*, batch: int = 1, n_in: int = 40, trials: int = 256, rng: np.random.Generator,
                               stop_accuracy: float | None = None, **options: Any) -> FreshTrials:
    """:func:`neuroemu.data.tasks.evidence_accumulation` as :class:`FreshTrials`, drawn from ``rng``
    in this order: one batch that is dropped (the e-prop study drew it for the shapes, and its
    recorded runs keep that stream), the test set of ``trials`` trials, then a fresh batch of
    ``batch`` trials at every update; ``stop_accuracy``: see :class:`FreshTrials`."""
    draw = functools.partial(tasks.evidence_accumulation, batch, n_in=n_in, **options)
    draw(rng=rng)
    test = tasks.evidence_accumulation(trials, n_in=n_in, rng=rng, **options)
    return FreshTrials(draw, rng, test, stop_accuracy=stop_accuracy)
