"""Surrogate-gradient BPTT: forward against a scalar-loop simulation, gradients against an
independent scalar reverse-mode (tape) implementation of the same equations, regularisers,
Adam, hooks, a short training run and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroemu.data.encoders import latency_encode
from neuroemu.rules import (
    Adam,
    SpikeCountReg,
    SpikingMLP,
    fast_sigmoid_grad,
    psp_peak,
    spike_count_reg,
)
from neuroemu.rules.surrogate import PAPER_REG

DT = 1e-3


def _tau(decay_factor):
    """Time constant (s) giving the decay factor exp(−dt/τ)."""
    return -DT / math.log(decay_factor)


def _tiny_net(sizes, *, refractory_steps=2, v_reset=0.3, beta_syn=0.8, alpha=0.85, reg=PAPER_REG,
              surrogate_scale=100.0, w_mean=0.5, w_std=0.8, seed=0, dtype=np.float64):
    net = SpikingMLP(sizes, dt=DT, tau_mem=_tau(alpha), tau_syn=_tau(beta_syn), v_th=1.0, v_reset=v_reset,
                     refractory_steps=refractory_steps, tau_out=_tau(0.9), tau_out_syn=_tau(0.7),
                     surrogate_scale=surrogate_scale, reg=reg, rng=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    for w in net.weights:  # strong positive-mean weights so that every hidden layer spikes
        w[...] = rng.normal(w_mean, w_std, w.shape)
    return net


# ----------------------------------------------------------------------------- scalar reference forward
def _loop_forward(net, s_in):
    """Plain python loops over t, b, j: spikes and voltages per hidden layer, readout trace y."""
    hp, rp = net.hidden_params, net.readout_params
    T, B, _ = s_in.shape
    x = s_in.tolist()
    zs, vs = [], []
    for layer, w in enumerate(net.weights):
        n_out, n_in = w.shape
        readout = layer == net.n_layers - 1
        z_out = np.zeros((T, B, n_out))
        v_out = np.zeros((T, B, n_out))
        for b in range(B):
            for j in range(n_out):
                i = v = 0.0
                z_prev, r = 0.0, 0
                for t in range(T):
                    cur = sum(w[j, k] * x[t][b][k] for k in range(n_in))
                    if readout:
                        i = rp.beta_syn * i + cur
                        v = rp.alpha * v + i
                    else:
                        i = hp.beta_syn * i + cur
                        refractory = r > 0
                        if refractory:
                            u = 0.0
                            r -= 1
                        else:
                            u = i
                        v = hp.alpha * (hp.v_reset if z_prev else v) + u
                        z = 1.0 if (v > hp.v_th and not refractory) else 0.0
                        if z:
                            r = int(hp.refractory_steps)
                        z_prev = z
                        z_out[t, b, j] = z
                    v_out[t, b, j] = v
        if readout:
            return zs, vs, v_out
        zs.append(z_out)
        vs.append(v_out)
        x = z_out.tolist()


def test_forward_matches_scalar_loop():
    net = _tiny_net([5, 4, 3, 2], w_mean=0.4)
    rng = np.random.default_rng(1)
    s = (rng.random((15, 3, 5)) < 0.5).astype(np.float64)
    assert net.hidden_params.beta_syn == pytest.approx(0.8)
    fwd = net.forward(s)
    zs, vs, y = _loop_forward(net, s)
    for h in range(2):
        np.testing.assert_array_equal(fwd.spikes[h], zs[h])
        np.testing.assert_allclose(fwd.voltages[h], vs[h], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(fwd.spike_counts[h], zs[h].sum(0))
    np.testing.assert_allclose(fwd.readout, y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fwd.logits, y.max(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.predict(s), y.max(0), rtol=1e-12, atol=1e-12)
    # the configuration exercises spikes, the reset value and refractory blocking
    assert zs[0].sum() > 5 and zs[1].sum() > 5
    after_spike = vs[0][1:][zs[0][:-1] > 0]  # v = α v_reset (+ 0 input while refractory)
    np.testing.assert_allclose(after_spike, net.hidden_params.alpha * 0.3, rtol=1e-12)
    no_refractory = _tiny_net([5, 4, 3, 2], w_mean=0.4, refractory_steps=0)
    assert not np.array_equal(no_refractory.forward(s).spikes[0], zs[0])


def test_forward_float32_close_to_float64():
    net64 = _tiny_net([5, 6, 3], w_mean=0.3)
    net32 = _tiny_net([5, 6, 3], w_mean=0.3, dtype=np.float32)
    s = (np.random.default_rng(2).random((20, 4, 5)) < 0.4)
    f64, f32 = net64.forward(s), net32.forward(s)
    assert f32.logits.dtype == np.float32 and f32.spikes[0].dtype == np.float32
    assert np.mean(f32.spikes[0] == f64.spikes[0]) > 0.98


def test_refractory_flags_by_hand():
    net = _tiny_net([1, 1, 1], refractory_steps=2)
    z = np.array([0, 1, 0, 0, 0, 1, 0, 0], float)[:, None, None]
    np.testing.assert_array_equal(net.refractory_flags(z)[:, 0, 0], [0, 0, 1, 1, 0, 0, 1, 1])
    net0 = _tiny_net([1, 1, 1], refractory_steps=0)
    assert not net0.refractory_flags(z).any()


# ----------------------------------------------------------------------------- scalar reverse mode
class _Node:
    __slots__ = ("grad", "parents", "val")

    def __init__(self, val, parents):
        self.val, self.parents, self.grad = float(val), parents, 0.0


class _Tape:
    """Scalar reverse-mode differentiation: each node stores (parent, ∂node/∂parent) pairs;
    nodes are created in topological order, so one reverse sweep gives all gradients."""

    def __init__(self):
        self.nodes = []

    def node(self, val, parents=()):
        n = _Node(val, parents)
        self.nodes.append(n)
        return n

    def add(self, *xs):
        return self.node(sum(x.val for x in xs), tuple((x, 1.0) for x in xs))

    def scale(self, x, c):
        return self.node(c * x.val, ((x, c),))

    def mul(self, x, y):
        return self.node(x.val * y.val, ((x, y.val), (y, x.val)))

    def exp(self, x):
        e = math.exp(x.val)
        return self.node(e, ((x, e),))

    def log(self, x):
        return self.node(math.log(x.val), ((x, 1.0 / x.val),))

    def relu(self, x):
        return self.node(max(x.val, 0.0), ((x, 1.0 if x.val > 0 else 0.0),))

    def power(self, x, p):
        return self.node(x.val ** p, ((x, p * x.val ** (p - 1)),))

    def spike(self, v, v_th, refractory, scale):
        """Heaviside forward; fast-sigmoid surrogate backward, zero while refractory."""
        val = 1.0 if (v.val > v_th and not refractory) else 0.0
        d = 0.0 if refractory else 1.0 / (scale * abs(v.val - v_th) + 1.0) ** 2
        return self.node(val, ((v, d),))

    def backward(self, out):
        out.grad = 1.0
        for n in reversed(self.nodes):
            for p, d in n.parents:
                p.grad += n.grad * d


def _tape_loss(net, s_in, labels):
    """Loss of the network built node by node on a tape; returns (tape, loss node, weight nodes,
    logits)."""
    tape = _Tape()
    hp, rp, reg = net.hidden_params, net.readout_params, net.reg
    T, B, _ = s_in.shape
    wn = [[[tape.node(w[j, k]) for k in range(w.shape[1])] for j in range(w.shape[0])] for w in net.weights]
    x = [[[float(s_in[t, b, k]) for k in range(s_in.shape[2])] for b in range(B)] for t in range(T)]
    hidden_z = []
    logits = None
    for layer, w in enumerate(wn):
        n_out, n_in = len(w), len(w[0])
        readout = layer == len(wn) - 1
        z_out = [[[None] * n_out for _ in range(B)] for _ in range(T)]
        y_out = [[[None] * n_out for _ in range(B)] for _ in range(T)]
        for b in range(B):
            for j in range(n_out):
                i = tape.node(0.0)
                v = tape.node(0.0)
                z_prev, r = 0.0, 0
                for t in range(T):
                    terms = [tape.scale(w[j][k], x[t][b][k]) if isinstance(x[t][b][k], float)
                             else tape.mul(w[j][k], x[t][b][k]) for k in range(n_in)]
                    cur = tape.add(*terms)
                    if readout:
                        i = tape.add(tape.scale(i, rp.beta_syn), cur)
                        v = tape.add(tape.scale(v, rp.alpha), i)
                        y_out[t][b][j] = v
                        continue
                    i = tape.add(tape.scale(i, hp.beta_syn), cur)
                    refractory = r > 0
                    if refractory:
                        u = tape.node(0.0)
                        r -= 1
                    else:
                        u = i
                    base = tape.node(hp.v_reset) if z_prev else v  # reset selection is a constant
                    v = tape.add(tape.scale(base, hp.alpha), u)
                    z = tape.spike(v, hp.v_th, refractory, net.surrogate_scale)
                    if z.val:
                        r = int(hp.refractory_steps)
                    z_prev = z.val
                    z_out[t][b][j] = z
        if readout:
            logits = [[max((y_out[t][b][k] for t in range(T)), key=lambda n: n.val) for k in range(n_out)]
                      for b in range(B)]
        else:
            hidden_z.append(z_out)
            x = z_out

    ce_terms = []
    for b in range(B):
        lse = tape.log(tape.add(*[tape.exp(lk) for lk in logits[b]]))
        ce_terms.append(tape.add(lse, tape.scale(logits[b][labels[b]], -1.0)))
    terms = [tape.scale(tape.add(*ce_terms), 1.0 / B)]
    if reg is not None:
        for z in hidden_z:
            n = len(z[0][0])
            for b in range(B):
                counts = [tape.add(*[z[t][b][j] for t in range(T)]) for j in range(n)]
                mean = tape.scale(tape.add(*counts), 1.0 / n)
                up = tape.power(tape.relu(tape.add(mean, tape.node(-reg.upper_target))), reg.upper_power)
                low = tape.add(*[tape.power(tape.relu(tape.add(tape.node(reg.lower_target), tape.scale(c, -1.0))), 2)
                                 for c in counts])
                terms.append(tape.scale(up, reg.upper / B))
                terms.append(tape.scale(low, reg.lower / (n * B)))
    loss = tape.add(*terms)
    return tape, loss, wn, np.array([[lk.val for lk in row] for row in logits])


REGS = {
    "paper": SpikeCountReg(),
    "strong": SpikeCountReg(upper=0.7, upper_target=0.8, upper_power=2.0, lower=3.0, lower_target=0.6),
    "none": None,
}


@pytest.mark.parametrize("reg", list(REGS), ids=list(REGS))
@pytest.mark.parametrize("scale", [100.0, 2.0])
def test_gradients_match_scalar_reverse_mode(reg, scale):
    net = _tiny_net([5, 4, 4, 3], reg=REGS[reg], surrogate_scale=scale, w_mean=0.35, w_std=0.9, seed=3)
    rng = np.random.default_rng(4)
    s = (rng.random((12, 3, 5)) < 0.45).astype(np.float64)
    labels = np.array([0, 2, 1])
    loss, acc, grads, stats = net.loss_and_grads(s, labels)

    tape, loss_node, wn, logits = _tape_loss(net, s, labels)
    tape.backward(loss_node)
    np.testing.assert_allclose(net.predict(s), logits, rtol=1e-12)
    assert loss == pytest.approx(loss_node.val, rel=1e-12)
    assert acc == np.mean(logits.argmax(1) == labels)
    for g, w in zip(grads, wn):
        ref = np.array([[n.grad for n in row] for row in w])
        assert g.shape == ref.shape and g.dtype == np.float64
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
        assert np.abs(ref).max() > 0
    fwd = net.forward(s)
    assert all(z.sum() > 0 for z in fwd.spikes)
    if reg == "strong":  # both regularisers active
        m = [c.mean(1) for c in fwd.spike_counts]
        assert any(np.any(mm > 0.8) for mm in m) and any(np.any(c < 0.6) for c in fwd.spike_counts)
        assert stats["reg"] > 0


def test_gradient_of_regulariser_alone():
    """Zero readout weights: the CE term sends nothing back, hidden gradients come from R only."""
    reg = SpikeCountReg(upper=0.7, upper_target=0.8, upper_power=1.0, lower=3.0, lower_target=0.6)
    net = _tiny_net([5, 4, 3], reg=reg, surrogate_scale=2.0, w_mean=0.35, w_std=0.9, seed=5)
    net.weights[-1][...] = 0.0
    s = (np.random.default_rng(6).random((12, 3, 5)) < 0.45).astype(np.float64)
    labels = np.array([1, 0, 2])
    _, _, grads, stats = net.loss_and_grads(s, labels)
    assert stats["ce"] == pytest.approx(math.log(3))
    assert stats["reg"] > 0 and np.abs(grads[0]).max() > 0
    tape, loss_node, wn, _ = _tape_loss(net, s, labels)
    tape.backward(loss_node)
    ref = np.array([[n.grad for n in row] for row in wn[0]])
    np.testing.assert_allclose(grads[0], ref, rtol=1e-10, atol=1e-14)
    net.reg = None
    assert np.all(net.loss_and_grads(s, labels)[2][0] == 0)


def test_spike_count_reg_value_and_finite_differences():
    reg = SpikeCountReg(upper=0.5, upper_target=1.0, upper_power=2.0, lower=4.0, lower_target=0.5)
    c = np.array([[0.0, 3.0, 2.5], [0.2, 0.1, 1.0]])  # sample 0: mean 11/6 > 1; sample 1: mean 0.433
    val, (g,) = spike_count_reg([c], reg)
    # by hand: upper 0.5 (5/6)² on sample 0; lower 4/3 ((0.5)² + 0.3² + 0.4²) on the deficits
    by_hand = (0.5 * (5 / 6) ** 2 + 4.0 / 3 * (0.25 + 0.09 + 0.16)) / 2
    assert val == pytest.approx(by_hand, rel=1e-12)
    eps = 1e-6
    for idx in np.ndindex(c.shape):
        cp, cm = c.copy(), c.copy()
        cp[idx] += eps
        cm[idx] -= eps
        fd = (spike_count_reg([cp], reg)[0] - spike_count_reg([cm], reg)[0]) / (2 * eps)
        assert g[idx] == pytest.approx(fd, rel=1e-6, abs=1e-9)
    # paper defaults, integer counts: only silent neurons get the lower push, 2·100·1e-3/(N·B)
    val, (g,) = spike_count_reg([np.array([[0.0, 2.0]])], SpikeCountReg())
    assert val == pytest.approx(100 * 1e-6 / 2)
    np.testing.assert_allclose(g, [[-2 * 100 * 1e-3 / 2, 0.0]])
    val, (g,) = spike_count_reg([np.array([[4.0, 2.0]])], SpikeCountReg())
    assert val == pytest.approx(0.06 * 2.0)
    np.testing.assert_allclose(g, [[0.03, 0.03]])
    assert spike_count_reg([c], None)[0] == 0


def test_adam_hand_computed():
    p = [np.array([1.0, -2.0]), np.array([[0.5]])]
    opt = Adam(lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    opt.step(p, [np.array([0.5, -4.0]), np.array([[0.0]])])
    # step 1: m̂ = g, ŝ = g², update = lr · g / (|g| + eps)
    p1 = [1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 4.0 / (4.0 + 1e-8)]
    np.testing.assert_allclose(p[0], p1, rtol=1e-15)
    assert p[1][0, 0] == 0.5
    opt.step(p, [np.array([-1.0, -4.0]), np.array([[2.0]])])
    # step 2, first entry: m = 0.9·0.05 − 0.1 = −0.055, s = 0.999·0.00025 + 0.001 = 0.00124975
    m_hat, s_hat = -0.055 / (1 - 0.81), 0.00124975 / (1 - 0.998001)
    expect0 = p1[0] - 0.1 * m_hat / (math.sqrt(s_hat) + 1e-8)
    m2, s2 = 0.2 / 0.19, 0.004 / (1 - 0.998001)
    expect2 = 0.5 - 0.1 * m2 / (math.sqrt(s2) + 1e-8)
    assert p[0][0] == pytest.approx(expect0, rel=1e-12)
    assert p[0][1] == pytest.approx(p1[1] + 0.1 * 4.0 / (4.0 + 1e-8), rel=1e-12)  # constant gradient: lr per step
    assert p[1][0, 0] == pytest.approx(expect2, rel=1e-12)
    assert opt.t == 2


def test_psp_peak_and_paper_init():
    assert psp_peak(0.9, 0.0) == 1.0
    assert psp_peak(0.5, 0.5) == 1.0  # v = 1, 1, 0.75, ...
    assert psp_peak(0.5, 0.8) == pytest.approx(1.3)  # v = 1, 1.3, 1.29, ...
    a = math.exp(-0.1)
    assert psp_peak(a, a) == pytest.approx(10 * a ** 9)  # (k + 1) α^k peaks at k = 9
    net = SpikingMLP([400, 300, 10], rng=0)
    a = net.hidden_params.alpha
    std = 20 * (1 - a) / psp_peak(a, net.hidden_params.beta_syn) / math.sqrt(400)
    assert net.weights[0].std() == pytest.approx(std, rel=0.02)
    assert net.weights[0].dtype == np.float32
    lif = SpikingMLP([400, 300, 10], tau_syn=0.0, rng=0)  # β_syn = 0: the paper's LIF init exactly
    assert lif.weights[0].std() == pytest.approx(20 * (1 - a) / 20, rel=0.02)
    assert SpikingMLP([100, 10], init=1.0, rng=0).weights[0].std() == pytest.approx(0.1, rel=0.05)


def test_fast_sigmoid_grad():
    v = np.array([1.0, 1.01, 0.9], np.float32)
    g = fast_sigmoid_grad(v, 1.0, 100.0)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, [1.0, 0.25, 1 / 121], rtol=1e-5)


# ----------------------------------------------------------------------------- hooks
def test_hooks_default_equivalent_and_called_in_order():
    net = _tiny_net([5, 4, 3, 2], w_mean=0.4, dtype=np.float32)
    s = (np.random.default_rng(7).random((10, 2, 5)) < 0.5).astype(np.float32)
    calls = []

    def matmul(layer, s_flat):
        assert s_flat.shape == (20, net.sizes[layer]) and s_flat.dtype == np.float32
        calls.append(("mm", layer))
        return s_flat @ net.weights[layer].T

    def neurons(layer, currents, spiking):
        calls.append(("n", layer, spiking))
        z, v = net.ideal_neurons(layer, currents, spiking)
        return (z if spiking else None), v

    ref = net.forward(s)
    assert ref.events is not None and all(ev.binary for ev in ref.events)  # event-driven without a hook
    out = net.forward(s, matmul=matmul, neurons=neurons)
    assert out.events is None
    # the event-driven products equal the dense ones up to the order of the float sums
    np.testing.assert_allclose(out.logits, ref.logits, rtol=1e-5, atol=1e-6)
    for a, b in zip(out.spikes, ref.spikes):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(net.forward(s, matmul=net.ideal_matmul).logits, out.logits)
    assert calls == [("mm", 0), ("n", 0, True), ("mm", 1), ("n", 1, True), ("mm", 2), ("n", 2, False)]
    labels = np.array([0, 1])
    g_ref = net.loss_and_grads(s, labels)[2]
    g_hook = net.loss_and_grads(s, labels, matmul=matmul, neurons=neurons)[2]
    g_ideal = net.loss_and_grads(s, labels, matmul=net.ideal_matmul)[2]
    for a, b, c in zip(g_ref, g_hook, g_ideal):
        np.testing.assert_array_equal(b, c)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max())
    # a different current function changes the result: readout currents doubled → logits doubled
    doubled = net.predict(s, matmul=lambda layer, x: net.ideal_matmul(layer, x) * (2 if layer == 2 else 1))
    np.testing.assert_allclose(doubled, 2 * ref.logits, rtol=1e-6)


def test_hook_errors():
    net = _tiny_net([5, 4, 2], dtype=np.float32)
    s = np.zeros((6, 2, 5), np.float32)
    with pytest.raises(ValueError, match="matmul output"):
        net.forward(s, matmul=lambda layer, x: np.zeros((12, 3)))
    with pytest.raises(ValueError, match=r"neurons output.*tuple"):
        net.forward(s, neurons=lambda layer, cur, spiking: cur)
    with pytest.raises(ValueError, match="neurons output z"):
        net.forward(s, neurons=lambda layer, cur, spiking: (None, cur))


# ----------------------------------------------------------------------------- training
def _separable_task(rng, n_per_class=16, n_cls=3, n_in=12, t_steps=25):
    """Class c: inputs 4c .. 4c+3 fire with probability 0.3 per step, the others with 0.02."""
    labels = np.repeat(np.arange(n_cls), n_per_class)
    p = np.full((labels.size, n_in), 0.02)
    for c in range(n_cls):
        p[labels == c, 4 * c:4 * c + 4] = 0.3
    return (rng.random((t_steps,) + p.shape) < p).astype(np.float32), labels


def test_short_training_run_learns():
    rng = np.random.default_rng(0)
    net = SpikingMLP([12, 32, 3], rng=100)
    opt = Adam(lr=0.005)
    s, labels = _separable_task(rng)
    loss0, acc0, _, _ = net.loss_and_grads(s, labels)
    for _ in range(40):
        s, labels = _separable_task(rng)
        net.train_step(s, labels, opt)
    s, labels = _separable_task(rng, n_per_class=50)
    loss1, acc1, _, stats = net.loss_and_grads(s, labels)
    assert loss1 < 0.5 * loss0
    assert acc1 > 0.9 and acc0 < 0.6  # chance is 1/3
    assert stats["mean_count"][0] > 0


def test_one_step_on_latency_input_runs_in_float32():
    rng = np.random.default_rng(0)
    net = SpikingMLP([30, 8, 4], rng=1)
    s = latency_encode(rng.random((6, 30)), t_steps=40)
    loss, acc, grads, stats = net.loss_and_grads(s, rng.integers(0, 4, 6))
    assert all(g.dtype == np.float32 and g.shape == w.shape for g, w in zip(grads, net.weights))
    assert np.isfinite(loss) and 0 <= acc <= 1
    assert set(stats) == {"ce", "reg", "mean_count", "silent_fraction"}


# ----------------------------------------------------------------------------- input checks
@pytest.mark.parametrize("kwargs, match", [
    ({"sizes": [5]}, "sizes"),
    ({"sizes": [5, 0, 2]}, "sizes"),
    ({"sizes": [5, 2.5, 2]}, "sizes"),
    ({"dt": 0.0}, "dt"),
    ({"tau_mem": -1.0}, "tau_mem"),
    ({"tau_out": -1.0}, "tau_out"),
    ({"v_th": float("nan")}, "v_th"),
    ({"refractory_steps": 1.5}, "refractory_steps"),
    ({"refractory_steps": -1}, "refractory_steps"),
    ({"surrogate_scale": 0.0}, "surrogate_scale"),
    ({"init": "xavier"}, "init"),
    ({"init": -1.0}, "init"),
    ({"tau_mem": float("inf")}, "init"),
    ({"dtype": np.int32}, "dtype"),
    ({"reg": (0.1, 1.0)}, "reg"),
    ({"reg": SpikeCountReg(upper=-1.0)}, "upper"),
])
def test_bad_constructor_arguments(kwargs, match):
    kwargs = {"sizes": [5, 4, 2], **kwargs}
    with pytest.raises(ValueError, match=match):
        SpikingMLP(kwargs.pop("sizes"), **kwargs)


def test_bad_inputs_and_labels():
    net = SpikingMLP([5, 4, 3], rng=0)
    s = np.zeros((6, 2, 5), np.float32)
    with pytest.raises(ValueError, match=r"s_in.*\(T, batch, 5\)"):
        net.forward(np.zeros((6, 2, 4)))
    with pytest.raises(ValueError, match="s_in"):
        net.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="labels"):
        net.loss_and_grads(s, np.array([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        net.loss_and_grads(s, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="labels"):
        net.loss_and_grads(s, np.array([0.0, 1.0]))


def test_bad_adam_arguments():
    with pytest.raises(ValueError, match="lr"):
        Adam(lr=0.0)
    with pytest.raises(ValueError, match="betas"):
        Adam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="eps"):
        Adam(eps=-1.0)
    opt = Adam()
    with pytest.raises(ValueError, match="grads"):
        opt.step([np.zeros(2)], [np.zeros(2), np.zeros(2)])
    with pytest.raises(ValueError, match=r"grads\[0\]"):
        opt.step([np.zeros(2)], [np.zeros(3)])
    opt.step([np.zeros(2)], [np.ones(2)])
    with pytest.raises(ValueError, match="params"):
        opt.step([np.zeros(3)], [np.ones(3)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_kernel_matches_numpy_twin(dtype):
    from neuroemu._kernels.optim import adam_step
    from tests.reference.optim import adam_step as twin

    rng = np.random.default_rng(3)
    p = rng.normal(size=1000).astype(dtype)
    m, s = np.zeros_like(p), np.zeros_like(p)
    p2, m2, s2 = p.copy(), m.copy(), s.copy()
    for t in range(1, 6):
        g = rng.normal(size=1000).astype(dtype)
        a, r = 0.01 / (1 - 0.9 ** t), 1 / math.sqrt(1 - 0.999 ** t)
        adam_step(p, g, m, s, a, 0.9, 0.999, r, 1e-8)
        twin(p2, g, m2, s2, a, 0.9, 0.999, r, 1e-8)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    for x, y in ((p, p2), (m, m2), (s, s2)):
        assert x.dtype == dtype
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_flushes_subnormal_moments_and_steps_to_zero(dtype):
    """A gradient that stops (an input that is always 0) leaves m decaying by β₁ a step: the kernel
    and its twin flush it to zero below the smallest normal number instead of keeping subnormals
    (slow on x86); the parameters move as the unflushed formula would, to their last bit."""
    from neuroemu._kernels.optim import adam_step
    from tests.reference.optim import adam_step as twin

    tiny = np.finfo(dtype).tiny
    rng = np.random.default_rng(4)
    p = rng.normal(size=200).astype(dtype)
    m, s = np.zeros_like(p), np.zeros_like(p)
    p2, m2, s2, p3, m3, s3 = p.copy(), m.copy(), s.copy(), p.copy(), m.copy(), s.copy()
    g0 = (rng.normal(size=200) * 10.0 ** rng.uniform(-20, 0, 200)).astype(dtype)
    steps = 900 if dtype == np.float32 else 7000  # m from ~1e-21 past 1.2e-38 (float32) / 2.2e-308
    for t in range(1, steps + 1):
        g = g0 if t == 1 else np.zeros_like(p)
        a, r = 1e-3 / (1 - 0.9 ** t), 1 / math.sqrt(1 - 0.999 ** t)
        adam_step(p, g, m, s, a, 0.9, 0.999, r, 1e-8)
        twin(p2, g, m2, s2, a, 0.9, 0.999, r, 1e-8)
        m3 *= dtype(0.9)  # unflushed reference, in the kernel's order
        m3 += (dtype(1) - dtype(0.9)) * g
        s3 *= dtype(0.999)
        s3 += (dtype(1) - dtype(0.999)) * (g * g)
        p3 -= dtype(a) * m3 / (np.sqrt(s3) * dtype(r) + dtype(1e-8))
    for x in (m, s):
        assert not np.any((x != 0) & (np.abs(x) < tiny))
    assert np.any((m3 != 0) & (np.abs(m3) < tiny))  # the unflushed moments did go subnormal
    assert np.count_nonzero(m == 0) > 100
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(m, m2)
    np.testing.assert_array_equal(p, p3)


def test_adam_rejects_non_contiguous_params():
    p = np.zeros((4, 4))[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        Adam().step([p], [np.ones_like(p)])


# ----------------------------------------------------------------------------- on the chip
def _spiking_batch(n=12, t=15, n_in=20, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((t, n, n_in)) < 0.15).astype(np.float32), rng.integers(0, 3, n)


def test_the_rule_on_an_exact_chip_takes_the_float_networks_adam_step_exactly():
    from neuroemu.chip import Hardware
    from neuroemu.models.snn import SNN
    from neuroemu.rules.base import run_step
    from neuroemu.rules.surrogate import SurrogateBPTT

    s, y = _spiking_batch()
    ref = SpikingMLP([20, 16, 3], rng=4)
    chip = SNN(SpikingMLP([20, 16, 3], rng=4)).build(Hardware.exact(), rng=0)
    assert chip.tiles() == {}
    rule, opt = SurrogateBPTT(1e-2), Adam(1e-2)
    rule.bind(chip)
    for _ in range(3):
        # the chip's tiles compute the dense product, so the float network takes it too (its own
        # event-driven product differs in the order of the float sums)
        want = ref.train_step(s, y, opt, matmul=ref.ideal_matmul)[0]
        assert run_step(rule, chip, (s, y))["loss"] == want
    for layer, w in zip(chip, ref.weights):
        assert layer.weights().dtype == w.dtype and layer.weights().tobytes() == w.tobytes()


@pytest.mark.parametrize("card, scheme", [("pcm_nandakumar2018", "sign"), ("pcm_nandakumar2018", "mixed_precision"),
                                          ("rram_gong2018", "sign"), ("rram_gong2018", "mixed_precision")])
def test_the_rule_trains_a_device_chip_through_a_pulsed_scheme(card, scheme):
    from neuroemu.chip import Hardware
    from neuroemu.hardware import Periphery
    from neuroemu.models.snn import SNN
    from neuroemu.rules.base import run_step
    from neuroemu.rules.surrogate import SurrogateBPTT

    s, y = _spiking_batch()
    chip = SNN(SpikingMLP([20, 16, 3], rng=4)).build(Hardware(card=card, scheme=scheme, periphery=Periphery()), rng=1)
    rule = SurrogateBPTT(0.05)
    rule.bind(chip)
    w0 = chip.weights()
    losses = [run_step(rule, chip, (s, y))["loss"] for _ in range(4)]
    assert all(np.isfinite(losses))
    assert chip.stats()["pulses"] > 0
    assert any(not np.array_equal(chip.weights()[k], w0[k]) for k in w0)


def test_the_rule_refuses_a_network_without_a_surrogate_gradient():
    from neuroemu.chip import Hardware
    from neuroemu.models.mlp import MLP
    from neuroemu.models.snn import SNN
    from neuroemu.rules.base import RuleError
    from neuroemu.rules.sparse import SparseBPTT
    from neuroemu.rules.surrogate import SurrogateBPTT

    with pytest.raises(RuleError, match="spiking"):
        SurrogateBPTT().bind(MLP([4, 3]).build(rng=0))
    with pytest.raises(RuleError, match="needs a SparseSNN"):
        SparseBPTT().bind(SNN(SpikingMLP([20, 3], rng=0)).build(Hardware.exact(), rng=0))


# ----------------------------------------------------------------------------- event-driven products
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.bool_, np.uint8])
def test_spike_events_matches_twin(dtype):
    from neuroemu._kernels import events as K
    from tests.reference import events as R

    rng = np.random.default_rng(3)
    x = (rng.random((37, 29)) < 0.1).astype(dtype)
    x[5] = 0  # an empty row
    got, want = K.spike_events(x), R.spike_events(x)
    assert all(np.array_equal(a, b) for a, b in zip(got[:2], want[:2])) and got[2] is want[2] is True
    assert got[0].dtype == np.int64 and got[1].dtype == np.int32
    if dtype in (np.float32, np.float64):
        y = x * rng.random(x.shape).astype(dtype)
        got, want = K.spike_events(y), R.spike_events(y)
        assert all(np.array_equal(a, b) for a, b in zip(got[:2], want[:2])) and got[2] is want[2] is False
    big = (rng.random((300, 40)) < 0.9).astype(dtype)  # past the first capacity of the index buffer
    assert np.array_equal(K.spike_events(big)[1], R.spike_events(big)[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_event_kernels_match_twins_and_the_dense_products(dtype):
    from neuroemu import threads
    from neuroemu._kernels import events as K
    from tests.reference import events as R

    rng = np.random.default_rng(4)
    s = (rng.random((50, 23)) < 0.15).astype(dtype)
    ptr, idx, _ = K.spike_events(s)
    w = rng.normal(0, 1, (9, 23)).astype(dtype)
    wt = np.ascontiguousarray(w.T)
    out = np.empty((50, 9), dtype)
    K.event_currents(ptr, idx, wt, out)
    assert np.array_equal(out, R.event_currents(ptr, idx, wt))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, s @ w.T, **tol)
    g = rng.normal(0, 1, (50, 9)).astype(dtype)
    for val in (np.empty(0, dtype), rng.random(len(idx)).astype(dtype)):
        res = []
        for n in (1, threads.available()):
            with threads.limit(n):
                res.append(K.event_outer(ptr, idx, val, g, 23))
        assert np.array_equal(res[0], res[1])  # the same at any thread count
        assert np.array_equal(res[0], R.event_outer(ptr, idx, val, g, 23))
        sv = s.copy()
        if len(val):
            sv[np.repeat(np.arange(50), np.diff(ptr)), idx] = val
        np.testing.assert_allclose(res[0], sv.T @ g, **tol)


def test_events_wrappers():
    from neuroemu.rules.surrogate import Events, event_currents, event_weight_grad, spike_events

    rng = np.random.default_rng(5)
    s = (rng.random((6, 4, 10)) < 0.3)
    ev = spike_events(s)
    assert isinstance(ev, Events) and ev.binary and ev.shape == s.shape and ev.nnz == s.sum()
    assert ev.nbytes == ev.ptr.nbytes + ev.idx.nbytes and np.array_equal(ev.to_dense(np.float64), s)
    w = rng.normal(0, 1, (3, 10))
    np.testing.assert_allclose(event_currents(ev, w), (s.reshape(24, 10) @ w.T).reshape(6, 4, 3), rtol=1e-12)
    g = rng.normal(0, 1, (24, 3))
    np.testing.assert_allclose(event_weight_grad(ev, g), g.T @ s.reshape(24, 10), rtol=1e-12)
    half = spike_events(s * 0.5)
    assert not half.binary and np.all(half.val == 0.5) and half.nbytes == ev.nbytes + half.val.nbytes
    np.testing.assert_allclose(event_weight_grad(half, g), 0.5 * g.T @ s.reshape(24, 10), rtol=1e-12)
    with pytest.raises(ValueError, match="spikes"):
        event_currents(half, w)
    with pytest.raises(ValueError, match="T, batch, n"):
        spike_events(s[0])


def test_forward_is_event_driven_and_agrees_with_the_dense_products():
    """A 0/1 input takes the event-driven products, another input the dense ones; both agree."""
    rng = np.random.default_rng(6)
    net = SpikingMLP([30, 20, 4], rng=1, dtype=np.float64)
    s = (rng.random((25, 5, 30)) < 0.2).astype(np.float64)
    labels = rng.integers(0, 4, 5)
    ev_fwd, dense_fwd = net.forward(s), net.forward(s, matmul=net.ideal_matmul)
    assert [e.binary for e in ev_fwd.events] == [True, True] and dense_fwd.events is None
    np.testing.assert_allclose(ev_fwd.logits, dense_fwd.logits, rtol=1e-12, atol=1e-12)
    for a, b in zip(net.loss_and_grads(s, labels)[2], net.loss_and_grads(s, labels, matmul=net.ideal_matmul)[2]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    graded = s * 0.7  # not spikes: the first layer takes the dense product, its gradient the values
    fwd = net.forward(graded)
    assert not fwd.events[0].binary and fwd.events[1].binary
    for a, b in zip(net.loss_and_grads(graded, labels)[2],
                    net.loss_and_grads(graded, labels, matmul=net.ideal_matmul)[2]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
