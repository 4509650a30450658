"""neuroemu: neuromorphic hardware emulation.

Device cards (:mod:`neuroemu.cards`) describe memristive devices with numbers from their papers;
crossbar tiles (:mod:`neuroemu.crossbar`) store weights on those devices and read them through a
realistic periphery; update schemes (:mod:`neuroemu.schemes`) turn the weight changes a learning
rule wants into device pulses; a layer larger than one tile is split over several
(:mod:`neuroemu.tiling`). Neuron substrates (:mod:`neuroemu.substrate`) are the neuron side of a
chip: ideal LIF neurons or an emulated analog chip with mismatch, noise and calibration
(:mod:`neuroemu.calibration`); :mod:`neuroemu.analog` holds the analog chip's matrix-multiply mode.
"""

from .cards import Card, list_cards, load_card
from .analog import MACTile
from .calibration import calibrate
from .crossbar import Periphery, Tile, make_tile
from .errors import CardError, ConfigError, DataError, NeuroemuError
from .record import Recorder
from .schemes import MAX_PULSES, SCHEMES, PulseLimitWarning, make_scheme
from .substrate import AnalogNeurons, IdealNeurons, SpikingLayer, make_substrate
from .tiling import MAX_TILE, TiledLayer

__version__ = "0.1.0"

__all__ = ["AnalogNeurons", "Card", "CardError", "ConfigError", "DataError", "IdealNeurons", "MACTile", "MAX_PULSES",
           "MAX_TILE",
           "NeuroemuError", "Periphery", "PulseLimitWarning", "Recorder", "SCHEMES", "SpikingLayer", "Tile", "TiledLayer",
           "calibrate", "list_cards", "load_card", "make_scheme", "make_substrate", "make_tile", "__version__"]
