"""Diverged runs are stopped, marked and left out of the means; progress lines come from inside a job;
the shared table cells say "diverged k/n"."""

import io
import json
import math

import numpy as np
import pytest

from neuroemu.cli import main
from neuroemu import divergence
from neuroemu.studies import tables
from neuroemu.progress import JobProgress
from neuroemu.hardware.schemes import PulseLimitWarning
from tests.test_cli import tiny_data, write_config  # noqa: F401 - the fixture


# ------------------------------------------------------------------------------------------ the criterion
def test_watch_marks_nan_and_blow_up():
    w = divergence.Watch("loss", 5.0)
    w.check(1, 2.0)  # the first value is the untrained network's: the reference
    assert w.reference == 2.0 and w.bound == 10.0
    w.check(1, 9.9)
    w.check(1, 50.0, bound=False)  # a batch: only NaN/inf counts
    with pytest.raises(divergence.Diverged) as exc:
        w.check(3, 10.5)
    assert exc.value.record == {"at": 3, "metric": "loss", "value": 10.5, "bound": 10.0}
    for bad, text in ((float("nan"), "nan"), (float("inf"), "inf")):
        with pytest.raises(divergence.Diverged) as exc:
            w.check(4, bad, bound=False, metric="batch loss")
        assert exc.value.record == {"at": 4, "metric": "batch loss", "value": text, "bound": None}
        json.dumps(exc.value.record, allow_nan=False)  # valid JSON
    assert w.test(5, 1.0) is None and w.test(5, 11.0)["value"] == 11.0
    fixed = divergence.Watch("read-out", 5.0, reference=math.log(10))
    assert fixed.test(1, 12.0)["bound"] == pytest.approx(5 * math.log(10))
    zero = divergence.Watch("loss", 5.0)
    zero.check(1, 0.0)
    zero.check(2, 1e9)  # a zero reference: no bound, only the NaN test
    with pytest.raises(ValueError, match="diverge_factor"):
        divergence.Watch("loss", 0.5)


def test_table_cells_say_diverged_k_of_n_and_mean_over_the_rest():
    results = [{"run": "a", "seed": 0, "test_acc": 0.8}, {"run": "a", "seed": 1, "test_acc": 0.6},
               {"run": "a", "seed": 2, "diverged": {"at": 2, "metric": "train_loss", "value": "nan", "bound": None}},
               {"run": "b", "seed": 0, "diverged": {"at": 1, "metric": "train_loss", "value": 30.0, "bound": 11.5}}]
    rows = []
    for name, rs, ok, seeds in tables.run_groups(results):
        row = {"run": name, **seeds}
        if ok:
            row["test_acc"], row["test_acc_std"] = tables.mean_std([r["test_acc"] for r in ok], 100)
        rows.append(row)
    a, b = rows
    assert (a["seeds"], a["diverged"], b["seeds"], b["diverged"]) == (3, 1, 1, 1)
    assert a["test_acc"] == pytest.approx(70.0)  # the diverged seed is not averaged in
    assert tables.status(a) == "diverged 1/3" and tables.status(b) == "diverged"
    assert tables.value_cell(a, "test_acc") == "70.00 ± 14.14 (diverged 1/3)"
    assert tables.value_cell(b, "test_acc") == "diverged" and tables.number(b, "test_acc", ".2f") == "–"
    lines = tables.console_table(rows, [("x", "x", ".1f")])
    assert lines[0].split()[-1] == "status"
    assert lines[1].split()[-2:] == ["diverged", "1/3"] and "70.00±14.14" in lines[1]
    assert lines[2].split()[1] == "diverged" and lines[2].split()[-1] == "diverged"
    assert "diverged: a, seed 2, at epoch 2: train_loss nan" in lines[3]
    assert "diverged: b, seed 0, at epoch 1: train_loss 30, above 11.5" in lines[4]
    assert divergence.jobs(results) == {"a@seed2": results[2]["diverged"], "b@seed0": results[3]["diverged"]}
    # no seed diverged: the table looks as it always did
    plain = [{"run": "c", "seeds": 2, "diverged": 0, "test_acc": 50.0, "test_acc_std": 1.0}]
    assert tables.console_table(plain, []) == ["run    test acc %", "c    50.00±1.00"]


# ------------------------------------------------------------------------------------------ crossbar_mlp
def test_crossbar_huge_learning_rate_is_marked_diverged(tmp_path, tiny_data, capsys):  # noqa: F811
    cfg = write_config(tmp_path / "cfg.yaml", tiny_data, seeds=[0, 1], train={"epochs": 3, "batch_size": 50, "lr": 1e6},
                       runs=[{"name": "fp32", "card": "ideal", "scheme": "ideal", "periphery": "ideal"},
                             {"card": "pcm_nandakumar2018", "scheme": "mixed_precision"}])
    out = tmp_path / "out"
    with pytest.warns(PulseLimitWarning) as caught:  # once per job, naming it
        assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert sorted(str(w.message).split("]")[0] for w in caught) == ["[pcm_nandakumar2018/mixed_precision@seed0",
                                                                    "[pcm_nandakumar2018/mixed_precision@seed1"]
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["diverged"]) == {"fp32@seed0", "fp32@seed1", "pcm_nandakumar2018/mixed_precision@seed0",
                                        "pcm_nandakumar2018/mixed_precision@seed1"}
    for d in summary["diverged"].values():  # the loss ran far above 5x the first batch's (ln 10 or so)
        assert d["at"] == 1 and d["metric"] == "train_loss" and d["value"] > d["bound"] > 5 * 2.0
    for row in summary["table"]:
        assert row["diverged"] == row["seeds"] == 2 and "test_acc" not in row
    assert [line.split()[1] for line in printed.splitlines()[1:3]] == ["diverged", "diverged"]
    text = (out / "RESULTS.md").read_text()
    assert "| fp32 | diverged |" in text and "* diverged: fp32, seed 0, at epoch 1: train_loss" in text
    assert summary["table"][1]["pulse_limit_hits"] > 0 and "pulse limit hit" in text and "pulse limit hit" in printed
    result = json.loads((out / "runs" / "fp32_seed0.json").read_text())["result"]
    assert len(result["metrics"]) == 0 and "test_acc" not in result  # stopped in the first epoch


def test_crossbar_some_seeds_diverge_the_rest_is_averaged(tmp_path, tiny_data, capsys):  # noqa: F811
    """lr 10 overshoots: the first epoch's loss is about 3.3x (seed 0) and 2.9x (seed 1) the first batch's."""
    cfg = write_config(tmp_path / "cfg.yaml", tiny_data, seeds=[0, 1], diverge_factor=3.1,
                       train={"epochs": 2, "batch_size": 50, "lr": 10.0},
                       runs=[{"name": "fp32", "card": "ideal", "scheme": "ideal", "periphery": "ideal"}])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    row = json.loads((out / "summary.json").read_text())["table"][0]
    kept = json.loads((out / "runs" / "fp32_seed1.json").read_text())["result"]
    assert row["diverged"] == 1 and list(row["diverged_seeds"]) == ["0"]
    assert row["test_acc"] == 100 * kept["test_acc"] and row["test_acc_std"] == 0.0
    assert printed.splitlines()[1].split()[-2:] == ["diverged", "1/2"]
    assert f"| fp32 | {100 * kept['test_acc']:.2f} (diverged 1/2) |" in (out / "RESULTS.md").read_text()


# ------------------------------------------------------------------------------------------ progress
def test_job_progress_is_throttled_and_silenced():
    now = [0.0]
    stream = io.StringIO()
    p = JobProgress("run@seed0", enabled=True, interval=15.0, clock=lambda: now[0], stream=stream)
    assert not p.due() and not p.log("update 1/9")
    now[0] = 16.0
    assert p.due() and p.log("update 5/9  nmse 0.41")
    now[0] = 20.0
    assert not p.log("update 6/9") and p.log("epoch 1/1", force=True)
    assert stream.getvalue().splitlines() == ["[run@seed0] update 5/9  nmse 0.41  (16 s)",
                                              "[run@seed0] epoch 1/1  (20 s)"]
    off = JobProgress("x", enabled=False, interval=0.0, stream=stream)
    assert not off.due() and not off.log("y", force=True)
    assert p.now() == 20.0 and not p.due(since=10.0) and p.due(since=5.0)


def test_an_epoch_longer_than_the_interval_always_gets_its_line(monkeypatch):
    """A batch line printed just before an epoch ends does not swallow the epoch's summary line;
    short epochs stay throttled. The clock is a counter: 4 s per reading."""
    from neuroemu import Hardware, Protocol, Trainer, train
    from neuroemu.data.classification import ClassificationTask
    from neuroemu.models.mlp import MLP
    from neuroemu.rules.backprop import Backprop

    t = [0.0]

    def clock():
        t[0] += 4.0
        return t[0]

    stream = io.StringIO()
    monkeypatch.setattr(train, "JobProgress", lambda job_id, enabled: JobProgress(
        job_id, enabled=True, interval=15.0, clock=clock, stream=stream))
    rng = np.random.default_rng(0)
    x = rng.random((120, 8)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(int)

    def lines(batch_size):
        stream.truncate(0)
        stream.seek(0)
        task = ClassificationTask(x, y, batch_size=batch_size, rng=1)
        chip = MLP([8, 4, 2]).build(Hardware.exact(), rng=0)
        Trainer(chip, Backprop(lr=0.1), task, Protocol(epochs=3), job_id="j").run()
        return [ln for ln in stream.getvalue().splitlines() if "batch" not in ln and "epoch" in ln]

    assert len(lines(10)) == 3  # 12 batches an epoch: each epoch is long, and batch lines are printed in it
    assert len(lines(120)) < 3  # one batch an epoch: short epochs are throttled


def test_job_progress_reads_the_environment(monkeypatch):
    monkeypatch.setenv("NEUROEMU_PROGRESS_S", "2.5")
    monkeypatch.setenv("NEUROEMU_QUIET", "1")
    p = JobProgress("j")
    assert p.interval == 2.5 and not p.enabled
    monkeypatch.setenv("NEUROEMU_QUIET", "0")
    assert JobProgress("j").enabled
    monkeypatch.setenv("NEUROEMU_PROGRESS_S", "soon")
    with pytest.raises(ValueError, match="NEUROEMU_PROGRESS_S"):
        JobProgress("j")


def test_progress_lines_come_from_inside_the_job(tmp_path, tiny_data, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("NEUROEMU_PROGRESS_S", "0")  # every batch and epoch
    monkeypatch.delenv("NEUROEMU_QUIET", raising=False)
    cfg = write_config(tmp_path / "cfg.yaml", tiny_data, runs=[{"name": "fp32", "card": "ideal", "scheme": "ideal"}])
    assert main(["run", str(cfg), "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err.splitlines()
    inside = [line for line in err if line.startswith("[fp32@seed0] ")]
    assert "[fp32@seed0] epoch 1/2  batch 1/6  loss" in inside[0]
    assert any(line.startswith("[fp32@seed0] epoch 2/2  loss ") and "test acc" in line for line in inside)
    finished = next(i for i, line in enumerate(err) if "finished fp32@seed0" in line)
    assert err.index(inside[-1]) < finished  # printed while the job ran, not after it
    assert main(["run", str(cfg), "--out", str(tmp_path / "b"), "--quiet"]) == 0  # the runner sets NEUROEMU_QUIET
    assert "[fp32@seed0]" not in capsys.readouterr().err
    monkeypatch.setenv("NEUROEMU_QUIET", "1")
    assert main(["run", str(cfg), "--out", str(tmp_path / "c")]) == 0
    assert "[fp32@seed0] epoch" not in capsys.readouterr().err


def test_divergence_option_is_checked(tmp_path, tiny_data, capsys):  # noqa: F811
    cfg = write_config(tmp_path / "cfg.yaml", tiny_data, diverge_factor=0.5)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "diverge_factor" in capsys.readouterr().err
    assert np.isfinite(divergence.LOSS_FACTOR) and divergence.NMSE_FACTOR > 300  # above the recorded sign-scheme runs
