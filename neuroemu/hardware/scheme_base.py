"""The interface every weight-update scheme implements (:class:`Scheme`), its parameter schema
(:class:`Param`), and the machinery the pulse schemes share: pulses spread round-robin over a
synapse's devices, the pulse limit and its warning, stochastic pulse coincidences, and the step one
pulse really takes on fresh devices (:func:`first_pulse_steps`). The schemes themselves and their
registry are in :mod:`neuroemu.hardware.schemes`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any

import numpy as np

from .._kernels import update as _U
from .cards import Card, load_card
from ..rng import as_rng, draw_seed
from .crossbar import Periphery, Tile
from ..errors import CardError, ConfigError, did_you_mean
from .response import pulse_response

#: Default of every pulse scheme's ``max_pulses``: pulses one synapse may receive in one update.
#: 1000 pulses sweep the whole conductance range of the PCM and quantized cards (16 and 14 nominal
#: pulses) many times over, and half the range of the fine-step cards (1200–2000 for linear_step,
#: rram_gong2018 and ideal); a well-set learning rate asks for a few pulses per update.
MAX_PULSES = 1000


#: Fresh devices whose first pulse :func:`first_pulse_steps` measures: the mean first step of the PCM
#: card (spread about 1.5 µS over devices) comes out within about ±0.01 µS.
FIRST_STEP_DEVICES = 20000


def first_pulse_steps(card: Card) -> tuple[float, float]:
    """Mean conductance change (µS) of the first up pulse and of the first down pulse on fresh devices
    of ``card`` (the RESET state a new tile is built in), measured with
    :func:`~neuroemu.hardware.response.pulse_response` on :data:`FIRST_STEP_DEVICES` devices (seed 0), so the
    step law, its cycle-to-cycle noise, the device-to-device spread, the bounds and any level grid
    all count. A card's write noise is left out: a zero-mean offset drawn anew at every write, it
    leaves the mean step as it is but would bury it in its spread. On a SET-only card depression is
    a SET on the other device of the pair, so both numbers are the first SET. Compare with
    ``card.nominal_step``, the step schemes assume."""
    if card.params.get("write_noise_std"):
        card = card.with_params(write_noise_std=0.0)
    up = pulse_response(card, pulses=1, devices=FIRST_STEP_DEVICES, seed=0)
    first_up = up["mean"][0] - up["initial_mean"]
    if not card.bidirectional:
        return first_up, first_up
    down = pulse_response(card, pulses=1, devices=FIRST_STEP_DEVICES, seed=0, direction="down")
    return first_up, down["initial_mean"] - down["mean"][0]


class PulseLimitWarning(UserWarning):
    """An update scheme was asked for more pulses on one synapse in one update than its
    ``max_pulses`` and clipped them (warned once per scheme; ``stats()["pulse_limit_hits"]`` counts
    every clipped (synapse, update))."""


# ---------------------------------------------------------------------------------------- parameters
@dataclasses.dataclass(frozen=True)
class Param:
    """Schema of one scheme parameter. ``kind``: "float", "int", "bool", "card" or "periphery".
    ``default`` may be a callable of the scheme (a default that depends on the tile)."""

    kind: str
    default: Any = None
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    doc: str = ""
    optional: bool = False  # None is accepted (and means "derive it")

    def expected(self) -> str:
        if self.kind in ("float", "int"):
            lo_b = "(" if self.lo_open else "["
            rng = f" in {lo_b}{self.lo:g}, {self.hi:g}]" if (self.lo > -math.inf or self.hi < math.inf) else ""
            what = "a number" if self.kind == "float" else "an integer"
            return what + rng
        return {"bool": "true or false", "card": "a device card name, path or Card",
                "periphery": "a Periphery or a mapping of its fields"}[self.kind]

    def check(self, scheme: str, name: str, value: Any) -> Any:
        def bad():
            return ConfigError(f"scheme '{scheme}': {name}: expected {self.expected()}, got {value!r}")

        if value is None and self.optional:
            return None
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise bad()
            return bool(value)
        if self.kind == "card":
            if isinstance(value, Card):
                return value
            if isinstance(value, str):
                try:
                    return load_card(value)
                except CardError as exc:
                    raise ConfigError(f"scheme '{scheme}': {name}: {exc}") from None
            raise bad()
        if self.kind == "periphery":
            if isinstance(value, Periphery):
                return value
            if isinstance(value, dict):
                try:
                    return Periphery(**value)
                except TypeError as exc:
                    raise ConfigError(f"scheme '{scheme}': {name}: {exc}") from None
            raise bad()
        if isinstance(value, (bool, np.bool_)):
            raise bad()
        if self.kind == "int":
            if not isinstance(value, (int, np.integer)):
                raise bad()
            value = int(value)
        else:
            if not isinstance(value, (int, float, np.integer, np.floating)):
                raise bad()
            value = float(value)
            if not math.isfinite(value):
                raise bad()
        below = value <= self.lo if self.lo_open else value < self.lo
        if below or value > self.hi:
            raise bad()
        return value


def _refresh_high_default(s: "Scheme") -> float:
    return 0.75 * s.tile.prm.g_max


#: Parameters of every pulse scheme: the refresh policy and the pulse limit.
_PULSED = {
    "refresh_every": Param("int", 0, 0, 2**62, doc="run the refresh policy every this many updates (0 = off)"),
    "refresh_high": Param("float", _refresh_high_default, 0.0, math.inf, lo_open=True,
                          doc="µS: refresh pairs whose higher side reaches this (default 0.75·g_max)"),
    "max_pulses": Param("int", MAX_PULSES, 1, 2**62,
                        doc=f"most pulses one synapse receives in one update; more are clipped, with a "
                            f"PulseLimitWarning (default {MAX_PULSES})"),
    "aggregate_pulses": Param("bool", False,
                              doc="apply the pulses one device takes in one update as one step where that is "
                                  "exact in distribution: constant-step cards without a level grid (linear_step), "
                                  "on one device per synapse side for the coincidence updates, away from the "
                                  "device's bounds (the walk's drift plus 8 σ of its noise must fit; closer to a "
                                  "bound the pulses go one by one). The n step draws become one normal with √n "
                                  "spread: same law, different random stream, so results differ from "
                                  "aggregate_pulses: false (one pulse at a time, the default) wherever a device "
                                  "takes two or more pulses in one update. Other cards always take their pulses "
                                  "one at a time"),
}


# ---------------------------------------------------------------------------------------- base class
class Scheme:
    """Base class: validates parameters, implements the default read path and the bookkeeping.

    Subclasses set ``name``, ``PARAMS`` and implement :meth:`_apply` (and may override
    :meth:`update`). ``pulsed`` schemes need a card that takes pulses and get the refresh policy.
    """

    name = "base"
    PARAMS: dict[str, Param] = {}
    pulsed = True

    def __init__(self, tile: Tile, *, rng: Any = None, **params: Any):
        if not isinstance(tile, Tile):
            raise ConfigError(f"scheme '{self.name}': tile: expected a neuroemu Tile, got {type(tile).__name__}")
        self.tile = tile
        self.rng = as_rng(rng)
        if self.name != "ideal" and not tile.card.pulsable:
            raise ConfigError(f"scheme '{self.name}': card {tile.card.name} (kind {tile.card.kind}) is programmed "
                              "by target (its writes carry programming noise) and takes no pulses; "
                              "expected scheme 'ideal'")
        schema = {**self.PARAMS, **(_PULSED if self.pulsed else {})}
        unknown = sorted(set(params) - set(schema))
        if unknown:
            exp = ", ".join(sorted(schema)) or "(none)"
            raise ConfigError(f"scheme '{self.name}': unknown parameter '{unknown[0]}'"
                              f"{did_you_mean(unknown[0], schema)}; expected one of: {exp}")
        self.params: dict[str, Any] = {}
        for key, spec in schema.items():
            if key in params:
                self.params[key] = spec.check(self.name, key, params[key])
            else:
                self.params[key] = spec.default(self) if callable(spec.default) else spec.default
        if self.pulsed:
            g_max = tile.prm.g_max
            if self.params["refresh_high"] > g_max:
                raise ConfigError(f"scheme '{self.name}': refresh_high: expected a conductance in (0, {g_max:g}] uS "
                                  f"(the card's g_max), got {self.params['refresh_high']!r}")
        self.n_updates = 0
        self.n_pulses = 0
        self.n_refreshes = 0
        self.n_refresh_checks = 0
        self.n_limit_hits = 0
        self.n_digital = 0  # digital operations of the scheme (outer products, accumulator adds)
        self._nwrite0 = tile.nwrite

    # ------------------------------------------------------------------ public API
    @property
    def dw_pulse(self) -> float:
        """Nominal weight change of one pulse on the scheme's tile (weight units)."""
        return self.tile.card.nominal_step / self.tile.scale

    @property
    def assumed_step(self) -> float:
        """Conductance change (µS) of one pulse that the scheme's pulse counts assume (the card's
        nominal step)."""
        return self.tile.card.nominal_step

    @functools.cached_property
    def _first_steps(self) -> tuple[float, float]:
        return first_pulse_steps(self.tile.card)

    def pulse_steps(self) -> dict[str, float]:
        """The pulse size the scheme assumes against what the card's devices take, in µS:
        ``assumed_uS`` (:attr:`assumed_step`), ``first_uS`` and ``first_down_uS`` (the mean first up
        and down step of a fresh device, :func:`first_pulse_steps`). Empty for the schemes that
        write targets instead of pulses."""
        if not self.pulsed:
            return {}
        up, down = self._first_steps
        return {"assumed_uS": float(self.assumed_step), "first_uS": float(up), "first_down_uS": float(down)}

    def update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        """Apply the wanted change ΔW = -lr · dᵀx (x: (batch, in), d: (batch, out))."""
        x2, d2, lr = self._batch(x, d, lr)
        self.n_digital += d2.shape[0] * d2.shape[1] * x2.shape[1]  # the outer products, formed digitally
        self.apply(-lr * (d2.astype(np.float64).T @ x2.astype(np.float64)))

    def apply(self, dw: np.ndarray) -> None:
        """Apply a wanted change ΔW (shape (out, in), weight units)."""
        self._apply(self._dense(dw))
        self._after_update()

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y = x Wᵀ as the network reads it (through the tile periphery)."""
        return self.tile.forward(x)

    def backward(self, d: np.ndarray) -> np.ndarray:
        """d W as the network reads it (the transposed read)."""
        return self.tile.backward(d)

    def weights(self) -> np.ndarray:
        """Effective weights the network sees (float64, without read noise)."""
        return self.tile.weights()

    def stats(self) -> dict[str, Any]:
        """Counters: updates, pulses issued by the scheme, refreshes (synapses re-programmed),
        refresh_checks (runs of the policy), writes (synapses programmed by target), energy_pJ
        (write energy spent on the scheme's tiles, from the card); pulse schemes add
        pulse_limit_hits ((synapse, update) pairs clipped to ``max_pulses``) and ``pulse_steps`` (a dict,
        :meth:`pulse_steps`). Numbers are counters (``*_mean``: means); settings come as dicts or strings."""
        out = {
            "scheme": self.name,
            "updates": self.n_updates,
            "pulses": int(self.n_pulses),
            "refreshes": self.n_refreshes,
            "refresh_checks": self.n_refresh_checks,
            "writes": int(sum(t.nwrite for t in self.tiles) - self._nwrite0),
            "energy_pJ": float(sum(t.energy() for t in self.tiles)),
            "digital_ops": int(self.n_digital),
        }
        if self.pulsed:
            out["pulse_limit_hits"] = self.n_limit_hits
            out["pulse_steps"] = self.pulse_steps()
        return out

    def refresh(self) -> int:
        """Run the refresh policy now; returns the number of synapses refreshed."""
        self.n_refresh_checks += 1
        frac = self.params["refresh_high"] / self.tile.prm.g_max
        n = 0
        for t in self.tiles:
            n += t.refresh(frac * t.prm.g_max)
        self.n_refreshes += n
        return n

    def __repr__(self) -> str:
        p = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({self.tile!r}, {p})"

    # ------------------------------------------------------------------ helpers
    @property
    def tiles(self) -> list[Tile]:
        """Every tile the scheme programs (Tiki-Taka: C and A)."""
        return [self.tile]

    def _apply(self, dw: np.ndarray) -> None:
        raise NotImplementedError

    def _limit_hit(self, tile: Tile, n_over: int, wanted: float, what: str, lr: float | None = None,
                   per_pulse: float | None = None,
                   advice: str = "The learning rate is too large for this card: lower it") -> None:
        """Count ``n_over`` synapses clipped to ``max_pulses`` on ``tile`` in this update (the most wanted:
        ``wanted`` pulses of ``per_pulse`` weight units each, default the tile's Δw_pulse) and warn the
        first time. ``what`` says what became of the excess, ``advice`` what to change."""
        if not n_over:
            return
        first = self.n_limit_hits == 0
        self.n_limit_hits += int(n_over)
        if not first:
            return
        step = tile.card.nominal_step / tile.scale
        unit = step if per_pulse is None else per_pulse
        cap = self.params["max_pulses"]
        cause = f"a change of {wanted * unit:.3g} in weight units at Δw_pulse {step:.3g}" + \
            (f" and ε {unit:.3g}" if unit != step else "") + (f", learning rate {lr:g}" if lr is not None else "")
        warnings.warn(
            f"scheme '{self.name}' on a {tile.shape[0]}x{tile.shape[1]} tile of {tile.card.name}: one update wanted "
            f"{wanted:.0f} pulses on one synapse ({cause}); max_pulses = {cap} clipped {n_over} synapse(s) to {cap} "
            f"pulses ({what}). {advice}, or raise the limit (scheme "
            "parameter max_pulses, e.g. scheme_params: {max_pulses: N}) if such updates are meant. Later hits are "
            "counted in stats()['pulse_limit_hits'], not warned.", PulseLimitWarning, stacklevel=2)

    def _after_update(self) -> None:
        self.n_updates += 1
        if self.pulsed:
            every = self.params["refresh_every"]
            if every and self.n_updates % every == 0:
                self.refresh()

    def _dense(self, dw: np.ndarray) -> np.ndarray:
        dw = np.asarray(dw, dtype=np.float64)
        if dw.shape != self.tile.shape:
            raise ValueError(f"scheme '{self.name}': apply: expected dw of shape {self.tile.shape}, got {dw.shape}")
        if not np.isfinite(dw).all():
            raise ValueError(f"scheme '{self.name}': apply: dw contains NaN or inf")
        return dw

    def _batch(self, x: np.ndarray, d: np.ndarray, lr: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Check and shape (x, d, lr); x and d come back 2-d, float32 if they were, else float64."""
        out_size, in_size = self.tile.shape
        x = np.asarray(x)
        d = np.asarray(d)
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        d2 = d.reshape(1, -1) if d.ndim == 1 else d
        if x2.ndim != 2 or x2.shape[1] != in_size or d2.ndim != 2 or d2.shape[1] != out_size \
                or x2.shape[0] != d2.shape[0]:
            raise ValueError(f"scheme '{self.name}': update: expected x of shape (batch, {in_size}) and d of shape "
                             f"(batch, {out_size}), got {x.shape} and {d.shape}")
        x2 = np.ascontiguousarray(x2, dtype=np.float32 if x2.dtype in (np.float32, np.bool_) else np.float64)
        d2 = np.ascontiguousarray(d2, dtype=np.float32 if d2.dtype == np.float32 else np.float64)
        if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.integer, np.floating)) \
                or not math.isfinite(lr):
            raise ValueError(f"scheme '{self.name}': update: expected a finite learning rate, got {lr!r}")
        if not (np.isfinite(x2).all() and np.isfinite(d2).all()):
            raise ValueError(f"scheme '{self.name}': update: x or d contains NaN or inf")
        return x2, d2, float(lr)


class _PulseScheme(Scheme):
    """A scheme that programs by pulses; holds the per-synapse arbitration counter (Boybat et al.
    2018) that spreads a synapse's pulses round-robin over its N devices."""

    def __init__(self, tile: Tile, *, rng: Any = None, **params: Any):
        super().__init__(tile, rng=rng, **params)
        self._arb = self._new_arb(tile)

    @staticmethod
    def _new_arb(tile: Tile) -> np.ndarray:
        return np.zeros(tile.n_synapses, np.int64) if tile.n_devices > 1 else np.empty(0, np.int64)

    def _pulse(self, counts: np.ndarray, tile: Tile | None = None, arb: np.ndarray | None = None,
               ks: np.ndarray | None = None, **limit: str) -> int:
        """Signed pulse counts on ``tile`` (default the scheme's), round-robin over its devices from
        the arbitration counter; returns the pulses issued. ``counts`` has the tile's shape, or, with
        ``ks`` (flat synapse indices), one entry per listed synapse. Counts beyond ``max_pulses`` are
        clipped to it (the rest is dropped; ``limit``: the advice of the warning, see _limit_hit)."""
        tile = self.tile if tile is None else tile
        arb = self._arb if arb is None else arb
        flat = np.asarray(counts).reshape(-1)
        if ks is None:
            ks = np.flatnonzero(flat)
            flat = flat[ks]
        if ks.size == 0:
            return 0
        cap = self.params["max_pulses"]
        size = np.abs(flat)
        if size.max() > cap:
            self._limit_hit(tile, int(np.count_nonzero(size > cap)), float(size.max()), "the rest is dropped",
                            **limit)
            flat = np.clip(flat, -cap, cap)
        n = _U.pulse_sparse(ks, flat.astype(np.int64), arb, tile.g, tile.p, tile.tprog, tile.npulse, tile.up,
                            tile.down, tile.lo, tile.hi, tile.stuck, tile.nu, tile.n_synapses, tile.n_devices,
                            not tile.differential, tile.law, tile.prm, draw_seed(self.rng), tile.t,
                            self.params["aggregate_pulses"])
        tile.mark_changed()
        return int(n)


_COINCIDENCE = {
    "bl": Param("int", 31, 1, _U.MAX_BL, doc="bit length: slots per pulse train; with update_bl_management the "
                                            "most slots a sample may use (aihwkit's desired_bl)"),
    "update_management": Param("bool", True, doc="balance A and B per sample by sqrt(x_max/d_max) (aihwkit's "
                                                 "update_management)"),
    "update_bl_management": Param("bool", True, doc="per-sample BL = min(ceil(lr·x_max·d_max/Δw_pulse), bl) "
                                                    "(aihwkit's update_bl_management); needs update_management"),
}


class _CoincidenceScheme(_PulseScheme):
    """A scheme that programs a gradient -lr·dᵀx as stochastic pulse coincidences (see
    :class:`StochasticCoincidenceScheme`); counts the slots its samples used."""

    PARAMS = dict(_COINCIDENCE)

    def __init__(self, tile: Tile, *, rng: Any = None, **params: Any):
        super().__init__(tile, rng=rng, **params)
        if self.params["update_bl_management"] and not self.params["update_management"]:
            raise ConfigError(f"scheme '{self.name}': update_management: false needs update_bl_management: false "
                              "(BL management balances A and B itself, as in aihwkit, where it turns update "
                              "management on)")
        self.n_samples = 0  # samples drawn (x and d not all zero)
        self.n_slots = 0  # slots they used

    def _coincidence(self, tile: Tile, arb: np.ndarray, x: np.ndarray, d: np.ndarray, lr: float) -> int:
        """Stochastic pulse-coincidence update of ``tile`` for ΔW = -lr·dᵀx; returns pulses issued."""
        if lr == 0.0:
            return 0
        if lr < 0.0:  # -lr·dᵀx = -|lr|·(-d)ᵀx
            d, lr = -d, -lr
        p = self.params
        n, n_over, most, bls = _U.coincidence_update(
            x, d, lr, tile.card.nominal_step / tile.scale, p["update_management"], p["update_bl_management"], p["bl"],
            p["max_pulses"], draw_seed(self.rng), draw_seed(self.rng), tile.g, tile.p, tile.tprog, tile.npulse,
            tile.up, tile.down, tile.lo, tile.hi, tile.stuck, tile.nu, arb, tile.n_devices, not tile.differential,
            tile.law, tile.prm, tile.t, p["aggregate_pulses"])
        tile.mark_changed()
        self.n_samples += int(np.count_nonzero(bls))
        self.n_slots += int(bls.sum())
        self._limit_hit(tile, n_over, float(most), "later coincidences of the update were not applied", lr)
        return int(n)

    def stats(self):
        """Adds ``update_mode`` (a dict: ``bl``, ``update_management``, ``update_bl_management``) and
        ``bl_mean``, the mean number of slots per sample drawn (``bl`` with a fixed BL; 0 before any)."""
        mode = {k: self.params[k] for k in _COINCIDENCE}
        return {**super().stats(), "update_mode": mode,
                "bl_mean": self.n_slots / self.n_samples if self.n_samples else 0.0}
