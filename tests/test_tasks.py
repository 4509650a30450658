"""Synthetic tasks: shapes, dtypes, rates, targets, frozen seeds, labels, masks and argument errors."""

import numpy as np
import pytest

from neuroemu.data.tasks import Task, epoch_order, evidence_accumulation, pattern_generation


def test_pattern_generation_shapes_and_dtypes():
    task = pattern_generation(rng=0)
    assert isinstance(task, Task)
    assert task.x.shape == (1000, 1, 100) and task.x.dtype == np.float32
    assert set(np.unique(task.x)) <= {0.0, 1.0}
    assert task.target.shape == (1000, 1, 1) and task.target.dtype == np.float32
    assert task.mask.shape == (1000, 1) and np.all(task.mask == 1)
    assert task.labels is None and task.dt == 1e-3 and "pattern generation" in task.description


def test_pattern_generation_input_rate():
    task = pattern_generation(n_in=200, t_steps=2000, rng=1)
    rate = task.x.mean() / task.dt  # 400,000 Bernoulli(0.05) draws: std of the rate ~0.35 Hz
    assert rate == pytest.approx(50.0, abs=2.0)
    per_neuron = task.x.sum(axis=(0, 1)) / (2000 * task.dt)
    assert per_neuron.std() < 10  # every input fires, none is silent
    assert pattern_generation(rate_hz=0.0, rng=0).x.sum() == 0


def test_pattern_generation_target_is_a_normalised_sum_of_sines():
    task = pattern_generation(n_out=3, rng=2)
    y = task.target[:, 0, :].astype(np.float64)
    assert np.allclose(np.abs(y).max(axis=0), 1.0, atol=1e-6)
    assert not np.allclose(y[:, 0], y[:, 1])  # outputs have their own amplitudes and phases
    # only 1, 2, 3 and 5 Hz: over 1 s the spectrum has power in bins 1, 2, 3, 5 and nowhere else
    power = np.abs(np.fft.rfft(y, axis=0)) ** 2
    share = power[[1, 2, 3, 5]].sum(axis=0) / power.sum(axis=0)
    assert np.all(share > 0.999)
    # amplitudes U(0.5, 2): the ratio of the largest to the smallest line is at most 4
    lines = np.sqrt(power[[1, 2, 3, 5]])
    assert np.all(lines.max(axis=0) / lines.min(axis=0) <= 4.0 + 1e-6)
    shifted = pattern_generation(n_out=3, rng=2, start_at_zero=True)
    assert np.allclose(shifted.target[0], 0.0) and np.allclose(np.abs(shifted.target).max(axis=0), 1.0, atol=1e-6)


def test_tasks_are_frozen_by_seed():
    a, b = pattern_generation(rng=7), pattern_generation(rng=7)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.target, b.target)
    c = pattern_generation(rng=np.random.default_rng(7))
    assert np.array_equal(a.x, c.x) and np.array_equal(a.target, c.target)
    assert not np.array_equal(a.x, pattern_generation(rng=8).x)
    e, f = evidence_accumulation(8, rng=3), evidence_accumulation(8, rng=3)
    assert all(np.array_equal(u, v) for u, v in zip(e[:4], f[:4]))
    assert not np.array_equal(e.x, evidence_accumulation(8, rng=4).x)


def test_three_patterns_are_independent_frozen_pairs():
    """Demirag et al. train three sequences: each its own Poisson input and its own target."""
    task = pattern_generation(n_patterns=3, rng=9)
    assert task.x.shape == (1000, 3, 100) and task.target.shape == (1000, 3, 1) and task.mask.shape == (1000, 3)
    assert np.all(task.mask == 1) and "3 frozen input/target pairs" in task.description
    y = task.target[:, :, 0].astype(np.float64)
    assert np.allclose(np.abs(y).max(axis=0), 1.0, atol=1e-6)
    power = np.abs(np.fft.rfft(y, axis=0)) ** 2
    assert np.all(power[[1, 2, 3, 5]].sum(axis=0) / power.sum(axis=0) > 0.999)  # each a sum of those sines
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert np.abs(y[:, a] - y[:, b]).max() > 0.2  # three different targets
        assert np.mean(task.x[:, a] != task.x[:, b]) > 0.05  # three different inputs
    again = pattern_generation(n_patterns=3, rng=9)
    assert np.array_equal(task.x, again.x) and np.array_equal(task.target, again.target)
    one = pattern_generation(rng=9)  # n_patterns = 1 is the default task, draw for draw
    assert np.array_equal(one.x, pattern_generation(n_patterns=1, rng=9).x)
    assert one.x.shape == (1000, 1, 100)


def test_epoch_order_presents_every_pattern_once_per_epoch():
    order = epoch_order(3, 3000, rng=1)
    assert order.dtype == np.int64 and order.shape == (3000,)
    epochs = order.reshape(1000, 3)
    assert np.all(np.sort(epochs, axis=1) == np.arange(3))  # every pattern once per epoch
    assert len({tuple(e) for e in epochs}) == 6  # a new random order each epoch: all 3! orders occur
    assert np.array_equal(order, epoch_order(3, 3000, rng=1))  # seeded
    assert np.array_equal(epoch_order(3, 7, rng=1), order[:7])  # a cut-short last epoch
    assert np.array_equal(epoch_order(1, 4, rng=0), np.zeros(4, np.int64))
    assert epoch_order(3, 0, rng=0).size == 0


@pytest.fixture(scope="module")
def evidence():
    return evidence_accumulation(64, rng=11)


def test_evidence_accumulation_shapes_and_dtypes(evidence):
    t = evidence
    assert t.x.shape == (2250, 64, 40) and t.x.dtype == np.float32 and set(np.unique(t.x)) <= {0.0, 1.0}
    assert t.target.shape == (2250, 64, 2) and t.target.dtype == np.float32
    assert t.mask.shape == (2250, 64) and t.mask.dtype == np.float32
    assert t.labels.shape == (64,) and t.labels.dtype == np.int64 and set(t.labels) <= {0, 1}
    assert t.dt == 1e-3 and "evidence accumulation" in t.description


def _cue_windows(n_cues=7):
    return [(k * 150 + 50, k * 150 + 150) for k in range(n_cues)]


def _cue_sides(x):
    """Side of each cue read back from the spikes: the population that fired in the window."""
    left = np.stack([x[a:b, :, 0:10].sum(axis=(0, 2)) for a, b in _cue_windows()], axis=1)
    right = np.stack([x[a:b, :, 10:20].sum(axis=(0, 2)) for a, b in _cue_windows()], axis=1)
    assert np.all((left == 0) | (right == 0))  # only one side per cue
    assert np.all(left + right > 0)  # 10 neurons x 100 ms x 40 Hz: 40 spikes expected, never none in practice
    return (right > 0).astype(int)


def test_evidence_labels_are_the_majority_side(evidence):
    sides = _cue_sides(evidence.x)
    assert np.array_equal(evidence.labels, (sides.sum(axis=1) >= 4).astype(int))
    assert 0 < evidence.labels.sum() < 64  # both classes occur
    # the favoured side takes 70 % of the cues (p_group = 0.3)
    majority = np.where(evidence.labels[:, None] == 1, sides, 1 - sides)
    assert majority.mean() == pytest.approx(0.7, abs=0.1)


def test_evidence_rates_and_silences(evidence):
    x = evidence.x
    cue_rate = np.mean([x[a:b, :, :20].sum() / (b - a) / 64 / 10 for a, b in _cue_windows()]) / 1e-3
    assert cue_rate == pytest.approx(40.0, rel=0.1)
    assert x[:, :, 30:].mean() / 1e-3 == pytest.approx(10.0, rel=0.1)  # background throughout
    assert x[-150:, :, 20:30].mean() / 1e-3 == pytest.approx(40.0, rel=0.1)  # recall cue
    assert x[:-150, :, 20:30].sum() == 0  # recall population silent before the recall window
    assert x[1050:, :, :20].sum() == 0  # no cue during the delay and the recall
    for k in range(7):  # nor during the 50 ms gaps
        assert x[k * 150:k * 150 + 50, :, :20].sum() == 0


def test_evidence_mask_and_target_only_in_the_recall_window(evidence):
    m = evidence.mask
    assert np.all(m[-150:] == 1) and np.all(m[:-150] == 0)
    y = evidence.target
    assert np.all(y[:-150] == 0)
    assert np.array_equal(y[-150:].argmax(axis=2), np.broadcast_to(evidence.labels, (150, 64)))
    assert np.all(y[-150:].sum(axis=2) == 1)


def test_evidence_other_layouts():
    t = evidence_accumulation(4, n_in=80, n_cues=3, trial_s=1.0, dt=5e-4, rng=0)
    assert t.x.shape == (2000, 4, 80) and t.mask.sum() == 300 * 4
    assert t.x[:, :, 40:60][:-300].sum() == 0  # recall population of 20 neurons


@pytest.mark.parametrize("call, field", [
    (lambda: pattern_generation(n_in=0), "n_in"),
    (lambda: pattern_generation(t_steps=1.5), "t_steps"),
    (lambda: pattern_generation(dt=0), "dt"),
    (lambda: pattern_generation(rate_hz=2000.0), "rate_hz"),
    (lambda: pattern_generation(freqs=()), "freqs"),
    (lambda: pattern_generation(freqs=(1, -2)), "freqs"),
    (lambda: pattern_generation(amp_range=(2, 1)), "amp_range"),
    (lambda: pattern_generation(rng="seed"), "rng"),
    (lambda: pattern_generation(rng=-1), "rng"),
    (lambda: pattern_generation(n_patterns=0), "n_patterns"),
    (lambda: pattern_generation(n_patterns=2.0), "n_patterns"),
    (lambda: pattern_generation(n_patterns=True), "n_patterns"),
    (lambda: epoch_order(0, 5), "n_patterns"),
    (lambda: epoch_order(3, -1), "n_updates"),
    (lambda: evidence_accumulation(0), "batch"),
    (lambda: evidence_accumulation(2, n_in=42), "n_in"),
    (lambda: evidence_accumulation(2, n_cues=6), "n_cues"),
    (lambda: evidence_accumulation(2, trial_s=1.0), "trial_s"),
    (lambda: evidence_accumulation(2, cue_s=0.1005), "cue_s"),
    (lambda: evidence_accumulation(2, p_group=0.7), "p_group"),
    (lambda: evidence_accumulation(2, background_hz=-1), "background_hz"),
])
def test_bad_arguments_name_the_argument(call, field):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(field + ":"), info.value


# -------------------------------------------------------------------------------- tasks for the trainer
def test_frozen_patterns_train_one_pattern_per_update_in_epoch_order():
    from neuroemu.data.sequences import FrozenPatterns, nmse_each, pattern_generation_task

    task = pattern_generation_task(n_in=5, t_steps=50, patterns=3, updates=7, rng=np.random.default_rng(0),
                                   order_rng=np.random.default_rng(1))
    want = pattern_generation(n_in=5, t_steps=50, n_patterns=3, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(task.task.x, want.x)
    np.testing.assert_array_equal(task.order, epoch_order(3, 7, rng=np.random.default_rng(1)))
    assert isinstance(task, FrozenPatterns)
    for step in range(1, 8):
        batch = task.batch(step)
        k = task.order[step - 1]
        assert batch.x.shape == (50, 1, 5)
        np.testing.assert_array_equal(batch.x[:, 0], want.x[:, k])
        task.observe(batch, {"nmse": float(k)})
    assert task.evaluate(None, "update", {"rate_hz": 3.0}) == {"rate_hz": 3.0, "nmse": 1.0}  # mean of 0, 1, 2

    class Chip:  # predicts the mean of every target
        def forward(self, x):
            return None, np.broadcast_to(want.target.mean(axis=0), want.target.shape)

    final = task.evaluate(Chip(), "final", {})
    np.testing.assert_allclose(final["nmse_each"], 1.0, rtol=1e-6)
    assert final["nmse"] == pytest.approx(1.0) and final["y"].shape == (50, 3, 1)
    np.testing.assert_array_equal(nmse_each(want.target, want.target, want.mask), 0.0)


def test_fresh_trials_draw_a_new_batch_every_update_and_keep_the_test_set_out_of_checkpoints():
    import pickle

    from neuroemu.data.sequences import evidence_accumulation_task, sequence_accuracy

    task = evidence_accumulation_task(batch=2, n_in=8, trials=4, rng=np.random.default_rng(3))
    g = np.random.default_rng(3)
    evidence_accumulation(2, n_in=8, rng=g)  # the dropped first batch
    test = evidence_accumulation(4, n_in=8, rng=g)
    np.testing.assert_array_equal(task.test.x, test.x)
    for step in (1, 2):
        batch = task.batch(step)
        np.testing.assert_array_equal(batch.x, evidence_accumulation(2, n_in=8, rng=g).x)
    y = np.zeros((2250, 2, 2))
    y[-150:, np.arange(2), batch.labels] = 1.0  # the right answer on the recall steps
    assert sequence_accuracy(y, batch) == 1.0
    task.observe(batch, {"y": y})
    assert task.evaluate(None, "update", {"rate_hz": 1.0}) == {"rate_hz": 1.0, "accuracy": 1.0}
    saved = pickle.loads(pickle.dumps(task))
    assert not hasattr(saved, "test")
    saved.restore(task)
    np.testing.assert_array_equal(saved.batch(3).x, task.batch(3).x)  # the generator went along
    assert saved.test is task.test
