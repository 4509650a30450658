"""neuroemu: neuromorphic hardware emulation.

Device cards (:mod:`neuroemu.hardware.cards`) describe memristive devices with numbers from their papers;
crossbar tiles (:mod:`neuroemu.hardware.crossbar`) store weights on those devices and read them through a
realistic periphery; update schemes (:mod:`neuroemu.hardware.schemes`) turn the weight changes a learning
rule wants into device pulses; a layer larger than one tile is split over several
(:mod:`neuroemu.hardware.tiling`). Neuron substrates (:mod:`neuroemu.hardware.substrate`) are the neuron side of a
chip: ideal LIF neurons or an emulated analog chip with mismatch, noise and calibration
(:mod:`neuroemu.hardware.calibration`); :mod:`neuroemu.hardware.analog` holds the analog chip's matrix-multiply mode.
"""

from .errors import CardError, ConfigError, DataError, NeuroemuError
from .hardware import (MAX_PULSES, MAX_TILE, SCHEMES, AnalogNeurons, Card, IdealNeurons, MACTile, Periphery,
                       PulseLimitWarning, SpikingLayer, Tile, TiledLayer, calibrate, list_cards, load_card, make_scheme,
                       make_substrate, make_tile)
from .record import Recorder

__version__ = "0.1.0"

__all__ = ["AnalogNeurons", "Card", "CardError", "ConfigError", "DataError", "IdealNeurons", "MACTile", "MAX_PULSES",
           "MAX_TILE",
           "NeuroemuError", "Periphery", "PulseLimitWarning", "Recorder", "SCHEMES", "SpikingLayer", "Tile", "TiledLayer",
           "calibrate", "list_cards", "load_card", "make_scheme", "make_substrate", "make_tile", "__version__"]
