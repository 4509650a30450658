"""Learning rules: each returns the weight update (or gradient) it wants per layer, in weight
units, and never touches conductances; update schemes turn that into device pulses.

* :mod:`neuroemu.rules.surrogate` — surrogate-gradient BPTT for feed-forward spiking networks.
* :mod:`neuroemu.rules.eprop` — e-prop (Bellec et al. 2020) for recurrent LIF/ALIF networks.
* :mod:`neuroemu.rules.sparse` — sparse spiking gradient descent (Perez-Nieves & Goodman 2021): the
  dense and the sparse backward of a feed-forward LIF network.
"""

from neuroemu.rules.eprop import (
    EpropConfig,
    EpropNetwork,
    Trace,
    adapt_feedback,
    eprop_gradients,
    readout,
    simulate,
    task_loss,
)
from neuroemu.rules.sparse import DeadNetworkError, SparseSNN
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
    "DeadNetworkError",
    "SparseSNN",
    "EpropConfig",
    "EpropNetwork",
    "Trace",
    "adapt_feedback",
    "eprop_gradients",
    "readout",
    "simulate",
    "task_loss",
    "Adam",
    "ForwardResult",
    "SpikeCountReg",
    "SpikingMLP",
    "fast_sigmoid_grad",
    "psp_peak",
    "spike_count_reg",
]
