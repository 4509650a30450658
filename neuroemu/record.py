"""Recording device-level statistics of crossbar tiles during a run.

A :class:`Recorder` takes snapshots of named tiles (``observe``) at chosen steps, together with any
scalars of the run (loss, accuracy, epoch...). Per tile and snapshot it records:

==================  ========================================================================
``pulses``          programming pulses so far, all devices (``Tile.npulse``)
``pulses_mean``     pulses per device, mean over devices
``pulses_max``      pulses per device, the most-pulsed device
``writes``          synapses programmed by target so far (``Tile.nwrite``)
``refreshes``       synapses refreshed so far (``Tile.n_refresh``)
``resets``          device RESETs so far (``Tile.nreset``; the factory RESET is not counted)
``saturated``       fraction of devices within 2 % of their range below their upper bound
``energy_pJ``       write energy so far (``Tile.energy()``, pJ)
``g_mean_uS``       mean device conductance now (noiseless, with drift)
==================  ========================================================================

and a histogram of all device conductances (every side and device of every synapse) over fixed
bins spanning the card's ``[g_min, g_max]``; values outside the range (per-device bounds spread
beyond the card's nominal ones, programming noise) are counted in the edge bins, so each histogram
sums to the number of devices.

Counters are cumulative, as the tile keeps them. ``saturated`` uses the programmed state (what the
next pulse acts on); the histogram and ``g_mean_uS`` use the conductance a read would see now.

``rows()`` gives one flat dict per snapshot (``step``, the scalars, then ``<tile>.<stat>`` columns)
for a ``metrics.csv``; ``write_csv`` writes them atomically; ``summary()`` gives json-ready totals.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .hardware.crossbar import Tile
from .io import write_csv

#: Per-tile statistics, in column order.
STATS = ("pulses", "pulses_mean", "pulses_max", "writes", "refreshes", "resets", "saturated", "energy_pJ",
         "g_mean_uS")

#: A device counts as saturated when it is within this fraction of its range below its upper bound.
SATURATION_MARGIN = 0.02


def tile_stats(tile: Tile) -> dict[str, float | int]:
    """The statistics of one tile now (see the module docstring)."""
    n = tile.g.size
    npulse = tile.npulse
    span = tile.hi - tile.lo
    saturated = np.count_nonzero(tile.g_persistent >= tile.hi - SATURATION_MARGIN * span) / n  # what pulses act on
    return {
        "pulses": int(npulse.sum()),
        "pulses_mean": float(npulse.mean()),
        "pulses_max": int(npulse.max()),
        "writes": int(tile.nwrite),
        "refreshes": int(tile.n_refresh),
        "resets": int(tile.nreset.sum()),
        "saturated": float(saturated),
        "energy_pJ": float(tile.energy()),
        "g_mean_uS": float(tile.conductances().mean()),
    }


class Recorder:
    """Snapshots of device statistics of named tiles.

    Parameters
    ----------
    bins: number of conductance histogram bins (over the card's [g_min, g_max]).
    """

    def __init__(self, bins: int = 50):
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins: expected an integer >= 1, got {bins!r}")
        self.bins = bins
        self._rows: list[dict[str, Any]] = []
        self._hist: dict[str, dict[str, Any]] = {}  # name -> {edges, steps: list, counts: list, devices}
        self._last: dict[str, dict[str, Any]] = {}  # name -> last stats (+ card, devices)

    # ------------------------------------------------------------------ recording
    def observe(self, step: int, tiles: Mapping[str, Tile], **scalars: Any) -> dict[str, Any]:
        """Take a snapshot of ``tiles`` at ``step``; ``scalars`` are stored in the same row.

        Returns the row. A tile name must keep the same card between snapshots.
        """
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise ValueError(f"step: expected an integer, got {step!r}")
        row: dict[str, Any] = {"step": int(step)}
        for key, value in scalars.items():
            if key == "step" or "." in key:
                raise ValueError(f"scalar {key!r}: names must not be 'step' or contain '.'")
            row[key] = _plain(value)
        for name, tile in tiles.items():  # check everything before recording anything
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"tile name {name!r}: expected a non-empty string without '.'")
            if not isinstance(tile, Tile):
                raise TypeError(f"tile {name!r}: expected a neuroemu Tile, got {type(tile).__name__}")
            if name in self._hist and self._hist[name]["card"] != tile.card.name:
                raise ValueError(f"tile {name!r}: card changed from {self._hist[name]['card']} to "
                                 f"{tile.card.name} between snapshots")
        for name, tile in tiles.items():
            stats = tile_stats(tile)
            for key, value in stats.items():
                row[f"{name}.{key}"] = value
            self._histogram(name, int(step), tile)
            self._last[name] = {"card": tile.card.name, "devices": int(tile.g.size), "shape": list(tile.shape),
                                "n_devices": tile.n_devices, **stats}
        self._rows.append(row)
        return row

    def _histogram(self, name: str, step: int, tile: Tile) -> None:
        prm = tile.prm
        h = self._hist.get(name)
        if h is None:
            edges = np.linspace(prm.g_min, prm.g_max, self.bins + 1)
            h = self._hist[name] = {"card": tile.card.name, "edges": edges, "steps": [], "counts": []}
        edges = h["edges"]
        g = tile.conductances().reshape(-1)
        idx = np.clip(np.searchsorted(edges, g, side="right") - 1, 0, self.bins - 1)
        h["steps"].append(step)
        h["counts"].append(np.bincount(idx, minlength=self.bins).astype(np.int64))

    # ------------------------------------------------------------------ access
    @property
    def tiles(self) -> list[str]:
        """Names of the tiles observed so far."""
        return list(self._hist)

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per snapshot: ``step``, the scalars, and ``<tile>.<stat>`` columns."""
        return [dict(r) for r in self._rows]

    def histograms(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bin_edges [µS], steps, counts of shape (snapshots, bins)) of tile ``name``."""
        if name not in self._hist:
            raise KeyError(f"no tile named {name!r} was observed; known: {', '.join(self._hist) or 'none'}")
        h = self._hist[name]
        return h["edges"].copy(), np.asarray(h["steps"], dtype=np.int64), np.stack(h["counts"])

    def summary(self) -> dict[str, Any]:
        """Totals per tile at the last snapshot (json-serialisable)."""
        out: dict[str, Any] = {}
        for name, last in self._last.items():
            steps = self._hist[name]["steps"]
            out[name] = {**last, "snapshots": len(steps), "first_step": steps[0], "last_step": steps[-1]}
        return out

    def columns(self) -> list[str]:
        """All column names, in the order they first appeared."""
        cols: dict[str, None] = {}
        for r in self._rows:
            cols.update(dict.fromkeys(r))
        return list(cols)

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write ``rows()`` to ``path`` as CSV, atomically. Columns missing from a row are left empty."""
        write_csv(path, self._rows)
        return Path(path)


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a metrics CSV back: numbers become int or float, empty cells are left out."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _parse(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _parse(s: str) -> Any:
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


__all__ = ["Recorder", "STATS", "SATURATION_MARGIN", "read_csv", "tile_stats"]


def pulse_histogram(tile: Tile) -> dict[str, list]:
    """Histogram of pulses per synapse (summed over all its devices) over log-spaced bins, for plots."""
    counts = tile.npulse.reshape(tile.n_side, tile.n_devices, -1).sum(axis=(0, 1))
    top = max(int(counts.max()), 1)
    edges = np.unique(np.concatenate([[0, 1], np.geomspace(1, top + 1, 20).round()]))
    hist, _ = np.histogram(counts, bins=edges)
    return {"edges": edges.tolist(), "counts": hist.tolist()}
