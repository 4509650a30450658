"""Weight-update schemes: what the hardware does with the weight change a learning rule wants.

A learning rule returns the update it *wants* (ΔW in weight units); a scheme turns it into device
operations on a :class:`~neuroemu.hardware.crossbar.Tile` (exact writes, or programming pulses) and owns the
digital side state this needs (accumulators, arbitration counters, refresh policy)::

    scheme = make_scheme("mixed_precision", tile, rng=0)
    scheme.update(x, d, lr)      # wanted ΔW = -lr · dᵀx   (x: (batch, in), d: (batch, out))
    scheme.apply(dw)             # wanted ΔW given densely, shape (out, in)
    y = scheme.forward(x)        # what the network reads
    scheme.stats()               # pulses, refreshes, energy_pJ, ...

Schemes (registry :data:`SCHEMES`; papers.md §1c and §2):

========================  ==================================================================
``ideal``                 exact float write of W + ΔW (the only scheme for programmed-once cards)
``digital``               low-precision digital accumulator, transfer in steps of ε (Demirag 2021)
``sign``                  one pulse with the sign of ΔW where |ΔW| > θ (Demirag 2021)
``stochastic``            one pulse with probability |ΔW|/Δw_pulse (Demirag 2021)
``stochastic_coincidence``  stochastic pulse trains, coincidences program; BL and update management
                          as IBM aihwkit (Gokmen & Vlasov 2016)
``multi_device``          trunc(|ΔW|/Δw_pulse) pulses round-robin over N devices (Boybat 2018)
``mixed_precision``       float accumulator, transfer whole pulses, keep the rest (Nandakumar 2020)
``tiki_taka``             fast tile A takes the SGD pulses, columns transferred to C by stochastically
                          rounded pulse counts (Gokmen 2020)
========================  ==================================================================

Δw_pulse is the nominal weight change of one pulse: ``card.nominal_step / tile.scale`` (the tile
scale already counts the N devices of a synapse, so with N devices one pulse on one device moves
the weight by Δw_pulse). Every pulse scheme takes a refresh policy for differential (SET-only)
tiles: ``refresh_every`` (updates; 0 = off) and ``refresh_high`` (µS, default 0.75·g_max) call
:meth:`Tile.refresh` — saturating pairs are re-programmed without losing their weight. On
one-sided (bidirectional) tiles a refresh is a no-op.

Pulse size. Every scheme that converts a wanted change into pulses assumes one pulse moves a
device by the card's nominal step (Δw_pulse in weight units): ``multi_device`` issues
trunc(|ΔW|/Δw_pulse) pulses, ``mixed_precision`` transfers in steps of ε (default Δw_pulse),
``stochastic`` fires with probability |ΔW|/Δw_pulse, ``sign``'s default threshold is Δw_pulse/2,
``stochastic_coincidence`` sets A·B = lr/(Δw_pulse·BL) (and the BL of BL management), and
``tiki_taka`` uses A's Δw_pulse for the gradient and C's for the transfers. The nominal step is
the size the papers' schemes assume, not what a device does: :meth:`Scheme.pulse_steps` (also
``stats()["pulse_steps"]``) reports ``assumed_uS`` next to ``first_uS`` and ``first_down_uS``, the
mean conductance change of the first up and down pulse on fresh devices of the card
(:func:`first_pulse_steps`; Tiki-Taka adds the same for A with an ``a_`` prefix). For the shipped
cards (µS):

======================  ========  =============  ============================================
card                    assumed   first pulse    note
======================  ========  =============  ============================================
``pcm_nandakumar2018``  0.75      1.97           the step law's mean at RESET is 1.82; the floor
                                                 at g_min turns the 15 % negative draws into 0
``linear_step``         0.001     0.0010 (both)  constant step
``rram_gong2018``       0.00135   0.00147 up,    exponential step with up/down asymmetry,
                                  0.00198 down   at the RESET state (mid-range)
======================  ========  =============  ============================================

So a PCM pulse moves a fresh device about 2.6 times as far as the schemes count on (later
pulses move it less: the step shrinks with the pulse history and the conductance).

Pulse limit. Every pulse scheme also takes ``max_pulses`` (default :data:`MAX_PULSES`), the most
pulses one synapse receives in one update. A wanted change that needs more (a learning rate far
too large for the card: the pulse count grows with it, and so does the time an update takes) is
clipped to the limit, the scheme warns once with a :class:`PulseLimitWarning` naming the numbers,
and ``stats()["pulse_limit_hits"]`` counts every (synapse, update) that was clipped. Where a count
is computed: ``multi_device`` (trunc(|ΔW|/Δw_pulse)), ``mixed_precision`` (trunc(χ/ε); what the
limit holds back stays in the accumulator), ``tiki_taka`` (the dense ΔW on A and the column
transfers to C), ``stochastic_coincidence`` and Tiki-Taka's gradient on A (coincidences beyond the
limit are not applied; a sample gives at most BL). ``sign`` and ``stochastic`` issue at most one
pulse per synapse and update, and ``digital`` and ``ideal`` write targets instead of pulses, so
the limit never acts on them.

Aggregated pulses. Every pulse scheme takes ``aggregate_pulses`` (default false): on a card whose
pulses add up exactly (a constant step without a level grid: ``linear_step``) the pulses one
device takes in one update are applied as one step with one normal draw of √n spread, the same law
as n single pulses, wherever the walk of single pulses could not reach a bound (closer to a bound
they go one by one; see :mod:`neuroemu._kernels.device`). A device that takes one pulse gets the
same bits either way, so only devices taking two or more pulses in one update see another random
stream. It pays where devices take many pulses per update; where they take about one (the
coincidence updates of benchmarks/bench_update.py: 1.2 per device) the extra counting pass makes
the update slower, hence off by default. Other cards (PCM, ``rram_gong2018``, ``quantized``)
always take their pulses one at a time.

Randomness comes from the scheme's own generator (``rng``: Generator, seed or None); pulse
kernels are keyed by seeds drawn from it, so the same seeds give the same result bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any

import numpy as np

from .._kernels import device as _K
from .._kernels import periphery as _P
from .._kernels import update as _U
from .cards import Card, load_card
from ..rng import as_rng, draw_seed
from .crossbar import Periphery, Tile
from ..errors import CardError, ConfigError, did_you_mean
from .response import pulse_response

__all__ = ["SCHEMES", "Scheme", "make_scheme", "IdealScheme", "DigitalScheme", "SignScheme", "StochasticScheme",
           "StochasticCoincidenceScheme", "MultiDeviceScheme", "MixedPrecisionScheme", "TikiTakaScheme", "read_column",
           "MAX_PULSES", "PulseLimitWarning", "first_pulse_steps"]

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


# ---------------------------------------------------------------------------------------- schemes
class IdealScheme(Scheme):
    """Exact float write: ``tile.write(clip(W + ΔW, w_range))`` where ΔW ≠ 0.

    The reference every device scheme is compared against (the FP32 baseline of Demirag et al.,
    arXiv:2108.01804, 2021). On programmed-once cards (``pcm_inference``, Joshi et al. 2020) it is
    the only valid scheme, and every write carries the card's programming noise.
    """

    name = "ideal"
    pulsed = False

    def _apply(self, dw):
        mask = dw != 0.0
        if mask.any():
            lo, hi = self.tile.w_range
            self.tile.write(np.clip(self.tile.weights() + dw, lo, hi), mask)


class DigitalScheme(Scheme):
    """Low-precision digital accumulator (the digital baseline of Demirag, Frenkel, Payvand,
    Indiveri, arXiv:2108.01804, 2021): χ += ΔW; q = trunc(χ/ε)·ε; χ -= q; the weights where q ≠ 0
    are written to W + q. ``epsilon`` (weight units) is the transfer step: by default one level of
    the card when the card has levels (e.g. the LSB of a ``quantized`` card), else 0.125.
    """

    name = "digital"
    pulsed = False
    PARAMS = {"epsilon": Param("float", lambda s: s.level_step or 0.125, 0.0, math.inf, lo_open=True,
                               doc="transfer step (weight units; default: one card level, else 0.125)")}

    @property
    def level_step(self) -> float | None:
        """Weight change of one conductance level of the card (None for continuous cards)."""
        levels = self.tile.card.levels
        if not levels:
            return None
        return (self.tile.prm.g_max - self.tile.prm.g_min) / (levels - 1) / self.tile.scale

    def __init__(self, tile, *, rng=None, **params):
        super().__init__(tile, rng=rng, **params)
        self.chi = np.zeros(tile.shape)
        self.n_transfers = 0

    def _apply(self, dw):
        eps = self.params["epsilon"]
        self.n_digital += 2 * dw.size  # accumulate, then the transfer test
        self.chi += dw
        q = np.trunc(self.chi / eps) * eps
        self.chi -= q
        mask = q != 0.0
        if mask.any():
            lo, hi = self.tile.w_range
            self.tile.write(np.clip(self.tile.weights() + q, lo, hi), mask)
            self.n_transfers += int(mask.sum())

    def stats(self):
        return {**super().stats(), "transfers": self.n_transfers}


class SignScheme(_PulseScheme):
    """One pulse with the sign of ΔW on every synapse where |ΔW| > θ (Demirag et al. 2021, the
    "sign" scheme; θ is their stop-learning threshold). ``threshold`` in weight units, default half
    the nominal pulse."""

    name = "sign"
    PARAMS = {"threshold": Param("float", lambda s: 0.5 * s.dw_pulse, 0.0, math.inf,
                                 doc="weight units (default: half the nominal pulse)")}

    def _apply(self, dw):
        counts = np.where(np.abs(dw) > self.params["threshold"], np.sign(dw), 0.0)
        self.n_pulses += self._pulse(counts)


class StochasticScheme(_PulseScheme):
    """One pulse with the sign of ΔW, fired with probability min(1, |ΔW|/Δw_pulse) (stochastic
    rounding to zero or one pulse; Demirag et al. 2021, the "stochastic" scheme)."""

    name = "stochastic"

    def _apply(self, dw):
        flat = dw.reshape(-1)
        ks = np.flatnonzero(flat)
        v = flat[ks]
        fire = self.rng.random(ks.size) < np.minimum(np.abs(v) / self.dw_pulse, 1.0)
        self.n_pulses += self._pulse(np.sign(v[fire]), ks=ks[fire])


class StochasticCoincidenceScheme(_CoincidenceScheme):
    """Stochastic pulse-coincidence update of the outer product (Gokmen & Vlasov, Front. Neurosci.
    10, 333, 2016), with the update management of IBM aihwkit (papers.md §1c).

    For every sample, column j sends a train of BL slots, each a pulse with probability B|x_j|;
    row i one with probability A|d_i|; every coincidence is one device pulse in direction
    −sign(x_j d_i), so E[ΔW_ij] = −BL·A·B·Δw_pulse·x_j d_i = −lr·x_j d_i with A·B = lr/(Δw_pulse·BL).
    The modes are those of aihwkit's ``UpdateParameters``, with its defaults:

    * ``update_bl_management`` (default on): each sample's train is as short as its largest
      product allows, BL = min(ceil(lr·x_max·d_max/Δw_pulse), ``bl``) (x_max and d_max floored at
      Δw_pulse²), and A, B are balanced as below: the largest probability is then at most 1 on both
      sides unless BL reaches ``bl``. It needs ``update_management`` (aihwkit turns that on with it).
    * ``update_management`` (default on): A and B are rebalanced per sample by sqrt(x_max/d_max), so
      both sides have the same largest probability; otherwise A = B = sqrt(lr/(Δw_pulse·BL)).

    With ``update_bl_management: false`` every train has ``bl`` slots, and the draws are those
    neuroemu made before BL management existed, bit for bit. aihwkit's default
    probability resolution (``res`` = 0) is continuous, as here; its ``x_res_implicit`` and
    ``d_res_implicit`` act only on deterministic pulse trains, which neuroemu does not model.

    Probabilities are clipped to 1, which caps the change of one sample at BL pulses per synapse
    (the update is then smaller than wanted), and an update gives a synapse at most ``max_pulses``
    (its first coincidences). Samples are applied in order. ``stats()`` reports the mode
    (``update_mode``) and ``bl_mean``, the mean BL of the samples drawn. Only :meth:`update` is
    supported: a dense ΔW has no factors.
    """

    name = "stochastic_coincidence"

    def update(self, x, d, lr):
        x2, d2, lr = self._batch(x, d, lr)
        self.n_pulses += self._coincidence(self.tile, self._arb, x2, d2, lr)
        self._after_update()

    def apply(self, dw):
        raise ConfigError(f"scheme '{self.name}': apply(dw) is not supported: the coincidence update needs the "
                          "factors x and d; call update(x, d, lr), or choose a scheme that takes a dense ΔW "
                          "(e.g. 'mixed_precision' or 'stochastic')")


class MultiDeviceScheme(_PulseScheme):
    """Multi-memristive synapse (Boybat et al., Nat. Commun. 9, 2514, 2018): n = trunc(|ΔW|/Δw_pulse)
    pulses (at most ``max_pulses``) with the sign of ΔW, one at a time round-robin over the N devices
    of the synapse's side, chosen by a per-synapse arbitration counter that advances by n (mod N).
    The sub-pulse remainder is dropped (no accumulator)."""

    name = "multi_device"

    def _apply(self, dw):
        self.n_pulses += self._pulse(np.trunc(dw / self.dw_pulse))


class MixedPrecisionScheme(_PulseScheme):
    """Mixed-precision training (Nandakumar et al., Front. Neurosci. 14, 406, 2020): a float
    accumulator χ += ΔW per synapse; n = trunc(χ/ε) pulses, at most ``max_pulses``, go to the device
    (round-robin when N > 1) and χ -= n·ε keeps the sub-pulse remainder (and whatever the limit held
    back). ``epsilon`` overrides ε = Δw_pulse.

    :meth:`update` computes dᵀx in float32 when x and d are float32 (as a float32 SGD step would),
    and accumulates in float64; the accumulate-and-pulse pass is one kernel.
    """

    name = "mixed_precision"
    PARAMS = {"epsilon": Param("float", None, 0.0, math.inf, lo_open=True, optional=True,
                               doc="transfer step in weight units (default: Δw_pulse)")}

    def __init__(self, tile, *, rng=None, **params):
        super().__init__(tile, rng=rng, **params)
        self.chi = np.zeros(tile.n_synapses)

    @property
    def epsilon(self) -> float:
        e = self.params["epsilon"]
        return self.dw_pulse if e is None else e

    @property
    def assumed_step(self) -> float:
        """ε in µS: the conductance change one transferred pulse is taken to make."""
        return self.epsilon * self.tile.scale

    def update(self, x, d, lr):
        x2, d2, lr = self._batch(x, d, lr)
        if x2.dtype != d2.dtype:
            x2, d2 = x2.astype(np.float64), d2.astype(np.float64)
        self.n_digital += d2.shape[0] * d2.shape[1] * x2.shape[1]  # the outer products
        self._accumulate(d2.T @ x2, -lr, lr)
        self._after_update()

    def _apply(self, dw):
        self._accumulate(dw, 1.0)

    def _accumulate(self, g: np.ndarray, alpha: float, lr: float | None = None) -> None:
        t = self.tile
        g = np.ascontiguousarray(g).reshape(-1)
        self.n_digital += 2 * g.size  # accumulate into χ, then the transfer test
        eps = float(self.epsilon)
        n, n_over, most = _U.accumulate_pulse(self.chi, g, float(alpha), eps, self.params["max_pulses"], self._arb,
                                              t.g, t.p, t.tprog, t.npulse, t.up, t.down, t.lo, t.hi, t.stuck, t.nu,
                                              t.n_devices, not t.differential, t.law, t.prm, draw_seed(self.rng), t.t,
                                              self.params["aggregate_pulses"])
        if n:
            t.mark_changed()
        self.n_pulses += int(n)
        self._limit_hit(t, n_over, most, "the rest stays in the accumulator", lr, per_pulse=eps)

    def stats(self):
        return {**super().stats(), "accumulator_abs_mean": float(np.abs(self.chi).mean())}


class TikiTakaScheme(_CoincidenceScheme):
    """Tiki-Taka (Gokmen & Haensch, Front. Neurosci. 14, 103, 2020): the gradient goes to a fast
    tile A as stochastic coincidence pulses (with the update modes of
    :class:`StochasticCoincidenceScheme`); every ``transfer_every`` updates the next
    ``transfer_columns`` columns of A (cycling over the columns) are read through A's periphery
    with a one-hot input (a noisy read) and transferred to the slow tile C (the tile given). The
    weight the network sees is C + γ·A (``gamma``, default 0: C alone).

    Transfer. Entry a of a column read asks C for r = transfer_lr·a/Δw_pulse(C) pulses, rounded
    stochastically: floor(|r|) pulses with the sign of a, plus one more with probability
    |r| − floor(|r|). The expected transfer is exactly transfer_lr·a in nominal pulses, however
    small: a transfer of a tenth of a pulse happens one time in ten, where truncation would drop
    it every time. IBM aihwkit's TransferCompound writes the read column as a stochastic
    pulse-train update (x = the one-hot vector, d = the column, its default ``UpdateParameters``),
    which has the same expectation only up to ``bl`` = 31 pulses per entry and transfer, and
    more variance (binomial counts, correlated along the column by the shared column train).
    Rounding is used here because it is unbiased at any size and adds the least noise an
    unbiased integer count can. Unlike aihwkit's default (``scale_transfer_lr``), ``transfer_lr``
    is absolute, not a multiple of the SGD learning rate.

    The transferred amount is *not* subtracted from A: A is meant to be a fast, near-symmetric
    device that keeps integrating the gradient, and its decay towards its symmetry point does the
    forgetting (Gokmen & Haensch 2020). A is created here with the shape, card, devices per
    synapse, weight range and periphery of C unless ``a_card``, ``a_n_devices``, ``a_w_max``,
    ``a_periphery`` say otherwise; its device variation is drawn from the scheme's generator.

    :meth:`apply` (a dense ΔW, for rules that do not give factors) puts ΔW on A by the same
    stochastic rounding of ΔW/Δw_pulse(A).
    The refresh policy covers both tiles (``refresh_high`` scales with each tile's g_max), and so
    does ``max_pulses`` (a transfer of a full-range column of A with ``transfer_lr`` 1 asks C for
    up to w_max/Δw_pulse(C) pulses: about 1200–2000 on the fine-step cards, above the default).
    """

    name = "tiki_taka"
    PARAMS = {
        **_COINCIDENCE,
        "gamma": Param("float", 0.0, doc="weight seen = C + gamma·A"),
        "transfer_every": Param("int", 1, 1, 2**62, doc="updates between column transfers"),
        "transfer_lr": Param("float", 1.0, 0.0, math.inf, lo_open=True, doc="scale of a transferred column"),
        "transfer_columns": Param("int", 1, 1, 2**31, doc="columns read and transferred per transfer"),
        "a_card": Param("card", None, optional=True, doc="card of the fast tile A (default: C's)"),
        "a_n_devices": Param("int", None, 1, 1024, optional=True, doc="devices per synapse of A (default: C's)"),
        "a_w_max": Param("float", None, 0.0, math.inf, lo_open=True, optional=True,
                         doc="weight range of A (default: C's)"),
        "a_periphery": Param("periphery", None, optional=True, doc="periphery of A (default: C's)"),
    }

    def __init__(self, tile, *, rng=None, **params):
        super().__init__(tile, rng=rng, **params)
        p = self.params
        card = p["a_card"] if p["a_card"] is not None else tile.card
        if not card.pulsable:
            raise ConfigError(f"scheme '{self.name}': a_card: expected a card that takes pulses, got {card.name} "
                              f"(kind {card.kind})")
        self.fast = Tile(*tile.shape, card, n_devices=p["a_n_devices"] or tile.n_devices,
                         w_max=p["a_w_max"] or tile.w_range[1],
                         periphery=p["a_periphery"] if p["a_periphery"] is not None else tile.periphery,
                         rng=draw_seed(self.rng))
        self._arb_fast = self._new_arb(self.fast)
        self._nwrite0 += self.fast.nwrite
        self.n_pulses_fast = 0
        self.n_pulses_transfer = 0
        self.n_transfers = 0
        self._next_col = 0

    @property
    def slow(self) -> Tile:
        """The slow tile C (the tile the scheme was made with)."""
        return self.tile

    def update(self, x, d, lr):
        x2, d2, lr = self._batch(x, d, lr)
        n = self._coincidence(self.fast, self._arb_fast, x2, d2, lr)
        self.n_pulses_fast += n
        self.n_pulses += n
        self._after_fast()

    def _apply(self, dw):
        a = self.fast
        k = self._pulse(_stochastic_round(dw / (a.card.nominal_step / a.scale), self.rng), a, self._arb_fast)
        self.n_pulses_fast += k
        self.n_pulses += k

    def apply(self, dw):
        self._apply(self._dense(dw))
        self._after_fast()

    def _after_fast(self):
        if (self.n_updates + 1) % self.params["transfer_every"] == 0:
            self._transfer()
        self._after_update()

    def _transfer(self) -> None:
        """Read the next ``transfer_columns`` columns of A and pulse them onto C."""
        out_size, in_size = self.tile.shape
        for _ in range(min(self.params["transfer_columns"], in_size)):
            j = self._next_col
            self._next_col = (j + 1) % in_size
            a_col = read_column(self.fast, j, draw_seed(self.fast.rng))
            n = _stochastic_round(self.params["transfer_lr"] * a_col.astype(np.float64) / self.dw_pulse, self.rng)
            k = self._pulse(n, ks=np.arange(out_size) * in_size + j,
                            advice="A column of A is too large a transfer for C's pulse: lower transfer_lr")
            self.n_pulses_transfer += k
            self.n_pulses += k
            self.n_transfers += 1

    def forward(self, x):
        y = self.tile.forward(x)
        g = self.params["gamma"]
        return y + np.float32(g) * self.fast.forward(x) if g else y

    def backward(self, d):
        y = self.tile.backward(d)
        g = self.params["gamma"]
        return y + np.float32(g) * self.fast.backward(d) if g else y

    def weights(self):
        g = self.params["gamma"]
        w = self.tile.weights()
        return w + g * self.fast.weights() if g else w

    @property
    def tiles(self):
        return [self.tile, self.fast]

    @functools.cached_property
    def _first_steps_fast(self) -> tuple[float, float]:
        return self._first_steps if self.fast.card is self.tile.card else first_pulse_steps(self.fast.card)

    def pulse_steps(self):
        """As :meth:`Scheme.pulse_steps` for C (the transfers), and with an ``a_`` prefix for A (the gradient)."""
        up, down = self._first_steps_fast
        return {**super().pulse_steps(), "a_assumed_uS": float(self.fast.card.nominal_step), "a_first_uS": float(up),
                "a_first_down_uS": float(down)}

    def stats(self):
        return {**super().stats(), "pulses_fast": int(self.n_pulses_fast),
                "pulses_transfer": int(self.n_pulses_transfer), "transfers": self.n_transfers}


# ---------------------------------------------------------------------------------------- helpers
def _stochastic_round(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pulse counts for wanted (signed, fractional) counts ``r``: floor(|r|), plus one with probability
    |r| − floor(|r|), with the sign of r; unbiased (E = r). Draws one uniform per entry."""
    a = np.abs(r)
    n = np.floor(a)
    n += rng.random(r.shape) < a - n
    return np.copysign(n, r)


# ---------------------------------------------------------------------------------------- reads
def read_column(tile: Tile, j: int, seed: int) -> np.ndarray:
    """Column j of ``tile`` read with a one-hot input through its periphery: the same numbers
    ``tile.forward(e_j)`` returns when its output noise is keyed by ``seed``, computed from that
    column's devices only (float32, shape (out,)). Saturated outputs with bound management on are
    re-read by :meth:`Tile.forward` itself."""
    out_size, in_size = tile.shape
    per = tile.periphery
    w = np.empty(out_size)
    var = np.empty(out_size)
    _U.column_weights(tile.g, tile.tprog, tile.nu, tile.t, tile.n_side, tile.n_devices, tile.prm.g_mid,
                      1.0 / tile.scale, tile.read_law, tile.prm, int(j), in_size, w, var)
    # the DAC's value for the one-hot entry (1 on most grids; the nearest level below 1 on others)
    one = np.ones((1, 1), np.float32)
    xq = np.empty((1, 1), np.float32)
    scale = np.empty(1, np.float32)
    levels = 2**per.dac_bits - 2 if per.dac_bits else 0
    _P.dac(one, levels, per.noise_management, xq, scale)
    v = xq[0, 0]
    y = (v * w.astype(np.float32)).reshape(1, -1)
    prm = tile.prm
    # as Tile.forward: per-device read noise is on when the periphery reads it and the card has any
    has_var = bool(per.read_noise and (prm.read_rel > 0 or prm.read_abs > 0 or tile.read_law != _K.READ_LINEAR))
    v32 = ((v * v) * var.astype(np.float32)).reshape(1, -1) if has_var else np.empty((0, 0), np.float32)
    clipped = np.zeros(1, np.int8)
    adc_levels = 2**per.adc_bits - 2 if per.adc_bits else 0
    _P.adc(y, scale, v32, float(per.out_noise), adc_levels, float(per.adc_range), seed, clipped)
    if clipped[0] and per.bound_management and per.adc_range > 0:
        e = np.zeros((1, in_size), np.float32)
        e[0, j] = 1.0
        return tile.forward(e)[0]
    return y[0]


# ---------------------------------------------------------------------------------------- registry
SCHEMES: dict[str, type[Scheme]] = {
    cls.name: cls for cls in (IdealScheme, DigitalScheme, SignScheme, StochasticScheme, StochasticCoincidenceScheme,
                              MultiDeviceScheme, MixedPrecisionScheme, TikiTakaScheme)
}


def make_scheme(name: str, tile: Tile, *, rng: Any = None, **params: Any) -> Scheme:
    """Build the update scheme ``name`` (a key of :data:`SCHEMES`) on ``tile``.

    ``rng`` (Generator, seed or None) drives the scheme's randomness; ``params`` are the scheme's
    parameters (see each class). Unknown names or parameters and bad values raise
    :class:`~neuroemu.errors.ConfigError` naming the field and what was expected.
    """
    if not isinstance(name, str) or name not in SCHEMES:
        raise ConfigError(f"scheme: expected one of {', '.join(SCHEMES)}, got {name!r}{did_you_mean(name, SCHEMES)}")
    return SCHEMES[name](tile, rng=rng, **params)
