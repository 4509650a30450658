"""Recorder: device statistics of tiles during a run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from neuroemu.hardware.crossbar import Periphery, Tile
from neuroemu.record import Recorder, read_csv


def pcm_tile(seed=0):
    return Tile(3, 4, "pcm_nandakumar2018", n_devices=2, periphery=Periphery.ideal(), rng=seed)


def rows_refreshes(rec):
    return [r["fc.refreshes"] for r in rec.rows()]


def test_counts_match_tile_counters():
    rng = np.random.default_rng(0)
    tile = pcm_tile()
    other = Tile(2, 2, "linear_step", rng=1)
    rec = Recorder(bins=20)
    rec.observe(0, {"fc": tile, "out": other}, loss=1.5)
    for step in range(1, 4):
        tile.pulse(rng.integers(-3, 4, size=tile.shape))
        other.pulse(rng.integers(-5, 6, size=other.shape))
        if step == 2:
            tile.reset(np.eye(3, 4, dtype=bool))
            tile.write(np.full(tile.shape, 0.2), mask=np.eye(3, 4, k=1, dtype=bool))
        if step == 3:
            tile.pulse(np.full(tile.shape, 4))
            tile.pulse(np.full(tile.shape, -4))
            assert tile.refresh(high=3.0) > 0
        row = rec.observe(step, {"fc": tile, "out": other}, loss=1.0 / step)
        assert row["fc.pulses"] == tile.npulse.sum() > 0
        assert row["fc.pulses_mean"] == pytest.approx(tile.npulse.mean())
        assert row["fc.pulses_max"] == tile.npulse.max()
        assert row["fc.resets"] == tile.nreset.sum()
        assert row["fc.writes"] == tile.nwrite
        assert row["fc.refreshes"] == tile.n_refresh
        assert row["fc.energy_pJ"] == pytest.approx(tile.energy())
        assert row["out.pulses"] == other.npulse.sum()
    assert tile.n_refresh > 0 and rows_refreshes(rec) == [0, 0, 0, tile.n_refresh]
    rows = rec.rows()
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["fc.pulses"] == 0 and rows[0]["loss"] == 1.5
    assert rows[-1]["fc.energy_pJ"] == pytest.approx(tile.npulse.sum() * 0.675 + tile.nreset.sum() * 50.0)
    assert rows[2]["fc.resets"] == 2 * 2 * 3 and rows[2]["fc.writes"] == 3

    for name, t in (("fc", tile), ("out", other)):
        edges, steps, counts = rec.histograms(name)
        assert edges.shape == (21,) and counts.shape == (4, 20)
        assert edges[0] == t.prm.g_min and edges[-1] == t.prm.g_max
        assert list(steps) == [0, 1, 2, 3]
        assert np.all(counts.sum(axis=1) == t.g.size)
    # The last histogram is that of the tile's conductances now.
    edges, _, counts = rec.histograms("fc")
    expected, _ = np.histogram(np.clip(tile.conductances(), edges[0], edges[-1]), bins=edges)
    np.testing.assert_array_equal(counts[-1], expected)
    with pytest.raises(KeyError, match="nope"):
        rec.histograms("nope")


def test_saturation_fraction():
    tile = Tile(2, 5, "ideal", rng=0)  # g = 1 µS + w µS over [0, 2]
    w = np.array([[1.0, 0.99, 0.95, 0.0, -1.0], [1.2, 0.9, 0.5, 0.97, 0.0]])
    tile.write(w)
    row = Recorder().observe(0, {"t": tile})
    # within 2 % of the range (0.04 µS) below g_max: 1.0, 0.99, 1.2 (clipped), 0.97
    assert row["t.saturated"] == pytest.approx(4 / 10)
    assert row["t.g_mean_uS"] == pytest.approx(np.mean(1.0 + np.clip(w, -1, 1)))


def test_summary_is_json_and_matches_last_row():
    tile = pcm_tile()
    rec = Recorder()
    rec.observe(0, {"fc": tile})
    tile.pulse(np.ones(tile.shape, dtype=int))
    rec.observe(10, {"fc": tile}, acc=np.float32(0.5))
    s = json.loads(json.dumps(rec.summary()))
    assert s["fc"]["pulses"] == 12 == rec.rows()[-1]["fc.pulses"]
    assert s["fc"]["devices"] == tile.g.size == 48
    assert s["fc"]["snapshots"] == 2 and s["fc"]["last_step"] == 10
    assert s["fc"]["card"] == "pcm_nandakumar2018"
    assert isinstance(rec.rows()[-1]["acc"], float)


def test_csv_round_trip_and_atomic_write(tmp_path):
    tile = pcm_tile()
    rec = Recorder(bins=5)
    rec.observe(0, {"fc": tile}, loss=0.75)
    tile.pulse(np.full(tile.shape, 2))
    rec.observe(1, {"fc": tile}, test_accuracy=0.125)  # a different scalar: empty cells elsewhere
    path = tmp_path / "run" / "metrics.csv"
    path.parent.mkdir()
    path.write_text("old content")
    assert rec.write_csv(path) == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.csv"]  # no temporary left
    with open(path, newline="") as f:
        raw = list(csv.DictReader(f))
    assert raw[0]["test_accuracy"] == "" and raw[1]["loss"] == ""
    back = read_csv(path)
    assert len(back) == 2
    for got, want in zip(back, rec.rows()):
        assert got == want  # floats survive exactly
    assert list(raw[0]) == rec.columns()[: len(raw[0])]


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os

    from neuroemu.io import atomic_write_npz, atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        npz = atomic_write_npz(tmp_path / "b", {"w": np.zeros(3)})
    finally:
        os.umask(umask)
    assert npz.name == "b.npz" and np.load(npz)["w"].shape == (3,)
    for name in ("a.txt", "b.npz"):  # as open() would create them, not the 0600 of a temporary file
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def test_bad_input():
    tile = pcm_tile()
    with pytest.raises(ValueError, match="bins"):
        Recorder(bins=0)
    with pytest.raises(ValueError, match="tile name"):
        Recorder().observe(0, {"a.b": tile})
    with pytest.raises(TypeError, match="Tile"):
        Recorder().observe(0, {"a": np.zeros(3)})
    rec = Recorder()
    rec.observe(0, {"a": tile})
    with pytest.raises(ValueError, match="card changed"):
        rec.observe(1, {"b": tile, "a": Tile(1, 1, "ideal")})
    assert len(rec.rows()) == 1 and rec.tiles == ["a"]  # nothing recorded by the failed call
