"""The rule interface: what every learning rule looks like to the chip and the trainer.

A rule sees the chip's activity (it runs ``chip.forward``, and for gradient rules compares with
targets) and says what it wants, never touching conductances. :meth:`Rule.step` is a generator
over one batch of data that yields, in order:

* a ``dict`` of what it measured (``loss`` and anything else; arrays allowed) — before any change,
  so that a trainer can stop a diverged run before a NaN reaches the devices;
* then one :class:`~neuroemu.chip.Update` per layer it changes (ΔW, or the factored −lr·dᵀx, and
  a bias change), each applied through the layer's update scheme before the rule goes on (so a
  rule that reads layer i−1 after changing layer i sees the same hardware as a hand-written loop).

Its own state (optimizer moments, feedback matrices, traces) lives on the rule object; a trainer
checkpoint pickles the rule with the chip. :meth:`Rule.bind` is called once with the chip: it
checks that the rule means something on that network (:attr:`Rule.requires` against the model's
traits) and sets up the state.

:func:`run_step` drives one step by hand: ``metrics = run_step(rule, chip, batch)``.
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Union

from ..chip import Chip, Update
from ..errors import ConfigError

Step = Generator[Union[dict, Update], None, None]


class RuleError(ConfigError):
    """A rule was paired with a chip it has no meaning on."""


class Rule:
    """Base of the learning rules (see the module docstring)."""

    #: Traits the chip's model must have (see :mod:`neuroemu.models`).
    requires: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return type(self).__name__

    def bind(self, chip: Chip) -> None:
        """Check that this rule applies to ``chip`` (:class:`RuleError` if not) and set up state."""
        check_traits(self, chip)

    def step(self, chip: Chip, batch: Any) -> Step:
        raise NotImplementedError


def check_traits(rule: Any, chip: Chip) -> None:
    """:class:`RuleError` naming what is missing when the chip's model lacks a trait the rule needs."""
    have = frozenset(getattr(chip.model, "traits", ()))
    missing = frozenset(getattr(rule, "requires", ())) - have
    if missing:
        name = getattr(rule, "name", type(rule).__name__)
        raise RuleError(f"rule {name} needs a network that is {', '.join(sorted(missing))}; the chip's model "
                        f"{chip.model!r} is {', '.join(sorted(have)) or 'of no declared kind'}")


def run_step(rule: Any, chip: Chip, batch: Any, on_metrics: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """One step of ``rule`` on ``batch``: its updates applied to ``chip`` as they come; returns what
    it measured. ``on_metrics`` sees each measurement before the updates that follow it (and may
    raise to stop the step there)."""
    metrics: dict[str, Any] = {}
    for item in rule.step(chip, batch):
        if isinstance(item, Update):
            chip.apply(item)
        elif isinstance(item, dict):
            metrics.update(item)
            if on_metrics is not None:
                on_metrics(item)
        else:
            raise TypeError(f"rule {getattr(rule, 'name', rule)!r} yielded {type(item).__name__}; expected a dict "
                            "of measurements or an Update")
    return metrics
