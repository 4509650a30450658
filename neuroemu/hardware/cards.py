"""Device cards: YAML files that hold the numbers of a device model and the paper they come from.

A card looks like this (schema version 1)::

    schema: 1
    name: pcm_nandakumar2018          # must equal the file stem
    kind: pcm_set                     # the model family, see KINDS
    description: one line
    source:
      citation: "S. R. Nandakumar et al., J. Appl. Phys. 124, 152135 (2018)"
      doi: 10.1063/1.5042408          # optional
      notes: where each number was read   # optional
    units: {conductance: uS, time: s, energy: pJ}
    parameters:
      g_max: {value: 12.0, unit: uS}
      decay_pulses: 2.6               # dimensionless numbers may be given bare
      ...

Every parameter has a dimension (conductance, time, energy or none). A value given with a unit is
converted to the canonical unit of its dimension (µS, s, pJ); a bare number is read in the unit
the card's ``units`` block declares for that dimension. Internally everything is µS, s and pJ.

The loader checks everything: unknown keys, missing fields, wrong types, out-of-range values and
unknown units raise :class:`~neuroemu.errors.CardError` naming the file, the field and what was
expected. ``levels`` (or ``bits``) is a knob every card accepts: the device then stores only that
many evenly spaced conductance values.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ..errors import CardError, did_you_mean
from ..io import read_yaml_file

SCHEMA_VERSION = 1

#: Canonical unit of each dimension and the factors that convert other spellings to it.
UNITS: dict[str, dict[str, float]] = {
    "conductance": {"uS": 1.0, "µS": 1.0, "S": 1e6, "mS": 1e3, "nS": 1e-3},
    "time": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "h": 3600.0},
    "energy": {"pJ": 1.0, "J": 1e12, "nJ": 1e3, "fJ": 1e-3},
}
CANONICAL = {"conductance": "uS", "time": "s", "energy": "pJ"}


@dataclasses.dataclass(frozen=True)
class Field:
    """Schema of one card parameter."""

    dim: str | None  # "conductance", "time", "energy" or None (dimensionless)
    lo: float = -math.inf
    hi: float = math.inf
    default: Any = None  # None = required
    kind: type = float
    doc: str = ""
    lo_open: bool = False  # lo itself excluded

    def check(self, value: Any, where: str) -> Any:
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise CardError(f"{where}: expected an integer, got {value!r}")
        elif self.kind is str:
            if not isinstance(value, str):
                raise CardError(f"{where}: expected a string, got {value!r}")
            return value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CardError(f"{where}: expected a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise CardError(f"{where}: expected a finite number, got {value!r}")
        bad_lo = value <= self.lo if self.lo_open else value < self.lo
        if bad_lo or value > self.hi:
            lo_b = "(" if self.lo_open else "["
            raise CardError(f"{where}: expected a value in {lo_b}{self.lo:g}, {self.hi:g}], got {value!r}")
        return value


def _f(dim=None, lo=-math.inf, hi=math.inf, default=None, doc="", lo_open=False):
    return Field(dim, lo, hi, default, float, doc, lo_open)


# Fields every kind accepts (all optional).
COMMON: dict[str, Field] = {
    "levels": Field(None, 0, 2**24, 0, int, "number of stored conductance levels (0 = continuous, else >= 2)"),
    "p_stuck_off": _f(None, 0, 1, 0.0, "fraction of devices stuck at g_min"),
    "p_stuck_on": _f(None, 0, 1, 0.0, "fraction of devices stuck at g_max"),
    "read_noise_rel": _f(None, 0, 10, 0.0, "read noise std as a fraction of G (per read)"),
    "read_noise_abs": _f("conductance", 0, math.inf, 0.0, "read noise std, constant part (per read)"),
    "energy_per_pulse": _f("energy", 0, math.inf, 0.0, "write energy of one programming pulse"),
    "energy_per_reset": _f("energy", 0, math.inf, 0.0, "energy of one RESET"),
}

_BOUNDS = {
    "g_min": _f("conductance", 0, math.inf, doc="lower conductance bound"),
    "g_max": _f("conductance", 0, math.inf, doc="upper conductance bound", lo_open=True),
}

_DRIFT = {
    "drift_nu": _f(None, 0, 1, 0.0, "drift exponent ν: G(t) = G·(max(Δt + t_offset, t0)/t0)^-ν"),
    "drift_nu_std": _f(None, 0, 1, 0.0, "device-to-device std of ν (drawn once per device)"),
    "drift_t0": _f("time", 0, math.inf, 1.0, "drift reference time t0", lo_open=True),
    "drift_t_offset": _f("time", 0, math.inf, 0.0, "time added to Δt before the power law"),
}

def _i(lo=0, hi=2**31, default=None, doc=""):
    return Field(None, lo, hi, default, int, doc)


ANALOG_CHIP: dict[str, Field] = {
    # chip
    "n_neurons": _i(1, 2**20, doc="neuron circuits on one chip"),
    "acceleration": _f(None, 0, math.inf, doc="chip time runs this many times faster than biology", lo_open=True),
    "dt": _f("time", 0, math.inf, doc="emulation step (chip time)", lo_open=True),
    # synapse array and its matrix-multiply mode
    "weight_bits": _i(1, 16, doc="weight magnitude bits; the sign comes from a pair of rows"),
    "mac_input_bits": _i(1, 16, doc="MAC mode: unsigned input bits"),
    "mac_gain": _f(None, 0, math.inf, doc="MAC mode: output LSB per unit of Σ x·w (integers)", lo_open=True),
    "mac_noise": _f(None, 0, math.inf, doc="MAC mode: Gaussian noise std per block and output (LSB)"),
    "mac_block": _i(1, 2**20, doc="MAC mode: rows read together through one ADC conversion"),
    "mac_out_bits": _i(2, 24, doc="MAC mode: signed ADC output bits"),
    # parameter memory (CapMem) and read-out ADC (CADC)
    "capmem_max": _i(1, 2**20, doc="largest code of a parameter cell (10 bit: 1022)"),
    "volt_per_code": _f(None, 0, math.inf, doc="nominal CADC LSB per CapMem code of a voltage parameter",
                        lo_open=True),
    "volt_slope_mismatch": _f(None, 0, 1, 0.0, "relative neuron-to-neuron spread of volt_per_code"),
    "tau_mem_k": _f("time", 0, math.inf, doc="nominal τ_mem = tau_mem_k / code (a bias current ∝ code)",
                    lo_open=True),
    "tau_syn_k": _f("time", 0, math.inf, doc="nominal τ_syn = tau_syn_k / code", lo_open=True),
    "gain_code": _f(None, 1, math.inf, doc="code at which the nominal synaptic gain is 1 (gain = code / gain_code)"),
    "cadc_bits": _i(1, 16, doc="membrane read-out ADC bits"),
    "cadc_noise": _f(None, 0, math.inf, 0.0, "read-out noise of one CADC sample (LSB)"),
    # calibration targets (the neuron the network was designed for)
    "tau_mem": _f("time", 0, math.inf, doc="target membrane time constant", lo_open=True),
    "tau_syn": _f("time", 0, math.inf, doc="target synaptic time constant", lo_open=True),
    "v_leak": _f(None, 0, math.inf, doc="target leak potential (LSB)"),
    "v_reset": _f(None, 0, math.inf, doc="target reset potential (LSB)"),
    "v_th": _f(None, 0, math.inf, doc="target threshold (LSB)"),
    "refractory": _f("time", 0, math.inf, 0.0, "refractory time (digital counter, whole steps)"),
    "v_min": _f(None, 0, math.inf, 0.0, "lower rail of the membrane (LSB)"),
    "v_max": _f(None, 0, math.inf, doc="upper rail of the membrane (LSB)", lo_open=True),
    # fixed-pattern mismatch (drawn once per chip) and temporal noise
    "leak_mismatch": _f(None, 0, math.inf, 0.0, "neuron-to-neuron std of the leak potential (LSB)"),
    "reset_mismatch": _f(None, 0, math.inf, 0.0, "neuron-to-neuron std of the reset potential (LSB)"),
    "threshold_mismatch": _f(None, 0, math.inf, 0.0, "neuron-to-neuron std of the threshold (LSB)"),
    "tau_mem_mismatch": _f(None, 0, 5, 0.0, "log-normal σ of τ_mem across neurons"),
    "tau_syn_mismatch": _f(None, 0, 5, 0.0, "log-normal σ of τ_syn across neurons"),
    "gain_mismatch": _f(None, 0, 5, 0.0, "log-normal σ of the synaptic gain across neurons"),
    "membrane_noise": _f(None, 0, math.inf, 0.0, "stationary std of the membrane noise (LSB)"),
    "threshold_noise": _f(None, 0, math.inf, 0.0, "trial-to-trial std of the threshold (LSB)"),
}

#: Kinds of device model and their parameter schemas (beyond COMMON).
KINDS: dict[str, dict[str, Field]] = {
    # SET-only stochastic PCM (Nandakumar et al. 2018): depression is a SET on the other device.
    "pcm_set": {
        **_BOUNDS,
        "decay_pulses": _f(None, 0, math.inf, doc="pulse-history decay: P ← P·exp(-1/decay)", lo_open=True),
        "mean_g": _f(None, -10, 10, doc="mean ΔG = mean_g·G + mean_0 + mean_p·P"),
        "mean_0": _f("conductance"),
        "mean_p": _f("conductance"),
        "std_g": _f(None, 0, 10, doc="std ΔG = std_g·G + std_0 + std_p·P"),
        "std_0": _f("conductance", 0),
        "std_p": _f("conductance", 0),
        "reset_mean": _f("conductance", 0, doc="conductance after RESET (mean)"),
        "reset_std": _f("conductance", 0, default=0.0),
        "nominal_step": _f("conductance", 0, math.inf, doc="pulse size schemes assume when they convert a "
                           "wanted ΔG into a pulse count", lo_open=True),
        **_DRIFT,
    },
    # Bidirectional pulsed device (RRAM, ECRAM, linear step...), aihwkit-style vocabulary.
    "pulsed": {
        **_BOUNDS,
        "law": Field(None, default="constant", kind=str, doc="constant | soft_bounds | exp_step"),
        "dw_min": _f("conductance", 0, math.inf, doc="nominal step of one pulse", lo_open=True),
        "dw_min_dtod": _f(None, 0, 10, 0.0, "device-to-device relative spread of dw_min"),
        "dw_min_std": _f(None, 0, 100, 0.0, "cycle-to-cycle relative spread of each step"),
        "up_down": _f(None, -1, 1, 0.0, "up/down asymmetry (aihwkit): > 0 shrinks the down step to "
                      "dw·(1-up_down), < 0 shrinks the up step to dw·(1+up_down)"),
        "up_down_dtod": _f(None, 0, 1, 0.0, "device-to-device spread of up_down"),
        "bounds_dtod": _f(None, 0, 1, 0.0, "device-to-device relative spread of each half of the range: "
                          "g_mid ± half·|1 + bounds_dtod·ξ|, drawn separately for the two bounds"),
        "write_noise_std": _f(None, 0, 1e4, 0.0, "write noise (aihwkit): what a read sees is the persistent "
                              "conductance plus N(0, (write_noise_std·dw_min)²), drawn anew each time the device "
                              "is programmed"),
        "es_a": _f(None, default=0.0, doc="exp_step: z = 2·es_a·(g-g_mid)/(g_max-g_min) + es_b"),
        "es_b": _f(None, default=0.0),
        "es_A_up": _f(None, default=0.0, doc="exp_step: up step ∝ max(1 - A_up·exp(γ_up·z), 0)"),
        "es_A_down": _f(None, default=0.0, doc="exp_step: down step ∝ max(1 - A_down·exp(-γ_down·z), 0)"),
        "es_gamma_up": _f(None, default=0.0),
        "es_gamma_down": _f(None, default=0.0),
        "reset_mean": _f("conductance", 0, doc="conductance after RESET"),
        "reset_std": _f("conductance", 0, default=0.0),
        **_DRIFT,
    },
    # Inference-style PCM statistics (Joshi et al. 2020; aihwkit PCMLikeNoiseModel).
    "pcm_inference": {
        "g_min": _f("conductance", 0, math.inf, 0.0),
        "g_max": _f("conductance", 0, math.inf, doc="g_max of the noise model", lo_open=True),
        "prog_c0": _f(None, doc="σ_prog = (c0 + c1·ĝ + c2·ĝ²)·g_max/prog_ref"),
        "prog_c1": _f(None),
        "prog_c2": _f(None),
        "prog_ref": _f("conductance", 0, math.inf, doc="g_max the polynomial was fitted at", lo_open=True),
        "nu_mu": _f(None, doc="μ_ν = clip(nu_mu_a·ln ĝ + nu_mu, nu_mu_lo, nu_mu_hi)"),
        "nu_mu_a": _f(None),
        "nu_mu_lo": _f(None, 0, 1),
        "nu_mu_hi": _f(None, 0, 1),
        "nu_sig": _f(None, doc="σ_ν = clip(nu_sig_a·ln ĝ + nu_sig, nu_sig_lo, nu_sig_hi)"),
        "nu_sig_a": _f(None),
        "nu_sig_lo": _f(None, 0, 1),
        "nu_sig_hi": _f(None, 0, 1),
        "drift_t0": _f("time", 0, math.inf, doc="t0 of the drift law", lo_open=True),
        "read_q": _f(None, 0, 1, doc="Q_s = min(read_q / max(ĝ^read_q_exp, read_q_floor), read_q_max)"),
        "read_q_exp": _f(None, 0, 10),
        "read_q_floor": _f(None, 0, 1, lo_open=True),
        "read_q_max": _f(None, 0, 10),
        "t_read": _f("time", 0, math.inf, doc="read duration in the 1/f noise law", lo_open=True),
    },
    # N-bit digital weight: exact writes to 2^bits levels over [g_min, g_max].
    "quantized": {
        **_BOUNDS,
        "bits": Field(None, 1, 24, None, int, "resolution: 2^bits levels"),
    },
    # Ideal float weight: exact writes, no noise; pulses move by dw_min.
    "ideal": {
        **_BOUNDS,
        "dw_min": _f("conductance", 0, math.inf, 0.01, "step of one pulse", lo_open=True),
    },
    # Analog neuromorphic chip (BrainScaleS-2-like): digital 6-bit synapses, an analog MAC mode and
    # analog LIF neurons with fixed-pattern mismatch, temporal noise and 10-bit parameter cells.
    # Voltages are in CADC LSB (the chip's 8-bit column ADC), times in chip (hardware) time.
    "analog_chip": ANALOG_CHIP,
}

#: Kinds whose cards describe a whole chip, not a synapse device: the COMMON device fields do not apply.
CHIP_KINDS = ("analog_chip",)

TOP_LEVEL = {"schema", "name", "kind", "description", "source", "units", "parameters"}
SOURCE_KEYS = {"citation", "doi", "url", "notes"}


@dataclasses.dataclass(frozen=True)
class Card:
    """A validated device card. ``params`` holds canonical units (µS, s, pJ)."""

    name: str
    kind: str
    description: str
    source: Mapping[str, str]
    params: Mapping[str, Any]
    path: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def __reduce__(self):  # read-only mappings do not pickle; a copy of the card rebuilds them
        return _card, (self.name, self.kind, self.description, dict(self.source), dict(self.params), self.path)

    @property
    def levels(self) -> int:
        """Number of stored levels (0 = continuous). A ``quantized`` card of b bits has 2^b - 1
        levels: a symmetric signed range whose middle level is exactly zero weight."""
        if self.kind == "quantized":
            return 2 ** int(self.params["bits"]) - 1
        if self.kind == "analog_chip":
            return 2 ** (int(self.params["weight_bits"]) + 1) - 1
        return int(self.params["levels"])

    @property
    def bidirectional(self) -> bool:
        """True when one device can be moved up and down by pulses (False for SET-only PCM)."""
        return self.kind != "pcm_set"

    @property
    def pulsable(self) -> bool:
        """False for cards that are only programmed by target (inference statistics)."""
        return self.kind != "pcm_inference"

    @property
    def nominal_step(self) -> float:
        """Conductance change (µS) of one pulse that update schemes assume."""
        p = self.params
        if self.kind == "pcm_set":
            return p["nominal_step"]
        if self.kind in ("pulsed", "ideal"):
            return p["dw_min"]
        if self.kind == "quantized":
            return (p["g_max"] - p["g_min"]) / (self.levels - 1)
        if self.kind == "analog_chip":
            return self.synapse_card().nominal_step
        raise CardError(f"{self.path or self.name}: kind '{self.kind}' is programmed by target, not by pulses")

    def synapse_card(self) -> "Card":
        """The synapse array of an ``analog_chip`` card as a ``quantized`` card: signed integer weights
        −(2^b − 1) .. 2^b − 1 stored as "conductances" 0 .. 2(2^b − 1) in weight LSB (not µS)."""
        if self.kind != "analog_chip":
            raise CardError(f"{self.path or self.name}: synapse_card: only analog_chip cards have one, "
                            f"this is kind '{self.kind}'")
        top = 2.0 * (2 ** int(self.params["weight_bits"]) - 1)
        params = _validate_params("quantized", {"g_min": 0.0, "g_max": top, "bits": int(self.params["weight_bits"]) + 1},
                                  f"{self.name}: synapses", canonical=True)
        return Card(f"{self.name}/synapses", "quantized", f"synapse array of {self.name}", self.source,
                    MappingProxyType(params), self.path)

    def with_params(self, **changes: Any) -> "Card":
        """A copy with parameters changed (validated like a card file)."""
        raw = {**self.params, **changes}
        if self.kind in CHIP_KINDS and ("bits" in changes or "levels" in changes):
            raise CardError(f"{self.path or self.name}: a chip card sets its weight resolution by weight_bits")
        if "bits" in changes and self.kind != "quantized":
            raw.pop("bits")
            raw["levels"] = 2 ** int(changes["bits"])
        params = _validate_params(self.kind, raw, where=f"{self.path or self.name}: parameters", canonical=True)
        return dataclasses.replace(self, params=MappingProxyType(params))

    def with_levels(self, levels: int | None = None, *, bits: int | None = None) -> "Card":
        """Limit any card to ``levels`` (or ``2**bits``) evenly spaced conductance values."""
        if (levels is None) == (bits is None):
            raise CardError(f"{self.name}: give exactly one of levels or bits")
        v = bits if bits is not None else levels
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            what = "bits" if bits is not None else "levels"
            raise CardError(f"{self.name}: {what}: expected an integer >= 0, got {v!r}")
        n = 2**bits if bits is not None else levels
        if self.kind == "quantized":
            b = math.log2(n) if n > 0 else 0.5
            if b != int(b):
                raise CardError(f"{self.name}: quantized cards take a power of two levels, got {n}")
            return self.with_params(bits=int(b))
        return self.with_params(levels=int(n))

    def to_dict(self) -> dict[str, Any]:
        """The card as YAML-ready data (canonical units)."""
        dims = {k: f.dim for k, f in _schema(self.kind).items()}
        params = {}
        for k, v in self.params.items():
            d = dims.get(k)
            params[k] = {"value": v, "unit": CANONICAL[d]} if d else v
        return {
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "source": dict(self.source),
            "units": dict(CANONICAL),
            "parameters": params,
        }


def _schema(kind: str) -> dict[str, Field]:
    return dict(KINDS[kind]) if kind in CHIP_KINDS else {**COMMON, **KINDS[kind]}


def _validate_params(kind: str, raw: Mapping[str, Any], where: str, units: Mapping[str, str] | None = None,
                     canonical: bool = False) -> dict[str, Any]:
    schema = _schema(kind)
    unknown = sorted(str(k) for k in set(raw) - set(schema))
    if unknown:
        close = did_you_mean(unknown[0], schema)
        raise CardError(f"{where}.{unknown[0]}: unknown parameter for kind '{kind}'{close}; "
                        f"expected one of: {', '.join(sorted(schema))}")
    out: dict[str, Any] = {}
    for key, field in schema.items():
        fw = f"{where}.{key}"
        if key not in raw:
            if field.default is None:
                unit = f" [{CANONICAL[field.dim]}]" if field.dim else ""
                raise CardError(f"{fw}: missing required parameter{unit} ({field.doc or 'see neuroemu.hardware.cards.KINDS'})")
            out[key] = field.default
            continue
        value = raw[key]
        if isinstance(value, Mapping) and not canonical:
            extra = set(value) - {"value", "unit", "note"}
            if extra or "value" not in value:
                raise CardError(f"{fw}: expected a number or a mapping with keys value, unit (and note), "
                                f"got keys {sorted(value)}")
            unit = value.get("unit")
            value = value["value"]
            if unit is not None and not isinstance(unit, str):
                raise CardError(f"{fw}.unit: expected a unit name such as uS, s or pJ, got {unit!r}")
            value = _convert(field.check(value, fw), unit, field, fw)
        else:
            value = field.check(value, fw)
            if field.dim and not canonical:
                value = _convert(value, (units or {}).get(field.dim), field, fw)
        out[key] = field.check(value, fw)
    _check_consistency(kind, out, where)
    return out


def _convert(value: Any, unit: str | None, field: Field, where: str) -> Any:
    if field.dim is None:
        if unit not in (None, "", "1"):
            raise CardError(f"{where}: dimensionless parameter, got unit {unit!r}")
        return value
    table = UNITS[field.dim]
    unit = unit or CANONICAL[field.dim]
    if unit not in table:
        raise CardError(f"{where}: unknown {field.dim} unit {unit!r}; expected one of {', '.join(table)}")
    return value * table[unit]


def _check_consistency(kind: str, p: Mapping[str, Any], where: str) -> None:
    if kind in CHIP_KINDS:
        _check_chip(p, where)
        return
    if "g_min" in p and p["g_min"] >= p["g_max"]:
        raise CardError(f"{where}.g_min: expected g_min < g_max ({p['g_max']:g} uS), got {p['g_min']:g} uS")
    if kind == "pulsed" and p["law"] not in ("constant", "soft_bounds", "exp_step"):
        raise CardError(f"{where}.law: expected one of constant, soft_bounds, exp_step; got {p['law']!r}")
    if kind == "pulsed" and p["write_noise_std"] > 0 and p["drift_nu"] > 0:
        raise CardError(f"{where}.write_noise_std: write noise cannot be combined with drift (drift_nu = "
                        f"{p['drift_nu']:g}): the persistent conductance that pulses act on does not drift; "
                        "set one of them to 0")
    if p["levels"] == 1:
        raise CardError(f"{where}.levels: expected 0 (continuous) or an integer >= 2, got 1")
    if p["p_stuck_off"] + p["p_stuck_on"] > 1:
        raise CardError(f"{where}.p_stuck_on: expected p_stuck_off + p_stuck_on <= 1")


def _check_chip(p: Mapping[str, Any], where: str) -> None:
    if not p["v_min"] < p["v_max"]:
        raise CardError(f"{where}.v_min: expected v_min < v_max ({p['v_max']:g}), got {p['v_min']:g}")
    top = p["capmem_max"] * p["volt_per_code"]
    for key in ("v_leak", "v_reset", "v_th"):
        if not p["v_min"] <= p[key] <= min(p["v_max"], top):
            raise CardError(f"{where}.{key}: expected a value in [{p['v_min']:g}, {min(p['v_max'], top):g}] "
                            f"(the rails and the range capmem_max·volt_per_code), got {p[key]:g}")
    if not p["v_th"] > p["v_leak"]:
        raise CardError(f"{where}.v_th: expected a threshold above v_leak ({p['v_leak']:g}), got {p['v_th']:g}")
    for key in ("tau_mem", "tau_syn"):
        code = p[f"{key}_k"] / p[key]
        if not 1 <= code <= p["capmem_max"]:
            raise CardError(f"{where}.{key}: target needs code {key}_k/{key} = {code:.4g}, outside the cell range "
                            f"[1, {p['capmem_max']}]")
    if p["gain_code"] > p["capmem_max"]:
        raise CardError(f"{where}.gain_code: expected at most capmem_max ({p['capmem_max']}), got {p['gain_code']:g}")


def parse_card(data: Any, where: str = "<card>", stem: str | None = None) -> Card:
    """Validate card data (as loaded from YAML). ``where`` names the file in error messages."""
    if not isinstance(data, Mapping):
        raise CardError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - TOP_LEVEL)
    if unknown:
        raise CardError(f"{where}: unknown top-level field '{unknown[0]}'{did_you_mean(unknown[0], TOP_LEVEL)}; "
                        f"expected: {', '.join(sorted(TOP_LEVEL))}")
    for key in ("schema", "name", "kind", "source", "parameters"):
        if key not in data:
            raise CardError(f"{where}: missing required field '{key}'")
    if isinstance(data["schema"], bool) or data["schema"] != SCHEMA_VERSION:
        raise CardError(f"{where}: schema: expected {SCHEMA_VERSION}, got {data['schema']!r}")
    name = data["name"]
    if not isinstance(name, str) or not name:
        raise CardError(f"{where}: name: expected a non-empty string, got {name!r}")
    if stem is not None and name != stem:
        raise CardError(f"{where}: name: expected '{stem}' (the file stem), got '{name}'")
    kind = data["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise CardError(f"{where}: kind: expected one of {', '.join(KINDS)}, got {kind!r}"
                        f"{did_you_mean(kind, KINDS)}")
    source = data["source"]
    if not isinstance(source, Mapping) or not isinstance(source.get("citation"), str) or not source["citation"]:
        raise CardError(f"{where}: source.citation: expected a non-empty string naming the paper")
    bad = sorted(set(source) - SOURCE_KEYS)
    if bad:
        raise CardError(f"{where}: source.{bad[0]}: unknown field; expected: {', '.join(sorted(SOURCE_KEYS))}")
    units = data.get("units") or {}
    if not isinstance(units, Mapping):
        raise CardError(f"{where}: units: expected a mapping like {{conductance: uS, time: s}}")
    for dim, unit in units.items():
        if not isinstance(dim, str) or dim not in UNITS:
            raise CardError(f"{where}: units.{dim}: unknown dimension{did_you_mean(dim, UNITS)}; "
                            f"expected one of {', '.join(UNITS)}")
        if not isinstance(unit, str) or unit not in UNITS[dim]:
            raise CardError(f"{where}: units.{dim}: expected one of {', '.join(UNITS[dim])}, got {unit!r}")
    params = data["parameters"]
    if not isinstance(params, Mapping):
        raise CardError(f"{where}: parameters: expected a mapping")
    desc = data.get("description", "")
    if not isinstance(desc, str):
        raise CardError(f"{where}: description: expected a string")
    values = _validate_params(kind, params, f"{where}: parameters", units)
    return Card(name, kind, desc, MappingProxyType({k: str(v) for k, v in source.items()}),
                MappingProxyType(values), where)


def _card(name, kind, description, source, params, path) -> Card:
    return Card(name, kind, description, MappingProxyType(source), MappingProxyType(params), path)


def cards_dir() -> Path:
    """Directory of the cards shipped with neuroemu (a checkout's ``devices/`` or the installed copy)."""
    package = Path(__file__).resolve().parent.parent
    repo = package.parent / "devices"
    return repo if repo.is_dir() else package / "cards"


def list_cards() -> list[str]:
    """Names of the shipped cards."""
    return sorted(p.stem for p in cards_dir().glob("*.yaml"))


def load_card(name_or_path: str | Path) -> Card:
    """Load a shipped card by name, or any card file by path."""
    s = str(name_or_path)
    path = Path(s)
    if not (s.endswith((".yaml", ".yml")) or path.exists()):
        path = cards_dir() / f"{s}.yaml"
        if not path.is_file():
            raise CardError(f"{s}: no such device card{did_you_mean(s, list_cards())}; "
                            f"known cards: {', '.join(list_cards())}")
    return parse_card(read_yaml_file(path, CardError, "a device card YAML file"), str(path), stem=path.stem)
