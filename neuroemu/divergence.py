"""Diverged runs: a training run whose loss becomes NaN/inf or blows up is stopped and marked, and
the result tables leave it out of their means.

Criterion. A training loop hands its watched value — the training loss (e-prop: the normalised
error of the pattern task, or the task's cross-entropy) — to a :class:`Watch` at every evaluation
(each epoch, or each update), and every batch for the NaN test. The run has *diverged* when the
value is NaN or ±inf, or when it is above ``diverge_factor`` × the *reference*: the value of the
untrained network, which is the first value checked (the loss of the first batch, before its
update). A loss far above the untrained network's is not noise: a network that learns nothing stays
near its initial loss (cross-entropy near ln 10 for ten classes), so the default factor,
:data:`LOSS_FACTOR` = 5, already asks for outputs confidently wrong on most samples. e-prop's error
is normalised by the target's variance and noisy chips reach ~300× the untrained error on runs that
are kept (the recorded sign-scheme seed 3 of the e-prop study), so that experiment uses
:data:`NMSE_FACTOR` = 1000. A reference of 0 (a perfect untrained network) disables the bound; the
NaN test stays.

The diverged run stops where it is and its result holds ``diverged: {"at", "metric", "value",
"bound"}`` (``at``: the update or epoch of the check; ``value``: the number, or "nan"/"inf"/"-inf" so
that the JSON stays valid; ``bound``: factor × reference, or None for a NaN/inf value). The result
tables (:mod:`.tables`) average over the seeds that did not diverge and say "diverged k/n", or only
"diverged" when every seed did; summary.json lists the diverged jobs under ``diverged``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from .config import Opt

#: Default ``diverge_factor`` of the experiments whose watched value is a training loss.
LOSS_FACTOR = 5.0
#: Default ``diverge_factor`` of the e-prop study (normalised MSE; see the module docstring).
NMSE_FACTOR = 1000.0


def option(default: float) -> Opt:
    """The ``diverge_factor`` config field (top level of every experiment config)."""
    return Opt("float", default, 1.0, math.inf, allow_inf=True,
               doc="a run whose training loss (e-prop: its error) is NaN/inf or above this many times the "
                   "untrained network's is stopped, marked diverged and left out of the means (.inf: never)")


def plain(value: float) -> float | str:
    """A float for JSON: the number, or "nan", "inf", "-inf"."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


class Diverged(Exception):
    """Raised by :meth:`Watch.check` when the run diverged; ``record`` is the result's ``diverged`` entry."""

    def __init__(self, at: int, metric: str, value: float, bound: float | None):
        self.record = {"at": int(at), "metric": metric, "value": plain(value), "bound": bound}
        why = "is not finite" if bound is None else f"is above {bound:.4g} (diverge_factor × the untrained value)"
        super().__init__(f"diverged at {at}: {metric} {value:.4g} {why}")


class Watch:
    """The divergence test of one training run (see the module docstring).

    ``check(at, value)`` raises :class:`Diverged` when ``value`` is NaN/inf or, with ``bound=True``
    (evaluations), above ``factor`` × the reference; the first finite value checked becomes the
    reference unless ``reference`` is given (a loss known for the untrained model, e.g. ln 10 for a
    ten-class read-out that starts near zero). Call it every batch with ``bound=False`` to stop at
    the first NaN, and at every evaluation with the evaluation's value (e.g. the epoch's mean loss).
    """

    def __init__(self, metric: str, factor: float, reference: float | None = None):
        if not factor >= 1.0:
            raise ValueError(f"diverge_factor: expected a number >= 1, got {factor!r}")
        self.metric, self.factor = metric, float(factor)
        self.reference: float | None = None if reference is None else abs(float(reference))

    @property
    def bound(self) -> float | None:
        """factor × reference (None before the first check, or when the reference is 0)."""
        return self.factor * self.reference if self.reference else None

    def test(self, at: int, value: float, *, bound: bool = True, metric: str | None = None) -> dict[str, Any] | None:
        """:meth:`check` that returns the ``diverged`` record (or None) instead of raising."""
        try:
            self.check(at, value, bound=bound, metric=metric)
        except Diverged as exc:
            return exc.record
        return None

    def check(self, at: int, value: float, *, bound: bool = True, metric: str | None = None) -> None:
        value = float(value)
        name = metric or self.metric
        if not math.isfinite(value):
            raise Diverged(at, name, value, None)
        if self.reference is None:
            self.reference = abs(value)
            return
        limit = self.bound
        if bound and limit is not None and value > limit:
            raise Diverged(at, name, value, limit)


# ---------------------------------------------------------------------------------------- results
def is_diverged(result: dict[str, Any]) -> bool:
    return bool(result.get("diverged"))


def split(results: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(results that finished normally, results that diverged), each in the given order."""
    results = list(results)
    return [r for r in results if not is_diverged(r)], [r for r in results if is_diverged(r)]


def seed_counts(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The row fields of one run's results: ``seeds`` (all of them), ``diverged`` (how many) and
    ``diverged_seeds`` ({seed: record}, only when some diverged)."""
    row: dict[str, Any] = {"seeds": len(results), "diverged": sum(is_diverged(r) for r in results)}
    if row["diverged"]:
        row["diverged_seeds"] = {str(r["seed"]): r["diverged"] for r in results if is_diverged(r)}
    return row


def jobs(results: Iterable[dict[str, Any]], job_id=lambda r: f"{r['run']}@seed{r['seed']}") -> dict[str, Any]:
    """{job id: ``diverged`` record} of the diverged results (for summary.json)."""
    return {job_id(r): r["diverged"] for r in results if is_diverged(r)}


def tidy(result: dict[str, Any]) -> dict[str, Any]:
    """Flat fields of a diverged result for sweep tables (empty for a normal one)."""
    d = result.get("diverged")
    if not d:
        return {}
    return {"diverged_at": d["at"], "diverged_metric": d["metric"], "diverged_value": d["value"]}


__all__ = ["LOSS_FACTOR", "NMSE_FACTOR", "Diverged", "Watch", "is_diverged", "jobs", "option", "plain", "seed_counts",
           "split", "tidy"]
