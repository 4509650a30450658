"""Interrupting a training run on purpose, to test that it resumes from its checkpoint."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import pytest

from neuroemu import train
from neuroemu.runner import CHECKPOINT_ENV


class Interrupted(Exception):
    """Raised right after the checkpoint the test stops at."""


@contextlib.contextmanager
def stop_after_checkpoint(monkeypatch: pytest.MonkeyPatch, done: int) -> Iterator[list[int]]:
    """Within the block, a trainer raises :class:`Interrupted` right after saving the checkpoint at
    ``done`` epochs (or updates); yields the list of every ``done`` saved, for checks."""
    save, saved = train.Trainer._save, []

    def save_then_stop(self):
        save(self)
        saved.append(self.done)
        if self.done == done:
            raise Interrupted

    monkeypatch.setattr(train.Trainer, "_save", save_then_stop)
    try:
        yield saved
    finally:
        monkeypatch.setattr(train.Trainer, "_save", save)


def resumes_identically(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, run_job: Callable[[dict], dict],
                        job: dict, done: int, clean: Callable[[dict], Any] = lambda r: r) -> dict:
    """Run ``job`` straight; run it again into a checkpoint directory, interrupted after the
    checkpoint at ``done``; run it once more, which must resume there (the checkpoint is removed at
    the end) and give ``clean(result)`` equal to the straight run's. Returns the resumed result."""
    straight = clean(run_job(job))
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "checkpoints"))
    with stop_after_checkpoint(monkeypatch, done):
        with pytest.raises(Interrupted):
            run_job(job)
    path = train.checkpoint_path(job["id"])
    assert path.is_file()
    with stop_after_checkpoint(monkeypatch, -1) as saved:
        resumed = run_job(job)
    assert saved and saved[0] > done, f"the run started over instead of resuming after {done}: saved {saved}"
    assert clean(resumed) == straight
    assert not path.exists()
    return resumed
