"""Export of neuroemu's spiking networks as NIR graphs (:func:`to_nir`), with the weights the
chip holds and, in node metadata, what NIR cannot express (conventions: :mod:`neuroemu.interop.nir`)."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from ..chip import Chip, Hardware
from ..errors import ConfigError
from . import _dynamics as D
from .nir_import import _META, WEIGHT_NODES, NIRNetwork, _meta, require_nir

__all__ = ["to_nir"]


def _hw_meta(hw: Hardware | None) -> dict:
    if hw is None:
        return {}
    return {_META: {"card": str(hw.card.name), "scheme": str(hw.scheme), "n_devices": int(hw.n_devices),
                    "w_max": float(hw.w_max)}}


def _vec(val: float, n: int) -> np.ndarray:
    return np.full(n, float(val))


def to_nir(model_or_chip: Any, *, dt: float) -> Any:
    """A NIR graph of a neuroemu network, with the weights as the chip holds them
    (``chip.weights()``; a model without a chip: its own initial weights, where it has them).

    * :class:`~neuroemu.models.snn.SNN` on a :class:`~neuroemu.rules.sparse.SparseSNN`: Input →
      (``layer<k>`` Linear → ``lif<k>`` LIF, metadata reset "subtract") per hidden layer →
      ``layer<N>`` Linear → ``readout`` LI (metadata readout "max_over_time") → Output; τ = −dt/ln β,
      r = 1/(1 − β), v_threshold 1, v_reset 0, so that the exact discretisation is the network's
      v(t) = β v(t−1) + I(t) − z(t−1).
    * SNN on a :class:`~neuroemu.rules.surrogate.SpikingMLP`: the same with ``lif<k>`` CubaLIF
      (reset "to_value", metadata synapse_input "impulse", refractory = refractory steps · dt,
      refractory_mode "ignore_input"), w_in = τ_syn/dt and r = 1/k, which under "exact" is the
      network's CUBA kernel; the read-out a CubaLI node (same conventions).
    * :class:`~neuroemu.models.rsnn.RSNN`: ``in`` → ``input`` Linear → ``lif`` LIF (reset
      "subtract", refractory_mode "block_spikes") with the back edge ``lif`` → ``recurrent`` Linear
      (diagonal zeroed: no autapses) → ``lif``; ``lif`` → ``output`` Linear → ``readout`` LI (r =
      1/(1 − κ), v_leak = the read-out bias) → ``out``. ALIF neurons (cfg.n_alif > 0) have no NIR
      node: ConfigError.
    * :class:`NIRNetwork`: its graph with the chip's weights and biases.
    * a list of :class:`~neuroemu.hardware.substrate.SpikingLayer` (tile + neurons): per layer a
      Linear node of the tile's weights and a CubaLIF node (CubaLI for a non-spiking read-out) in
      the same conventions as the SpikingMLP; analog neurons as the neuron their chip is calibrated to.

    The Linear/Affine/Conv2d nodes carry the chip's hardware in their metadata, the graph ``dt``,
    ``method`` ("exact") and ``source``. Decays become time constants τ = −dt/ln(decay)."""
    nir = require_nir()
    from ..models.rsnn import RSNN
    from ..models.snn import SNN

    dt = float(dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ConfigError(f"to_nir: dt: expected a finite step > 0, got {dt!r}")
    if isinstance(model_or_chip, (list, tuple)):
        from ..hardware.substrate import SpikingLayer

        if not model_or_chip or not all(isinstance(layer, SpikingLayer) for layer in model_or_chip):
            raise ConfigError("to_nir: a list to export must hold SpikingLayer objects (tile + neurons), at least one")
        return _layers_graph(nir, list(model_or_chip), dt, {"dt": dt, "method": "exact"})
    chip = model_or_chip if isinstance(model_or_chip, Chip) else None
    model = chip.model if chip is not None else model_or_chip
    hw_meta = _hw_meta(chip.hardware if chip is not None else None)
    if chip is not None:
        weights = {n: np.asarray(w, np.float64) for n, w in chip.weights().items()}
        biases = {n: None if l.bias is None else np.asarray(l.bias, np.float64) for n, l in chip.layers.items()}
    else:
        weights, biases = None, {}
    meta = {"dt": dt, "method": "exact", "source": type(model).__name__}

    if isinstance(model, NIRNetwork):
        g = copy.deepcopy(model.graph)
        for name, c in model.nodes.items():
            if c.kind not in WEIGHT_NODES or weights is None:
                continue
            node = _find(g, name)
            node.weight = weights[name].reshape(np.shape(node.weight)).astype(np.asarray(node.weight).dtype)
            if biases.get(name) is not None:
                node.bias = biases[name].astype(np.asarray(node.bias).dtype)
            node.metadata = {**(node.metadata or {}), **hw_meta}
        g.metadata = {**(g.metadata or {}), _META: {**_meta(g), **meta}}
        return g

    if isinstance(model, SNN):
        return _snn_graph(nir, model, weights, dt, hw_meta, meta)
    if isinstance(model, RSNN):
        if weights is None:
            raise ConfigError("to_nir: an RSNN holds no weights of its own; pass its chip (model.build(...))")
        return _rsnn_graph(nir, model, weights, biases, dt, hw_meta, meta)
    raise ConfigError(f"to_nir: cannot export a {type(model).__name__}; expected an SNN (SparseSNN or SpikingMLP), "
                      "an RSNN, a NIRNetwork or a chip of one")


def _find(graph: Any, name: str) -> Any:
    node = graph
    for part in name.split("."):
        node = node.nodes[part]
    return node


def _snn_graph(nir, model, weights, dt, hw_meta, meta) -> Any:
    from ..rules.sparse import SparseSNN
    from ..rules.surrogate import SpikingMLP

    net = model.net
    if model.neurons is not None:
        raise ConfigError("to_nir: the SNN runs on a neuron substrate; export the network with its own units "
                          "(model.replace(neurons=None))")
    ws = [np.asarray(weights[f"layer{k + 1}"] if weights is not None else w, np.float64)
          for k, w in enumerate(net.weights)]
    nodes = {"input": nir.Input(input_type=np.array([net.sizes[0]]))}
    edges, prev = [], "input"
    n_hidden = len(ws) - 1
    readout_meta = {"readout": "max_over_time"}
    for k, w in enumerate(ws):
        lname = f"layer{k + 1}"
        nodes[lname] = nir.Linear(weight=w, metadata=dict(hw_meta))
        n = w.shape[0]
        last = k == n_hidden
        uname = "readout" if last else f"lif{k + 1}"
        if isinstance(net, SparseSNN):
            beta = net.beta_out if last else net.beta
            tau = D.decay_to_tau(dt, beta, f"{lname} decay")
            r = (net.readout_scale if last else 1.0) / (1.0 - beta)
            if last:
                nodes[uname] = nir.LI(tau=_vec(tau, n), r=_vec(r, n), v_leak=_vec(0, n), metadata={_META: readout_meta})
            else:
                nodes[uname] = nir.LIF(tau=_vec(tau, n), r=_vec(r, n), v_leak=_vec(0, n), v_threshold=_vec(net.theta, n),
                                       v_reset=_vec(0, n), metadata={_META: {"reset": "subtract"}})
        elif isinstance(net, SpikingMLP):
            p = net.readout_params if last else net.hidden_params
            nodes[uname] = _cuba_node(nir, p, n, dt, uname, spiking=not last, meta=readout_meta if last else {})
        else:
            raise ConfigError(f"to_nir: cannot export an SNN of {type(net).__name__}; expected SparseSNN or SpikingMLP")
        edges += [(prev, lname), (lname, uname)]
        prev = uname
    nodes["output"] = nir.Output(output_type=np.array([ws[-1].shape[0]]))
    edges.append((prev, "output"))
    meta["source"] = f"SNN({type(net).__name__})"
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={_META: meta})


def _cuba_node(nir, p: Any, n: int, dt: float, name: str, *, spiking: bool, meta: dict) -> Any:
    """A current-based LIF population (:class:`~neuroemu.hardware.neurons.CubaParams` ``p``) as a
    CubaLIF node (CubaLI when not spiking) that, read with ``synapse_input="impulse"`` and the
    exact method, is neuroemu's CUBA kernel: w_in = τ_syn/dt, r = 1/k."""
    tm = D.decay_to_tau(dt, p.alpha, f"{name} membrane decay")
    ts = D.decay_to_tau(dt, p.beta_syn, f"{name} synaptic decay")
    k_ = float(D.cuba_k(dt, np.float64(tm), np.float64(ts)))
    common = dict(tau_syn=_vec(ts, n), tau_mem=_vec(tm, n), r=_vec(1.0 / k_, n), v_leak=_vec(0, n),
                  w_in=_vec(ts / dt, n))
    if not spiking:
        return nir.CubaLI(**common, metadata={_META: {"synapse_input": "impulse", **meta}})
    m = {"synapse_input": "impulse", "reset": "to_value", "refractory": float(p.refractory_steps) * dt,
         "refractory_mode": "ignore_input", **meta}
    return nir.CubaLIF(**common, v_threshold=_vec(p.v_th, n), v_reset=_vec(p.v_reset, n), metadata={_META: m})


def _layers_graph(nir, layers: list, dt: float, meta: dict) -> Any:
    """A stack of :class:`~neuroemu.hardware.substrate.SpikingLayer`: per layer its tile's weights
    (Linear ``layer<k>``) and its neurons (CubaLIF ``neurons<k>``, or CubaLI for an integrating
    read-out); analog neurons are exported as the neuron their chip is calibrated to."""
    from ..hardware.substrate import AnalogNeurons, IdealNeurons

    nodes = {"input": nir.Input(input_type=np.array([layers[0].tile.shape[1]]))}
    edges, prev = [], "input"
    for k, layer in enumerate(layers, 1):
        neurons = layer.neurons
        if isinstance(neurons, AnalogNeurons):
            t = neurons.targets
            neurons = IdealNeurons(neurons.n, dt=neurons.card.params["dt"], tau_mem=t["tau_mem"], tau_syn=t["tau_syn"],
                                   v_reset=(t["v_reset"] - t["v_leak"]) / neurons.gap, refractory=neurons.refractory)
        if not isinstance(neurons, IdealNeurons):
            raise ConfigError(f"to_nir: layer {k}: cannot export neurons of {type(neurons).__name__}")
        w = np.asarray(layer.tile.weights(), np.float64)
        nodes[f"layer{k}"] = nir.Linear(weight=w, metadata={_META: {"card": str(layer.tile.card.name)}})
        nodes[f"neurons{k}"] = _cuba_node(nir, neurons.params, w.shape[0], dt, f"neurons{k}", spiking=layer.spiking,
                                          meta={})
        edges += [(prev, f"layer{k}"), (f"layer{k}", f"neurons{k}")]
        prev = f"neurons{k}"
    nodes["output"] = nir.Output(output_type=np.array([layers[-1].tile.shape[0]]))
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={_META: {**meta, "source": "SpikingLayer stack"}})


def _rsnn_graph(nir, model, weights, biases, dt, hw_meta, meta) -> Any:
    cfg = model.cfg
    if cfg.n_alif:
        raise ConfigError(f"to_nir: the RSNN has {cfg.n_alif} ALIF neurons; NIR has no adaptive-threshold neuron "
                          "(export a network with cfg.n_alif = 0)")
    n = model.n_rec
    alpha, kappa = math.exp(-cfg.dt / cfg.tau_m), math.exp(-cfg.dt / cfg.tau_out)
    w_rec = weights["recurrent"].copy()
    np.fill_diagonal(w_rec, 0.0)
    b = biases.get("output")
    lif_meta = {"reset": "subtract", "refractory": float(cfg.n_ref) * dt, "refractory_mode": "block_spikes"}
    nodes = {
        "in": nir.Input(input_type=np.array([model.n_in])),
        "input": nir.Linear(weight=weights["input"], metadata=dict(hw_meta)),
        "lif": nir.LIF(tau=_vec(D.decay_to_tau(dt, alpha, "membrane decay"), n), r=_vec(1.0 / (1.0 - alpha), n),
                       v_leak=_vec(0, n), v_threshold=_vec(cfg.v_th, n), v_reset=_vec(0, n), metadata={_META: lif_meta}),
        "recurrent": nir.Linear(weight=w_rec, metadata=dict(hw_meta)),
        "output": nir.Linear(weight=weights["output"], metadata=dict(hw_meta)),
        "readout": nir.LI(tau=_vec(D.decay_to_tau(dt, kappa, "read-out decay"), model.n_out),
                          r=_vec(1.0 / (1.0 - kappa), model.n_out),
                          v_leak=np.zeros(model.n_out) if b is None else b.copy()),
        "out": nir.Output(output_type=np.array([model.n_out])),
    }
    edges = [("in", "input"), ("input", "lif"), ("lif", "recurrent"), ("recurrent", "lif"), ("lif", "output"),
             ("output", "readout"), ("readout", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={_META: meta})
