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

import functools
import math
from typing import Any

import numpy as np

from .._kernels import device as _K
from .._kernels import periphery as _P
from .._kernels import update as _U
from ..rng import draw_seed
from .crossbar import Tile
from ..errors import ConfigError, did_you_mean
from .scheme_base import (_COINCIDENCE, _PULSED, MAX_PULSES, Param, PulseLimitWarning, Scheme,  # noqa: F401
                          _CoincidenceScheme, _PulseScheme, first_pulse_steps)

__all__ = ["SCHEMES", "Scheme", "make_scheme", "IdealScheme", "DigitalScheme", "SignScheme", "StochasticScheme",
           "StochasticCoincidenceScheme", "MultiDeviceScheme", "MixedPrecisionScheme", "TikiTakaScheme", "read_column",
           "MAX_PULSES", "PulseLimitWarning", "first_pulse_steps"]

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
