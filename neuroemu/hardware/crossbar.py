"""Crossbar tiles: weights stored as device conductances, read through a DAC/ADC periphery.

A :class:`Tile` holds an ``(out, in)`` weight matrix on devices of one card:

* **SET-only and inference PCM** (``pcm_set``, ``pcm_inference``) use differential pairs with
  ``n_devices`` devices per side: ``W = (Σ G⁺ − Σ G⁻) / scale``. Potentiation is a SET on a G⁺
  device, depression a SET on a G⁻ device.
* **Bidirectional devices** (``pulsed``, ``quantized``, ``ideal``) use ``n_devices`` devices against a
  fixed reference conductance at mid-range: ``W = (Σ G − n·g_mid) / scale``.

``scale`` (µS per weight unit) defaults to the value that maps ``w_max`` to a full side (pairs) or
to a full half-range (reference mapping). Pulsed cards spread each device's two bounds
independently and symmetrically about the mid-point (``bounds_dtod``, as aihwkit).

Reads: :meth:`Tile.forward` computes ``y = W x`` and :meth:`Tile.backward` ``d Wᵀ`` the way an
analog array does: the input is normalised by max|x| (noise management) and quantised by a DAC,
every device read adds its read noise (card), the output gets additive noise, an ADC quantises and
saturates. Per-device read noise is applied in its exactly equivalent output-referred form: one
read of ``Σ_i x_i (w_ij + σ_ij ξ_ij)`` is Gaussian with variance ``Σ_i x_i² σ_ij²``, so the tile keeps
the per-weight variance next to the weights and draws one normal per output, not one per device.
Boolean (spike) inputs skip the DAC and only touch the rows of active inputs. The read noise is
drawn anew at every read, or once per state of the tile (``Periphery.read_noise_draw``);
saturated forward outputs are re-read with a reduced input (bound management); drift compensation
scales the outputs by one factor or one per output (:meth:`Tile.compensate_drift`).

Writes: :meth:`Tile.pulse` sends signed pulse counts per synapse through the card's physics;
:meth:`Tile.write` programs target weights (exactly, rounded to the card's levels; cards with a
programming-noise model add it); :meth:`Tile.reset` RESETs devices; :meth:`Tile.refresh`
re-balances saturated differential pairs. Cards with write noise (``write_noise_std``) keep each
device's persistent conductance, which the pulses act on, apart from the apparent one that reads
see (:attr:`Tile.g_persistent` and ``Tile.g``); every pulse, write or RESET of a device draws its
write-noise offset anew.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .._kernels import device as K
from .._kernels import periphery as P
from .._kernels import verify as V
from .._kernels.rng import normals
from .cards import Card, load_card
from ..errors import ConfigError
from ..rng import as_rng, draw_seed

_LAWS = {"constant": K.CONSTANT, "soft_bounds": K.SOFT_BOUNDS, "exp_step": K.EXP_STEP}


#: aihwkit's limits of iterative bound management (``IOParameters.max_bm_factor`` and
#: ``max_bm_res``): the re-reads stop once the input reduction factor exceeds max_bm_factor, or
#: exceeds max_bm_res divided by the DAC step (the reduced input then spans fewer than about
#: 1/max_bm_res DAC steps, 2 bits for 0.25).
AIHWKIT_MAX_BM_FACTOR = 1000
AIHWKIT_MAX_BM_RES = 0.25

#: Counters of a tile's reads (``Tile.ops``), forward and backward alike: ``vectors`` read through
#: the array, ``macs`` (dense: every input times every output, NeuroBench's dense synaptic
#: operations), ``effective_macs`` / ``effective_acs`` (only the non-zero inputs; accumulates when
#: the inputs are spikes or ±1, multiply-accumulates otherwise: NeuroBench's effective operations),
#: ``dac`` and ``adc`` conversions (bound-management re-reads included), ``device_reads`` (devices
#: of the driven rows, both sides of a pair and every device of a synapse).
READ_OPS = ("vectors", "macs", "effective_macs", "effective_acs", "dac", "adc", "device_reads")

def nonzero_and_kind(x: np.ndarray, spikes: bool = False) -> tuple[int, bool]:
    """(non-zero entries of the 2-d input x, whether they are all ±1: accumulates, not
    multiply-accumulates, in the counts of :data:`READ_OPS`); ``spikes``: x is known to be binary."""
    return int(P.count_nonzero(x)), bool(spikes or P.only_pm_one(x))


#: How the per-device read noise is drawn (see :class:`Periphery`).
READ_NOISE_DRAWS = ("per_read", "frozen")


def aihwkit_bm_reads(dac_bits: int) -> int:
    """The largest number of bound-management re-reads aihwkit's default iterative bound management
    makes for a DAC of ``dac_bits`` (0 = none): the reduction 2^k of the k-th re-read is the first
    power of two beyond min(max_bm_factor, max_bm_res / DAC step). 7 bits: 4 (reductions 2 … 16)."""
    limit = float(AIHWKIT_MAX_BM_FACTOR)
    if dac_bits:
        limit = min(limit, AIHWKIT_MAX_BM_RES * (2**dac_bits - 2) / 2.0)
    k = 0
    while 2**k <= limit:
        k += 1
    return k


@dataclasses.dataclass(frozen=True)
class Periphery:
    """Peripheral circuits of a tile. Defaults follow IBM aihwkit's analog tile (papers.md §1c,
    aihwkit ``IOParameters``); the differences are listed below.

    dac_bits / adc_bits: resolution (0 = off). adc_range: output saturation |y| in weight × normalised
    input units (0 = none). out_noise: additive Gaussian output noise (same units). read_noise: apply
    the card's per-device read noise. noise_management: normalise inputs by max|x| before the DAC.

    bound_management: the largest number of re-reads of a forward read whose output saturates at the
    ADC range. The k-th re-read divides the (noise-managed) input by 2^k, quantises it on the DAC
    grid again and multiplies the outputs back by 2^k; rows that no longer saturate keep that read.
    0 turns it off. None (the default) takes aihwkit's default, iterative bound management, whose
    limit depends on the DAC (:func:`aihwkit_bm_reads`: 4 re-reads with the 7-bit DAC, 10 without a
    DAC); it is resolved to that count when the Periphery is built (``dataclasses.replace`` keeps
    the count). As in aihwkit, backward reads are never re-read. Differences from aihwkit: an output
    exactly at the bound counts as saturated (aihwkit: only beyond it); only the saturated rows of
    a batch are re-read (as aihwkit's CUDA and CPU tiles; its torch tile re-reads the whole batch);
    boolean (spike) inputs, which bypass the DAC, are never re-read.

    read_noise_draw: ``"per_read"`` (default) draws the per-device read noise anew at every read;
    ``"frozen"`` draws one realisation per state of the tile, i.e. anew only when its time advances
    or it is programmed, and every read in between sees the same noisy weights. The frozen draw is
    what aihwkit's inference tiles do with the 1/f read noise of ``pcm_inference`` cards: one
    realisation per ``drift_analog_weights(t)``, held for the whole test set.
    """

    dac_bits: int = 7
    adc_bits: int = 9
    adc_range: float = 12.0
    out_noise: float = 0.06
    read_noise: bool = True
    noise_management: bool = True
    bound_management: int | None = None
    read_noise_draw: str = "per_read"

    @classmethod
    def ideal(cls) -> "Periphery":
        """Exact float reads (no DAC, ADC, saturation or noise)."""
        return cls(0, 0, 0.0, 0.0, False, False, 0)

    @classmethod
    def device_reads(cls) -> "Periphery":
        """No converters, saturation or output noise: only the devices' own read noise."""
        return cls(0, 0, 0.0, 0.0)

    def __post_init__(self):
        for name in ("dac_bits", "adc_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 24:
                raise ConfigError(f"periphery.{name}: expected an integer in [0, 24], got {v!r}")
            if v == 1:  # 2^1 - 2 = 0 steps: a 1-bit converter has no symmetric grid
                raise ConfigError(f"periphery.{name}: expected 0 (off) or 2..24 bits, got 1")
        bm = self.bound_management
        if bm is None:
            object.__setattr__(self, "bound_management", aihwkit_bm_reads(self.dac_bits))
        elif isinstance(bm, bool) or not isinstance(bm, int) or not 0 <= bm <= 24:
            raise ConfigError(f"periphery.bound_management: expected None (aihwkit's default) or an integer "
                              f"in [0, 24], got {bm!r}")
        for name in ("adc_range", "out_noise"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"periphery.{name}: expected a number >= 0, got {v!r}")
        if self.read_noise_draw not in READ_NOISE_DRAWS:
            raise ConfigError(f"periphery.read_noise_draw: expected one of {', '.join(READ_NOISE_DRAWS)}, "
                              f"got {self.read_noise_draw!r}")


def device_params(card: Card) -> K.DeviceParams:
    """The kernel parameter tuple of a card."""
    p = card.params
    g = lambda k, d=0.0: float(p.get(k, d))  # noqa: E731
    g_min, g_max = g("g_min"), g("g_max")
    return K.DeviceParams(
        p_factor=math.exp(-1.0 / p["decay_pulses"]) if "decay_pulses" in p else 1.0,
        mean_g=g("mean_g"), mean_0=g("mean_0"), mean_p=g("mean_p"),
        std_g=g("std_g"), std_0=g("std_0"), std_p=g("std_p"),
        dw_std=g("dw_min_std"), es_a=g("es_a"), es_b=g("es_b"), es_A_up=g("es_A_up"),
        es_A_down=g("es_A_down"), es_gamma_up=g("es_gamma_up"), es_gamma_down=g("es_gamma_down"),
        g_min=g_min, g_max=g_max, g_mid=0.5 * (g_min + g_max), levels=float(card.levels),
        reset_mean=g("reset_mean", 0.5 * (g_min + g_max)), reset_std=g("reset_std"),
        read_rel=g("read_noise_rel"), read_abs=g("read_noise_abs"),
        t0=g("drift_t0", 1.0), t_offset=g("drift_t0") if card.kind == "pcm_inference" else g("drift_t_offset"),
        q=g("read_q"), q_exp=g("read_q_exp"), q_floor=g("read_q_floor", 1e-3), q_max=g("read_q_max"),
        t_read=g("t_read", 1.0),
        write_noise=g("write_noise_std") * g("dw_min"),  # aihwkit: write_noise_std in units of dw_min
    )


def pulse_law(card: Card) -> int:
    if card.kind == "pcm_set":
        return K.PCM_SET
    if card.kind == "pulsed":
        return _LAWS[card.params["law"]]
    return K.CONSTANT


class Tile:
    """A weight matrix of shape ``(out_size, in_size)`` on a crossbar of devices.

    Parameters
    ----------
    out_size, in_size: matrix shape.
    card: a :class:`~neuroemu.hardware.cards.Card`, a card name or a path to a card file.
    n_devices: devices per side of each synapse.
    w_max: the weight that maps to the full conductance range of one side (default 1).
    scale: µS per weight unit; overrides ``w_max``.
    periphery: :class:`Periphery` (default aihwkit-like); ``Periphery.ideal()`` for exact reads.
    rng: seed or Generator; device-to-device variation is drawn once here.
    """

    def __init__(self, out_size: int, in_size: int, card: Card | str = "ideal", *, n_devices: int = 1,
                 w_max: float = 1.0, scale: float | None = None, periphery: Periphery | None = None,
                 rng: Any = None):
        self.card = card if isinstance(card, Card) else load_card(card)
        if self.card.kind == "analog_chip":
            raise ConfigError(f"Tile: {self.card.name} describes a whole chip; build its synapse array with "
                              "make_tile (or neuroemu.hardware.analog.MACTile)")
        if not (isinstance(n_devices, int) and n_devices >= 1):
            raise ConfigError(f"n_devices: expected an integer >= 1, got {n_devices!r}")
        if out_size < 1 or in_size < 1:
            raise ConfigError(f"tile shape: expected positive sizes, got ({out_size}, {in_size})")
        self.shape = (int(out_size), int(in_size))
        self.n_devices = n_devices
        self.periphery = periphery if periphery is not None else Periphery()
        self.rng = as_rng(rng)
        c = self.card
        self.differential = c.kind in ("pcm_set", "pcm_inference")
        self.n_side = 2 if self.differential else 1
        self.prm = device_params(c)
        self.law = pulse_law(c)
        self.read_law = K.READ_1F if c.kind == "pcm_inference" else K.READ_LINEAR
        g_range = self.prm.g_max - self.prm.g_min
        if scale is None:
            if not w_max > 0:
                raise ConfigError(f"w_max: expected a number > 0, got {w_max!r}")
            scale = n_devices * g_range / (w_max if self.differential else 2.0 * w_max)
        if not scale > 0:
            raise ConfigError(f"scale: expected a number > 0 (µS per weight unit), got {scale!r}")
        self.scale = float(scale)
        self.t = 0.0
        m = self.shape[0] * self.shape[1]
        size = self.n_side * n_devices * m
        self._dev_shape = (self.n_side, n_devices, *self.shape)
        self.g = np.empty(size)
        self.p = np.ones(size)
        self.tprog = np.zeros(size)
        self.npulse = np.zeros(size, dtype=np.int64)
        self.nreset = np.zeros(size, dtype=np.int64)
        self.nwrite = 0
        self.ops = dict.fromkeys(READ_OPS, 0)  # what the reads did (see :data:`READ_OPS`)
        self.n_refresh = 0
        self._draw_variation(size)
        self.alpha: float | np.ndarray = 1.0  # drift compensation: a global factor or one per output
        self._drift_ref: tuple[float, np.ndarray] | None = None  # readouts: global and per output
        self._drift_probe: np.ndarray | None = None
        self._frozen_seed: int | None = None
        self._version = 0
        self._cache_key = None
        self.reset()
        self.nreset[:] = 0  # the factory RESET is not part of any experiment's write budget

    # ------------------------------------------------------------------ construction
    def _draw_variation(self, size: int) -> None:
        c, p, prm, rng = self.card, self.card.params, self.prm, self.rng
        self.lo = np.full(size, prm.g_min)
        self.hi = np.full(size, prm.g_max)
        self.up = np.zeros(size)
        self.down = np.zeros(size)
        self.nu = np.zeros(size)
        if c.kind == "pulsed":
            gain = np.maximum(1.0 + p["dw_min_dtod"] * rng.standard_normal(size), 0.0)
            r = p["up_down_dtod"] * rng.standard_normal(size)
            ud = p["up_down"]
            up_bias, down_bias = (0.0, -ud) if ud > 0 else (ud, 0.0)
            self.up = p["dw_min"] * np.abs(up_bias + gain + r)
            self.down = p["dw_min"] * np.abs(down_bias + gain - r)
            # Each half-range scaled by its own |1 + bounds_dtod·ξ| around the mid-point, as aihwkit
            # draws w_max·(1 + w_max_dtod·ξ) and w_min·(1 + w_min_dtod·ξ') and then, with its default
            # enforce_consistency, takes |w_max| and -|w_min|: both bounds have the same distribution
            # about g_mid. No clamp at 0 µS: a pulsed card's conductance is an affine image of
            # aihwkit's weight (g = g_mid + w), and a lower bound below 0 µS is a device whose range
            # reaches further down, as in aihwkit.
            bd = p["bounds_dtod"]
            fh = np.abs(1.0 + bd * rng.standard_normal(size))
            fl = np.abs(1.0 + bd * rng.standard_normal(size))
            self.hi = prm.g_mid + (prm.g_max - prm.g_mid) * fh
            self.lo = prm.g_mid - (prm.g_mid - prm.g_min) * fl
        elif c.kind in ("ideal", "quantized"):
            self.up[:] = self.down[:] = c.nominal_step
        if c.kind in ("pcm_set", "pulsed") and p["drift_nu"] > 0:
            self.nu = np.abs(p["drift_nu"] + p["drift_nu_std"] * rng.standard_normal(size))
        u = rng.random(size)
        self.stuck = np.zeros(size, dtype=np.int8)
        self.stuck[u < p["p_stuck_off"]] = 1
        self.stuck[(u >= p["p_stuck_off"]) & (u < p["p_stuck_off"] + p["p_stuck_on"])] = 2

    # ------------------------------------------------------------------ state access
    def mark_changed(self) -> None:
        """Invalidate the cached weights; call after writing the device arrays directly."""
        self._version += 1

    @property
    def n_synapses(self) -> int:
        return self.shape[0] * self.shape[1]

    def advance(self, dt: float) -> None:
        """Let ``dt`` seconds pass (devices drift)."""
        if dt < 0:
            raise ValueError(f"advance: dt must be >= 0, got {dt}")
        self.t += float(dt)

    def conductances(self, *, noisy: bool = False, rng: Any = None, persistent: bool = False) -> np.ndarray:
        """Device conductances (µS) at the current time as a read sees them (with write noise: the
        apparent ones), shape (sides, n_devices, out, in).

        With ``noisy`` every device is read once with its read noise (always a fresh draw). With
        ``persistent`` the conductances the devices hold, without the write-noise offsets of cards
        that have write noise (the state pulses act on; :attr:`g_persistent`).
        """
        out = np.empty_like(self.g)
        seed = draw_seed(as_rng(rng) if rng is not None else self.rng) if noisy else 0
        g = self.g_persistent if persistent else self.g
        K.read_devices(g, self.tprog, self.nu, self.t, self.read_law, self.prm, seed, noisy, out)
        return out.reshape(self._dev_shape)

    def _weights_and_var(self) -> tuple[np.ndarray, np.ndarray]:
        per = self.periphery
        frozen = per.read_noise and per.read_noise_draw == "frozen"
        key = (self.t, self._version, per.read_noise, frozen)
        if self._cache_key != key:
            w = np.empty(self.n_synapses)
            var = np.empty(self.n_synapses)
            K.tile_weights(self.g, self.tprog, self.nu, self.t, self.n_side, self.n_devices, self.prm.g_mid,
                           1.0 / self.scale, self.read_law, self.prm, w, var)
            self._w64 = w.reshape(self.shape)
            self._var = var.reshape(self.shape).astype(np.float32)
            self._varT = np.ascontiguousarray(self._var.T)
            self._has_var = bool(per.read_noise and var.any())
            w_read = w
            if frozen and self._has_var:
                w_read = w + np.sqrt(var) * self._frozen_normals()
                self._has_var = False  # the reads see this realisation and add no read noise of their own
            self._w = w_read.reshape(self.shape).astype(np.float32)
            self._wT = np.ascontiguousarray(self._w.T)
            self._cache_key = key
        return self._w64, self._var

    def _frozen_normals(self) -> np.ndarray:
        """One standard normal per synapse for the frozen read-noise realisation of the present state:
        keyed by (the tile's frozen-noise seed, its time, its programming version), so the same state
        always gives the same realisation and any change of state a new one. The per-device noises of
        a synapse's devices add up to one Gaussian of variance ``var``: one normal per synapse is the
        exact equivalent of one per device."""
        if self._frozen_seed is None:
            self._frozen_seed = draw_seed(self.rng)
        t_bits = int(np.float64(self.t).view(np.uint64))
        return normals((self._frozen_seed ^ t_bits) & (2**63 - 1), self._version, np.empty(self.n_synapses))

    def weights(self) -> np.ndarray:
        """Effective weights at the current time (with drift, without read noise), float64."""
        return self._weights_and_var()[0].copy()

    def weights_and_variance(self) -> tuple[np.ndarray, np.ndarray]:
        """Effective weights at the current time and the variance one read adds to each (the per-device
        read noise of its devices, in weight units²), both (out, in) float64. A read of spikes z then
        has the output-referred noise std sqrt(Σ_i z_i var[:, i]) that :meth:`forward` applies (with
        ``read_noise_draw="frozen"`` the reads instead share one realisation of that noise)."""
        w, var = self._weights_and_var()
        return w.copy(), var.reshape(self.shape).astype(np.float64)

    def read_weights(self, rng: Any = None) -> np.ndarray:
        """Effective weights from one noisy read of every device."""
        g = self.conductances(noisy=True, rng=rng).reshape(self.n_side, self.n_devices, -1).sum(axis=1)
        w = g[0] - (g[1] if self.differential else self.n_devices * self.prm.g_mid)
        return (w / self.scale).reshape(self.shape)

    @property
    def w_range(self) -> tuple[float, float]:
        """Nominal (min, max) weight the tile can represent."""
        n, prm = self.n_devices, self.prm
        if self.differential:
            span = n * (prm.g_max - prm.g_min) / self.scale
            return -span, span
        return n * (prm.g_min - prm.g_mid) / self.scale, n * (prm.g_max - prm.g_mid) / self.scale

    # ------------------------------------------------------------------ reads
    def forward(self, x: np.ndarray) -> np.ndarray:
        """y = x Wᵀ through the periphery. x: (batch, in) float, or bool spikes; a 1-d x is read as the
        one-row batch x[None] (the same computation) and gives a 1-d y. Returns float32."""
        self._weights_and_var()
        return self._read(x, self._wT, self._varT, self.shape[1], forward=True)

    def backward(self, d: np.ndarray) -> np.ndarray:
        """x = d W (the transposed read) through the periphery, without bound management (aihwkit has
        none on the backward pass). d: (batch, out), or 1-d as in :meth:`forward`. Returns float32."""
        self._weights_and_var()
        return self._read(d, self._w, self._var, self.shape[0], forward=False)

    def _read(self, x, w_rows, var_rows, n_in, *, forward):
        """y = x @ w_rows: ``w_rows`` holds one row per input (Wᵀ for a forward read, W for a backward
        one), ``var_rows`` the per-read variances likewise."""
        x = np.asarray(x)
        squeeze = x.ndim == 1
        x2 = x.reshape(1, -1) if squeeze else x
        if x2.ndim != 2 or x2.shape[1] != n_in:
            raise ValueError(f"tile read: expected input of shape (batch, {n_in}), got {x.shape}")
        per_output = isinstance(self.alpha, np.ndarray)
        if per_output and not forward:  # the transposed read of diag(α)·W: the digital side scales d first
            x2 = x2 * self.alpha.astype(np.float32)
        n = x2.shape[0]
        spikes = x2.dtype == np.bool_
        self._count(x2, spikes, n_in, forward)
        if spikes:
            nm = np.ones(n, np.float32)
            y = P.spike_mvm(x2, w_rows, np.empty((n, w_rows.shape[1]), np.float32))
            var = P.spike_mvm(x2, var_rows, np.empty_like(y)) if self._has_var else np.empty((0, 0), np.float32)
        else:
            x2 = np.ascontiguousarray(x2, dtype=np.float32)
            xq, nm = self._dac(x2, self.periphery.noise_management)
            y = xq @ w_rows
            var = (xq * xq) @ var_rows if self._has_var else np.empty((0, 0), np.float32)
        gain = np.float32(1.0 if per_output else self.alpha)  # a global drift compensation factor
        scale = nm * gain if gain != 1.0 else nm
        clipped = self._periph_out(y, scale, var)
        if forward and not spikes and self.periphery.bound_management and clipped.any():
            self._bound_manage(x2, nm, gain, w_rows, var_rows, y, clipped)
        if per_output and forward:
            y *= self.alpha.astype(np.float32)
        return y[0] if squeeze else y

    def _count(self, x, spikes, n_in, forward):
        """Add a read of the batch ``x`` to :attr:`ops`."""
        self.count_reads(x.shape[0], *nonzero_and_kind(x, spikes), n_in,
                         self.shape[0] if forward else self.shape[1], spikes=spikes)

    def count_reads(self, vectors: int, nnz: int, binary: bool, n_in: int, n_out: int, *, spikes: bool = False) -> None:
        """Add reads to :attr:`ops`: ``vectors`` inputs of ``n_in`` entries, ``nnz`` of them non-zero,
        ``binary`` when those are ±1, ``spikes`` when they bypass the DAC, onto ``n_out`` outputs."""
        ops, per = self.ops, self.periphery
        ops["vectors"] += vectors
        ops["macs"] += vectors * n_in * n_out
        ops["effective_acs" if binary else "effective_macs"] += nnz * n_out
        ops["dac"] += 0 if spikes or not per.dac_bits else vectors * n_in
        ops["adc"] += vectors * n_out if per.adc_bits else 0
        ops["device_reads"] += nnz * n_out * self.n_side * self.n_devices

    def _dac(self, x, noise_management):
        """Inputs on the DAC grid (noise-managed when asked) and the noise-management scale of each row."""
        per = self.periphery
        xq = np.empty(x.shape, np.float32)
        nm = np.ones(x.shape[0], np.float32)
        P.dac(x, 2**per.dac_bits - 2 if per.dac_bits else 0, noise_management, xq, nm)
        return xq, nm

    def _periph_out(self, y, scale, var):
        per = self.periphery
        levels = 2**per.adc_bits - 2 if per.adc_bits else 0
        clipped = np.zeros(y.shape[0], np.int8)
        P.adc(y, scale, var, float(per.out_noise), levels, float(per.adc_range), draw_seed(self.rng), clipped)
        return clipped

    def _bound_manage(self, x, nm, gain, w_rows, var_rows, y, clipped):
        """aihwkit's iterative bound management: re-read the saturated rows of a forward read with the
        input divided by 2, 4, 8, … (on top of noise management) and quantised by the DAC again, until
        no output saturates or ``periphery.bound_management`` re-reads are spent; the outputs are
        multiplied back by the reduction. ``x`` is the input before the DAC, ``nm`` its noise-management
        scale."""
        rows = np.flatnonzero(clipped)
        factor = np.float32(1.0)
        for _ in range(self.periphery.bound_management):
            if rows.size == 0:
                break
            factor *= np.float32(2.0)
            s = nm[rows] * factor
            self._count(x[rows], False, x.shape[1], True)  # a re-read: its conversions and device reads
            xs, _ = self._dac(x[rows] / s[:, None], False)
            ys = xs @ w_rows
            var = (xs * xs) @ var_rows if self._has_var else np.empty((0, 0), np.float32)
            again = self._periph_out(ys, s * gain, var)
            y[rows] = ys
            rows = rows[again.astype(bool)]

    def compensate_drift(self, per_output: bool = False) -> float | np.ndarray:
        """Drift compensation (Joshi et al. 2020; aihwkit GlobalDriftCompensation and
        PerColumnDriftCompensation).

        The first call (right after programming) reads the tile with a fixed set of random ±1 input
        vectors and stores the readout ``mean|y|``; later calls read the same vectors again and set
        ``alpha = ref / mean|y(t)|``, by which the outputs are then multiplied (a digital scale factor
        in the periphery). Returns alpha. The probe vectors sum many weights per output, so the
        reference stands well above the ADC step and the output noise (an identity input would read
        single weights, which for typical layers are smaller than both).

        ``per_output=False``: one global factor over all outputs (aihwkit's default). ``per_output=True``:
        one factor per output (per column of aihwkit's tile), from that output's mean|y| over the
        probes, which corrects drifts that differ between outputs; alpha is then an array of shape
        (out,), and a backward read uses the compensated weights diag(alpha)·W. A reference stored by
        either mode serves both.
        """
        self.alpha = 1.0
        if self._drift_probe is None:
            self._drift_probe = np.where(self.rng.random((32, self.shape[1])) < 0.5, -1.0, 1.0).astype(np.float32)
        y = np.abs(self.forward(self._drift_probe))
        level = (max(float(y.mean()), 1e-12), np.maximum(y.mean(axis=0, dtype=np.float64), 1e-12))
        if self._drift_ref is None:
            self._drift_ref = level
        i = 1 if per_output else 0
        self.alpha = self._drift_ref[i] / level[i]
        return self.alpha

    # ------------------------------------------------------------------ writes
    def pulse(self, counts: np.ndarray, start: np.ndarray | None = None) -> None:
        """Apply signed pulse counts (shape (out, in), int): n > 0 raises the weight by n pulses,
        n < 0 lowers it. ``start`` (same shape) picks the first device of the round-robin when
        ``n_devices`` > 1 (a multi-device scheme's arbitration counter)."""
        if not self.card.pulsable:
            raise ConfigError(f"card {self.card.name} (kind {self.card.kind}) is programmed by target "
                              "and cannot take pulses; use the 'ideal' update scheme")
        counts = np.ascontiguousarray(counts, dtype=np.int32).reshape(-1)
        if counts.size != self.n_synapses:
            raise ValueError(f"pulse: expected counts of shape {self.shape}")
        st = (np.ascontiguousarray(start, dtype=np.int32).reshape(-1) if start is not None
              else np.empty(0, np.int32))
        K.pulse_tile(self.g, self.p, self.tprog, self.npulse, self.up, self.down, self.lo, self.hi, self.stuck,
                     self.nu, counts, st, self.n_devices, not self.differential, self.law, self.prm, draw_seed(self.rng), self.t)
        self.mark_changed()

    def reset(self, mask: np.ndarray | None = None) -> None:
        """RESET all devices of the synapses where ``mask`` (shape (out, in)) is True (all if None)."""
        if mask is None:
            index = np.arange(self.g.size)
        else:
            k = np.flatnonzero(np.asarray(mask).reshape(-1))
            base = np.arange(self.n_side * self.n_devices)[:, None] * self.n_synapses
            index = (base + k[None, :]).reshape(-1)
        if self.card.kind == "pcm_inference":  # unprogrammed: no conductance, no drift
            self.g[index] = self.prm.g_min
            self.nu[index] = 0.0
            self.tprog[index] = self.t
        else:
            K.reset_devices(self.g, self.p, self.tprog, self.nreset, self.lo, self.hi, self.stuck,
                            index.astype(np.int64), self.prm, draw_seed(self.rng), self.t)
        self._apply_stuck()
        self.mark_changed()

    def _apply_stuck(self) -> None:
        self.g[self.stuck == 1] = self.lo[self.stuck == 1]
        self.g[self.stuck == 2] = self.hi[self.stuck == 2]
        if self.prm.write_noise > 0.0:  # a stuck device has no write noise: persistent = apparent
            self.p[self.stuck != 0] = self.g[self.stuck != 0]

    @property
    def g_persistent(self) -> np.ndarray:
        """The conductances the devices hold (µS, flat like ``g``): for cards with write noise the
        persistent state that pulses act on (``g`` is then the apparent one, persistent plus the
        write-noise offset of the last programming), otherwise ``g`` itself. A view; do not modify."""
        return self.p if self.prm.write_noise > 0.0 else self.g

    def write(self, w: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Program target weights (shape (out, in)) where ``mask`` is True (all if None).

        The weight is spread evenly over the ``n_devices`` devices of its side (pairs: the other side
        is set to g_min). Targets are clipped to each device's bounds and rounded to the card's
        levels; ``pcm_inference`` cards add their programming noise and draw each device's drift
        exponent from its target state; cards with write noise hold the target as the persistent
        conductance and add a fresh write-noise offset to what reads see (aihwkit's
        ``apply_write_noise_on_set``). Written devices restart their drift clock.
        """
        w = np.broadcast_to(np.asarray(w, dtype=np.float64), self.shape).reshape(-1)
        k = np.arange(self.n_synapses) if mask is None else np.flatnonzero(np.asarray(mask).reshape(-1))
        prm, n = self.prm, self.n_devices
        per_dev = w[k] * self.scale / n
        if self.differential:
            tgt = np.stack([prm.g_min + np.maximum(per_dev, 0.0), prm.g_min + np.maximum(-per_dev, 0.0)])
        else:
            tgt = (prm.g_mid + per_dev)[None, :]
        index = (np.arange(self.n_side)[:, None, None] * n + np.arange(n)[None, :, None]) * self.n_synapses \
            + k[None, None, :]
        index = index.reshape(-1)
        tgt = np.broadcast_to(tgt[:, None, :], (self.n_side, n, k.size)).reshape(-1)
        tgt = np.clip(tgt, self.lo[index], self.hi[index])
        if self.card.levels:
            step = (prm.g_max - prm.g_min) / (self.card.levels - 1)
            level = np.clip(np.rint((tgt - prm.g_min) / step), 0, self.card.levels - 1)
            tgt = prm.g_min + level * step
        if self.card.kind == "pcm_inference":
            p = self.card.params
            g_out, nu_out = np.empty_like(tgt), np.empty_like(tgt)
            coef = np.array([p["nu_mu_a"], p["nu_mu"], p["nu_mu_lo"], p["nu_mu_hi"],
                             p["nu_sig_a"], p["nu_sig"], p["nu_sig_lo"], p["nu_sig_hi"]])
            K.program_inference(np.ascontiguousarray(tgt), self.prm, p["prog_c0"], p["prog_c1"], p["prog_c2"],
                                p["g_max"] / p["prog_ref"], coef, draw_seed(self.rng), g_out, nu_out)
            tgt = g_out
            self.nu[index] = nu_out
        if self.prm.write_noise > 0.0:  # aihwkit adds write noise when weights are set, too
            self.p[index] = tgt
            tgt = tgt + self.prm.write_noise * self.rng.standard_normal(tgt.size)
        else:
            self.p[index] = 1.0
        self.g[index] = tgt
        self.tprog[index] = self.t
        self.nwrite += int(k.size)
        self._drift_ref, self.alpha = None, 1.0  # a new programming needs a new drift reference
        self._apply_stuck()
        self.mark_changed()

    def refresh(self, high: float, min_common: float | None = None, *, max_pulses: int = 100) -> int:
        """Re-balance saturating differential pairs; returns the number of synapses refreshed.

        A synapse is refreshed when the mean conductance of one of its sides is at least ``high`` µS
        *and* the other side holds at least ``min_common`` µS above g_min (default: one nominal pulse)
        — i.e. when a common-mode conductance can be removed. Its weight is read (noisy), both sides
        are RESET, and the weight is programmed back onto one side by SET pulses with read-verify
        (at most ``max_pulses`` rounds). The weight is never lost: the read value is what gets
        re-programmed. One-sided (bidirectional) tiles need no refresh and return 0. Finding the
        synapses is one noiseless pass over the devices; the read, RESET and program-and-verify touch
        only the devices of the refreshed synapses.
        """
        if not self.differential or not self.card.pulsable:
            return 0
        if min_common is None:
            min_common = self.card.nominal_step
        mask = np.empty(self.n_synapses, np.bool_)
        count = int(V.refresh_candidates(self.g, self.tprog, self.nu, self.t, self.n_synapses, self.n_devices,
                                         float(high), float(min_common), self.prm, mask))
        if count == 0:
            return 0
        k = np.flatnonzero(mask)
        target = self._read_synapses(k, draw_seed(self.rng))  # one noisy read, of these synapses only
        self.reset(mask.reshape(self.shape))
        self._program_verify(k, target, max_pulses, 0.5 * self.card.nominal_step / self.scale)
        self.n_refresh += count
        return count

    def program_verify(self, target: np.ndarray, mask: np.ndarray, *, max_pulses: int = 100,
                       tol: float | None = None) -> None:
        """Move the weights at ``mask`` towards ``target`` (one value per masked synapse, or a full
        (out, in) array) by single pulses, each round followed by
        a noisy read. A synapse stops once its read is within ``tol`` (default half a nominal pulse)
        or once its error changes sign (it overshot: more pulses would only chase read noise and
        pile conductance onto both sides). At most ``max_pulses`` rounds.

        Only the devices of the masked synapses are read and pulsed; their reads and pulses draw the
        same random numbers as a read of every device (:meth:`read_weights`) and a :meth:`pulse` with
        zero counts elsewhere would (the numbers are keyed by device), so the result is the same."""
        if not self.card.pulsable:
            raise ConfigError(f"card {self.card.name} (kind {self.card.kind}) is programmed by target "
                              "and cannot take pulses; use the 'ideal' update scheme")
        k = np.flatnonzero(np.asarray(mask).reshape(-1))
        target = np.asarray(target, dtype=np.float64).reshape(-1)
        if target.size == self.n_synapses and k.size != self.n_synapses:
            target = target[k]
        tol = 0.5 * self.card.nominal_step / self.scale if tol is None else tol
        self._program_verify(k, target, max_pulses, tol)

    def _read_synapses(self, k: np.ndarray, seed: int) -> np.ndarray:
        """Weights of the synapses ``k`` (flat indices) from one noisy read of their devices, keyed by
        ``seed``: the values :meth:`read_weights` reads for them with that seed."""
        out = np.empty((self.n_side, self.n_devices, k.size))
        V.read_synapses(self.g, self.tprog, self.nu, self.t, k, self.n_synapses, self.n_side, self.n_devices,
                        self.read_law, self.prm, seed, True, out)
        g = out.sum(axis=1)
        w = g[0] - (g[1] if self.differential else self.n_devices * self.prm.g_mid)
        return w / self.scale

    def _program_verify(self, k: np.ndarray, target: np.ndarray, max_pulses: int, tol: float) -> None:
        """:meth:`program_verify` on the synapses ``k`` (flat indices, increasing) with one target each."""
        k = np.ascontiguousarray(k, dtype=np.int64)
        active = np.ones(k.size, bool)
        first_sign = None
        for i in range(max_pulses):
            err = target - self._read_synapses(k, draw_seed(self.rng))
            sign = np.sign(err)
            if first_sign is None:
                first_sign = sign
            active &= (np.abs(err) > tol) & (sign == first_sign)
            if not active.any():
                break
            ka = np.ascontiguousarray(k[active])
            counts = sign[active].astype(np.int32)
            start = np.full(ka.size, i % self.n_devices, np.int32)
            V.pulse_synapses(self.g, self.p, self.tprog, self.npulse, self.up, self.down, self.lo, self.hi,
                             self.stuck, self.nu, ka, counts, start, self.n_synapses, self.n_devices,
                             not self.differential, self.law, self.prm, draw_seed(self.rng), self.t)
            self.mark_changed()

    def energy(self) -> float:
        """Write energy spent so far (pJ) from the card's energy per pulse and per RESET."""
        p = self.card.params
        return float(self.npulse.sum() * p["energy_per_pulse"] + self.nreset.sum() * p["energy_per_reset"])

    def __repr__(self) -> str:
        return (f"Tile({self.shape[0]}x{self.shape[1]}, card={self.card.name}, n_devices={self.n_devices}, "
                f"scale={self.scale:g} uS/w, t={self.t:g} s)")
