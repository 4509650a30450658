"""Learning rules: each returns the weight update (or gradient) it wants per layer, in weight
units, and never touches conductances; update schemes turn that into device pulses.

* :mod:`neuroemu.rules.surrogate` — surrogate-gradient BPTT for feed-forward spiking networks.
"""

from neuroemu.rules.surrogate import (
    Adam,
    ForwardResult,
    SpikeCountReg,
    SpikingMLP,
    fast_sigmoid_grad,
    psp_peak,
    spike_count_reg,
)

__all__ = [
    "Adam",
    "ForwardResult",
    "SpikeCountReg",
    "SpikingMLP",
    "fast_sigmoid_grad",
    "psp_peak",
    "spike_count_reg",
]
