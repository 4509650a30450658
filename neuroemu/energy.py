"""Operations, energy and latency of a run on an emulated chip.

The chip model counts what the hardware did (:meth:`neuroemu.chip.Chip.ops`): per layer the array
reads (vectors, dense MACs, NeuroBench's effective MACs and ACs, DAC and ADC conversions, device
reads of the driven rows), the writes (SET/partial pulses, RESETs, programmed synapses), the digital
operations of the update scheme (outer products, accumulator adds) or of a float layer, and what
the network's units did (neuron updates, synaptic events inside recurrent kernels). This module
turns counts into energy and a latency estimate with per-operation costs. Every cost below names
its source; those marked *assumption* have none and are our estimates.

Costs per operation (:data:`COSTS`):

* ADC conversion: E = FoM_W · 2^bits with the Walden figure of merit of a measured 8-bit SAR ADC,
  3.1 mW at 1.2 GS/s = 2.58 pJ per conversion, FoM_W = 10.1 fJ per step (Kull et al., ISSCC 2013);
  its time (bits + 1) ns (NeuroSim's SAR model). Scaling to other resolutions by 2^bits is the
  Walden model itself (an assumption beyond 8 bits).
* DAC / input driver: 0.417 pJ per input conversion (ISAAC's 1-bit input DAC, Shafiee et al., ISCA
  2016; *assumption* for a multi-bit pulse-width input); pulse-width inputs take 1 ns per LSB
  (IBM HERMES, Le Gallo et al., Nat. Electron. 2023), so up to 2^bits − 1 ns.
* Device read: E = V_read² · G · t_read per device of a driven row, G the tile's mean conductance
  when the account is made, t_read the input pulse (the DAC's full scale, or 1 ns for spikes). V_read
  0.2 V for PCM and RRAM (*assumption*: a typical read voltage, low enough not to disturb).
* Pulses: the card's ``energy_per_pulse`` and ``energy_per_reset`` (each card cites its source).
* Digital: a float32 multiply-accumulate 4.6 pJ (multiply 3.7 pJ + add 0.9 pJ) and a float32 add
  0.9 pJ (Horowitz, ISSCC 2014, 45 nm); a neuron update two multiply-accumulates, 9.2 pJ
  (*assumption*: a digital current-based LIF: decay and add on current and membrane).

The analog chip's own neurons and synapse array (``brainscales2``) have no published per-event
energy we could find: their neuron updates and device reads are counted but cost nothing here
(said in every account as ``not costed``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

__all__ = ["COSTS", "COMPONENTS", "account", "latency", "diff", "add", "scale", "measure_inference", "per_sample"]


@dataclasses.dataclass(frozen=True)
class Cost:
    """One per-operation cost: value, unit, source; ``assumed`` when it has no source."""

    value: float
    unit: str
    source: str
    assumed: bool = False


COSTS: dict[str, Cost] = {
    "adc_fom": Cost(2.58 / 2 ** 8, "pJ per conversion step", "Kull et al., ISSCC 2013: 8-bit SAR ADC, 3.1 mW at "
                    "1.2 GS/s (2.58 pJ per conversion); Walden scaling E = FoM·2^bits"),
    "adc_time_per_bit": Cost(1.0, "ns per bit (plus 1 ns)", "NeuroSim SAR ADC model: (bits + 1) ns per conversion"),
    "dac": Cost(0.417, "pJ per input conversion", "Shafiee et al., ISCA 2016 (ISAAC): 1-bit input DAC; taken for "
                "a multi-bit pulse-width driver", assumed=True),
    "dac_time_per_lsb": Cost(1.0, "ns per LSB", "Le Gallo et al., Nat. Electron. 2023 (HERMES): pulse-width inputs, "
                             "1 ns per LSB"),
    "read_voltage": Cost(0.2, "V", "a typical read voltage for PCM and RRAM arrays", assumed=True),
    "digital_mac": Cost(4.6, "pJ", "Horowitz, ISSCC 2014 (45 nm): float32 multiply 3.7 pJ + add 0.9 pJ"),
    "digital_add": Cost(0.9, "pJ", "Horowitz, ISSCC 2014 (45 nm): float32 add"),
    "neuron_update": Cost(9.2, "pJ", "two float32 multiply-accumulates per update of a digital current-based LIF "
                          "(Horowitz 2014 costs)", assumed=True),
}

#: Energy components of an account, in this order.
COMPONENTS = ("adc", "dac", "device_reads", "pulses", "resets", "digital", "neurons")


def diff(after: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
    """Counts of ``after`` minus ``before`` (nested like :meth:`Chip.ops`)."""
    return {k: diff(v, before.get(k, {})) if isinstance(v, Mapping) else v - before.get(k, 0)
            for k, v in after.items()}


def add(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Counts of ``a`` plus ``b``."""
    keys = list(dict.fromkeys([*a, *b]))
    out = {}
    for k in keys:
        x, y = a.get(k), b.get(k)
        if isinstance(x, Mapping) or isinstance(y, Mapping):
            out[k] = add(x or {}, y or {})
        else:
            out[k] = (x or 0) + (y or 0)
    return out


def scale(a: Mapping[str, Any], factor: float) -> dict[str, Any]:
    """Counts of ``a`` times ``factor`` (e.g. per update or per sample)."""
    return {k: scale(v, factor) if isinstance(v, Mapping) else v * factor for k, v in a.items()}


def _adc_pJ(bits: int) -> float:
    return COSTS["adc_fom"].value * 2 ** bits


def _layer_costs(layer) -> dict[str, float]:
    """Per-operation costs (pJ) of one chip layer: its tile's card and periphery."""
    tile = layer.tile
    if tile is None:  # an exact float layer: digital arithmetic
        return {"digital_mac": COSTS["digital_mac"].value}
    card = tile.card
    if card.kind == "analog_chip" or getattr(tile, "mac", None) is not None:
        mac = tile.mac
        return {"adc": _adc_pJ(mac.out_bits), "dac": COSTS["dac"].value, "device_read": 0.0}
    per = tile.periphery
    t_read = (2 ** per.dac_bits - 1 if per.dac_bits else 1) * COSTS["dac_time_per_lsb"].value * 1e-9
    g_mean = float(np.abs(tile.g).mean()) * 1e-6  # S
    v = COSTS["read_voltage"].value
    return {"adc": _adc_pJ(per.adc_bits) if per.adc_bits else 0.0, "dac": COSTS["dac"].value,
            "device_read": v * v * g_mean * t_read * 1e12,
            "pulse": float(card.params.get("energy_per_pulse", 0.0)),
            "reset": float(card.params.get("energy_per_reset", 0.0))}


def account(ops: Mapping[str, Any], chip) -> dict[str, Any]:
    """Energy (pJ) per component of the counts ``ops`` (:meth:`Chip.ops`, or a difference or scaled
    version of it) on ``chip``'s layers: ``{component: pJ, ..., "total": pJ, "not_costed": [...]}``."""
    e = dict.fromkeys(COMPONENTS, 0.0)
    not_costed = []
    for name, counts in ops.get("layers", {}).items():
        c = _layer_costs(chip[name])
        if chip[name].tile is None:
            e["digital"] += (counts.get("macs", 0) + counts.get("digital_ops", 0)) * c["digital_mac"]
            continue
        e["adc"] += counts.get("adc", 0) * c["adc"]
        e["dac"] += counts.get("dac", 0) * c["dac"]
        e["device_reads"] += counts.get("device_reads", 0) * c["device_read"]
        e["pulses"] += counts.get("pulses", 0) * c.get("pulse", 0.0)
        e["resets"] += counts.get("resets", 0) * c.get("reset", 0.0)
        e["digital"] += counts.get("digital_ops", 0) * COSTS["digital_mac"].value
        if c["device_read"] == 0.0 and counts.get("device_reads", 0):
            not_costed.append(f"{name}: synapse reads of the analog chip")
    units = ops.get("units", {})
    analog = bool(getattr(chip.model, "analog_units", False))
    if analog and units.get("neuron_updates", 0):
        not_costed.append("neuron updates of the analog chip")
    else:
        e["neurons"] += units.get("neuron_updates", 0) * COSTS["neuron_update"].value
        e["digital"] += units.get("synaptic_events", 0) * COSTS["digital_add"].value
    e["total"] = float(sum(e[k] for k in COMPONENTS))
    e["not_costed"] = not_costed
    return e


def latency(ops: Mapping[str, Any], chip) -> float:
    """A latency estimate (s) of the counted reads: per vector read of a layer, its input pulse (the
    DAC's full scale, or 1 ns for spikes) plus one ADC conversion, all columns in parallel; layers
    one after the other. Writes, digital work and neuron dynamics are not included."""
    total = 0.0
    for name, counts in ops.get("layers", {}).items():
        tile = chip[name].tile
        if tile is None or not counts.get("vectors", 0):
            continue
        per = tile.periphery
        bits_in = tile.mac.input_bits if getattr(tile, "mac", None) is not None else per.dac_bits
        bits_out = tile.mac.out_bits if getattr(tile, "mac", None) is not None else per.adc_bits
        t_in = (2 ** bits_in - 1 if bits_in else 1) * COSTS["dac_time_per_lsb"].value
        t_out = (bits_out + 1) * COSTS["adc_time_per_bit"].value if bits_out else 0.0
        total += counts["vectors"] * (t_in + t_out) * 1e-9
    return total


def per_sample(chip, counts: Mapping[str, Any], n: int) -> dict[str, Any]:
    """Counts (per sample), energy and latency of ``n`` inferences on ``chip`` that counted
    ``counts`` (a :func:`diff` of :meth:`~neuroemu.chip.Chip.ops`): ``per_inference``,
    ``energy_per_inference_pJ``, ``latency_per_inference_s``."""
    per = scale(counts, 1.0 / n)
    return {"per_inference": per, "energy_per_inference_pJ": account(per, chip),
            "latency_per_inference_s": latency(counts, chip) / n}


def measure_inference(chip, x, n: int) -> dict[str, Any]:
    """Counts, energy and latency per sample of one forward of ``x`` (``n`` samples) on a copy of
    ``chip`` (the copy draws its own read noise: ``chip`` and its random streams are untouched):
    ``per_inference``, ``energy_per_inference_pJ``, ``latency_per_inference_s``."""
    import copy

    twin = copy.deepcopy(chip)
    before = twin.ops()
    twin.forward(x)
    return per_sample(twin, diff(twin.ops(), before), n)
