"""Self-defined targets: k-WTA after the homeostatic shift, homeostasis equalises the winning rates
(activity converges to k/N on a stationary stream), dropout correction, direct association."""

import numpy as np
import pytest

from neuroemu.errors import ConfigError
from neuroemu.rules.sdt import DirectAssociation, SelfDefinedTarget


def test_target_is_k_wta_of_the_shifted_outputs():
    sdt = SelfDefinedTarget(5, k=2, gamma=0.5)
    sdt.h[:] = [0.0, 0.0, 10.0, 0.0, 0.0]
    y = np.array([[0.1, 0.9, 0.95, 0.3, 0.2], [0.5, 0.5, 0.9, 0.1, 0.4]])
    d = sdt(y)
    np.testing.assert_array_equal(d, [[0, 1, 0, 1, 0], [1, 1, 0, 0, 0]])  # unit 2 handicapped; ties: lower index
    np.testing.assert_allclose(sdt.h, [0, 0, 10, 0, 0] + 0.5 * (d.mean(axis=0) - 2 / 5))
    sdt.reset()
    assert not sdt.h.any()


@pytest.mark.parametrize("k,dropout", [(1, 0.0), (3, 0.0), (2, 0.3)])
def test_homeostasis_equalises_winning_rates_on_a_stationary_stream(k, dropout):
    """Units with very different mean outputs: without homeostasis a few always win; with it every
    unit's winning rate converges to k/N (k / present units under output dropout)."""
    n, rng = 8, np.random.default_rng(0)
    bias = np.linspace(0, 2, n)
    sdt = SelfDefinedTarget(n, k=k, gamma=0.05, output_dropout=dropout)
    wins, seen = np.zeros(n), np.zeros(n)
    for step in range(4000):
        y = bias + 0.3 * rng.standard_normal((32, n))
        m = sdt.mask(32, rng)
        d = sdt(y, m)
        if step >= 2000:
            present = np.ones_like(d) if m is None else m
            wins += d.sum(axis=0)
            seen += present.sum(axis=0)
        if m is not None:
            assert np.all(d[m == 0] == 0)  # dropped units never win
    # with dropout a present unit competes among about (1 − p) N units
    np.testing.assert_allclose(wins / seen, k / (n * (1 - dropout)), atol=0.02)
    first = SelfDefinedTarget(n, k=k, gamma=0.0).winners(bias + 0.3 * rng.standard_normal((500, n)))
    assert first.mean(axis=0)[0] < 0.01  # without homeostasis the low unit never wins


def test_smoothing_and_errors():
    d = SelfDefinedTarget(4, k=1, smoothing=0.2)(np.array([[0.0, 1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(d, [[0.05, 0.85, 0.05, 0.05]])
    with pytest.raises(ConfigError, match=r"k: expected an integer in \[1, 4\]"):
        SelfDefinedTarget(4, k=5)
    with pytest.raises(ConfigError, match="output_dropout"):
        SelfDefinedTarget(4, output_dropout=1.0)
    with pytest.raises(ValueError, match=r"y: expected outputs of shape \(batch, 4\)"):
        SelfDefinedTarget(4)(np.zeros((2, 3)))


def test_direct_association():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    unit_of_class = np.array([4, 0, 2])  # class c drives unit unit_of_class[c]
    out = 0.1 * rng.random((300, 5))
    out[np.arange(300), unit_of_class[labels]] += 1.0
    da = DirectAssociation(3).fit(out, labels)
    assert da.unit_class[4] == 0 and da.unit_class[0] == 1 and da.unit_class[2] == 2
    assert da.accuracy(out, labels) == 1.0
    with pytest.raises(ValueError, match="labels: expected integers in"):
        DirectAssociation(3).fit(out, labels + 5)
    with pytest.raises(ValueError, match="not fitted"):
        DirectAssociation(3).predict(out)
