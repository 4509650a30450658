"""Learning rules. Each is a :class:`~neuroemu.rules.base.Rule`: it sees the chip's activity and
yields the weight change it wants per layer, in weight units, never touching conductances; update
schemes turn that into device pulses (:mod:`neuroemu.rules.base` says how).

* :mod:`neuroemu.rules.backprop` — backpropagation (SGD, Adam) through the arrays' transposed reads.
* :mod:`neuroemu.rules.eprop` — e-prop (Bellec et al. 2020) for recurrent LIF/ALIF networks.
* :mod:`neuroemu.rules.surrogate` — surrogate-gradient BPTT for feed-forward spiking networks.
* :mod:`neuroemu.rules.sparse` — sparse spiking gradient descent (Perez-Nieves & Goodman 2021): the
  dense and the sparse backward of a feed-forward LIF network.
* :mod:`neuroemu.rules.hebbian` — batched Hebbian rules (FastHebb: soft-WTA, k-WTA, HPCA, Oja).
* :mod:`neuroemu.rules.eqprop` — equilibrium propagation.
* :mod:`neuroemu.rules.sdt` — self-defined targets (WTA + homeostasis) around a gradient rule.

Rules of one's own plug in by name (:mod:`neuroemu.plugins`).
"""

from neuroemu.rules.backprop import Backprop
from neuroemu.rules.base import Rule, RuleError, run_step
from neuroemu.rules.eprop import (
    Eprop,
    EpropConfig,
    EpropNetwork,
    Trace,
    adapt_feedback,
    eprop_gradients,
    readout,
    simulate,
    task_loss,
)
from neuroemu.rules.eqprop import EqProp
from neuroemu.rules.hebbian import Hebbian
from neuroemu.rules.sdt import SelfDefinedTargets, TargetBackprop
from neuroemu.rules.sparse import DeadNetworkError, SparseBPTT, SparseSNN
from neuroemu.rules.surrogate import (
    Adam,
    ForwardResult,
    SpikeCountReg,
    SpikingMLP,
    SurrogateBPTT,
    fast_sigmoid_grad,
    psp_peak,
    spike_count_reg,
)

__all__ = [
    "Adam", "Backprop", "DeadNetworkError", "Eprop", "EpropConfig", "EpropNetwork", "EqProp", "ForwardResult",
    "Hebbian", "Rule", "RuleError", "SelfDefinedTargets", "SparseBPTT", "SparseSNN", "SpikeCountReg", "SpikingMLP",
    "SurrogateBPTT", "TargetBackprop", "Trace", "adapt_feedback", "eprop_gradients", "fast_sigmoid_grad",
    "psp_peak", "readout", "run_step", "simulate", "spike_count_reg", "task_loss",
]
