"""neuroemu: neuromorphic hardware emulation.

The chip model (:mod:`neuroemu.chip`: a network model's layers on tiles of any card, written
through any update scheme), the rule interface (:mod:`neuroemu.rules.base`) and the trainer
(:mod:`neuroemu.train`) are the core every study runs on; :mod:`neuroemu.hardware` is the hardware
side below them:

Device cards (:mod:`neuroemu.hardware.cards`) describe memristive devices with numbers from their papers;
crossbar tiles (:mod:`neuroemu.hardware.crossbar`) store weights on those devices and read them through a
realistic periphery; update schemes (:mod:`neuroemu.hardware.schemes`) turn the weight changes a learning
rule wants into device pulses; a layer larger than one tile is split over several
(:mod:`neuroemu.hardware.tiling`). Neuron substrates (:mod:`neuroemu.hardware.substrate`) are the neuron side of a
chip: ideal LIF neurons or an emulated analog chip with mismatch, noise and calibration
(:mod:`neuroemu.hardware.calibration`); :mod:`neuroemu.hardware.analog` holds the analog chip's matrix-multiply mode.
"""

import os as _os

# Thread pools that sleep when idle. OpenBLAS's threads and numba's OpenMP workers otherwise spin
# for a while after each call and take the cores from the other pool's next call (on 2 cores a
# 2-thread kernel right after a BLAS product ran at 1-thread speed; with these, at 2-thread speed,
# and BLAS products were no slower). Read when the libraries load: effective when neuroemu is
# imported before numpy (as by the command line); a value set by the user wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .errors import CardError, ConfigError, DataError, NeuroemuError  # noqa: E402
from .hardware import (MAX_PULSES, MAX_TILE, SCHEMES, AnalogNeurons, Card, IdealNeurons, MACTile, Periphery,
                       PulseLimitWarning, SpikingLayer, Tile, TiledLayer, calibrate, list_cards, load_card, make_scheme,
                       make_substrate, make_tile)
from .record import Recorder
from .chip import Chip, Hardware, Update, build_chip
from .rules.base import Rule, RuleError
from .train import Protocol, Trainer

from ._version import __version__

__all__ = ["Chip", "Hardware", "Protocol", "Rule", "RuleError", "Trainer", "Update", "build_chip", "AnalogNeurons", "Card", "CardError", "ConfigError", "DataError", "IdealNeurons", "MACTile", "MAX_PULSES",
           "MAX_TILE",
           "NeuroemuError", "Periphery", "PulseLimitWarning", "Recorder", "SCHEMES", "SpikingLayer", "Tile", "TiledLayer",
           "calibrate", "list_cards", "load_card", "make_scheme", "make_substrate", "make_tile", "__version__"]
