"""Device-level statistics of a card, measured through real tiles.

Every function here builds a :class:`~neuroemu.hardware.crossbar.Tile` on the card, drives it with the
tile's own operations (``pulse``, ``write``, ``advance``, ``conductances``, ``weights``) and reports
statistics over many fresh devices. No physics is re-implemented: what these curves show is what a
training run on that card experiences.

All results are plain dicts of json-serialisable values (lists of floats), in µS and seconds, ready
for :mod:`neuroemu.plot` or a results file.

* :func:`pulse_response` — mean ± std of the conductance after each of P pulses from the RESET state.
* :func:`drift_curve` — mean ± std of the conductance vs time after programming to G0.
* :func:`read_noise_curve` — std of one read vs the programmed conductance.
* :func:`programmed_vs_target` — weights a tile holds after programming the given targets.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .cards import Card, load_card
from .crossbar import Periphery, Tile
from ..errors import CardError, NeuroemuError

UNIT = "uS"

# Peak memory of pulse_response, measured with tracemalloc (numpy 1.26, every shipped card): a tile
# keeps ~10 float64 arrays per device and side (conductance, pulse history, bounds, steps, drift, ...)
# plus temporaries while it is built and read, ~100-128 bytes; the result holds ~120 bytes per pulse.
_BYTES_PER_DEVICE_SIDE = 128
_BYTES_PER_PULSE = 160


def _card(card: Card | str) -> Card:
    return card if isinstance(card, Card) else load_card(card)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def _floats(values: Any, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-d sequence of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite numbers")
    return arr


def _tile(card: Card, out_size: int, in_size: int, seed: Any) -> Tile:
    return Tile(out_size, in_size, card, periphery=Periphery.ideal(), rng=seed)


def _weight_for_conductance(tile: Tile, g: np.ndarray) -> np.ndarray:
    """The weight whose ``write`` puts conductance ``g`` on every side-0 device (1 device/side)."""
    prm = tile.prm
    ref = prm.g_min if tile.differential else prm.g_mid
    return (g - ref) * tile.n_devices / tile.scale


def pulse_response(card: Card | str, pulses: int = 20, devices: int = 1000, seed: Any = 0, *,
                   direction: str = "up") -> dict[str, Any]:
    """Conductance statistics after each of ``pulses`` identical pulses on ``devices`` fresh devices.

    The devices start from the card's RESET state (the state a new tile is built in). ``pcm_set``
    cards take SET pulses (the only kind they have); bidirectional cards take up pulses, or down
    pulses with ``direction="down"``. Conductances are read without read noise and without drift
    (no time passes). Device-to-device variation of the card is drawn once, as in any tile.

    Returns a dict: ``card``, ``unit`` ("uS"), ``direction``, ``devices``, ``seed``, ``pulses``
    ([1..P]), ``mean`` and ``std`` (population std over devices, one per pulse), ``initial_mean``,
    ``initial_std`` (before the first pulse) and the card's ``g_min``/``g_max``.

    Raises :class:`~neuroemu.errors.CardError` for cards that cannot take pulses (``pcm_inference``).
    """
    card = _card(card)
    if not card.pulsable:
        raise CardError(f"{card.name}: kind '{card.kind}' is programmed by target, not by pulses; "
                        "it has no pulse response")
    pulses = _positive_int(pulses, "pulses")
    devices = _positive_int(devices, "devices")
    if direction not in ("up", "down"):
        raise ValueError(f"direction: expected 'up' or 'down', got {direction!r}")
    if direction == "down" and not card.bidirectional:
        raise ValueError(f"{card.name}: kind '{card.kind}' only SETs (conductance goes up); depression is a "
                         "SET on the other device of a differential pair, so use direction='up'")
    _check_memory(card, pulses, devices)
    tile = _tile(card, 1, devices, seed)
    counts = np.full(tile.shape, 1 if direction == "up" else -1, dtype=np.int32)
    g = tile.conductances()[0, 0, 0]
    initial = (float(g.mean()), float(g.std()))
    mean = np.empty(pulses)
    std = np.empty(pulses)
    for i in range(pulses):
        tile.pulse(counts)
        g = tile.conductances()[0, 0, 0]
        mean[i] = g.mean()
        std[i] = g.std()
    return {
        "card": card.name, "unit": UNIT, "direction": direction, "devices": devices, "seed": _jsonable(seed),
        "pulses": list(range(1, pulses + 1)), "mean": mean.tolist(), "std": std.tolist(),
        "initial_mean": initial[0], "initial_std": initial[1],
        "g_min": float(tile.prm.g_min), "g_max": float(tile.prm.g_max),
    }


def response_memory(card: Card, pulses: int, devices: int) -> int:
    """Estimated peak memory (bytes) of :func:`pulse_response` for this card (a SET-only card pairs
    two devices per synapse, so it needs twice as much per device)."""
    sides = 1 if card.bidirectional else 2
    return devices * sides * _BYTES_PER_DEVICE_SIDE + pulses * _BYTES_PER_PULSE


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation: ``MemAvailable`` of /proc/meminfo (Linux), else
    the free physical pages (other Unixes), else all physical memory (macOS); None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            continue
    return None


def _check_memory(card: Card, pulses: int, devices: int) -> None:
    need, avail = response_memory(card, pulses, devices), available_memory()
    if avail is None or need <= avail:
        return
    fit = (avail - pulses * _BYTES_PER_PULSE) // response_memory(card, 0, 1)
    if fit < 1:
        raise NeuroemuError(f"pulses: {pulses} pulses need ~{_gb(need)}; {_gb(avail)} of memory is available")
    raise NeuroemuError(f"devices: {devices} devices need ~{_gb(need)}; at most {fit} devices fit in the "
                        f"available memory ({_gb(avail)})")


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def drift_curve(card: Card | str, g0_values: Sequence[float], times: Sequence[float], devices: int = 1000,
                seed: Any = 0) -> dict[str, Any]:
    """Mean ± std of the conductance at ``times`` (s after programming) for devices written to each G0.

    One tile holds one row of ``devices`` devices per G0; the row is programmed with
    :meth:`Tile.write` (G0 is clipped to each device's bounds and rounded to the card's levels;
    ``pcm_inference`` cards add programming noise and draw their drift exponents), then time is
    advanced and the noiseless conductances are read. Drift is the card's law: cards without drift
    give flat curves.

    Returns ``card``, ``unit``, ``time_unit`` ("s"), ``g0`` (list), ``times`` (list, as given) and
    ``mean``/``std``: one list per G0, one value per time.
    """
    card = _card(card)
    g0 = _floats(g0_values, "g0_values")
    t = _floats(times, "times")
    if np.any(t < 0):
        raise ValueError("times: expected times >= 0 (seconds after programming)")
    devices = _positive_int(devices, "devices")
    tile = _tile(card, g0.size, devices, seed)
    tile.write(np.repeat(_weight_for_conductance(tile, g0)[:, None], devices, axis=1))
    mean = np.empty((g0.size, t.size))
    std = np.empty((g0.size, t.size))
    for j in np.argsort(t, kind="stable"):
        tile.advance(t[j] - tile.t)
        g = tile.conductances()[0, 0]
        mean[:, j] = g.mean(axis=1)
        std[:, j] = g.std(axis=1)
    return {"card": card.name, "unit": UNIT, "time_unit": "s", "devices": devices, "seed": _jsonable(seed),
            "g0": g0.tolist(), "times": t.tolist(), "mean": mean.tolist(), "std": std.tolist()}


def read_noise_curve(card: Card | str, g_values: Sequence[float], reads: int = 2000, seed: Any = 0, *,
                     t: float = 0.0) -> dict[str, Any]:
    """Standard deviation of a single read vs the programmed conductance.

    For each G, ``reads`` devices are written to G (:meth:`Tile.write`), ``t`` seconds pass, and every
    device is read once with ``conductances(noisy=True)``. The std is taken over devices of the read
    minus that device's noiseless conductance, so programming spread between devices does not count
    as read noise (reads are not clipped at 0 µS: the noise is that of the measured read current).

    Returns ``card``, ``unit``, ``g`` (the noiseless mean conductance of each row, after drift),
    ``g_target`` (as given), ``std`` and ``model_std``: the card's linear law rel·G + abs where the
    card has one (``None`` for ``pcm_inference`` cards, whose 1/f law depends on time).
    """
    card = _card(card)
    gv = _floats(g_values, "g_values")
    reads = _positive_int(reads, "reads")
    if not t >= 0:
        raise ValueError(f"t: expected a time >= 0 s, got {t!r}")
    tile = _tile(card, gv.size, reads, seed)
    tile.write(np.repeat(_weight_for_conductance(tile, gv)[:, None], reads, axis=1))
    tile.advance(t)
    clean = tile.conductances()[0, 0]
    noisy = tile.conductances(noisy=True)[0, 0]
    g_mean = clean.mean(axis=1)
    out = {"card": card.name, "unit": UNIT, "reads": reads, "seed": _jsonable(seed), "t": float(t),
           "g": g_mean.tolist(), "g_target": gv.tolist(), "std": (noisy - clean).std(axis=1).tolist(),
           "model_std": None}
    if card.kind != "pcm_inference":
        p = card.params
        out["model_std"] = (p["read_noise_rel"] * np.abs(g_mean) + p["read_noise_abs"]).tolist()
    return out


def programmed_vs_target(card: Card | str, targets: Sequence[float], seed: Any = 0, *, method: str = "write",
                         max_pulses: int = 100, t: float = 0.0) -> dict[str, Any]:
    """Weights a tile holds after programming ``targets`` (weight units, one synapse each).

    ``method="write"`` programs by target with :meth:`Tile.write` (bounds, levels and the card's
    programming noise). ``method="verify"`` starts from RESET devices and moves each weight by single
    pulses with a noisy read after each round (:meth:`Tile.program_verify`, at most ``max_pulses``
    rounds) — how a pulse-programmed device is really written. ``t`` seconds pass before the
    (noiseless, drifted) weights are read.

    Returns ``card``, ``unit`` ("weight"), ``method``, ``target``, ``programmed`` (lists),
    ``w_range`` (the tile's nominal representable range) and ``scale`` (µS per weight unit).
    """
    card = _card(card)
    tg = _floats(targets, "targets")
    if method not in ("write", "verify"):
        raise ValueError(f"method: expected 'write' or 'verify', got {method!r}")
    if not t >= 0:
        raise ValueError(f"t: expected a time >= 0 s, got {t!r}")
    tile = _tile(card, 1, tg.size, seed)
    if method == "write":
        tile.write(tg[None, :])
    else:
        if not card.pulsable:
            raise CardError(f"{card.name}: kind '{card.kind}' is programmed by target, not by pulses; "
                            "use method='write'")
        max_pulses = _positive_int(max_pulses, "max_pulses")
        tile.program_verify(tg, np.ones(tile.shape, dtype=bool), max_pulses=max_pulses)
    tile.advance(t)
    return {"card": card.name, "unit": "weight", "method": method, "seed": _jsonable(seed), "t": float(t),
            "target": tg.tolist(), "programmed": tile.weights()[0].tolist(),
            "w_range": [float(v) for v in tile.w_range], "scale": tile.scale}


def _jsonable(seed: Any) -> Any:
    """The seed as it can be stored in a results file (a Generator is recorded as None)."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return int(seed)
    return None
