"""Import of NIR graphs: :func:`from_nir` turns a NIR graph (a :class:`nir.NIRGraph` or a ``.nir``
file) into a :class:`NIRNetwork`, a :class:`~neuroemu.models.Model` whose weight nodes (Affine,
Linear, Conv2d) are chip layers and whose neuron nodes run as discretised neurons. ``nir`` is an
optional dependency (``pip install 'neuroemu[nir]'``), imported only when a function needs it.

Execution (:meth:`NIRNetwork.forward`)
--------------------------------------
Input x is (T, batch, *input_shape). Per time step t, the nodes run in the topological order of the
graph with the back edges of its cycles removed; the back edges are those a depth-first search from
the Input node meets (following the edges in their listed order) towards a node still on its path,
and a back edge delivers its source's value of the previous step (zero at t = 0): a one-step delay.
A node with several inputs gets their sum. Nodes outside cycles are computed for all T steps at
once, which gives the same values (they depend on no later step).

* Affine, Linear: one read of the chip layer of the node's name, ``chip[name].forward(x)`` (its
  periphery, read noise and drift), plus the Affine bias, held as the layer's digital bias.
* Conv2d: the layer holds the (C_out, C_in·Kh·Kw) matrix; the convolution is an im2col read
  (:func:`im2col`: rows (n, i, j), columns (c, ki, kj)) plus the bias. groups must be 1.
* SumPool2d, AvgPool2d (the mean over the window, zero padding included), Flatten (dims without
  the batch, as nir's type inference), Scale, Threshold (x > θ), the Input/Output nodes of nested
  graphs (pass-through): digital, exact.
* Neuron nodes: :mod:`neuroemu.interop._dynamics` (equations, the ``exact`` and ``euler``
  discretisations, the two readings of CubaLIF's input, reset and refractory conventions).

What NIR cannot express is carried in the metadata ``{"neuroemu": {...}}`` of a node (strings and
numbers only), read back by :func:`from_nir`:

* neuron nodes: ``reset`` ("to_value" — NIR's, the default — or "subtract"), ``refractory`` (a time
  in the graph's unit, rounded to steps of dt), ``refractory_mode`` ("ignore_input" or
  "block_spikes"), ``synapse_input`` ("hold" or "impulse"), ``readout`` ("max_over_time": the
  logits of the network are the maximum over time of this node's output — a read-out convention,
  not a dynamics, see :meth:`NIRNetwork.logits`);
* weight nodes: ``card``, ``scheme``, ``n_devices``, ``w_max`` of the hardware that held them
  (:meth:`NIRNetwork.hardware_hint`);
* the graph: ``dt`` and ``method`` it was written for, and its ``source``.

Neurons on a substrate
----------------------
``neurons="analog"`` runs every LIF and CubaLIF node on an emulated analog chip
(:class:`~neuroemu.hardware.substrate.AnalogNeurons` of an ``analog_chip`` card, calibrated or
not), in its normalised units: v_leak → 0, v_threshold → 1, v_reset → (v_reset − v_leak)/(v_threshold
− v_leak). One NIR step is one step of the chip (time scaled by chip dt / dt), so the node's time
constants, reset and refractory time become the substrate's calibration ``targets`` (a value the
parameter cells cannot reach is a :class:`~neuroemu.errors.ConfigError`). The chip's neuron is a
CUBA neuron that resets to a value and clamps its membrane at the reset while refractory; on an
ideal chip (no mismatch, no noise) it is exactly a CubaLIF read with ``synapse_input="impulse"``,
``method="exact"``; its input is then scaled by r·k·w_in·dt/τ_syn / (v_threshold − v_leak). What
is approximated:

* ``synapse_input="hold"``: inputs are scaled so that the steady state matches (r·w_in·(1 − α)(1 − β)
  /(v_threshold − v_leak)); the transient differs by O(dt/τ);
* LIF (no synaptic filter): the chip's shortest synaptic time constant (τ_syn_k / capmem_max, about
  2.9 chip steps on brainscales2) stands in for none, with the steady-state scaling;
* refractory ``block_spikes`` and a reset value away from the leak: the chip clamps the membrane at
  the reset while refractory;
* "subtract" resets are not supported (the chip resets to a value): ConfigError;
* every neuron of a node shares one target per parameter (NIR parameters that differ between the
  neurons of one node: ConfigError); mismatch, temporal noise, the membrane's rails and the
  calibration residue are the chip's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np

from ..chip import EXACT, Chip, Hardware, Layer, LayerSpec, program_scale
from ..errors import ConfigError
from ..models import Model
from ..rng import as_rng
from . import _dynamics as D

__all__ = ["NIRNetwork", "Recording", "from_nir", "im2col", "require_nir"]

#: Node types the importer runs.
WEIGHT_NODES = ("Affine", "Linear", "Conv2d")
NEURON_NODES = ("I", "IF", "LI", "LIF", "CubaLI", "CubaLIF")
DIGITAL_NODES = ("Flatten", "SumPool2d", "AvgPool2d", "Scale", "Threshold", "Input", "Output")
SUPPORTED = WEIGHT_NODES + NEURON_NODES + DIGITAL_NODES
_META = "neuroemu"


def require_nir():
    """The ``nir`` module, or a clear error saying how to install it."""
    try:
        import nir
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("neuroemu.interop.nir needs the optional package 'nir' (>= 1.0.8): "
                          "pip install 'neuroemu[nir]'") from None
    return nir


# ----------------------------------------------------------------------------- small helpers
def _arr(val: Any) -> np.ndarray:
    return np.asarray(val, dtype=np.float64)


def _meta(node: Any) -> dict:
    m = getattr(node, "metadata", None) or {}
    inner = m.get(_META, {}) if isinstance(m, Mapping) else {}
    return dict(inner) if isinstance(inner, Mapping) else {}


def _plain(v: Any) -> Any:
    """A metadata value read back from HDF5 as a plain Python value."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def _pair(v: Any, what: str, name: str) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(np.int64).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2:
        raise ConfigError(f"NIR node {name!r}: {what}: expected one or two integers, got {v!r}")
    return int(a[0]), int(a[1])


def _shape_of(types: Any, key: str) -> tuple[int, ...] | None:
    if not isinstance(types, Mapping) or types.get(key) is None:
        return None
    return tuple(int(s) for s in np.asarray(types[key]).reshape(-1))


# ----------------------------------------------------------------------------- im2col
def im2col(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
           padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """The Kh × Kw patches of x (N, C, H, W), zero-padded by ``padding`` on each side, as an
    (N·Ho·Wo, C·Kh·Kw) array: rows (n, i, j), columns (c, ki, kj) — the layout of
    :func:`neuroemu.nn.patches`, with rectangular kernels, strides and dilation."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"im2col: a {kh}x{kw} kernel (dilation {dh}x{dw}) does not fit a padded {h}x{w} input")
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    cols = np.empty((n, ho, wo, c, kh, kw), x.dtype)
    for ki in range(kh):
        for kj in range(kw):
            win = xp[:, :, ki * dh: ki * dh + sh * (ho - 1) + 1: sh, kj * dw: kj * dw + sw * (wo - 1) + 1: sw]
            cols[:, :, :, :, ki, kj] = win.transpose(0, 2, 3, 1)
    return cols.reshape(n * ho * wo, c * kh * kw)


# ----------------------------------------------------------------------------- graph analysis
def _flatten_graph(graph: Any, prefix: str = "") -> tuple[dict, list]:
    """Nodes and edges of a graph with its nested graphs inlined (names ``outer.inner``); the
    Input/Output nodes of a nested graph become pass-through nodes."""
    nir = require_nir()
    nodes, edges = {}, []
    ports = {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _flatten_graph(node, full + ".")
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise ConfigError(f"NIR node {full!r} (NIRGraph): a nested graph needs exactly one Input and one "
                                  f"Output node, got {len(ins)} and {len(outs)}")
            for k in list(sub_nodes):
                if k in (f"{full}.{ins[0]}", f"{full}.{outs[0]}"):
                    sub_nodes[k] = ("Pass", sub_nodes[k][1])
            nodes.update(sub_nodes)
            edges += sub_edges
            ports[full] = (f"{full}.{ins[0]}", f"{full}.{outs[0]}")
        else:
            nodes[full] = (type(node).__name__, node)
    for src, dst in graph.edges:
        s, d = prefix + src, prefix + dst
        s = ports[s][1] if s in ports else s
        d = ports[d][0] if d in ports else d
        edges.append((s, d))
    return nodes, edges


def _order(nodes: dict, edges: list, inputs: list[str]) -> tuple[list[str], set, list[list[str]]]:
    """(topological order without back edges, the back edges, the node groups in execution order:
    a group of one node outside any cycle, or the nodes of one cycle in topological order)."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for s, d in edges:
        succ[s].append(d)
    back, state, post = set(), {}, []
    for root in inputs:
        if root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                post.append(node)
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    unreached = [n for n in nodes if n not in state]
    if unreached:
        raise ConfigError(f"NIR graph: node(s) {', '.join(map(repr, unreached))} cannot be reached from the Input node")
    order = post[::-1]
    # strongly connected components (Tarjan, iterative); a cycle is run step by step
    index, low, onstack, stack, counter = {}, {}, set(), [], [0]
    comps: list[list[str]] = []
    for root in order:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        onstack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        onstack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    comps.append(comp)
            elif nxt not in index:
                index[nxt] = low[nxt] = counter[0]
                counter[0] += 1
                stack.append(nxt)
                onstack.add(nxt)
                work.append((nxt, iter(succ[nxt])))
            elif nxt in onstack:
                low[node] = min(low[node], index[nxt])
    pos = {n: i for i, n in enumerate(order)}
    groups = sorted((sorted(c, key=pos.get) for c in comps), key=lambda c: pos[c[0]])
    return order, back, groups


# ----------------------------------------------------------------------------- compiled nodes
class _Neurons:
    """A neuron node: its coefficients (ideal) or an analog population."""

    def __init__(self, params: D.NeuronParams, analog: Any = None):
        self.params, self.analog = params, analog

    def start(self, batch: int, shape: tuple, rng: Any) -> Any:
        if self.analog is not None:
            return self.analog.start(batch, rng)
        return D.initial_state(self.params, batch, shape)

    def step(self, state: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        if self.analog is not None:
            return self.analog.step(state, x)
        return D.neuron_step(self.params, state, x)


class _AnalogPopulation:
    """A LIF/CubaLIF node on an analog chip's neurons (normalised units; see the module docstring),
    stepped with persistent state (membrane, synaptic current, refractory counter)."""

    def __init__(self, substrate: Any, scale: float, v_leak: float, gap: float, shape: tuple):
        self.sub, self.scale, self.v_leak, self.gap, self.shape = substrate, scale, v_leak, gap, shape

    def start(self, batch: int, rng: Any) -> Any:
        return self.sub.start(batch, rng=rng)

    def step(self, st: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        s, batch = self.sub, x.shape[0]
        xs = np.ascontiguousarray((x.reshape(1, batch, -1) * self.scale).astype(np.float64))
        zs, vs = s.advance(st, xs)
        v = self.v_leak + (vs[0] - s.targets["v_leak"]) / s.gap * self.gap
        return zs[0].reshape(batch, *self.shape), v.reshape(batch, *self.shape), st


class _Node(NamedTuple):
    name: str
    kind: str
    node: Any
    in_shape: tuple
    out_shape: tuple
    preds: tuple  # ((source, is_back_edge), ...)
    neurons: _Neurons | None


class Recording(NamedTuple):
    """What :meth:`NIRNetwork.forward` records with ``record=True``: ``outputs`` {node: its output
    (T, batch, *shape)} for every node, ``membranes`` {neuron node: v (T, batch, *shape)}, the
    membrane before any reset."""

    outputs: dict
    membranes: dict


# ----------------------------------------------------------------------------- the model
class NIRNetwork(Model):
    """A NIR graph as a network on a chip (made by :func:`from_nir`; arguments documented there).

    Weight layers: one :class:`~neuroemu.chip.LayerSpec` per Affine, Linear and Conv2d node, named as
    the node (Affine and Conv2d biases: the layer's digital float64 bias); their initial weights are
    the graph's. ``forward(chip, x)`` on x (T, batch, *input_shape) returns the Output node's input
    as (T, batch, n_out); with ``record=True`` it returns (y, :class:`Recording`)."""

    def __init__(self, graph: Any, *, dt: float, method: str = "exact", synapse_input: str | None = None,
                 neurons: str = "ideal", neuron_card: Any = "brainscales2", calibrated: bool = True,
                 rng: Any = None):
        nir = require_nir()
        if not isinstance(graph, nir.NIRGraph):
            raise ConfigError(f"from_nir: expected a nir.NIRGraph or a path, got {type(graph).__name__}")
        self.dt = float(dt)
        if not (math.isfinite(self.dt) and self.dt > 0):
            raise ConfigError(f"from_nir: dt: expected a finite step > 0, got {dt!r}")
        if method not in D.METHODS:
            raise ConfigError(f"from_nir: method: expected one of {', '.join(D.METHODS)}, got {method!r}")
        if synapse_input is not None and synapse_input not in D.SYNAPSE_INPUTS:
            raise ConfigError(f"from_nir: synapse_input: expected None or one of {', '.join(D.SYNAPSE_INPUTS)}, "
                              f"got {synapse_input!r}")
        if neurons not in ("ideal", "analog"):
            raise ConfigError(f"from_nir: neurons: expected 'ideal' or 'analog', got {neurons!r}")
        self.graph, self.method, self.synapse_input = graph, method, synapse_input
        self.neurons, self.neuron_card, self.calibrated = neurons, neuron_card, bool(calibrated)
        self.metadata = {k: _plain(v) for k, v in _meta(graph).items()}
        nodes, edges = _flatten_graph(graph)
        for name, (kind, _) in nodes.items():
            if kind not in SUPPORTED and kind != "Pass":
                raise ConfigError(f"NIR node {name!r}: type {kind} is not supported; supported: {', '.join(SUPPORTED)}")
        top_in = [n for n, (k, _) in nodes.items() if k == "Input"]
        top_out = [n for n, (k, _) in nodes.items() if k == "Output"]
        if len(top_in) != 1 or len(top_out) != 1:
            raise ConfigError(f"NIR graph: expected one Input and one Output node, got {len(top_in)} Input "
                              f"({', '.join(top_in)}) and {len(top_out)} Output ({', '.join(top_out)})")
        self.input_name, self.output_name = top_in[0], top_out[0]
        order, back, groups = _order(nodes, edges, top_in)
        self.back_edges = sorted(back)
        self.order = order
        preds: dict[str, list] = {n: [] for n in nodes}
        for s, d in edges:
            preds[d].append((s, (s, d) in back))
        rng = as_rng(rng)
        compiled: dict[str, _Node] = {}
        for name in order:
            kind, node = nodes[name]
            if kind == "Input":
                in_shape = _shape_of(node.input_type, "input")
                if in_shape is None:
                    raise ConfigError(f"NIR node {name!r} (Input): no input shape")
            else:
                shapes = {compiled[s].out_shape for s, b in preds[name] if not b}
                if len(shapes) != 1:
                    raise ConfigError(f"NIR node {name!r} ({kind}): its inputs have shapes {sorted(shapes)}; "
                                      "expected one shape")
                in_shape = shapes.pop()
            out_shape = self._out_shape(name, kind, node, in_shape)
            neu = self._neurons(name, kind, node, out_shape, rng) if kind in NEURON_NODES else None
            compiled[name] = _Node(name, kind, node, in_shape, out_shape, tuple(preds[name]), neu)
        for name, c in compiled.items():
            for s, b in c.preds:
                if b and compiled[s].out_shape != c.in_shape:
                    raise ConfigError(f"NIR edge {s!r} -> {name!r}: shape {compiled[s].out_shape} does not match "
                                      f"the node's input shape {c.in_shape}")
        self.nodes = {n: compiled[n] for g in groups for n in g}  # execution order (layers() follows it)
        self.groups = [(g, len(g) > 1 or any(s == g[0] for s, _ in compiled[g[0]].preds)) for g in groups]
        self.traits = frozenset({"spiking", "sequence", "recurrent" if back else "feedforward"})
        self.layer_hardware = {n: {k: _plain(v) for k, v in _meta(c.node).items()}
                               for n, c in compiled.items() if c.kind in WEIGHT_NODES and _meta(c.node)}

    # ------------------------------------------------------------------ construction
    def _out_shape(self, name: str, kind: str, node: Any, in_shape: tuple) -> tuple:
        where = f"NIR node {name!r} ({kind})"
        if kind in ("Affine", "Linear"):
            w = np.asarray(node.weight)
            if w.ndim != 2:
                raise ConfigError(f"{where}: expected a 2-d weight (N_out, N_in), got shape {w.shape}")
            if in_shape != (w.shape[1],):
                raise ConfigError(f"{where}: weight {w.shape} expects inputs of shape ({w.shape[1]},), got {in_shape}")
            return (w.shape[0],)
        if kind == "Conv2d":
            w = np.asarray(node.weight)
            if int(np.asarray(node.groups)) != 1:
                raise ConfigError(f"{where}: groups = {node.groups} is not supported (expected 1)")
            if w.ndim != 4 or len(in_shape) != 3 or in_shape[0] != w.shape[1]:
                raise ConfigError(f"{where}: weight {w.shape} (C_out, C_in, Kh, Kw) does not fit inputs {in_shape}")
            geo = self._conv_geometry(name, node, w.shape[2:])
            cols = im2col(np.zeros((1, *in_shape)), *geo)
            ho_wo = cols.shape[0]
            stride, pad, dil = geo[1], geo[2], geo[3]
            ho = (in_shape[1] + 2 * pad[0] - dil[0] * (w.shape[2] - 1) - 1) // stride[0] + 1
            return (w.shape[0], ho, ho_wo // ho)
        if kind in ("SumPool2d", "AvgPool2d"):
            if len(in_shape) != 3:
                raise ConfigError(f"{where}: expected inputs (C, H, W), got {in_shape}")
            k, s, p = (_pair(getattr(node, a), a, name) for a in ("kernel_size", "stride", "padding"))
            ho, wo = (in_shape[1] + 2 * p[0] - k[0]) // s[0] + 1, (in_shape[2] + 2 * p[1] - k[1]) // s[1] + 1
            return (in_shape[0], ho, wo)
        if kind == "Flatten":
            start, end = int(node.start_dim), int(node.end_dim)
            nd = len(in_shape)
            start, end = start % nd if nd else 0, end % nd if nd else 0
            return (*in_shape[:start], int(np.prod(in_shape[start:end + 1])), *in_shape[end + 1:])
        if kind in ("Input", "Output", "Pass"):
            return in_shape
        params = [np.asarray(getattr(node, a)) for a in ("scale", "threshold", "r") if hasattr(node, a)]
        for p in params:
            try:
                np.broadcast_to(p, in_shape)
            except ValueError:
                raise ConfigError(f"{where}: parameters of shape {p.shape} do not fit inputs of shape {in_shape}") from None
        return in_shape

    def _conv_geometry(self, name: str, node: Any, kernel: tuple) -> tuple:
        kh, kw = int(kernel[0]), int(kernel[1])
        stride, dil = _pair(node.stride, "stride", name), _pair(node.dilation, "dilation", name)
        pad = node.padding
        if isinstance(pad, str):
            if pad == "valid":
                pad = (0, 0)
            elif pad == "same":
                tot = (dil[0] * (kh - 1), dil[1] * (kw - 1))
                if any(t % 2 for t in tot) or stride != (1, 1):
                    raise ConfigError(f"NIR node {name!r} (Conv2d): padding 'same' needs stride 1 and an odd "
                                      "(dilated) kernel (asymmetric padding is not supported)")
                pad = (tot[0] // 2, tot[1] // 2)
            else:
                raise ConfigError(f"NIR node {name!r} (Conv2d): padding: expected a number, 'same' or 'valid', "
                                  f"got {pad!r}")
        else:
            pad = _pair(pad, "padding", name)
        return (kh, kw), stride, pad, dil

    def _neurons(self, name: str, kind: str, node: Any, shape: tuple, rng: np.random.Generator) -> _Neurons:
        where = f"NIR node {name!r} ({kind})"
        meta = {k: _plain(v) for k, v in _meta(node).items()}
        fields = {"I": ("r",), "IF": ("r", "v_threshold", "v_reset"), "LI": ("tau", "r", "v_leak"),
                  "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
                  "CubaLI": ("tau_syn", "tau_mem", "r", "v_leak", "w_in"),
                  "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")}[kind]
        prm = {}
        for f in fields:
            val = getattr(node, f, None)
            if val is None:
                val = np.zeros(shape)
            try:
                prm[f] = np.broadcast_to(_arr(val), shape)
            except ValueError:
                raise ConfigError(f"{where}: {f} of shape {np.shape(val)} does not fit the node's shape {shape}") from None
            if not np.all(np.isfinite(prm[f])):
                raise ConfigError(f"{where}: {f}: expected finite values")
            if f.startswith("tau") and not np.all(prm[f] > 0):
                raise ConfigError(f"{where}: {f}: expected time constants > 0, got min {prm[f].min():g}")
        syn = meta.get("synapse_input", self.synapse_input or "hold") if self.synapse_input is None \
            else self.synapse_input
        reset = meta.get("reset", "to_value")
        mode = meta.get("refractory_mode", "ignore_input")
        for key, val, allowed in (("synapse_input", syn, D.SYNAPSE_INPUTS), ("reset", reset, D.RESETS),
                                  ("refractory_mode", mode, D.REFRACTORY_MODES)):
            if val not in allowed:
                raise ConfigError(f"{where}: metadata neuroemu.{key}: expected one of {', '.join(allowed)}, got {val!r}")
        refr = float(meta.get("refractory", 0.0))
        if not (math.isfinite(refr) and refr >= 0):
            raise ConfigError(f"{where}: metadata neuroemu.refractory: expected a time >= 0, got {refr!r}")
        n_ref = int(round(refr / self.dt))
        spiking = kind in ("IF", "LIF", "CubaLIF")
        if "r" not in prm:
            prm["r"] = np.ones(shape)
        co = D.coefficients(kind, prm, self.dt, self.method, syn)
        params = D.NeuronParams(co["v_leak"], co["a_m"], co["c"], co["d"], co["a_s"], co["b_s"], co["w_in"],
                                prm.get("v_threshold", np.full(shape, np.inf)), prm.get("v_reset", np.zeros(shape)),
                                co["v0"], kind.startswith("Cuba"), spiking, reset == "subtract", n_ref,
                                mode == "ignore_input")
        analog = None
        if self.neurons == "analog" and kind in ("LIF", "CubaLIF"):
            analog = self._analog(name, kind, prm, shape, syn, reset, refr, rng)
        return _Neurons(params, analog)

    def _analog(self, name, kind, prm, shape, syn, reset, refr, rng) -> _AnalogPopulation:
        from ..hardware.factory import make_substrate
        from ..hardware.substrate import chip_targets

        where = f"NIR node {name!r} ({kind}) on analog neurons"
        if reset == "subtract":
            raise ConfigError(f"{where}: the chip resets to a value; a 'subtract' reset is not supported")
        one = {}
        for f, a in prm.items():
            if not np.all(a == a.flat[0]):
                raise ConfigError(f"{where}: {f} differs between the node's neurons; the chip's neurons share one "
                                  "calibration target per parameter")
            one[f] = float(a.flat[0])
        gap = one["v_threshold"] - one["v_leak"]
        if not gap > 0:
            raise ConfigError(f"{where}: expected v_threshold > v_leak, got {one['v_threshold']:g} <= {one['v_leak']:g}")
        try:
            base = chip_targets(self.neuron_card)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        from ..hardware.cards import load_card

        card = load_card(self.neuron_card) if isinstance(self.neuron_card, (str, Path)) else self.neuron_card
        cp = card.params
        scale_t = cp["dt"] / self.dt
        chip_gap = base["v_th"] - base["v_leak"]
        tau_mem = one["tau"] if kind == "LIF" else one["tau_mem"]
        tau_syn_chip = cp["tau_syn_k"] / cp["capmem_max"] if kind == "LIF" else one["tau_syn"] * scale_t
        targets = {"tau_mem": tau_mem * scale_t, "tau_syn": tau_syn_chip, "refractory": refr * scale_t,
                   "v_reset": base["v_leak"] + (one["v_reset"] - one["v_leak"]) / gap * chip_gap}
        n = int(np.prod(shape))
        try:
            sub = make_substrate("analog", n, card, rng=rng, calibrate=self.calibrated, calibration_rng=rng,
                                 targets=targets)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        w_in = one.get("w_in", 1.0)
        if kind == "CubaLIF" and syn == "impulse":
            k = float(D.cuba_k(self.dt, np.float64(tau_mem), np.float64(one["tau_syn"])))
            scale = one["r"] * k * w_in * self.dt / one["tau_syn"] / gap
        else:
            alpha = math.exp(-cp["dt"] / targets["tau_mem"])
            beta = math.exp(-cp["dt"] / targets["tau_syn"])
            scale = one["r"] * w_in * (1.0 - alpha) * (1.0 - beta) / gap
        return _AnalogPopulation(sub, scale, one["v_leak"], gap, shape)

    # ------------------------------------------------------------------ Model interface
    def layers(self) -> list[LayerSpec]:
        out = []
        for name, c in self.nodes.items():
            if c.kind in WEIGHT_NODES:
                w = np.asarray(c.node.weight)
                bias = getattr(c.node, "bias", None)
                out.append(LayerSpec(name, w.shape[0], int(np.prod(w.shape[1:])),
                                     bias=np.float64 if bias is not None else None))
        return out

    def init_weights(self, spec: LayerSpec, rng: np.random.Generator | None = None) -> np.ndarray:
        """The graph's weights of layer ``spec`` (float64; a Conv2d as (C_out, C_in·Kh·Kw));
        ``rng`` is not used."""
        w = _arr(self.nodes[spec.name].node.weight)
        return np.ascontiguousarray(w.reshape(w.shape[0], -1))

    def biases(self) -> dict[str, np.ndarray]:
        """{layer: the graph's bias (float64)} of the Affine and Conv2d nodes."""
        out = {}
        for spec in self.layers():
            if spec.bias is not None:
                b = getattr(self.nodes[spec.name].node, "bias")
                out[spec.name] = np.broadcast_to(_arr(b), (spec.n_out,)).copy()
        return out

    def build(self, hardware: Hardware | None = None, rng: Any = None, *, scheme_rng: Any = None,
              fit: bool = True) -> Chip:
        """The graph's weights on ``hardware`` (default :meth:`Hardware.exact`: the weights as
        float64 arrays), layer by layer in the graph's order, tiles and schemes from ``rng``
        (schemes from ``scheme_rng`` when given), biases copied. ``fit``: map each layer's largest
        weight onto its tile's range (PCM inference cards and the analog chip as
        :meth:`~neuroemu.chip.Chip.deploy` does; other cards by raising ``w_max`` to max|W| where
        it is smaller), so no weight is clipped."""
        hw = Hardware.exact() if hardware is None else hardware
        rng = as_rng(rng)
        biases = self.biases()
        layers = []
        for spec in self.layers():
            w = self.init_weights(spec)
            lhw, scale = hw, None
            if hw.scheme != EXACT and fit:
                scale = program_scale(hw, w)
                top = float(np.abs(w).max()) if w.size else 0.0
                if scale is None and top > hw.w_max:
                    lhw = hw.replace(w_max=top)
            layers.append(Layer.build(spec.name, w, lhw, rng, scheme_rng=scheme_rng, scale=scale,
                                      bias=biases.get(spec.name)))
        return Chip(self, layers, hw)

    def hardware_hint(self) -> Hardware | None:
        """The :class:`Hardware` the graph's weight layers were exported from (their metadata
        ``card``, ``scheme``, ``n_devices``, ``w_max``), or None when they carry none or disagree."""
        hints = {tuple(sorted((k, str(v)) for k, v in m.items())) for m in self.layer_hardware.values()}
        if len(hints) != 1 or not self.layer_hardware:
            return None
        m = next(iter(self.layer_hardware.values()))
        try:
            return Hardware(card=m["card"], scheme=m.get("scheme", "ideal"), n_devices=int(m.get("n_devices", 1)),
                            w_max=float(m.get("w_max", 1.0)))
        except Exception:  # an unknown card name: no hint
            return None

    # ------------------------------------------------------------------ running
    def _apply(self, chip: Chip, c: _Node, x: np.ndarray) -> np.ndarray:
        """A stateless node on x (N, *in_shape) -> (N, *out_shape)."""
        kind, node = c.kind, c.node
        n = x.shape[0]
        if kind in ("Affine", "Linear"):
            y = np.asarray(chip[c.name].forward(x.reshape(n, -1)), np.float64)
            b = chip[c.name].bias
            return y + b if b is not None else y
        if kind == "Conv2d":
            geo = self._conv_geometry(c.name, node, np.asarray(node.weight).shape[2:])
            cols = im2col(x, *geo)
            y = np.asarray(chip[c.name].forward(cols), np.float64)
            co, ho, wo = c.out_shape
            y = y.reshape(n, ho, wo, co).transpose(0, 3, 1, 2)
            b = chip[c.name].bias
            return np.ascontiguousarray(y + b[:, None, None] if b is not None else y)
        if kind in ("SumPool2d", "AvgPool2d"):
            k, s, p = (_pair(getattr(node, a), a, c.name) for a in ("kernel_size", "stride", "padding"))
            ch, ho, wo = c.out_shape
            cols = im2col(x.reshape(n * ch, 1, *x.shape[2:]), k, s, p)
            y = cols.sum(axis=1) if kind == "SumPool2d" else cols.mean(axis=1)
            return y.reshape(n, ch, ho, wo)
        if kind == "Flatten":
            return x.reshape(n, *c.out_shape)
        if kind == "Scale":
            return x * _arr(node.scale)
        if kind == "Threshold":
            return (x > _arr(node.threshold)).astype(np.float64)
        return x  # Input, Output, pass-through

    def forward(self, chip: Chip, x: np.ndarray, *, record: bool = False, rng: Any = None) -> Any:
        """The Output node's sequence (T, batch, n_out) for inputs x (T, batch, *input_shape); with
        ``record`` also a :class:`Recording` of every node. ``rng``: the trial's temporal noise and
        threshold jitter of analog neurons (default: a fresh generator)."""
        x = np.asarray(x, dtype=np.float64)
        shape = self.nodes[self.input_name].in_shape
        if x.ndim != 2 + len(shape) or tuple(x.shape[2:]) != shape:
            raise ValueError(f"NIRNetwork.forward: expected inputs (T, batch, {', '.join(map(str, shape))}), "
                             f"got {x.shape}")
        nt, nb = x.shape[:2]
        rng = as_rng(rng)
        vals: dict[str, np.ndarray] = {}
        mem: dict[str, np.ndarray] = {}
        for group, cyclic in self.groups:
            for name in group:
                vals[name] = np.zeros((nt, nb, *self.nodes[name].out_shape))
            if not cyclic:
                c = self.nodes[group[0]]
                inp = x if c.kind == "Input" else self._gather(c, vals, None)
                if c.neurons is None:
                    vals[c.name] = self._apply(chip, c, inp.reshape(nt * nb, *c.in_shape)).reshape(
                        nt, nb, *c.out_shape)
                else:
                    st = c.neurons.start(nb, c.out_shape, rng)
                    v = np.empty_like(vals[c.name])
                    for t in range(nt):
                        vals[c.name][t], v[t], st = c.neurons.step(st, inp[t])
                    mem[c.name] = v
                continue
            states = {n: self.nodes[n].neurons.start(nb, self.nodes[n].out_shape, rng)
                      for n in group if self.nodes[n].neurons is not None}
            for n in states:
                mem[n] = np.empty_like(vals[n])
            for t in range(nt):
                for name in group:
                    c = self.nodes[name]
                    inp = self._gather(c, vals, t)
                    if c.neurons is None:
                        vals[name][t] = self._apply(chip, c, inp)
                    else:
                        vals[name][t], mem[name][t], states[name] = c.neurons.step(states[name], inp)
        y = vals[self.output_name].reshape(nt, nb, -1)
        if hasattr(chip, "add_ops"):
            chip.add_ops(neuron_updates=sum(vals[n].size for n, c in self.nodes.items() if c.neurons is not None))
        return (y, Recording(vals, mem)) if record else y

    def _gather(self, c: _Node, vals: dict, t: int | None) -> np.ndarray:
        """The summed input of node c: at step t, or over all steps (t None; no back edges then)."""
        total = None
        for src, back in c.preds:
            if t is None:
                v = vals[src]
            elif back:
                v = vals[src][t - 1] if t > 0 else np.zeros_like(vals[src][0])
            else:
                v = vals[src][t]
            total = v.copy() if total is None else total + v
        return total

    @property
    def analog_units(self) -> bool:
        """Whether neuron nodes run on an analog chip (their energy is not costed)."""
        return any(c.neurons is not None and c.neurons.analog is not None for c in self.nodes.values())

    def logits(self, chip: Chip, x: np.ndarray, *, rng: Any = None) -> np.ndarray:
        """The maximum over time of the output (batch, n_out): the read-out convention of neuroemu's
        spiking networks (metadata ``readout: max_over_time``)."""
        return self.forward(chip, x, rng=rng).max(axis=0)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{n}:{c.kind}" for n, c in self.nodes.items())
        return f"NIRNetwork({kinds}; dt={self.dt:g}, {self.method})"


def from_nir(source: Any, *, dt: float, method: str = "exact", synapse_input: str | None = None,
             neurons: str = "ideal", neuron_card: Any = "brainscales2", calibrated: bool = True,
             rng: Any = None) -> NIRNetwork:
    """A NIR graph (``source``: a :class:`nir.NIRGraph`, or the path of a ``.nir`` file) as a
    :class:`NIRNetwork`; ``model.build(hardware, rng)`` puts its weight layers on a chip.

    ``dt``: the step, in the graph's time unit (NIR time constants are continuous-time).
    ``method``: "exact" (zero-order hold: exact integration of each node's linear ODE over a step
    with its input held constant) or "euler" (forward Euler). ``synapse_input``: how CubaLIF and
    CubaLI read their input S — "hold" or "impulse" (see :mod:`neuroemu.interop._dynamics`); None:
    each node's metadata ``neuroemu.synapse_input``, else "hold". ``neurons``: "ideal" (the
    discretised neurons) or "analog" (LIF and CubaLIF nodes on the analog chip of ``neuron_card``,
    ``calibrated`` or not, its mismatch drawn from ``rng``; see the module docstring)."""
    nir = require_nir()
    graph = source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"from_nir: no NIR file {path}")
        graph = nir.read(str(path))
    return NIRNetwork(graph, dt=dt, method=method, synapse_input=synapse_input, neurons=neurons,
                      neuron_card=neuron_card, calibrated=calibrated, rng=rng)


