"""The trainer: one loop for every rule, chip and task.

:class:`Trainer` runs a :class:`~neuroemu.rules.base.Rule` on a :class:`~neuroemu.chip.Chip` over
the data of a task, following a :class:`Protocol`:

* **the loop** — ``epochs`` passes over the task's batches (``task.batches(epoch)``), or
  ``updates`` single updates (``task.batch(step)``); after each update the chip's clock moves on by
  ``seconds_per_update`` (drift);
* **evaluation** — at the end of every epoch, or every ``eval_every`` updates and after the last:
  ``task.evaluate(chip, stage, last)`` (``last``: what the rule measured on the latest batch) gives
  the row of ``rows``, with the means of the rule's measurements over the epoch (``train_<name>``),
  the chip's counters (``device_stats``) and the tiles' statistics (``recorder`` and ``device``);
* **after training** — the trained weights programmed onto other hardware (``deploy``), global drift
  compensation, the final evaluation (``stage="final"``), then each drift delay (``delays``, seconds
  after training, ``stage="delay"``);
* **divergence** — the rule's watched measurement (``watch``; named ``watch_label`` in the records) is checked at every update (NaN/inf,
  before the update's changes reach the devices) and against ``diverge_factor`` × its first value at
  every evaluation (:mod:`neuroemu.divergence`); a diverged run stops and says where;
* **checkpoints** — with ``checkpoint`` (a path), the whole run (chip, rule, task, random generators,
  rows so far) is saved atomically at every epoch end (every evaluation in an update protocol); a run
  started again with the same path and ``key`` resumes there and ends with the result it would have
  had, bit for bit. The file is removed when the run ends;
* **progress** — a line now and then from inside the run (:class:`neuroemu.progress.JobProgress`);
* **operations and energy** — the chip's counts (:meth:`~neuroemu.chip.Chip.ops`) split into
  training (every update, evaluations left out) and evaluation, and, when the task has
  ``inference_batch()``, one inference of that batch on the final chip; with the energy and
  latency of each (:mod:`neuroemu.energy`) in :attr:`Result.ops`.

A task is any object with ``batches(epoch)`` (epoch protocols) or ``batch(step)`` (update
protocols) and ``evaluate(chip, stage, last) -> dict``; optionally ``inference_batch()`` (inputs
and their number of samples, for the per-inference counts), ``observe(batch, measured)``
(called after every update), ``stop`` (an attribute: set true, e.g. by ``evaluate``, it ends the
training after that evaluation; a run resumed from a checkpoint saved then trains no further),
``check_final(final, watch, at)`` (returns a ``diverged`` record
for a final evaluation that shows divergence, or None) and ``restore(fresh)`` (after a checkpoint
is loaded: take from the task built anew what the checkpoint left out, e.g. the data).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import divergence, energy
from .chip import Chip, Hardware
from .io import atomic_write_bytes
from .progress import JobProgress
from .record import Recorder
from .rules.base import run_step
from .runner import CHECKPOINT_ENV, slug



@dataclasses.dataclass
class Protocol:
    """How a run is trained and evaluated (see the module docstring). Give ``epochs`` or
    ``updates``."""

    epochs: int | None = None
    updates: int | None = None
    eval_every: int | None = None
    seconds_per_update: float = 0.0
    delays: Sequence[float] = ()
    drift_compensation: bool = False
    deploy: Hardware | None = None
    watch: str = "loss"
    watch_label: str | None = None
    diverge_factor: float = divergence.LOSS_FACTOR

    def __post_init__(self):
        if (self.epochs is None) == (self.updates is None):
            raise ValueError("Protocol: give epochs or updates, not both and not neither")
        if self.epochs is not None and self.eval_every is not None:
            raise ValueError("Protocol: eval_every counts updates; an epoch protocol evaluates every epoch")
        if self.eval_every is not None and not self.eval_every >= 1:
            raise ValueError(f"Protocol: eval_every: expected an integer >= 1, got {self.eval_every!r}")
        if self.updates is not None and self.eval_every is None:
            self.eval_every = self.updates
        delays = [float(d) for d in self.delays]
        if any(not d >= 0 for d in delays) or delays != sorted(delays):
            raise ValueError(f"Protocol: delays: expected seconds after training, >= 0 and in increasing order, "
                             f"got {list(self.delays)}")


@dataclasses.dataclass
class Result:
    """What a run produced. ``rows``: one per evaluation during training; ``final``: the final
    evaluation (empty when diverged); ``after``: {delay: evaluation}; ``diverged``: where and how
    (:mod:`neuroemu.divergence`) or None; ``chip``, ``rule``, ``task``: as they are at the end (the
    chip deployed and drifted; after a resumed run, the objects restored from the checkpoint, not
    the ones the trainer was given)."""

    rows: list[dict[str, Any]]
    final: dict[str, Any]
    after: dict[float, dict[str, Any]]
    diverged: dict[str, Any] | None
    train_time_s: float
    chip: Chip
    recorder: Recorder
    last: dict[str, Any]
    rule: Any = None
    task: Any = None
    ops: dict[str, Any] | None = None


def checkpoint_path(job_id: str) -> Path | None:
    """Where a job's checkpoint goes: ``$NEUROEMU_CHECKPOINTS/<job>.ckpt`` (None when unset)."""
    root = os.environ.get(CHECKPOINT_ENV)
    if not root:
        return None
    return Path(root) / f"{slug(job_id)}.ckpt"


class Stages:
    """What a job of several stages has finished, kept between runs: a dict saved atomically at
    ``checkpoint_path(job_id + "/stages")`` with the job's ``key`` after every finished stage, so that
    a job interrupted between stages (a layer learned, a read-out trained) goes on after its last
    finished one. Inside a stage, a :class:`Trainer` keeps its own checkpoint. Without
    ``$NEUROEMU_CHECKPOINTS`` nothing is kept."""

    def __init__(self, job_id: str, key: Any):
        self.path, self.key = checkpoint_path(f"{job_id}/stages"), key

    def load(self) -> dict[str, Any]:
        """The stages saved for this key (a checkpoint of another key or an unreadable one: {})."""
        if self.path is None or not self.path.is_file():
            return {}
        try:
            saved = pickle.loads(self.path.read_bytes())
        except Exception as exc:  # a torn file or another version: start afresh
            warnings.warn(f"{self.path} cannot be read ({type(exc).__name__}: {exc}); the job starts from the "
                          "beginning", stacklevel=2)
            return {}
        return saved["state"] if isinstance(saved, dict) and saved.get("key") == self.key else {}

    def save(self, state: dict[str, Any]) -> None:
        if self.path is not None:
            atomic_write_bytes(self.path, pickle.dumps({"key": self.key, "state": state},
                                                       protocol=pickle.HIGHEST_PROTOCOL))

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class Trainer:
    """Train ``rule`` on ``chip`` over ``task`` following ``protocol`` (module docstring).

    ``deploy_rng``: the generator of the deployed chip's devices. ``recorder``: snapshots of the
    tiles at every evaluation (a fresh one by default; after a deploy the deployed chip is recorded
    afresh); ``device``: a filter of its columns for the rows (default: all); ``device_stats``: add
    the chip's counters to the rows. ``key``: what the run is (e.g. its job), stored with a
    checkpoint; a checkpoint of another key is not resumed."""

    def __init__(self, chip: Chip, rule: Any, task: Any, protocol: Protocol, *, job_id: str = "run",
                 deploy_rng: Any = None, recorder: Recorder | None = None, observe_start: bool = True,
                 device: Callable[[str], bool] | None = None, device_stats: bool = True,
                 checkpoint: str | Path | None = None, key: Any = None, progress: bool | None = None):
        if protocol.deploy is not None and deploy_rng is None:
            raise ValueError("Trainer: a protocol that deploys needs deploy_rng, the generator of the deployed "
                             "chip's devices (a seed or a Generator), so that the run can be repeated")
        self.chip, self.rule, self.task, self.protocol = chip, rule, task, protocol
        self.deploy_rng = deploy_rng
        self.recorder = Recorder() if recorder is None else recorder
        self.device, self.device_stats = device, device_stats
        self.job_id, self.key = job_id, key
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self._progress_enabled = progress
        self.watch = divergence.Watch(protocol.watch_label or protocol.watch, protocol.diverge_factor)
        self.rows: list[dict[str, Any]] = []
        self.done = 0  # epochs (epoch protocol) or updates finished
        self.n_updates = 0
        self._ops0 = chip.ops()  # counts before training, and those of the evaluations since
        self._eval_ops: dict[str, Any] = {}
        self.train_time = 0.0
        self.last: dict[str, Any] = {}
        rule.bind(chip)
        if observe_start and protocol.deploy is None:
            self.recorder.observe(0, chip.tiles())  # the chip as programmed, before training

    # ------------------------------------------------------------------------------- checkpoints
    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_progress", None)
        state.pop("_started", None)
        return state

    def _save(self) -> None:
        if self.checkpoint is None:
            return
        atomic_write_bytes(self.checkpoint, pickle.dumps({"key": self.key, "trainer": self},
                                                         protocol=pickle.HIGHEST_PROTOCOL))

    def _resume(self) -> "Trainer":
        """The checkpointed trainer of this run, or self."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return self
        try:
            saved = pickle.loads(self.checkpoint.read_bytes())
        except Exception as exc:  # a checkpoint of another version or a torn file: start afresh
            warnings.warn(f"{self.job_id}: checkpoint {self.checkpoint} cannot be read ({type(exc).__name__}: {exc}); "
                          "the run starts from the beginning", stacklevel=2)
            return self
        if not isinstance(saved, dict) or saved.get("key") != self.key:
            return self
        trainer = saved["trainer"]
        trainer.checkpoint, trainer._progress_enabled = self.checkpoint, self._progress_enabled
        restore = getattr(trainer.task, "restore", None)
        if restore is not None:  # what the task left out of the checkpoint (e.g. its data)
            restore(self.task)
        return trainer

    # ------------------------------------------------------------------------------- the loop
    def run(self) -> Result:
        """Train (from a checkpoint when there is one), then evaluate; see the module docstring."""
        trainer = self._resume()
        result = trainer._run()
        if trainer.checkpoint is not None:
            trainer.checkpoint.unlink(missing_ok=True)
        return result

    def _update(self, at: int, batch: Any, bound: bool) -> dict[str, Any]:
        watched = self.protocol.watch

        def check(measured: dict[str, Any]) -> None:
            if watched in measured:
                self.watch.check(at, measured[watched], bound=bound)

        measured = run_step(self.rule, self.chip, batch, check)
        self.n_updates += 1
        self.chip.advance(self.protocol.seconds_per_update)
        observe = getattr(self.task, "observe", None)
        if observe is not None:
            observe(batch, measured)
        self.last = measured
        return measured

    def _clock(self) -> None:
        """train_time: the time saved by a checkpoint plus the time this run has trained."""
        start, before = self._started
        self.train_time = before + time.perf_counter() - start

    def _row(self, unit: str, n: int, stage: str, means: dict[str, float]) -> dict[str, Any]:
        """Evaluate, record the tiles, append the row; returns the evaluation."""
        before = self.chip.ops()
        scores = self.task.evaluate(self.chip, stage, self.last)
        self._eval_ops = energy.add(self._eval_ops, energy.diff(self.chip.ops(), before))
        row: dict[str, Any] = {unit: n, **means, **scores}
        if self.device_stats:
            row.update({k: v for k, v in self.chip.stats().items() if k != "pulse_limit_hits"})
        device = {k: v for k, v in self.recorder.observe(n, self.chip.tiles()).items() if k != "step"}
        row.update({k: v for k, v in device.items() if self.device is None or self.device(k)})
        self.rows.append(row)
        return scores

    def _run(self) -> Result:
        p = self.protocol
        self._progress = JobProgress(self.job_id, enabled=self._progress_enabled)
        diverged = None
        self._started = (time.perf_counter(), self.train_time)  # a resumed run adds to the time saved
        try:
            if p.epochs is not None:
                self._epochs()
            else:
                self._updates()
        except divergence.Diverged as exc:
            diverged = exc.record
        self._clock()
        final: dict[str, Any] = {}
        after: dict[float, dict[str, Any]] = {}
        ops = self._training_ops()
        if diverged is None:
            if p.deploy is not None:
                self.chip = self.chip.deploy(p.deploy, self.deploy_rng)
                self.recorder = Recorder()
                self.recorder.observe(self.done, self.chip.tiles())
            if p.drift_compensation:  # the drift reference is read right after the last update
                self.chip.compensate_drift()
            final = self.task.evaluate(self.chip, "final", self.last)
            check_final = getattr(self.task, "check_final", None)
            diverged = check_final(final, self.watch, self.done) if check_final is not None else None
        if diverged is None:
            elapsed = 0.0
            for delay in p.delays:
                self.chip.advance(delay - elapsed)
                elapsed = delay
                if p.drift_compensation:
                    self.chip.compensate_drift()
                after[delay] = self.task.evaluate(self.chip, "delay", self.last)
            ops.update(self._inference_ops())
        return Result(self.rows, final, after, diverged, self.train_time, self.chip, self.recorder, self.last,
                      self.rule, self.task, ops)

    def _training_ops(self) -> dict[str, Any]:
        """The training's counts (evaluations left out), per update, with energy and latency."""
        train = energy.diff(energy.diff(self.chip.ops(), self._ops0), self._eval_ops)
        out: dict[str, Any] = {"updates": self.n_updates, "train": train}
        if self.n_updates:
            per = energy.scale(train, 1.0 / self.n_updates)
            out.update(per_update=per, energy_per_update_pJ=energy.account(per, self.chip))
        return out

    def _inference_ops(self) -> dict[str, Any]:
        """One inference of the task's ``inference_batch()`` (inputs, number of samples) on a copy
        of the final chip, per sample (the copy draws its own read noise: the run's chip and its
        random streams are untouched)."""
        make = getattr(self.task, "inference_batch", None)
        batch = make() if make is not None else None
        if batch is None:
            return {}
        return energy.measure_inference(self.chip, *batch)

    def _epochs(self) -> None:
        p = self.protocol
        while self.done < p.epochs and not getattr(self.task, "stop", False):  # stopped: also after a resume
            epoch = self.done + 1
            began = self._progress.now()
            sums: dict[str, list[float]] = {}
            batches = self.task.batches(epoch)
            total = len(batches) if hasattr(batches, "__len__") else None
            for b, batch in enumerate(batches, 1):
                measured = self._update(epoch, batch, bound=False)
                for k, v in measured.items():
                    if isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(v, bool):
                        sums.setdefault(k, []).append(v)
                if self._progress.due():
                    watched = sums.get(p.watch)
                    self._progress.log(f"epoch {epoch}/{p.epochs}  batch {b}/{total or '?'}"
                                       + (f"  {p.watch} {np.mean(watched):.3g}" if watched else ""))
            means = {f"train_{k}": float(np.mean(v)) for k, v in sums.items()}
            if p.watch in sums:
                self.watch.check(epoch, np.mean(sums[p.watch]))
            self.done = epoch
            scores = self._row("epoch", epoch, "epoch", means)
            self._clock()
            self._save()
            if self._progress.due() or self._progress.due(since=began):  # a long epoch always gets its line
                shown = [f"{p.watch} {means[f'train_{p.watch}']:.3g}"] if f"train_{p.watch}" in means else []
                shown += [f"{k.replace('_', ' ')} {100 * v:.2f} %" if k.endswith("_acc") else
                          f"{k.replace('_', ' ')} {v:.4g}" for k, v in scores.items() if isinstance(v, float)]
                self._progress.log(f"epoch {epoch}/{p.epochs}  " + "  ".join(shown), force=True)
            if getattr(self.task, "stop", False):
                break

    def _updates(self) -> None:
        p = self.protocol
        while self.done < p.updates and not getattr(self.task, "stop", False):  # stopped: also after a resume
            step = self.done + 1
            evaluation = step % p.eval_every == 0 or step == p.updates
            measured = self._update(step, self.task.batch(step), bound=evaluation)
            self.done = step
            if evaluation:
                self._row("update", step, "update", {})
            if self._progress.due():
                value = measured.get(p.watch)
                self._progress.log(f"update {step}/{p.updates}" + (f"  {p.watch} {value:.3g}" if value is not None
                                                                     else ""))
            if evaluation:
                self._clock()
                self._save()
                if getattr(self.task, "stop", False):
                    break
