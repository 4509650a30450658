"""Calibration of an emulated analog chip: measurements see what the chip's read-out shows, and the
calibrated spread of every parameter is at most 0.3x the uncalibrated spread (the bound used for the
real chip)."""

import numpy as np
import pytest

from neuroemu.hardware.calibration import calibrate, measure
from neuroemu.errors import ConfigError
from neuroemu.hardware.substrate import PARAMETERS, AnalogNeurons


@pytest.fixture(scope="module")
def report():
    chip = AnalogNeurons(512, rng=11)
    return chip, calibrate(chip, rng=12)


def test_calibration_meets_the_spread_bound(report):
    chip, rep = report
    assert rep.parameters == PARAMETERS
    for k, ratio in rep.ratio().items():
        assert ratio <= 0.3, (k, ratio, rep.spread_before[k], rep.spread_after[k])
    # the chip itself changed: its true values sit at the targets
    for k in PARAMETERS:
        np.testing.assert_allclose(np.mean(chip.value(k)), rep.targets[k], rtol=0.02)
    assert chip.calibrated and "calibrated" in repr(chip)
    md = rep.markdown()
    assert md.count("\n") == len(PARAMETERS) + 1 and "tau_mem" in md


def test_measurements_track_the_true_values(report):
    chip, rep = report
    for k in PARAMETERS:
        true, seen = rep.before[k], rep.measured_before[k]
        assert np.corrcoef(true, seen)[0, 1] > 0.95, k
        tol = 1.5 if k in ("v_leak", "v_reset", "v_th") else 0.03 * np.mean(true)
        assert np.median(np.abs(seen - true)) < tol, k


def test_uncalibrated_chip_misses_targets_and_codes_stay_in_range(report):
    chip, rep = report
    for k in PARAMETERS:
        assert rep.codes_before[k].min() == rep.codes_before[k].max()  # one nominal code for all
        assert rep.codes_after[k].min() >= 0 and rep.codes_after[k].max() <= 1022
        assert np.unique(rep.codes_after[k]).size > 10  # trimmed per neuron


def test_calibrate_to_other_targets_and_subsets():
    chip = AnalogNeurons(64, rng=3)
    rep = calibrate(chip, rng=4, parameters=("tau_mem", "v_leak"), targets={"tau_mem": 20e-6})
    assert rep.parameters == ("v_leak", "tau_mem")  # canonical order
    assert np.mean(chip.value("tau_mem")) == pytest.approx(20e-6, rel=0.03)
    assert chip.spread()["v_th"] > 0.3 * 6  # untouched


def test_calibration_errors():
    chip = AnalogNeurons(4, rng=0)
    with pytest.raises(ConfigError, match="unknown parameter 'tau'"):
        calibrate(chip, parameters=("tau",))
    with pytest.raises(ConfigError, match="targets.v_th: expected a positive"):
        calibrate(chip, targets={"v_th": -1})
    with pytest.raises(ConfigError, match="AnalogNeurons"):
        calibrate(object())
    with pytest.raises(ConfigError, match="unknown parameter"):
        measure(chip, "nope")
