"""Operation counts of the chip model and their energy and latency (neuroemu.energy)."""

from __future__ import annotations

import numpy as np
import pytest

from neuroemu import energy
from neuroemu.chip import Hardware
from neuroemu.data.classification import ClassificationTask
from neuroemu.hardware.crossbar import Periphery, Tile
from neuroemu.hardware.factory import make_tile
from neuroemu.models.mlp import MLP
from neuroemu.rules.backprop import Backprop
from neuroemu.train import Protocol, Trainer


def test_a_read_counts_dense_and_effective_operations_and_conversions():
    tile = Tile(4, 6, "pcm_nandakumar2018", periphery=Periphery(), rng=0)
    x = np.zeros((3, 6), np.float32)
    x[0, :2] = [0.5, -0.2]
    x[2, 5] = 1.0
    tile.forward(x)
    ops = tile.ops
    assert ops["vectors"] == 3 and ops["macs"] == 3 * 6 * 4
    assert ops["effective_macs"] == 3 * 4 and ops["effective_acs"] == 0  # three non-zero inputs, not binary
    assert ops["dac"] == 3 * 6 and ops["adc"] == 3 * 4
    assert ops["device_reads"] == 3 * 4 * 2  # the driven rows, both devices of each pair
    tile.forward(x > 0)  # spikes: accumulates, no DAC
    assert ops["effective_acs"] == 2 * 4 and ops["dac"] == 3 * 6 and ops["adc"] == 6 * 4
    tile.backward(np.ones((2, 4), np.float32))
    assert ops["macs"] == 2 * 3 * 6 * 4 + 2 * 4 * 6 and ops["effective_acs"] == 2 * 4 + 2 * 4 * 6


def test_bound_management_rereads_are_counted():
    per = Periphery(adc_range=0.05)  # every output saturates: re-read up to the limit
    tile = Tile(3, 5, "ideal", periphery=per, rng=0)
    tile.write(np.full((3, 5), 0.5))
    tile.forward(np.ones((2, 5), np.float32))
    assert tile.ops["vectors"] == 2 * (1 + per.bound_management)
    assert tile.ops["adc"] == tile.ops["vectors"] * 3


def test_the_analog_mac_counts_one_conversion_per_block():
    tile = make_tile(3, 300, "brainscales2", rng=0)
    tile.forward(np.ones((2, 300), np.float32))
    assert tile.ops["adc"] == 2 * 3 * 3 and tile.ops["dac"] == 2 * 300 and tile.ops["device_reads"] == 2 * 2 * 300 * 3


def test_chip_ops_sum_layers_schemes_and_units():
    chip = MLP([6, 5, 2]).build(Hardware(card="pcm_nandakumar2018", scheme="mixed_precision"), rng=0)
    x = np.random.default_rng(0).random((4, 6)).astype(np.float32)
    Backprop(lr=0.1).bind(chip)
    from neuroemu.rules.base import run_step

    run_step(Backprop(lr=0.1), chip, (x, np.array([0, 1, 0, 1])))
    ops = chip.ops()
    assert set(ops) == {"layers", "units"}
    first = ops["layers"]["layer1"]
    assert first["macs"] == 4 * 6 * 5  # the forward read (the first layer has no backward read)
    assert first["digital_ops"] == 4 * 5 * 6 + 2 * 5 * 6  # outer products, then accumulate and test
    assert first["pulses"] == sum(int(t.npulse.sum()) for t in chip["layer1"].scheme.tiles)
    exact = MLP([6, 5, 2]).build(Hardware.exact(), rng=0)
    run_step(Backprop(lr=0.1), exact, (x, np.array([0, 1, 0, 1])))
    e = energy.account(exact.ops(), exact)
    assert e["digital"] == e["total"] > 0 and e["adc"] == 0


def test_account_costs_each_component_and_says_what_it_cannot_cost():
    chip = MLP([6, 5, 2]).build(Hardware(card="pcm_nandakumar2018", scheme="ideal", periphery=Periphery()), rng=0)
    chip.forward(np.random.default_rng(0).random((4, 6)).astype(np.float32))
    ops = chip.ops()
    e = energy.account(ops, chip)
    adc_9 = energy.COSTS["adc_fom"].value * 2 ** 9
    assert e["adc"] == pytest.approx((4 * 5 + 4 * 2) * adc_9)
    assert e["dac"] == pytest.approx((4 * 6 + 4 * 5) * energy.COSTS["dac"].value)
    assert e["total"] == pytest.approx(sum(e[k] for k in energy.COMPONENTS))
    assert energy.latency(ops, chip) == pytest.approx(2 * 4 * (127 + 10) * 1e-9)
    half = energy.account(energy.scale(ops, 0.5), chip)
    assert half["total"] == pytest.approx(e["total"] / 2)
    analog = MLP([6, 5, 2]).build(Hardware(card="brainscales2", scheme="ideal"), rng=0)
    analog.forward(np.random.default_rng(0).random((4, 6)).astype(np.float32))
    assert any("analog chip" in s for s in energy.account(analog.ops(), analog)["not_costed"])


def _task():
    g = np.random.default_rng(0)
    x, y = g.random((120, 6)).astype(np.float32), g.integers(0, 2, 120)
    return ClassificationTask(x, y, batch_size=20, rng=0, held_out={"test": (x[:40], y[:40])})


def test_the_trainer_splits_training_from_evaluation_and_measures_one_inference():
    chip = MLP([6, 5, 2]).build(Hardware.exact(), rng=0)
    result = Trainer(chip, Backprop(lr=0.1), _task(), Protocol(epochs=2), progress=False).run()
    ops = result.ops
    assert ops["updates"] == 12
    # training: per update a forward of 20 samples and the backward read of layer 2
    assert ops["per_update"]["layers"]["layer1"]["macs"] == 20 * 6 * 5
    assert ops["per_update"]["layers"]["layer2"]["macs"] == 20 * 5 * 2 + 20 * 2 * 5
    assert ops["per_inference"]["layers"]["layer1"]["macs"] == 6 * 5
    assert ops["energy_per_inference_pJ"]["total"] == pytest.approx((30 + 10) * energy.COSTS["digital_mac"].value)


def test_measuring_the_inference_changes_no_result():
    class NoInference(ClassificationTask):
        inference_batch = None

    hw = Hardware(card="pcm_nandakumar2018", scheme="mixed_precision", periphery=Periphery())
    runs = []
    plain = _task()
    for task in (_task(), NoInference(plain.x, plain.y, batch_size=20, rng=0, held_out=plain.held_out)):
        chip = MLP([6, 5, 2]).build(hw, rng=0)
        r = Trainer(chip, Backprop(lr=0.1), task, Protocol(epochs=1, delays=[10.0]), progress=False).run()
        runs.append((r.final, r.after, r.chip["layer1"].tile.rng.random()))
    assert runs[0] == runs[1]
