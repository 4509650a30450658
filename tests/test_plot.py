"""Plots: compute_* / plot_* pairs, the device figures of every shipped card and the studies' figures."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from neuroemu import plot  # noqa: E402
from neuroemu.hardware.cards import list_cards  # noqa: E402
from neuroemu.hardware.crossbar import Tile  # noqa: E402
from neuroemu.record import Recorder, read_csv  # noqa: E402

PCM = "pcm_nandakumar2018"


def new_ax():
    fig = Figure()
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def test_pulse_response_plot():
    data = plot.compute_pulse_response(PCM, pulses=6, devices=50)
    ax = new_ax()
    assert plot.plot_pulse_response(data, ax=ax) is ax
    x, y = ax.lines[0].get_data()
    np.testing.assert_array_equal(x, np.arange(7))
    np.testing.assert_allclose(y[1:], data["mean"])
    assert "µS" in ax.get_ylabel() and ax.get_xlabel() == "pulse number"
    # a second curve on the same axes
    down = plot.compute_pulse_response("linear_step", pulses=6, devices=20, direction="down")
    plot.plot_pulse_response(down, ax=ax, bounds=False)
    assert len([ln for ln in ax.lines if len(ln.get_xdata()) == 7]) == 2


def test_drift_read_noise_and_programming_plots():
    ax = new_ax()
    d = plot.compute_drift(PCM, devices=20)
    assert len(d["g0"]) == 4 and min(d["times"]) == 1.0
    assert plot.plot_drift(d, ax=ax) is ax
    assert ax.get_xscale() == "log" and len(ax.lines) == 4 and "(s)" in ax.get_xlabel()

    ax = new_ax()
    r = plot.compute_read_noise(PCM, reads=200)
    assert plot.plot_read_noise(r, ax=ax) is ax
    assert len(ax.lines) == 2  # measured + card law
    assert "µS" in ax.get_xlabel() and "µS" in ax.get_ylabel()

    ax = new_ax()
    p = plot.compute_programmed_vs_target("quantized", seed=1)
    assert len(p["target"]) == 400 and max(p["target"]) > 1.0  # past the bound, to show clipping
    assert plot.plot_programmed_vs_target(p, ax=ax) is ax
    assert len(ax.collections) == 1 and len(ax.lines) == 1  # scatter + identity


def test_conductance_histograms_from_tiles_and_recorder():
    tile = Tile(4, 5, PCM, rng=0)
    snaps = {"reset": tile.conductances().copy()}
    tile.pulse(np.ones(tile.shape, dtype=int))
    snaps["1 pulse"] = tile
    d = plot.compute_conductance_histograms(snaps, bins=12, g_range=(0.1, 12.0))
    assert d["labels"] == ["reset", "1 pulse"] and all(sum(c) == 40 for c in d["counts"])
    ax = new_ax()
    assert plot.plot_conductance_histograms(d, ax=ax, density=True) is ax
    assert ax.get_ylabel() == "fraction of devices"

    rec = Recorder(bins=8)
    for step in range(7):
        rec.observe(step, {"fc": tile})
        tile.pulse(np.ones(tile.shape, dtype=int))
    h = plot.histograms_from_recorder(rec, "fc")
    assert h["labels"][0] == "step 0" and h["labels"][-1] == "step 6" and len(h["labels"]) == 5
    h = plot.histograms_from_recorder(rec, "fc", steps=[2, 5])
    assert h["labels"] == ["step 2", "step 5"]
    assert plot.plot_conductance_histograms(h, ax=new_ax()).get_ylabel() == "devices (count)"
    with pytest.raises(ValueError, match="not observed"):
        plot.histograms_from_recorder(rec, "fc", steps=[99])


def test_accuracy_bars():
    rows = [
        {"card": "ideal", "scheme": "sign", "accuracy": 0.80, "seed": 0},
        {"card": "ideal", "scheme": "sign", "accuracy": 0.90, "seed": 1},
        {"card": "ideal", "scheme": "mixed", "accuracy": 0.95, "seed": 0},
        {"card": PCM, "scheme": "mixed", "accuracy": 0.70, "seed": 0},
    ]
    data = plot.compute_accuracy_bars(rows)
    assert data["groups"] == ["ideal", PCM] and data["hues"] == ["sign", "mixed"]
    assert data["mean"][0][0] == pytest.approx(0.85) and data["std"][0][0] == pytest.approx(0.05)
    assert np.isnan(data["mean"][1][0]) and data["n"][1][0] == 0
    ax = new_ax()
    assert plot.plot_accuracy_bars(rows, ax=ax) is ax
    heights = sorted(p.get_height() for p in ax.patches if np.isfinite(p.get_height()))
    np.testing.assert_allclose(heights, [70, 85, 95])
    assert ax.get_ylabel() == "accuracy (%)"
    assert plot.plot_accuracy_bars(data, ax=new_ax(), percent=False).get_ylabel() == "accuracy (fraction)"
    with pytest.raises(ValueError, match="missing field 'scheme'"):
        plot.compute_accuracy_bars([{"card": "x", "accuracy": 1.0}])


def test_learning_curves_from_metrics_csv(tmp_path):
    rows = [{"run": run, "epoch": e, "test_accuracy": 0.5 + 0.1 * e * (1 + k)}
            for k, run in enumerate(["a", "b"]) for e in (2, 0, 1)]
    rows.append({"run": "a", "epoch": 3, "loss": 0.1})  # no test accuracy: skipped
    d = plot.compute_learning_curves(rows)
    assert list(d["runs"]) == ["a", "b"]
    assert d["runs"]["a"]["x"] == [0, 1, 2] and d["runs"]["b"]["y"] == pytest.approx([0.5, 0.7, 0.9])
    ax = new_ax()
    assert plot.plot_learning_curves(rows, ax=ax) is ax
    assert len(ax.lines) == 2 and ax.get_xlabel() == "epoch" and ax.get_ylabel() == "test accuracy (%)"

    rec = Recorder()
    tile = Tile(1, 1, "ideal")
    for epoch in range(3):
        rec.observe(epoch, {"w": tile}, epoch=epoch, test_accuracy=0.2 * epoch)
    rec.write_csv(tmp_path / "metrics.csv")
    ax = plot.plot_learning_curves(read_csv(tmp_path / "metrics.csv"), ax=new_ax())
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0, 20, 40])


def test_conductance_histogram_panel_names_its_steps():
    import functools

    result = {"g_hist": {"edges": [0.0, 1.0, 2.0], "steps": [0, 100, 250], "counts": [[3, 1], [2, 2], [1, 3]]}}
    ax = new_ax()
    functools.partial(plot._draw_g_hist, step_label="update")(ax, result)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["update 0", "update 250"]
    ax = new_ax()
    plot._draw_g_hist(ax, result)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["epoch 0", "epoch 250"]


def test_plot_without_ax_uses_pyplot():
    plt = pytest.importorskip("matplotlib.pyplot")
    ax = plot.plot_read_noise(plot.compute_read_noise("ideal", reads=5))
    try:
        assert isinstance(ax, Axes)
    finally:
        plt.close(ax.figure)


def test_citation_short_forms():
    assert plot.citation_short(PCM) == "Nandakumar et al. 2018"
    assert plot.citation_short("linear_step") == "Gokmen & Vlasov 2016"
    assert plot.citation_short("pcm_joshi2020") == "Joshi et al. 2020"
    assert plot.citation_short("ideal") == "Floating-point reference"


def test_device_figures_for_every_card(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    figs_before = plt.get_fignums()
    rc_before = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    cards = list_cards()
    assert len(cards) >= 6
    for name in cards:
        paths = plot.device_figures(name, tmp_path / name, seed=0, devices=100, dpi=50)
        kinds = {p.stem.removeprefix(name + "_") for p in paths}
        expected = {"drift", "read_noise", "programmed_vs_target"}
        if name != "pcm_joshi2020":
            expected.add("pulse_response")
        if name == "brainscales2":  # an analog chip: neuron and MAC figures
            expected = {"calibration", "mac_transfer", "membrane_traces", "raster"}
        assert kinds == expected
        for p in paths:
            assert p.parent == tmp_path / name and p.stat().st_size > 1000
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert sorted(q.name for q in (tmp_path / name).iterdir()) == sorted(p.name for p in paths)
    assert plt.get_fignums() == figs_before
    assert dict(matplotlib.rcParams) == rc_before
    assert matplotlib.get_backend() == backend


def test_chip_plots_show_what_they_claim():
    from neuroemu.hardware.cards import load_card

    rep = plot.compute_calibration("brainscales2", n=64, seed=1)
    assert all(r < 0.3 for r in rep.ratio().values())
    ax = plot.plot_calibration(rep, "tau_mem")
    assert "calibrated" in ax.get_legend().get_texts()[1].get_text()
    mac = plot.compute_mac_transfer(samples=400, seed=0)
    lo, hi = mac["range"]
    assert mac["out"].min() == lo and mac["out"].max() == hi  # the sweep reaches both saturations
    linear = np.abs(mac["ideal"]) < 60
    assert np.std(mac["out"][linear] - mac["noise_free"][linear]) == pytest.approx(2.0, rel=0.2)
    plot.plot_mac_transfer(mac)
    tr = plot.compute_membrane_traces(load_card("brainscales2"), n=3, steps=100, seed=0)
    assert set(tr) >= {"ideal", "uncalibrated", "calibrated"}
    # calibration brings the neurons' firing toward the ideal neuron's
    z_ideal = tr["ideal"][0].sum(axis=0)
    err = {k: np.abs(tr[k][0].sum(axis=0) - z_ideal).mean() for k in ("uncalibrated", "calibrated")}
    assert err["calibrated"] <= err["uncalibrated"]
    plot.plot_membrane_traces(tr, "calibrated")
    plot.plot_raster(tr, "uncalibrated")
    import matplotlib.pyplot as plt

    plt.close("all")


# ---------------------------------------------------------------------------------------- study figures
def test_crossbar_mlp_experiment_figures(tmp_path):
    from neuroemu.studies.crossbar_mlp.figures import experiment_figures

    plt = pytest.importorskip("matplotlib.pyplot")
    figs_before = plt.get_fignums()
    rows = [{"run": f"r{i}", "test_acc": 80.0 + i, "acc_after_3600s": 78.0 + i, "pulses_per_synapse": 10.0 ** i,
             "energy_uJ": 2.0 + i} for i in range(2)]
    metrics = [{"run": f"r{i}", "epoch": e, "test_acc": 50.0 + 10 * e} for i in range(2) for e in range(2)]
    results = [{"run": f"r{i}", "seed": 0, "g_hist": {"edges": [0.0, 1.0, 2.0], "counts": [[1, 2], [2, 1]]},
                "pulse_hist": {"edges": [0.0, 1.0, 10.0], "counts": [3, 1]}} for i in range(2)]
    paths = experiment_figures(rows, metrics, results, [3600.0], tmp_path / "figs")
    assert [p.name for p in paths] == ["accuracy.png", "learning_curves.png", "pulses_energy.png",
                                       "conductances.png", "pulses_per_device.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    assert plt.get_fignums() == figs_before
