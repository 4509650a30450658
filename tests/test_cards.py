"""Device cards: shipped cards load; bad cards fail early with one-line, precise messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

import neuroemu
from neuroemu.hardware.cards import KINDS, Card, cards_dir, list_cards, load_card, parse_card
from neuroemu.errors import CardError, NeuroemuError

SHIPPED = ["ideal", "linear_step", "pcm_joshi2020", "pcm_nandakumar2018", "quantized", "rram_gong2018"]

GOOD = """\
schema: 1
name: {name}
kind: pulsed
description: test device
source:
  citation: "A. Author, A paper (2020)"
units: {{conductance: uS, time: s}}
parameters:
  law: soft_bounds
  g_min: 0.0
  g_max: 2.0
  dw_min: 0.01
  reset_mean: 1.0
"""


def write(tmp_path: Path, text: str, name: str = "dev_test2020") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def good_text(name: str = "dev_test2020", **replace: str) -> str:
    text = GOOD.format(name=name)
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def expect_error(path: Path, *fragments: str) -> str:
    with pytest.raises(CardError) as info:
        load_card(path)
    msg = str(info.value)
    assert "\n" not in msg, msg  # one line
    assert str(path) in msg, msg  # names the file
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# ---------------------------------------------------------------------------- shipped cards
def test_list_cards_lists_shipped_cards():
    assert set(SHIPPED) <= set(list_cards())
    assert list_cards() == sorted(list_cards())
    assert neuroemu.list_cards() == list_cards()
    assert sorted(p.stem for p in cards_dir().glob("*.yaml")) == list_cards()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_loads(name):
    card = load_card(name)
    assert isinstance(card, Card)
    assert card.name == name and card.kind in KINDS
    assert card.source["citation"]
    assert card.params["g_max"] > card.params.get("g_min", 0.0)
    assert load_card(cards_dir() / f"{name}.yaml") == card  # by path too
    # canonical round trip through to_dict
    again = parse_card(card.to_dict(), "roundtrip")
    assert dict(again.params) == dict(card.params)
    if card.pulsable:
        assert card.nominal_step > 0


def test_shipped_card_numbers():
    pcm = load_card("pcm_nandakumar2018")
    assert pcm.kind == "pcm_set" and not pcm.bidirectional
    assert (pcm["mean_g"], pcm["mean_0"], pcm["mean_p"]) == (-0.084, 0.880, 1.40)
    assert (pcm["std_g"], pcm["std_0"], pcm["std_p"]) == (0.091, 0.260, 2.15)
    assert pcm["drift_t0"] == 38.6 and pcm["drift_nu"] == 0.04
    assert pcm["energy_per_pulse"] == 0.675
    joshi = load_card("pcm_joshi2020")
    assert joshi["t_read"] == pytest.approx(250e-9) and joshi["drift_t0"] == 20.0
    assert not joshi.pulsable
    with pytest.raises(CardError, match="programmed by target"):
        joshi.nominal_step
    q = load_card("quantized")
    assert q.levels == 15 and q.nominal_step == pytest.approx(2 / 14)


def test_write_noise_std_of_the_pulsed_cards():
    """rram_gong2018 carries aihwkit's ReRamESPresetDevice write noise (75 dw_min); other pulsed cards
    default to none, and only pulsed cards take the field."""
    assert load_card("rram_gong2018")["write_noise_std"] == 75.0
    assert load_card("linear_step")["write_noise_std"] == 0.0
    assert load_card("rram_gong2018").with_params(write_noise_std=0.0)["write_noise_std"] == 0.0
    with pytest.raises(CardError, match="unknown parameter for kind 'pcm_set'"):
        load_card("pcm_nandakumar2018").with_params(write_noise_std=1.0)


@pytest.mark.parametrize("extra,expect", [
    ("write_noise_std: -1.0", "parameters.write_noise_std: expected a value in [0, 10000], got -1.0"),
    ("write_noise_std: 5.0\n  drift_nu: 0.05", "parameters.write_noise_std: write noise cannot be combined with drift"),
])
def test_write_noise_std_validation(tmp_path, extra, expect):
    expect_error(write(tmp_path, good_text(**{"dw_min: 0.01": "dw_min: 0.01\n  " + extra})), expect)


def test_unknown_card_name():
    with pytest.raises(CardError, match="no such device card; known cards: brainscales2, ideal"):
        load_card("no_such_card")


def test_card_error_is_a_neuroemu_error():
    assert issubclass(CardError, NeuroemuError)


# ---------------------------------------------------------------------------- bad cards
def test_good_test_card_loads(tmp_path):
    card = load_card(write(tmp_path, good_text()))
    assert card.kind == "pulsed" and card["law"] == "soft_bounds" and card["dw_min"] == 0.01
    assert card.path == str(tmp_path / "dev_test2020.yaml")


def test_misspelled_parameter_suggests_the_right_one(tmp_path):
    path = write(tmp_path, good_text(**{"dw_min: 0.01": "dw_mni: 0.01"}))
    expect_error(path, "parameters.dw_mni", "unknown parameter", "did you mean 'dw_min'?")


def test_misspelled_top_level_field(tmp_path):
    path = write(tmp_path, good_text(**{"description:": "descripton:"}))
    expect_error(path, "descripton", "did you mean 'description'?")


@pytest.mark.parametrize("line,field,expect", [
    ("dw_min: 0.01", "dw_min: -0.01", "parameters.dw_min: expected a value in (0, inf], got -0.01"),
    ("dw_min: 0.01", "dw_min: 0.01\n  p_stuck_on: 1.5", "parameters.p_stuck_on: expected a value in [0, 1], got 1.5"),
    ("dw_min: 0.01", "dw_min: 0.01\n  levels: 1", "parameters.levels"),
    ("g_max: 2.0", "g_max: 0.0", "parameters.g_max: expected a value in (0, inf]"),
])
def test_out_of_range_value(tmp_path, line, field, expect):
    expect_error(write(tmp_path, good_text(**{line: field})), expect)


def test_inconsistent_bounds(tmp_path):
    expect_error(write(tmp_path, good_text(**{"g_min: 0.0": "g_min: 3.0"})), "g_min", "expected g_min < g_max")


@pytest.mark.parametrize("line,bad,expect", [
    ("dw_min: 0.01", "dw_min: fast", "parameters.dw_min: expected a number, got 'fast'"),
    ("dw_min: 0.01", "dw_min: true", "parameters.dw_min: expected a number, got True"),
    ("dw_min: 0.01", "dw_min: [0.01]", "parameters.dw_min: expected a number"),
    ("dw_min: 0.01", "dw_min: .nan", "parameters.dw_min: expected a finite number"),
    ("law: soft_bounds", "law: 3", "parameters.law: expected a string, got 3"),
    ("law: soft_bounds", "law: linear", "parameters.law: expected one of constant, soft_bounds, exp_step"),
    ("dw_min: 0.01", "dw_min: 0.01\n  levels: 4.5", "parameters.levels: expected an integer, got 4.5"),
    ("dw_min: 0.01", "dw_min: {value: 0.01, units: uS}", "parameters.dw_min: expected a number or a mapping"),
])
def test_wrong_type(tmp_path, line, bad, expect):
    expect_error(write(tmp_path, good_text(**{line: bad})), expect)


def test_missing_required_parameter(tmp_path):
    path = write(tmp_path, good_text(**{"  dw_min: 0.01\n": ""}))
    expect_error(path, "parameters.dw_min: missing required parameter [uS]")


@pytest.mark.parametrize("field", ["schema", "name", "kind", "source", "parameters"])
def test_missing_required_field(tmp_path, field):
    lines = good_text().splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{field}:"))
    end = start + 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    path = write(tmp_path, "".join(lines[:start] + lines[end:]))
    expect_error(path, f"missing required field '{field}'")


def test_missing_citation(tmp_path):
    path = write(tmp_path, good_text(**{'citation: "A. Author, A paper (2020)"': 'doi: 10.1/x'}))
    expect_error(path, "source.citation: expected a non-empty string")


def test_wrong_name_vs_file_stem(tmp_path):
    path = write(tmp_path, good_text(name="other_name"), name="dev_test2020")
    expect_error(path, "name: expected 'dev_test2020' (the file stem), got 'other_name'")


def test_unknown_kind(tmp_path):
    expect_error(write(tmp_path, good_text(**{"kind: pulsed": "kind: memristor"})),
                 "kind: expected one of pcm_set, pulsed", "got 'memristor'")


@pytest.mark.parametrize("line,bad,expect", [
    ("dw_min: 0.01", "dw_min: {value: 0.01, unit: uF}",
     ("parameters.dw_min: unknown conductance unit 'uF'; expected one of uS",)),
    ("units: {conductance: uS, time: s}", "units: {conductance: ohm, time: s}",
     ("units.conductance: expected one of uS", "got 'ohm'")),
    ("units: {conductance: uS, time: s}", "units: {resistance: ohm}", ("units.resistance: unknown dimension",)),
    ("law: soft_bounds", "law: soft_bounds\n  up_down: {value: 0.1, unit: s}",
     ("parameters.up_down: dimensionless parameter, got unit 's'",)),
])
def test_unknown_unit(tmp_path, line, bad, expect):
    expect_error(write(tmp_path, good_text(**{line: bad})), *expect)


@pytest.mark.parametrize("version", ["2", "0", "'1'", "true"])
def test_bad_schema_version(tmp_path, version):
    expect_error(write(tmp_path, good_text(**{"schema: 1": f"schema: {version}"})), "schema: expected 1, got")


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, good_text(**{"g_max: 2.0": "g_max: [2.0"}))
    msg = expect_error(path, "not valid YAML")
    assert "(line " in msg


def test_not_a_mapping(tmp_path):
    expect_error(write(tmp_path, "- 1\n- 2\n"), "expected a mapping at the top level")


def test_missing_file(tmp_path):
    with pytest.raises(CardError, match="no such file"):
        load_card(tmp_path / "absent.yaml")


# ---------------------------------------------------------------------------- units
def test_unit_conversion(tmp_path):
    text = good_text(**{
        "g_max: 2.0": "g_max: {value: 2.0e-6, unit: S}",
        "dw_min: 0.01": "dw_min: {value: 10, unit: nS, note: one pulse}",
        "reset_mean: 1.0": "reset_mean: {value: 1.0e-3, unit: mS}\n  drift_t0: {value: 500, unit: ms}\n"
                           "  drift_t_offset: {value: 0.5, unit: h}\n  energy_per_pulse: {value: 2.0e-12, unit: J}",
    })
    card = load_card(write(tmp_path, text))
    assert card["g_max"] == pytest.approx(2.0)
    assert card["dw_min"] == pytest.approx(0.01)
    assert card["reset_mean"] == pytest.approx(1.0)
    assert card["drift_t0"] == pytest.approx(0.5)
    assert card["drift_t_offset"] == pytest.approx(1800.0)
    assert card["energy_per_pulse"] == pytest.approx(2.0)


def test_twelve_microsiemens_three_ways(tmp_path):
    cards = []
    for i, (units, value) in enumerate([("uS", "12.0"), ("uS", "{value: 12e-6, unit: S}"), ("S", "12e-6")]):
        text = good_text(**{"units: {conductance: uS, time: s}": f"units: {{conductance: {units}}}",
                            "g_max: 2.0": f"g_max: {value}", "reset_mean: 1.0": "reset_mean: {value: 1, unit: uS}",
                            "dw_min: 0.01": "dw_min: {value: 0.01, unit: uS}"}, name=f"dev_{i}")
        cards.append(load_card(write(tmp_path, text, name=f"dev_{i}")))
    for c in cards:
        assert c["g_max"] == pytest.approx(12.0, rel=1e-12)


def test_bare_numbers_use_the_units_block(tmp_path):
    text = good_text(**{"units: {conductance: uS, time: s}": "units: {conductance: nS, time: ms}",
                        "g_max: 2.0": "g_max: 2000", "dw_min: 0.01": "dw_min: 10\n  drift_t0: 250",
                        "reset_mean: 1.0": "reset_mean: 1000"})
    card = load_card(write(tmp_path, text))
    assert card["g_max"] == pytest.approx(2.0) and card["dw_min"] == pytest.approx(0.01)
    assert card["drift_t0"] == pytest.approx(0.25)


# ---------------------------------------------------------------------------- knobs
@pytest.mark.parametrize("name", SHIPPED)
def test_with_levels_and_bits_work_for_every_kind(name):
    card = load_card(name)
    if card.kind == "quantized":
        assert card.with_levels(8).levels == 2**3 - 1  # quantized: 2^b - 1 symmetric levels
        assert card.with_levels(bits=5).levels == 31
        assert card.with_levels(bits=5)["bits"] == 5
        with pytest.raises(CardError, match="power of two"):
            card.with_levels(12)
    else:
        assert card.levels == 0
        assert card.with_levels(12).levels == 12
        assert card.with_levels(bits=3).levels == 8
        with pytest.raises(CardError):
            card.with_levels(1)
    with pytest.raises(CardError, match="exactly one of levels or bits"):
        card.with_levels(4, bits=2)
    with pytest.raises(CardError, match="exactly one of levels or bits"):
        card.with_levels()
    for bad in (-1, 2.5, True):
        with pytest.raises(CardError, match="levels: expected an integer >= 0"):
            card.with_levels(bad)
    with pytest.raises(CardError, match="bits: expected an integer >= 0"):
        card.with_levels(bits=-1)
    if card.kind == "quantized":
        with pytest.raises(CardError, match="power of two"):
            card.with_levels(0)
    else:
        assert card.with_levels(12).with_levels(0).levels == 0  # 0 turns the knob off again
    assert card.levels == (15 if card.kind == "quantized" else 0)  # the original is unchanged (frozen)


@pytest.mark.parametrize("name", SHIPPED)
def test_with_params_validates(name):
    card = load_card(name)
    key = "g_max"
    changed = card.with_params(**{key: card[key] * 2})
    assert changed[key] == card[key] * 2 and card[key] != changed[key]
    assert changed.with_params(levels=0).levels == card.levels  # 0 = continuous is a valid value
    with pytest.raises(CardError, match="unknown parameter"):
        card.with_params(g_maks=1.0)
    with pytest.raises(CardError, match="expected a value in"):
        card.with_params(p_stuck_off=2.0)
    with pytest.raises(CardError, match="expected a number"):
        card.with_params(g_max="big")
    with pytest.raises(CardError, match="expected g_min < g_max"):
        card.with_params(g_min=card[key] * 3)


def test_with_params_bits_on_a_continuous_card():
    card = load_card("pcm_nandakumar2018").with_params(bits=4)
    assert card.levels == 16 and "bits" not in card.params


def test_card_is_frozen():
    card = load_card("ideal")
    with pytest.raises(Exception):
        card.params["g_max"] = 5.0
    with pytest.raises(Exception):
        card.name = "x"


def test_every_kind_default_is_valid():
    """Defaults of every field pass their own checks (a card may state any default explicitly)."""
    for kind, schema in KINDS.items():
        for key, field in schema.items():
            if field.default is not None:
                field.check(field.default, f"{kind}.{key}")
    from neuroemu.hardware.cards import COMMON
    for key, field in COMMON.items():
        field.check(field.default, key)


def test_explicit_default_levels_zero_in_file(tmp_path):
    card = load_card(write(tmp_path, good_text(**{"dw_min: 0.01": "dw_min: 0.01\n  levels: 0"})))
    assert card.levels == 0


def test_yaml_of_to_dict_reloads(tmp_path):
    card = load_card("rram_gong2018")
    path = tmp_path / "rram_gong2018.yaml"
    path.write_text(yaml.safe_dump(card.to_dict(), allow_unicode=True), encoding="utf-8")
    again = load_card(path)
    assert dict(again.params) == dict(card.params)


# ---------------------------------------------------------------------------- analog chip cards
def chip_text(**replace: str) -> str:
    text = (cards_dir() / "brainscales2.yaml").read_text(encoding="utf-8").replace("name: brainscales2",
                                                                                  "name: chip_test2020")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def test_chip_card_loads_with_units_and_its_synapse_card():
    card = load_card("brainscales2")
    assert card.kind == "analog_chip"
    assert card["tau_mem"] == pytest.approx(10e-6) and card["tau_mem_k"] == pytest.approx(3e-3)
    assert card.levels == 127 and card.nominal_step == 1.0 and card.pulsable
    syn = card.synapse_card()
    assert syn.kind == "quantized" and syn.levels == 127 and syn["g_max"] == 126.0
    assert "levels" not in card.params and "p_stuck_off" not in card.params  # device fields do not apply
    again = parse_card(card.to_dict(), "roundtrip")
    assert dict(again.params) == dict(card.params)
    with pytest.raises(CardError, match="weight_bits"):
        card.with_levels(bits=4)
    with pytest.raises(CardError, match="only analog_chip"):
        load_card("ideal").synapse_card()


@pytest.mark.parametrize("old, new, fragments", [
    ("  v_th: 125.0", "  v_th: 70.0", ["v_th", "above v_leak"]),
    ("  v_leak: 80.0", "  v_leak: 300.0", ["v_leak", "rails"]),
    ("  tau_mem: {value: 10.0, unit: us}", "  tau_mem: {value: 1.0, unit: ns}", ["tau_mem", "code"]),
    ("  weight_bits: 6", "  weight_bits: 6.5", ["weight_bits", "integer"]),
    ("  mac_gain: 0.002", "  mac_gian: 0.002", ["mac_gian", "mac_gain"]),
    ("  gain_code: 500", "  gain_code: 5000", ["gain_code", "capmem_max"]),
])
def test_chip_card_errors_name_field(tmp_path, old, new, fragments):
    path = write(tmp_path, chip_text(**{old: new}), name="chip_test2020")
    expect_error(path, *fragments)


def test_card_file_problems_name_the_file(tmp_path):
    latin = write(tmp_path, GOOD.format(name="dev_test2020") + "# caf\xe9\n")
    latin.write_bytes(latin.read_text(encoding="utf-8").encode("latin-1"))
    with pytest.raises(CardError, match=r"dev_test2020.yaml \(line 14, byte 244\): not UTF-8 text \(byte 0xe9\)"):
        load_card(latin)
    (tmp_path / "folder.yaml").mkdir()
    for path in (tmp_path / "folder.yaml", tmp_path):
        with pytest.raises(CardError, match=f"{path}: is a directory; expected a device card YAML file"):
            load_card(path)


def test_misspelled_card_name_suggests_the_card():
    with pytest.raises(CardError, match=r"pcm_nandakumar: no such device card \(did you mean 'pcm_nandakumar2018'\?\)"):
        load_card("pcm_nandakumar")
    with pytest.raises(CardError) as info:
        load_card("zzz")
    assert "did you mean" not in str(info.value) and "known cards: brainscales2" in str(info.value)
