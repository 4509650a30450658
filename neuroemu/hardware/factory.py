"""Factories one floor above the parts they choose between.

:func:`make_tile` picks a crossbar :class:`~neuroemu.hardware.crossbar.Tile` or, for an
``analog_chip`` card, the analog chip's synapse array (:class:`~neuroemu.hardware.analog.MACTile`,
which builds on the tile); :func:`make_substrate` picks ideal or analog neurons and calibrates the
analog ones (:mod:`neuroemu.hardware.calibration`, which builds on the substrate). Keeping the
choice here keeps the lower modules free of imports of the ones built on them.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, did_you_mean
from .analog import MACTile
from .calibration import calibrate as _calibrate
from .cards import Card, load_card
from .crossbar import Tile
from .substrate import AnalogNeurons, IdealNeurons

SUBSTRATES = ("ideal", "analog")


def make_tile(out_size: int, in_size: int, card: Card | str = "ideal", **kwargs: Any) -> Tile:
    """A tile for any card: a :class:`Tile` of devices, or for an ``analog_chip`` card its synapse
    array with the analog MAC mode (:class:`~neuroemu.hardware.analog.MACTile`; ``periphery`` and
    ``n_devices`` do not apply to it and must be left at their defaults)."""
    card = card if isinstance(card, Card) else load_card(card)
    if card.kind == "analog_chip":
        if kwargs.pop("n_devices", 1) != 1:
            raise ConfigError(f"{card.name}: n_devices: the chip's synapse array has one cell pair per weight")
        kwargs.pop("periphery", None)  # the MAC mode has its own converters, from the card
        return MACTile(out_size, in_size, card, **kwargs)
    return Tile(out_size, in_size, card, **kwargs)


def make_substrate(kind: str, n: int, card: Card | str = "brainscales2", *, rng: Any = None,
                   calibrate: bool = False, calibration_rng: Any = None,
                   targets: dict[str, float] | None = None):
    """A substrate by name: ``ideal`` (the card's targets as float neurons) or ``analog`` (an emulated
    chip drawn from ``rng``, calibrated when ``calibrate``); ``targets`` overrides some of the
    card's."""
    if kind == "ideal":
        return IdealNeurons.from_card(n, card, targets=targets)
    if kind == "analog":
        neurons = AnalogNeurons(n, card, rng=rng, targets=targets)
        if calibrate:
            _calibrate(neurons, rng=calibration_rng)
        return neurons
    raise ConfigError(f"substrate: expected one of {', '.join(SUBSTRATES)}, got {kind!r}"
                      f"{did_you_mean(kind, SUBSTRATES)}")
