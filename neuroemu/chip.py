"""The chip model: a network's weight layers on emulated hardware, behind the network's units.

A :class:`Chip` is a list of named :class:`Layer` s and a network model (:mod:`neuroemu.models`)
that wires them and holds their units (rate units, ideal or analog spiking neurons, a read-out).
Every layer keeps its weights on tiles of one device card and is written through an update scheme
(:class:`Hardware` says which card, scheme, periphery; ``ideal`` is a float chip). The interface is
the same for every network and every rule:

* ``chip.forward(x)`` runs the network on the hardware (periphery, read noise, drift included);
  what it returns is the model's activity (see the model);
* ``chip.weights()`` — the weights as the hardware holds them, per layer;
* ``chip.apply(update)`` — an :class:`Update` a rule wants, through that layer's scheme;
* ``chip.deploy(hardware)`` — the same network with its trained weights programmed onto other
  hardware (inference after float training);
* ``chip.advance(dt)`` (drift), ``chip.compensate_drift()``;
* ``chip.stats()`` (pulses, refreshes, write energy, pulse-limit hits; per layer with
  ``per_layer=True``) and ``chip.tiles()`` (named tiles for :class:`~neuroemu.record.Recorder`).

Build one with :func:`build_chip` (a model and a :class:`Hardware`), or with
:meth:`Hardware.from_config` from a config's ``chip`` section.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import ConfigError, NeuroemuError, did_you_mean
from .hardware.cards import Card, load_card
from .hardware.crossbar import READ_OPS, Periphery, Tile, nonzero_and_kind
from .hardware.factory import make_tile
from .hardware.schemes import SCHEMES, Scheme, make_scheme
from .rng import as_rng


#: The scheme name of an exact float chip (:meth:`Hardware.exact`): plain weight arrays, no tiles.
EXACT = "exact"


class FloatWeights:
    """What stands in for tile and scheme on an exact float chip: a plain weight array, read
    (``x @ Wᵀ``) and written (``W += ΔW``) exactly in its own dtype, as a numpy layer would."""

    name = EXACT
    tile = None
    tiles: tuple = ()

    def __init__(self, w: np.ndarray):
        self.w = np.array(w)
        self.ops = dict.fromkeys(READ_OPS, 0)
        self.n_digital = 0  # the updates' digital operations

    def _count(self, x: np.ndarray, n_out: int) -> None:
        x2 = np.asarray(x).reshape(-1, np.shape(x)[-1])
        self.count_reads(x2.shape[0], *nonzero_and_kind(x2, x2.dtype == np.bool_), x2.shape[1], n_out)

    def count_reads(self, vectors: int, nnz: int, binary: bool, n_in: int, n_out: int, **_: Any) -> None:
        """Add products to :attr:`ops` (digital: no converters, no devices); see
        :meth:`Tile.count_reads <neuroemu.hardware.crossbar.Tile.count_reads>`."""
        self.ops["vectors"] += vectors
        self.ops["macs"] += vectors * n_in * n_out
        self.ops["effective_acs" if binary else "effective_macs"] += nnz * n_out

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._count(x, self.w.shape[0])
        return x @ self.w.T

    def backward(self, d: np.ndarray) -> np.ndarray:
        self._count(d, self.w.shape[1])
        return d @ self.w

    def weights(self) -> np.ndarray:
        return self.w

    def apply(self, dw: np.ndarray) -> None:
        self.n_digital += self.w.size
        self.w += dw

    def update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        self.n_digital += d.shape[0] * self.w.size + self.w.size  # the outer products, then the sum
        self.w -= (lr * (d.T @ x)).astype(self.w.dtype)

    def stats(self) -> dict[str, Any]:
        return {"digital_ops": self.n_digital}


@dataclasses.dataclass(frozen=True)
class Hardware:
    """Where a layer's weights live and how they are written: tiles of ``card`` (``n_devices`` per
    synapse side, ``w_max`` mapped to a full conductance range, read through ``periphery``),
    written through the update scheme ``scheme`` with ``scheme_params``. ``tile_options``: further
    keyword arguments of :func:`~neuroemu.hardware.factory.make_tile` (e.g. ``num_sends`` of the
    analog MAC mode)."""

    card: Card = dataclasses.field(default_factory=lambda: load_card("ideal"))
    scheme: str = "ideal"
    scheme_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    n_devices: int = 1
    w_max: float = 1.0
    periphery: Periphery = dataclasses.field(default_factory=Periphery.ideal)
    tile_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.card, Card):
            object.__setattr__(self, "card", load_card(self.card))
        object.__setattr__(self, "scheme_params", MappingProxyType(dict(self.scheme_params)))
        object.__setattr__(self, "tile_options", MappingProxyType(dict(self.tile_options)))

    def __reduce__(self):  # read-only mappings do not pickle
        return Hardware, (self.card, self.scheme, dict(self.scheme_params), self.n_devices, self.w_max,
                          self.periphery, dict(self.tile_options))

    @classmethod
    def ideal(cls, w_max: float = 1.0) -> "Hardware":
        """A float chip of ideal devices: exact reads, the weights held as float64 conductances in
        ±``w_max`` (a tile like any other: recorded, deployable, its writes counted)."""
        return cls(w_max=w_max)

    @classmethod
    def exact(cls) -> "Hardware":
        """A float chip without tiles: every layer a plain array in the dtype of its initial weights,
        read and written exactly as a numpy network would (:class:`FloatWeights`), unbounded."""
        return cls(scheme=EXACT)

    def replace(self, **changes: Any) -> "Hardware":
        return dataclasses.replace(self, **changes)

    def tile(self, out_size: int, in_size: int, rng: Any, *, scale: float | None = None) -> Tile:
        """A fresh tile of this hardware (devices drawn from ``rng``)."""
        return make_tile(out_size, in_size, self.card, n_devices=self.n_devices, w_max=self.w_max, scale=scale,
                         periphery=self.periphery, rng=rng, **self.tile_options)

    def check(self, where: str = "chip") -> "Hardware":
        """Build a 2×2 tile and its scheme once, so that a bad card, scheme or parameter fails now
        with ``where`` in the message, not minutes later in a worker."""
        if self.scheme == EXACT:
            if self.card.kind != "ideal":
                raise ConfigError(f"{where}.scheme: '{EXACT}' is a float chip without devices; expected card "
                                  f"'ideal', got {self.card.name!r}")
            return self
        if self.scheme not in SCHEMES:
            known = (*SCHEMES, EXACT)
            raise ConfigError(f"{where}.scheme: expected one of {', '.join(known)}, got {self.scheme!r}"
                              f"{did_you_mean(self.scheme, known)}")
        if not self.card.pulsable and self.scheme != "ideal":
            raise ConfigError(f"{where}.scheme: card {self.card.name} is programmed by target, not by pulses; "
                              "use scheme 'ideal' (or train on the ideal chip and deploy)")
        try:
            make_scheme(self.scheme, self.tile(2, 2, 0), rng=0, **self.scheme_params)
        except NeuroemuError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return self

    @classmethod
    def from_config(cls, section: Mapping[str, Any], where: str = "chip") -> "Hardware":
        """From a config mapping with ``card`` (name or path), ``scheme``, ``scheme_params``,
        ``n_devices``, ``w_max``, ``periphery`` ('ideal' or a mapping of
        :class:`~neuroemu.hardware.crossbar.Periphery` fields), ``levels`` or ``bits`` (the card's
        weight resolution) and ``tile_options``; checked with :meth:`check`."""
        known = {"card", "scheme", "scheme_params", "n_devices", "w_max", "periphery", "levels", "bits",
                 "tile_options"}
        unknown = set(section) - known
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(f"{where}.{name}: unknown field{did_you_mean(name, known)}; expected some of "
                              f"{', '.join(sorted(known))}")
        try:
            card = load_card(section.get("card", "ideal"))
            if section.get("levels") is not None and section.get("bits") is not None:
                raise ConfigError(f"{where}.bits: give levels or bits, not both")
            if section.get("levels") is not None:
                card = card.with_levels(section["levels"])
            if section.get("bits") is not None:
                card = card.with_levels(bits=section["bits"])
        except NeuroemuError as exc:
            raise ConfigError(f"{where}.card: {exc}") from None
        per = section.get("periphery", "ideal")
        if per in (None, "ideal"):
            periphery = Periphery.ideal()
        elif isinstance(per, Mapping):
            fields = {f.name for f in dataclasses.fields(Periphery)}
            bad = set(per) - fields
            if bad:
                raise ConfigError(f"{where}.periphery.{sorted(bad)[0]}: unknown field; expected some of "
                                  f"{', '.join(sorted(fields))}")
            try:
                periphery = Periphery(**per)
            except (TypeError, ValueError, NeuroemuError) as exc:
                raise ConfigError(f"{where}.periphery: {exc}") from None
        else:
            raise ConfigError(f"{where}.periphery: expected 'ideal' or a mapping of periphery fields, got {per!r}")
        hw = cls(card=card, scheme=section.get("scheme", "ideal"), scheme_params=section.get("scheme_params") or {},
                 n_devices=int(section.get("n_devices") or 1), w_max=float(section.get("w_max") or 1.0),
                 periphery=periphery, tile_options=section.get("tile_options") or {})
        return hw.check(where)


@dataclasses.dataclass
class Update:
    """The change a rule wants of one layer, in weight units.

    Either ``dw`` (the change itself, shape of the weights) or the factored form of a batch of
    gradient steps, ``ΔW = −lr · dᵀ x`` (``x``: the layer's inputs (batch, n_in), ``d``: the errors
    at its outputs (batch, n_out)); pulse-coincidence schemes (stochastic pulses, Tiki-Taka) program
    the factors directly, every other scheme the product. ``db``: the change of the layer's digital
    bias (added exactly)."""

    layer: str
    dw: np.ndarray | None = None
    x: np.ndarray | None = None
    d: np.ndarray | None = None
    lr: float | None = None
    db: np.ndarray | None = None

    def __post_init__(self):
        factored = self.x is not None or self.d is not None or self.lr is not None
        if factored and (self.x is None or self.d is None or self.lr is None):
            raise ValueError(f"Update({self.layer!r}): the factored form needs x, d and lr")
        if factored and self.dw is not None:
            raise ValueError(f"Update({self.layer!r}): give dw or (x, d, lr), not both")


class Layer:
    """One weight matrix (out, in) of the network on tiles, written through ``scheme``; ``bias``: a
    digital bias vector the model adds where its units need it (or None)."""

    def __init__(self, name: str, scheme: Scheme | FloatWeights, bias: np.ndarray | None = None):
        self.name, self.scheme, self.bias = name, scheme, bias

    @classmethod
    def build(cls, name: str, w: np.ndarray, hw: Hardware, rng: Any, *, scheme_rng: Any = None,
              bias: np.ndarray | None = None, scale: float | None = None, clip: bool = False) -> "Layer":
        """Program ``w`` onto a fresh tile of ``hw`` (devices from ``rng``; ``clip``: clip ``w`` to
        the tile's range first) and put the scheme in front (its random pulses from ``scheme_rng``,
        default ``rng``). On an exact chip (:meth:`Hardware.exact`) the layer is ``w`` itself."""
        if hw.scheme == EXACT:
            return cls(name, FloatWeights(w), bias)
        rng = as_rng(rng)  # a seed: one generator for the tile and the scheme, not two copies of it
        tile = hw.tile(*w.shape, rng, scale=scale)
        tile.write(np.clip(w, *tile.w_range) if clip else w)
        return cls(name, make_scheme(hw.scheme, tile, rng=rng if scheme_rng is None else scheme_rng,
                                     **hw.scheme_params), bias)

    @property
    def tile(self) -> Tile | None:
        """The tile the layer was programmed on (a scheme may use more: :attr:`Scheme.tiles`; an
        exact float layer has none)."""
        return self.scheme.tile

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.tile.shape) if self.tile is not None else self.weights().shape

    @property
    def n_synapses(self) -> int:
        return self.tile.n_synapses if self.tile is not None else self.weights().size

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (batch, n_in) -> (batch, n_out): one read of the array through its periphery."""
        return self.scheme.forward(x)

    def backward(self, d: np.ndarray) -> np.ndarray:
        """d (batch, n_out) -> (batch, n_in): a transposed read of the array (the backward pass)."""
        return self.scheme.backward(d)

    def weights(self) -> np.ndarray:
        return self.scheme.weights()

    def apply(self, update: Update) -> None:
        if update.dw is not None:
            self.scheme.apply(update.dw)
        elif update.x is not None:
            self.scheme.update(update.x, update.d, update.lr)
        if update.db is not None:
            if self.bias is None:
                raise ConfigError(f"layer {self.name}: the rule changes a bias, but the layer has none")
            self.bias += update.db

    def stats(self) -> dict[str, Any]:
        return self.scheme.stats()

    def count(self, vectors: int, nnz: int, *, binary: bool = False) -> None:
        """Count reads a model makes outside :meth:`forward` (it reads the weights once and forms
        the products itself, e.g. a convolution): ``vectors`` input vectors of the layer's n_in
        entries, ``nnz`` of all their entries non-zero, ``binary`` when those are spikes or ±1."""
        n_out, n_in = self.shape
        counter = self.tile if self.tile is not None else self.scheme
        counter.count_reads(vectors, nnz, binary, n_in, n_out, spikes=binary)


#: Counters of :meth:`Chip.stats` (summed over layers; ints except the energy).
STATS = ("pulses", "refreshes", "energy_pJ", "pulse_limit_hits")


class Chip:
    """A network model's layers on the hardware. ``model`` runs the network (``forward``) and says
    what it is (:attr:`~neuroemu.models.Model.traits`, checked by rules)."""

    def __init__(self, model: Any, layers: Sequence[Layer], hardware: Hardware):
        self.model, self.hardware = model, hardware
        self.layers: dict[str, Layer] = {}
        for layer in layers:
            if layer.name in self.layers:
                raise ValueError(f"Chip: two layers named {layer.name!r}")
            self.layers[layer.name] = layer
        self.time = 0.0
        self.unit_ops = {"neuron_updates": 0, "synaptic_events": 0}  # what the network's units did

    def __getitem__(self, name: str) -> Layer:
        try:
            return self.layers[name]
        except KeyError:
            raise KeyError(f"no layer {name!r}; the chip has {', '.join(self.layers)}") from None

    def __iter__(self):
        return iter(self.layers.values())

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, x: Any, **options: Any) -> Any:
        """The network on the hardware; returns the model's activity."""
        return self.model.forward(self, x, **options)

    def weights(self) -> dict[str, np.ndarray]:
        """{layer name: its weights as the hardware holds them}: fresh arrays read from the tiles, or
        on an exact float chip the layers' own arrays (copy them to keep a snapshot)."""
        return {name: layer.weights() for name, layer in self.layers.items()}

    def apply(self, update: Update) -> None:
        self[update.layer].apply(update)

    def advance(self, dt: float) -> None:
        """Let ``dt`` seconds of chip time pass (drift) on every tile."""
        for layer in self:
            for tile in layer.scheme.tiles:
                tile.advance(dt)
        self.time += dt

    def compensate_drift(self) -> None:
        """Global drift compensation on every layer's tile (read a reference, rescale the outputs)."""
        for layer in self:
            if layer.tile is not None:
                layer.tile.compensate_drift()

    def add_ops(self, **counts: int) -> None:
        """Count what the network's units did (a model's forward calls it): ``neuron_updates``
        (neurons × steps × samples), ``synaptic_events`` (spikes × fan-out delivered inside a
        kernel rather than through a tile read)."""
        for k, v in counts.items():
            self.unit_ops[k] = self.unit_ops.get(k, 0) + int(v)

    def ops(self) -> dict[str, Any]:
        """Operation counts so far: ``{"layers": {name: counts}, "units": ...}``. Per layer the reads
        of its tiles (:data:`~neuroemu.hardware.crossbar.READ_OPS`; a float layer's own MACs),
        ``pulses`` and ``resets`` applied to its devices, ``writes`` (synapses programmed by target)
        and ``digital_ops`` of its scheme; :mod:`neuroemu.energy` turns them into energy."""
        layers = {}
        for name, layer in self.layers.items():
            sch = layer.scheme
            tiles = list(sch.tiles)
            counts = dict.fromkeys(READ_OPS, 0)
            for ops in ([t.ops for t in tiles] if tiles else [sch.ops]):
                for k, v in ops.items():
                    counts[k] += int(v)
            counts["pulses"] = int(sum(t.npulse.sum() for t in tiles))
            counts["resets"] = int(sum(t.nreset.sum() for t in tiles))
            counts["writes"] = int(sum(t.nwrite for t in tiles))
            counts["digital_ops"] = int(sch.n_digital)
            layers[name] = counts
        return {"layers": layers, "units": dict(self.unit_ops)}

    def tiles(self) -> dict[str, Tile]:
        """{layer name: its tile}, for :meth:`neuroemu.record.Recorder.observe` (exact float layers
        have none)."""
        return {name: layer.tile for name, layer in self.layers.items() if layer.tile is not None}

    @property
    def n_synapses(self) -> int:
        return sum(layer.n_synapses for layer in self)

    def stats(self, *, per_layer: bool = False) -> dict[str, Any]:
        """Pulses, refreshes, write energy (pJ) and pulse-limit hits summed over the layers; with
        ``per_layer`` also ``{"layers": {name: the scheme's counters}}``."""
        each = {name: layer.stats() for name, layer in self.layers.items()}
        out: dict[str, Any] = {k: 0 for k in STATS}
        for st in each.values():
            for k in STATS:
                out[k] += st.get(k, 0)
        out = {k: float(v) if k == "energy_pJ" else int(v) for k, v in out.items()}
        if per_layer:
            out["layers"] = each
        return out

    def deploy(self, hardware: Hardware | Callable[[np.ndarray], Hardware], rng: Any, *,
               compensate_drift: bool = False) -> "Chip":
        """This network with its weights (as held now) programmed once onto other hardware (scheme
        ``ideal``: one write, then inference), digital biases copied, layer by layer. ``hardware``
        is one :class:`Hardware` or a function of a layer's weights giving it (e.g. with its max|W|
        as ``w_max``); ``rng`` one generator (or seed) for every layer's devices, or a list of one
        per layer; ``compensate_drift``: each tile reads its drift reference right after it is
        programmed. PCM inference cards map max|W| to g_max (aihwkit's mapping), the analog chip
        max|W| to its largest integer weight (hxtorch's); other cards use ``w_max``."""
        rngs = list(rng) if isinstance(rng, (list, tuple)) else None
        one = None if rngs is not None else as_rng(rng)  # a seed: one generator, not the same draws per layer
        layers, hw = [], hardware
        for i, layer in enumerate(self):
            w = layer.weights()
            hw = (hardware(w) if callable(hardware) else hardware).replace(scheme="ideal", scheme_params={})
            new = Layer.build(layer.name, w, hw, rngs[i] if rngs is not None else one, scale=program_scale(hw, w),
                              bias=None if layer.bias is None else layer.bias.copy())
            if compensate_drift and new.tile is not None:
                new.tile.compensate_drift()
            layers.append(new)
        return Chip(self.model, layers, hw)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n} {l.shape[1]}->{l.shape[0]}" for n, l in self.layers.items())
        return f"Chip({type(self.model).__name__}: {shapes}; {self.hardware.card.name}/{self.hardware.scheme})"


def program_scale(hw: Hardware, w: np.ndarray) -> float | None:
    """The weight-to-conductance scale with which trained weights ``w`` are programmed onto ``hw``
    once (None: the card's ``w_max`` mapping)."""
    top = max(float(np.abs(w).max()), 1e-12)
    card = hw.card
    if card.kind == "pcm_inference":  # aihwkit: max|W| -> g_max
        return hw.n_devices * (card["g_max"] - card["g_min"]) / top
    if card.kind == "analog_chip":  # hxtorch: max|W| -> the largest integer weight
        return (2 ** card["weight_bits"] - 1) / top
    return None


def build_chip(model: Any, hardware: Hardware | None = None, rng: Any = None, *, scheme_rng: Any = None,
               weights: Mapping[str, np.ndarray] | None = None) -> Chip:
    """The model's layers on ``hardware`` (default: a float chip). For every layer in the model's
    order: its initial weights (``weights[name]`` when given, else drawn by the model from ``rng``),
    a tile (devices from ``rng``) and the scheme (from ``scheme_rng``, default ``rng``)."""
    hw = Hardware.ideal() if hardware is None else hardware
    rng = as_rng(rng)
    layers = []
    for spec in model.layers():
        w = weights[spec.name] if weights is not None else model.init_weights(spec, rng)
        if w.shape != (spec.n_out, spec.n_in):
            raise ValueError(f"layer {spec.name}: expected weights of shape {(spec.n_out, spec.n_in)}, got {w.shape}")
        bias = None if spec.bias is None else np.zeros(spec.n_out, spec.bias)
        layers.append(Layer.build(spec.name, w, hw, rng, scheme_rng=scheme_rng, bias=bias, clip=spec.clip))
    return Chip(model, layers, hw)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """A weight layer a model asks for: ``name``, ``n_out`` × ``n_in``; ``bias``: the dtype of its
    digital bias (None: no bias); ``clip``: clip the initial weights to the tile's range."""

    name: str
    n_out: int
    n_in: int
    bias: Any = None
    clip: bool = False

