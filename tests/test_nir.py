"""NIR import/export (neuroemu.interop.nir): each neuron node against its analytic solution, the
round trips of neuroemu's spiking networks through a .nir file, and a graph written with the nir API
on exact, PCM and analog hardware."""

import math
import subprocess
import sys

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from neuroemu.chip import Hardware  # noqa: E402
from neuroemu.errors import ConfigError  # noqa: E402
from neuroemu.interop import _dynamics as D  # noqa: E402
from neuroemu.interop.nir import from_nir, im2col, require_nir, to_nir  # noqa: E402

DT = 1e-3
T = 120


def single(node, n=1):
    return nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([n])), "neu": node,
                               "output": nir.Output(output_type=np.array([n]))},
                        edges=[("input", "neu"), ("neu", "output")])


def run(node, x, method="exact", **kw):
    model = from_nir(single(node, x.shape[2]), dt=DT, method=method, **kw)
    y, rec = model.build(Hardware.exact()).forward(x, record=True)
    return y, rec.membranes["neu"]


def const(val, n=1, steps=T):
    return np.full((steps, 1, n), float(val))


def times(steps=T):
    return (np.arange(steps) + 1) * DT  # step t ends at (t + 1)·dt


def vec(v, n=1):
    return np.full(n, float(v))


# ----------------------------------------------------------------------------- analytic solutions
@pytest.mark.parametrize("method,tol", [("exact", 1e-12), ("euler", None)])
def test_li_constant_input(method, tol):
    tau, r, vl, i = 20e-3, 1.5, -0.2, 0.8
    _, v = run(nir.LI(tau=vec(tau), r=vec(r), v_leak=vec(vl)), const(i), method)
    want = vl + r * i * (1 - np.exp(-times() / tau))
    err = np.abs(v[:, 0, 0] - want).max()
    if method == "exact":
        assert err < tol
    else:
        assert 1e-6 < err < r * i * DT / tau  # first order: visibly not exact, within O(dt/τ)


@pytest.mark.parametrize("method", ["exact", "euler"])
def test_lif_first_passage_and_reset_to_value(method):
    tau, r, i, vr = 20e-3, 1.0, 2.0, 0.3
    node = nir.LIF(tau=vec(tau), r=vec(r), v_leak=vec(0), v_threshold=vec(1), v_reset=vec(vr))
    z, v = run(node, const(i), method)
    s = int(np.argmax(z[:, 0, 0] > 0))
    t_star = -tau * math.log(1 - 1 / (r * i))  # v(t) = r I (1 − e^{−t/τ}) reaches 1
    if method == "exact":
        assert s * DT < t_star <= (s + 1) * DT
        np.testing.assert_allclose(v[:s + 1, 0, 0], r * i * (1 - np.exp(-times()[:s + 1] / tau)), rtol=0, atol=1e-12)
        a = math.exp(-DT / tau)
        assert abs(v[s + 1, 0, 0] - (vr * a + r * i * (1 - a))) < 1e-12  # the next step leaks from v_reset
    else:
        assert abs((s + 1) * DT - t_star) <= 2 * DT
        a = 1 - DT / tau
        assert abs(v[s + 1, 0, 0] - (vr * a + r * i * DT / tau)) < 1e-12


def test_lif_subtract_reset_from_metadata():
    tau, i = 20e-3, 2.0
    node = nir.LIF(tau=vec(tau), r=vec(1), v_leak=vec(0), v_threshold=vec(1), v_reset=vec(0),
                   metadata={"neuroemu": {"reset": "subtract"}})
    z, v = run(node, const(i))
    s = int(np.argmax(z[:, 0, 0] > 0))
    a = math.exp(-DT / tau)
    assert abs(v[s + 1, 0, 0] - (a * v[s, 0, 0] + i * (1 - a) - 1.0)) < 1e-12  # v_th subtracted, not leaked


@pytest.mark.parametrize("method", ["exact", "euler"])
def test_if_and_i_integrate(method):
    r, i = 2.0, 3.0
    _, v = run(nir.I(r=vec(r)), const(i), method)
    np.testing.assert_allclose(v[:, 0, 0], r * i * times(), rtol=1e-12)
    z, v = run(nir.IF(r=vec(r), v_threshold=vec(0.1), v_reset=vec(-0.05)), const(i), method)
    s = int(np.argmax(z[:, 0, 0] > 0))
    t_star = 0.1 / (r * i)
    assert s * DT < t_star + 1e-15 and t_star <= (s + 1) * DT
    assert abs(v[s + 1, 0, 0] - (-0.05 + r * i * DT)) < 1e-12


def cuba_step_response(t, tau_syn, tau_mem, r, w_in, s, v_leak=0.0):
    u = w_in * s
    if tau_syn == tau_mem:
        return v_leak + r * u * (1 - np.exp(-t / tau_mem) * (1 + t / tau_mem))
    return v_leak + r * u * (1 - (tau_syn * np.exp(-t / tau_syn) - tau_mem * np.exp(-t / tau_mem)) / (tau_syn - tau_mem))


@pytest.mark.parametrize("taus", [(5e-3, 20e-3), (20e-3, 5e-3), (10e-3, 10e-3)])
@pytest.mark.parametrize("method", ["exact", "euler"])
def test_cuba_li_step_response_hold(taus, method):
    ts, tm = taus
    r, w_in, s, vl = 1.3, 0.7, 2.0, 0.1
    _, v = run(nir.CubaLI(tau_syn=vec(ts), tau_mem=vec(tm), r=vec(r), v_leak=vec(vl), w_in=vec(w_in)), const(s), method)
    want = cuba_step_response(times(), ts, tm, r, w_in, s, vl)
    err = np.abs(v[:, 0, 0] - want).max()
    if method == "exact":
        assert err < 1e-12
    else:
        assert err < 2 * r * w_in * s * DT / min(ts, tm)


@pytest.mark.parametrize("method", ["exact", "euler"])
def test_cuba_lif_impulse_response_and_first_passage(method):
    ts, tm, r, w_in = 5e-3, 20e-3, 1.0, 3.0
    x = np.zeros((T, 1, 1))
    x[0] = 1.0  # one impulse of area dt at t = 0: I jumps by w_in dt / τ_syn
    node = nir.CubaLIF(tau_syn=vec(ts), tau_mem=vec(tm), r=vec(r), v_leak=vec(0), v_threshold=vec(1e9),
                       v_reset=vec(0), w_in=vec(w_in))
    _, v = run(node, x, method, synapse_input="impulse")
    t = times()
    want = r * w_in * DT / (ts - tm) * (np.exp(-t / ts) - np.exp(-t / tm))
    err = np.abs(v[:, 0, 0] - want).max()
    assert err < (1e-12 if method == "exact" else DT / ts * np.abs(want).max())  # euler: O(dt/τ)
    # first passage of the step response (hold): the first spike within one step of t*
    s_amp = 1.6
    node = nir.CubaLIF(tau_syn=vec(ts), tau_mem=vec(tm), r=vec(r), v_leak=vec(0), v_threshold=vec(1),
                       v_reset=vec(0), w_in=vec(1.0))
    z, _ = run(node, const(s_amp), method)
    lo, hi = 0.0, T * DT
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cuba_step_response(mid, ts, tm, r, 1.0, s_amp) < 1 else (lo, mid)
    k = int(np.argmax(z[:, 0, 0] > 0))
    if method == "exact":
        assert k * DT < hi <= (k + 1) * DT
    else:
        assert abs((k + 1) * DT - hi) <= 3 * DT


def test_threshold_and_scale_nodes():
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([3])), "sc": nir.Scale(scale=np.array([1., 2., 3.])),
                            "th": nir.Threshold(threshold=np.array([1.5, 1.5, 1.5])),
                            "output": nir.Output(output_type=np.array([3]))},
                     edges=[("input", "sc"), ("sc", "th"), ("th", "output")])
    y = from_nir(g, dt=DT).build().forward(np.ones((2, 1, 3)))
    np.testing.assert_array_equal(y[:, 0], [[0, 1, 1], [0, 1, 1]])


def test_refractory_metadata_ignores_input():
    node = nir.LIF(tau=vec(20e-3), r=vec(1), v_leak=vec(0), v_threshold=vec(1), v_reset=vec(0),
                   metadata={"neuroemu": {"refractory": 3 * DT, "refractory_mode": "ignore_input"}})
    z, v = run(node, const(50.0, steps=30))
    s = np.flatnonzero(z[:, 0, 0])
    assert np.all(np.diff(s) == 4)  # 3 refractory steps, the input back on the 4th
    np.testing.assert_array_equal(v[s[0] + 1: s[0] + 4, 0, 0], 0.0)  # leaking from v_reset = 0, no input


# ----------------------------------------------------------------------------- round trips
def roundtrip(graph, tmp_path, **kw):
    path = tmp_path / "net.nir"
    nir.write(path, graph)
    return from_nir(path, dt=DT, method="exact", **kw)


def test_sparse_snn_roundtrip(tmp_path):
    from neuroemu.models.snn import SNN
    from neuroemu.rules.sparse import SparseSNN, leaky_readout, lif_layer

    net = SparseSNN((12, 10, 8, 3), dt=DT, tau_mem=10e-3, tau_out=15e-3, rng=1, dtype=np.float64, reg=None)
    chip = SNN(net).build(Hardware.exact(), 0)
    g = to_nir(chip, dt=DT)
    assert g.nodes["lif1"].metadata["neuroemu"]["reset"] == "subtract"
    assert g.nodes["readout"].metadata["neuroemu"]["readout"] == "max_over_time"
    model = roundtrip(g, tmp_path)
    assert model.traits == {"feedforward", "spiking", "sequence"}
    x = (np.random.default_rng(2).random((60, 4, 12)) < 0.3).astype(np.float64)
    y, rec = model.build(Hardware.exact()).forward(x, record=True)
    s = x
    for k, w in enumerate(net.weights[:-1]):
        z, v = lif_layer(s @ w.T, net.beta)
        np.testing.assert_array_equal(rec.outputs[f"lif{k + 1}"], z)
        np.testing.assert_allclose(rec.membranes[f"lif{k + 1}"], v, rtol=0, atol=1e-12)
        s = z
    assert s.sum() > 0
    ro = leaky_readout(net.readout_scale * (s @ net.weights[-1].T), net.beta_out)  # the authors' read-out
    np.testing.assert_allclose(y, ro, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y.max(axis=0), chip.forward(x), rtol=0, atol=1e-12)


def test_spiking_mlp_roundtrip_with_refractory(tmp_path):
    from neuroemu.models.snn import SNN
    from neuroemu.rules.surrogate import SpikingMLP

    net = SpikingMLP((10, 9, 4), dt=DT, tau_mem=12e-3, tau_syn=4e-3, v_reset=-0.1, refractory_steps=2, rng=3,
                     dtype=np.float64, reg=None, init=3.0)
    chip = SNN(net).build(Hardware.exact(), 0)
    g = to_nir(chip, dt=DT)
    meta = g.nodes["lif1"].metadata["neuroemu"]
    assert meta["synapse_input"] == "impulse" and meta["refractory"] == pytest.approx(2 * DT)
    model = roundtrip(g, tmp_path)
    x = (np.random.default_rng(4).random((60, 3, 10)) < 0.3).astype(np.float64)
    y, rec = model.build(Hardware.exact()).forward(x, record=True)
    fwd = net.forward(x)
    assert fwd.spikes[0].sum() > 0
    np.testing.assert_array_equal(rec.outputs["lif1"], fwd.spikes[0])
    np.testing.assert_allclose(rec.membranes["lif1"], fwd.voltages[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(y, fwd.readout, rtol=0, atol=1e-12)


def test_rsnn_roundtrip_with_bias_and_refractory(tmp_path):
    from neuroemu.models.rsnn import RSNN

    rsnn = RSNN(5, 12, 2, {"n_ref": 1}, readout_bias=True)
    chip = rsnn.build(Hardware.ideal(w_max=10.0), 0)  # float64 tiles (RSNN reads its recurrent tile)
    chip["output"].bias[:] = [0.3, -0.2]
    g = to_nir(chip, dt=1e-3)
    assert ("recurrent", "lif") in g.edges and g.nodes["input"].weight.shape == (12, 5)
    model = roundtrip(g, tmp_path)
    assert "recurrent" in model.traits and model.back_edges == [("recurrent", "lif")]
    x = (np.random.default_rng(5).random((50, 3, 5)) < 0.2).astype(np.float64)
    trace, y_ref = chip.forward(x)
    y, rec = model.build(Hardware.exact()).forward(x, record=True)
    assert trace.z.sum() > 0
    np.testing.assert_array_equal(rec.outputs["lif"], trace.z)
    # the RSNN reads its input tile with spikes in float32 (the tile's spike path): ~1e-7 apart
    np.testing.assert_allclose(rec.membranes["lif"], trace.v, rtol=0, atol=1e-5)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-5)


def test_rsnn_with_alif_is_refused():
    from neuroemu.models.rsnn import RSNN

    chip = RSNN(3, 4, 2, {"n_alif": 2}).build(Hardware.exact(), 0)
    with pytest.raises(ConfigError, match="ALIF"):
        to_nir(chip, dt=1e-3)


# ----------------------------------------------------------------------------- a graph of the nir API
def cuba_rnn(seed=0):
    rng = np.random.default_rng(seed)
    n_in, n_h, n_out = 3, 6, 2
    nodes = {
        "input": nir.Input(input_type=np.array([n_in])),
        "fc1": nir.Affine(weight=rng.normal(0, 1, (n_h, n_in)), bias=np.full(n_h, 0.1)),
        "lif1": nir.CubaLIF(tau_syn=np.full(n_h, 5e-3), tau_mem=np.full(n_h, 10e-3), r=np.full(n_h, 2.0),
                            v_leak=np.zeros(n_h), v_threshold=np.ones(n_h), v_reset=np.zeros(n_h), w_in=np.ones(n_h)),
        "rec": nir.Affine(weight=rng.normal(0, 0.5, (n_h, n_h)), bias=np.zeros(n_h)),
        "fc2": nir.Affine(weight=rng.normal(0, 2, (n_out, n_h)), bias=np.zeros(n_out)),
        "lif2": nir.LIF(tau=np.full(n_out, 20e-3), r=np.full(n_out, 5.0), v_leak=np.zeros(n_out),
                        v_threshold=np.ones(n_out)),
        "output": nir.Output(output_type=np.array([n_out])),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def cuba_input(seed=7):
    return (np.random.default_rng(seed).random((80, 4, 3)) < 0.4) * 3.0


def test_nir_api_graph_on_exact_pcm_and_analog(tmp_path):
    model = roundtrip(cuba_rnn(), tmp_path)
    assert "recurrent" in model.traits
    assert [s.name for s in model.layers()] == ["fc1", "rec", "fc2"]
    x = cuba_input()
    y, rec = model.build(Hardware.exact()).forward(x, record=True)
    assert y.shape == (80, 4, 2) and rec.outputs["lif1"].sum() > 0 and y.sum() > 0
    # the recurrent edge delivers last step's spikes: lif1's input is fc1(t) + rec(t − 1)
    neu = model.nodes["lif1"].neurons.params
    st = D.initial_state(neu, 4, (6,))
    for t in range(80):
        drive = rec.outputs["fc1"][t] + (rec.outputs["rec"][t - 1] if t else 0.0)
        z, _, st = D.neuron_step(neu, st, drive)
        np.testing.assert_array_equal(z, rec.outputs["lif1"][t])
    pcm = model.build(Hardware(card="pcm_joshi2020", scheme="ideal"), 0)
    assert pcm["fc1"].tile is not None and pcm["fc1"].bias is not None
    y_pcm, rec_pcm = pcm.forward(x, record=True)
    c_ex, c_pcm = rec.outputs["lif1"].sum(), rec_pcm.outputs["lif1"].sum()
    assert abs(c_pcm - c_ex) < 0.3 * c_ex  # programming and read noise: close, not equal
    for calibrated in (True, False):
        analog = roundtrip(cuba_rnn(), tmp_path, neurons="analog", calibrated=calibrated, rng=1)
        ya, rec_a = analog.build(Hardware.exact()).forward(x, record=True, rng=2)
        assert rec_a.outputs["lif1"].sum() > 0 and set(np.unique(ya)) <= {0.0, 1.0}


def test_analog_neurons_follow_ideal_impulse_neurons_when_calibrated():
    """A CubaLIF read as impulses is exactly the chip's neuron; the calibrated chip (mismatch
    trimmed, noise left) spikes about as the ideal one."""
    n = 40
    node = nir.CubaLIF(tau_syn=vec(5e-3, n), tau_mem=vec(10e-3, n), r=vec(1.0, n), v_leak=vec(0, n),
                       v_threshold=vec(1, n), v_reset=vec(0, n), w_in=vec(5e-3 / DT, n))
    x = (np.random.default_rng(0).random((200, 2, n)) < 0.3) * 0.6
    g = single(node, n)
    ideal = from_nir(g, dt=DT, synapse_input="impulse").build().forward(x).sum()
    analog = from_nir(g, dt=DT, synapse_input="impulse", neurons="analog", rng=3).build().forward(x, rng=4).sum()
    assert ideal > 100 and abs(analog - ideal) < 0.25 * ideal


def test_analog_refuses_what_the_chip_cannot_do():
    sub = nir.LIF(tau=vec(20e-3), r=vec(1), v_leak=vec(0), v_threshold=vec(1), v_reset=vec(0),
                  metadata={"neuroemu": {"reset": "subtract"}})
    with pytest.raises(ConfigError, match="'neu'.*subtract"):
        from_nir(single(sub), dt=DT, neurons="analog")
    slow = nir.LIF(tau=vec(20.0), r=vec(1), v_leak=vec(0), v_threshold=vec(1), v_reset=vec(0))
    with pytest.raises(ConfigError, match="'neu'.*tau_mem"):
        from_nir(single(slow), dt=DT, neurons="analog")


def test_export_of_imported_graph_keeps_nodes_and_parameters(tmp_path):
    g = cuba_rnn()
    model = from_nir(g, dt=DT)
    chip = model.build(Hardware.ideal(w_max=4.0), 0)
    back = to_nir(chip, dt=DT)
    assert set(back.nodes) == set(g.nodes) and sorted(back.edges) == sorted(g.edges)
    for name, node in g.nodes.items():
        assert type(back.nodes[name]) is type(node)
        for f in ("tau_syn", "tau_mem", "tau", "r", "v_leak", "v_threshold", "v_reset", "w_in", "weight", "bias"):
            if hasattr(node, f):
                np.testing.assert_allclose(getattr(back.nodes[name], f), getattr(node, f), rtol=1e-9, atol=1e-9)
    assert back.nodes["fc1"].metadata["neuroemu"]["card"] == "ideal"
    again = roundtrip(back, tmp_path)
    hint = again.hardware_hint()
    assert hint is not None and hint.card.name == "ideal" and hint.w_max == 4.0


# ----------------------------------------------------------------------------- convolution, errors
def test_im2col_matches_nn_patches():
    from neuroemu.nn import patches

    x = np.random.default_rng(0).normal(size=(2, 3, 7, 6))
    np.testing.assert_array_equal(im2col(x, (3, 3), (2, 2), (1, 1)), patches(x, 3, 2, 1))


def test_conv_pool_flatten_graph():
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2)
    fc = rng.normal(size=(3, 2 * 3 * 3))
    nodes = {"input": nir.Input(input_type=np.array([1, 6, 6])),
             "conv": nir.Conv2d(input_shape=(6, 6), weight=w, stride=1, padding=1, dilation=1, groups=1, bias=b),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type=None, start_dim=0),
             "fc": nir.Linear(weight=fc),
             "li": nir.LI(tau=vec(10e-3, 3), r=vec(1, 3), v_leak=vec(0, 3)),
             "output": nir.Output(output_type=np.array([3]))}
    edges = [("input", "conv"), ("conv", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "li"), ("li", "output")]
    model = from_nir(nir.NIRGraph(nodes=nodes, edges=edges), dt=DT)
    assert model.layers()[0].n_in == 9
    x = rng.normal(size=(3, 2, 1, 6, 6))
    _, rec = model.build().forward(x, record=True)
    xp = np.pad(x, ((0, 0), (0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((3, 2, 2, 6, 6))
    for i in range(6):
        for j in range(6):
            conv[..., i, j] = np.einsum("tbckl,ockl->tbo", xp[..., i:i + 3, j:j + 3], w) + b
    np.testing.assert_allclose(rec.outputs["conv"], conv, atol=1e-12)
    pooled = conv.reshape(3, 2, 2, 3, 2, 3, 2).sum(axis=(4, 6))
    np.testing.assert_allclose(rec.outputs["fc"], pooled.reshape(3, 2, -1) @ fc.T, atol=1e-12)


def test_unsupported_node_and_bad_metadata_are_named():
    g = single(nir.Delay(delay=vec(1e-3)))
    with pytest.raises(ConfigError, match="'neu'.*Delay"):
        from_nir(g, dt=DT)
    bad = nir.LIF(tau=vec(1e-2), r=vec(1), v_leak=vec(0), v_threshold=vec(1), v_reset=vec(0),
                  metadata={"neuroemu": {"reset": "zero"}})
    with pytest.raises(ConfigError, match="'neu'.*reset"):
        from_nir(single(bad), dt=DT)
    with pytest.raises(ConfigError, match="'neu'.*tau"):
        from_nir(single(nir.LI(tau=vec(0.0), r=vec(1), v_leak=vec(0))), dt=DT)


def test_missing_nir_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(ImportError, match=r"pip install 'neuroemu\[nir\]'"):
        require_nir()


def test_importing_neuroemu_does_not_import_nir():
    code = "import sys, neuroemu, neuroemu.interop.nir; print('nir' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cuba_k_equal_time_constants_limit():
    k_eq = D.cuba_k(1e-3, np.float64(1e-2), np.float64(1e-2))
    assert abs(k_eq - 0.1 * math.exp(-0.1)) < 1e-15
    assert abs(D.cuba_k(1e-3, np.float64(1e-2), np.float64(1e-2 * (1 + 1e-10))) - k_eq) < 1e-12


def test_a_spiking_layer_stack_round_trips(tmp_path):
    """SpikingLayer stacks (any tile, ideal neurons) export as Linear + CubaLIF pairs that import
    back to the same spikes and read-out on an exact chip."""
    from neuroemu.hardware.crossbar import Periphery, Tile
    from neuroemu.hardware.substrate import IdealNeurons, SpikingLayer

    nir = pytest.importorskip("nir")
    g = np.random.default_rng(3)
    dt = 1e-6
    layers = []
    for n_out, n_in, spiking in ((7, 5, True), (3, 7, False)):
        tile = Tile(n_out, n_in, "ideal", w_max=4.0, periphery=Periphery.ideal(), rng=0)
        tile.write(g.normal(0, 1.2, (n_out, n_in)))
        neurons = IdealNeurons(n_out, dt=dt, tau_mem=10e-6, tau_syn=5e-6, v_reset=-0.1, refractory=2e-6)
        layers.append(SpikingLayer(tile, neurons, spiking=spiking))
    x = (g.random((40, 4, 5)) < 0.3).astype(np.float64)
    z1, _ = layers[0](x)
    _, v2 = layers[1](z1)
    path = tmp_path / "stack.nir"
    nir.write(str(path), to_nir(layers, dt=dt))
    model = from_nir(str(path), dt=dt)
    chip = model.build(Hardware.exact(), rng=0)
    y, rec = model.forward(chip, x, record=True)
    np.testing.assert_array_equal(rec.outputs["neurons1"], z1)
    # the tile reads and the substrate run in float32, the import in float64
    np.testing.assert_allclose(rec.membranes["neurons2"], v2, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="SpikingLayer"):
        to_nir([object()], dt=dt)
