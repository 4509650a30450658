"""The hardware side of an emulated chip.

Device cards (:mod:`.cards`) hold a device's numbers from its paper; crossbar tiles
(:mod:`.crossbar`) store weights on those devices and read them through a periphery (DAC, read
noise, ADC); the analog chip's matrix-multiply mode (:mod:`.analog`) and a layer split over several
tiles (:mod:`.tiling`) build on the tile. Update schemes (:mod:`.schemes`) turn the weight changes a
rule wants into device pulses. Neuron models (:mod:`.neurons`: ideal LIF, CUBA, ALIF, read-out) and
neuron substrates (:mod:`.substrate`: ideal or analog neurons with mismatch and noise) with their
calibration (:mod:`.calibration`) are the neuron side. :mod:`.factory` chooses between the parts
(``make_tile``, ``make_substrate``); :mod:`.response` measures a card's device statistics through
real tiles.

Floors, lowest first (a module imports only from floors below or beside it): cards, neurons →
crossbar, substrate → analog, calibration, response → schemes, factory → tiling.
"""

from .analog import MACTile
from .calibration import calibrate
from .cards import Card, list_cards, load_card
from .crossbar import Periphery, Tile
from .factory import make_substrate, make_tile
from .schemes import MAX_PULSES, SCHEMES, PulseLimitWarning, Scheme, make_scheme
from .substrate import AnalogNeurons, IdealNeurons, SpikingLayer
from .tiling import MAX_TILE, TiledLayer

__all__ = ["AnalogNeurons", "Card", "IdealNeurons", "MACTile", "MAX_PULSES", "MAX_TILE", "Periphery",
           "PulseLimitWarning", "SCHEMES", "Scheme", "SpikingLayer", "Tile", "TiledLayer", "calibrate", "list_cards",
           "load_card", "make_scheme", "make_substrate", "make_tile"]
