"""Layers larger than one crossbar tile: a weight matrix split over a grid of tiles.

A physical crossbar has a largest size; IBM aihwkit maps a layer onto tiles of at most
``max_input_size`` × ``max_output_size`` = 512 × 512 weights (``MappingParameter``; papers.md §1c).
A :class:`TiledLayer` holds an ``(out, in)`` weight matrix the same way:

* Each dimension is split into the fewest pieces of at most ``max_tile`` that are as equal as
  possible (aihwkit's ``TileModuleArray``): 784 inputs on 512-wide tiles give 392 + 392, 1000 give
  500 + 500 (:func:`split_sizes`).
* Every block is a full :class:`~neuroemu.hardware.crossbar.Tile` of the card, with its own periphery
  (noise management on its own slice of the input, DAC, output noise, ADC, bound management),
  its own drift compensation, and its own update scheme (accumulators, arbitration counters,
  refresh policy, update management on its own slice of x and d).
* ``forward(x)``: block (r, c) reads the input slice c; the outputs of the blocks of one block-row
  are summed digitally after each block's ADC (aihwkit does the same; a bias, which it keeps in
  digital, is left to the caller here as for a scheme). ``backward(d)`` reads block (r, c) with
  the output slice r and sums over r. Writes and updates are split and delegated to the blocks.

A :class:`TiledLayer` has the public interface of a :class:`~neuroemu.hardware.schemes.Scheme`
(``forward``, ``backward``, ``update``, ``apply``, ``weights``, ``stats``, ``refresh``, ``tiles``),
plus the tile operations that concern the whole layer (``write``, ``advance``,
``compensate_drift``), so a training loop can take either.

Randomness. The blocks are built in row-major order from one generator, exactly as a loop of
``tile = make_tile(..., rng=g)``, ``tile.write(w)`` (with ``weights``) and
``make_scheme(name, tile, rng=g)`` would build them (with ``scheme_rng`` the schemes take that
generator instead). A layer that fits one tile is therefore the untiled pair, bit for bit, and a
tiled layer is reproducible from its seed. Reads and updates visit the blocks in row-major order.
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping

import numpy as np

from .cards import Card, load_card
from ..rng import as_rng
from .crossbar import Tile
from .factory import make_tile
from ..errors import ConfigError
from .schemes import Scheme, make_scheme

__all__ = ["MAX_TILE", "TiledLayer", "split_sizes"]

#: Default largest tile, (out, in) synapses: aihwkit's MappingParameter (max_output_size,
#: max_input_size) = (512, 512).
MAX_TILE = (512, 512)

#: Counters that every block keeps alike (one per layer event), reported once by ``stats``.
_LAYER_COUNTERS = ("updates", "refresh_checks")


def split_sizes(size: int, max_size: int | None) -> list[int]:
    """Sizes of the fewest pieces of at most ``max_size`` that ``size`` splits into, as equal as
    possible, larger ones first (aihwkit's tile-array split); ``None`` keeps ``size`` whole."""
    if max_size is None or size <= max_size:
        return [int(size)]
    n = -(-size // max_size)
    base, extra = divmod(size, n)
    return [base + (i < extra) for i in range(n)]


def _edges(sizes: list[int]) -> list[tuple[int, int]]:
    stops = np.cumsum(sizes).tolist()
    return [(stop - s, stop) for s, stop in zip(sizes, stops)]


def _max_tile(value: Any) -> tuple[int | None, int | None]:
    pair = value if isinstance(value, (tuple, list)) else (value, value)
    ok = len(pair) == 2 and all(v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1)
                                for v in pair)
    if not ok:
        raise ConfigError(f"max_tile: expected (out, in) sizes, each an integer >= 1 or None (no limit), or one "
                          f"such value for both, got {value!r}")
    return tuple(None if v is None else int(v) for v in pair)


class TiledLayer:
    """An ``(out_size, in_size)`` weight matrix on a grid of tiles, each with its own update scheme.

    Parameters
    ----------
    out_size, in_size: the layer's matrix shape.
    card: a :class:`~neuroemu.hardware.cards.Card`, a card name or a path, for every tile.
    scheme: the update scheme of every block (a key of :data:`~neuroemu.hardware.schemes.SCHEMES`).
    scheme_params: the scheme's parameters (see :func:`~neuroemu.hardware.schemes.make_scheme`).
    max_tile: the largest tile, ``(out, in)`` synapses, i.e. weight rows × columns as aihwkit counts
        them (the devices of one synapse, a pair or N per side, sit in one tile); default
        :data:`MAX_TILE`, aihwkit's 512 × 512; one value for both; ``None`` for no limit.
    rng: seed or Generator for the tiles (device variation, reads) and, unless ``scheme_rng`` is
        given, the schemes.
    scheme_rng: seed or Generator for the schemes' random pulses (default: ``rng``).
    weights: initial weights (shape (out, in), or anything that broadcasts to it), written on each
        block's tile before its scheme is made: like a tile programmed before its scheme, this
        programming is not counted in ``stats()["writes"]`` (a later :meth:`write` is).
    tile_options: further keyword arguments of :func:`~neuroemu.hardware.crossbar.make_tile` for every
        tile: ``n_devices``, ``w_max``, ``scale``, ``periphery``, …
    """

    def __init__(self, out_size: int, in_size: int, card: Card | str = "ideal", scheme: str = "ideal", *,
                 scheme_params: Mapping[str, Any] | None = None, max_tile: Any = MAX_TILE, rng: Any = None,
                 scheme_rng: Any = None, weights: np.ndarray | None = None, **tile_options: Any):
        for name, v in (("out_size", out_size), ("in_size", in_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"TiledLayer: {name}: expected an integer >= 1, got {v!r}")
        self.shape = (int(out_size), int(in_size))
        self.max_tile = _max_tile(max_tile)
        self.row_edges = _edges(split_sizes(self.shape[0], self.max_tile[0]))
        self.col_edges = _edges(split_sizes(self.shape[1], self.max_tile[1]))
        card = card if isinstance(card, Card) else load_card(card)
        tile_rng = as_rng(rng)
        srng = tile_rng if scheme_rng is None else as_rng(scheme_rng)
        params = dict(scheme_params or {})
        if weights is not None:
            weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), self.shape)
        #: the block schemes, ``blocks[r][c]`` for output slice r and input slice c
        self.blocks: list[list[Scheme]] = []
        for r0, r1 in self.row_edges:
            row = []
            for c0, c1 in self.col_edges:
                tile = make_tile(r1 - r0, c1 - c0, card, rng=tile_rng, **tile_options)
                if weights is not None:
                    tile.write(weights[r0:r1, c0:c1])
                row.append(make_scheme(scheme, tile, rng=srng, **params))
            self.blocks.append(row)

    # ------------------------------------------------------------------ structure
    @property
    def schemes(self) -> list[Scheme]:
        """The block schemes in row-major order."""
        return [s for row in self.blocks for s in row]

    @property
    def tiles(self) -> list[Tile]:
        """Every tile the layer programs, block by block in row-major order (Tiki-Taka: C and A of
        each block), as :attr:`Scheme.tiles`."""
        return [t for s in self.schemes for t in s.tiles]

    @property
    def grid(self) -> tuple[int, int]:
        """Number of blocks along the outputs and along the inputs."""
        return len(self.row_edges), len(self.col_edges)

    @property
    def name(self) -> str:
        """The update scheme's name."""
        return self.blocks[0][0].name

    @property
    def params(self) -> dict[str, Any]:
        """The update scheme's parameters (those of the first block; with tile-dependent defaults
        resolved, which are the same on every block of one card and mapping)."""
        return self.blocks[0][0].params

    @property
    def n_synapses(self) -> int:
        return self.shape[0] * self.shape[1]

    # ------------------------------------------------------------------ reads
    def forward(self, x: np.ndarray) -> np.ndarray:
        """y = x Wᵀ: each block reads its slice of x through its own periphery; the block outputs of
        a block-row are summed digitally. x: (batch, in) float or bool spikes, or 1-d."""
        x2, squeeze = self._rows(x, self.shape[1], "forward", "x")
        slices = [self._part(x2, c0, c1) for c0, c1 in self.col_edges]
        rows = []
        for row in self.blocks:
            y = None
            for s, xs in zip(row, slices):
                part = s.forward(xs)
                y = part if y is None else y + part
            rows.append(y)
        y = np.concatenate(rows, axis=1)
        return y[0] if squeeze else y

    def backward(self, d: np.ndarray) -> np.ndarray:
        """d W (the transposed read): block (r, c) reads slice r of d; the block outputs of a
        block-column are summed digitally. d: (batch, out), or 1-d."""
        d2, squeeze = self._rows(d, self.shape[0], "backward", "d")
        cols: list[Any] = [None] * len(self.col_edges)
        for (r0, r1), row in zip(self.row_edges, self.blocks):
            ds = self._part(d2, r0, r1)
            for c, s in enumerate(row):
                part = s.backward(ds)
                cols[c] = part if cols[c] is None else cols[c] + part
        x = np.concatenate(cols, axis=1)
        return x[0] if squeeze else x

    def weights(self) -> np.ndarray:
        """Effective weights the network sees (float64, without read noise), assembled from the blocks."""
        return np.block([[s.weights() for s in row] for row in self.blocks])

    # ------------------------------------------------------------------ writes and updates
    def update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        """Apply the wanted change ΔW = -lr · dᵀx: block (r, c) gets ``update(x[:, c], d[:, r], lr)``."""
        x2, _ = self._rows(x, self.shape[1], "update", "x")
        d2, _ = self._rows(d, self.shape[0], "update", "d")
        if x2.shape[0] != d2.shape[0]:
            raise ValueError(f"TiledLayer {self.shape}: update: x and d have different batch sizes "
                             f"({x2.shape[0]} and {d2.shape[0]})")
        self._finite(x2, "update", "x")
        self._finite(d2, "update", "d")
        for (r0, r1), row in zip(self.row_edges, self.blocks):
            for (c0, c1), s in zip(self.col_edges, row):
                s.update(x2[:, c0:c1], d2[:, r0:r1], lr)

    def apply(self, dw: np.ndarray) -> None:
        """Apply a wanted change ΔW (shape (out, in), weight units), block by block."""
        dw = np.asarray(dw, dtype=np.float64)
        if dw.shape != self.shape:
            raise ValueError(f"TiledLayer {self.shape}: apply: expected dw of shape {self.shape}, got {dw.shape}")
        self._finite(dw, "apply", "dw")
        for (r0, r1), row in zip(self.row_edges, self.blocks):
            for (c0, c1), s in zip(self.col_edges, row):
                s.apply(dw[r0:r1, c0:c1])

    def write(self, w: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Program target weights (shape (out, in), or anything that broadcasts to it) where
        ``mask`` is True (all if None), as :meth:`Tile.write` on the tile of each block that holds
        the weights (Tiki-Taka: C)."""
        w = np.broadcast_to(np.asarray(w, dtype=np.float64), self.shape)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != self.shape:
                raise ValueError(f"TiledLayer {self.shape}: write: expected a mask of shape {self.shape}, "
                                 f"got {mask.shape}")
        for (r0, r1), row in zip(self.row_edges, self.blocks):
            for (c0, c1), s in zip(self.col_edges, row):
                s.tile.write(w[r0:r1, c0:c1], None if mask is None else mask[r0:r1, c0:c1])

    def refresh(self) -> int:
        """Run every block's refresh policy now; returns the synapses refreshed."""
        return sum(s.refresh() for s in self.schemes)

    # ------------------------------------------------------------------ time
    def advance(self, dt: float) -> None:
        """Let ``dt`` seconds pass on every tile (devices drift)."""
        if not dt >= 0:
            raise ValueError(f"advance: dt must be >= 0, got {dt}")
        for t in self.tiles:
            t.advance(dt)

    def compensate_drift(self) -> np.ndarray:
        """Global drift compensation of each block's weight tile, each with its own reference and
        factor (:meth:`Tile.compensate_drift`). Returns the factors, shape :attr:`grid`."""
        return np.array([[s.tile.compensate_drift() for s in row] for row in self.blocks])

    # ------------------------------------------------------------------ bookkeeping
    def stats(self) -> dict[str, Any]:
        """The blocks' counters combined: ``updates`` and ``refresh_checks`` once (alike in every
        block), means (``*_mean``) weighted by block size, every other number summed (pulses,
        refreshes, writes, energy_pJ, pulse_limit_hits, transfers, …); ``tiles``: the number of blocks."""
        per = [s.stats() for s in self.schemes]
        sizes = [s.tile.n_synapses for s in self.schemes]
        out: dict[str, Any] = {}
        for key, first in per[0].items():
            if key in _LAYER_COUNTERS or not isinstance(first, numbers.Number):
                out[key] = first
            elif key.endswith("_mean"):
                out[key] = float(sum(p[key] * n for p, n in zip(per, sizes)) / self.n_synapses)
            else:
                out[key] = sum(p[key] for p in per)
        out["tiles"] = len(per)
        return out

    def __repr__(self) -> str:
        s = self.blocks[0][0]
        return (f"TiledLayer({self.shape[0]}x{self.shape[1]} on {self.grid[0]}x{self.grid[1]} tiles of at most "
                f"{self.max_tile}, card={s.tile.card.name}, scheme={s.name})")

    # ------------------------------------------------------------------ helpers
    def _rows(self, a: np.ndarray, n: int, what: str, name: str) -> tuple[np.ndarray, bool]:
        a = np.asarray(a)
        squeeze = a.ndim == 1
        a2 = a.reshape(1, -1) if squeeze else a
        if a2.ndim != 2 or a2.shape[1] != n:
            raise ValueError(f"TiledLayer {self.shape}: {what}: expected {name} of shape (batch, {n}), got {a.shape}")
        return a2, squeeze

    @staticmethod
    def _part(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Columns lo:hi of a batch, contiguous (the whole array when it is one block)."""
        return a if lo == 0 and hi == a.shape[1] else np.ascontiguousarray(a[:, lo:hi])

    def _finite(self, a: np.ndarray, what: str, name: str) -> None:
        if a.dtype != np.bool_ and not np.isfinite(a).all():
            raise ValueError(f"TiledLayer {self.shape}: {what}: {name} contains NaN or inf")
