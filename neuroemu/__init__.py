"""neuroemu: neuromorphic hardware emulation.

Device cards (:mod:`neuroemu.cards`) describe memristive devices with numbers from their papers;
crossbar tiles (:mod:`neuroemu.crossbar`) store weights on those devices and read them through a
realistic periphery; update schemes (:mod:`neuroemu.schemes`) turn the weight changes a learning
rule wants into device pulses.
"""

from .cards import Card, list_cards, load_card
from .crossbar import Periphery, Tile
from .errors import CardError, ConfigError, DataError, NeuroemuError
from .record import Recorder
from .schemes import SCHEMES, make_scheme

__version__ = "0.1.0"

__all__ = ["Card", "CardError", "ConfigError", "DataError", "NeuroemuError", "Periphery", "Recorder", "SCHEMES",
           "Tile", "list_cards", "load_card", "make_scheme", "__version__"]
