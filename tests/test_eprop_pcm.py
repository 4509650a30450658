"""The e-prop-on-PCM experiment end to end on a tiny network, its reproducibility and its errors."""

import json
import math

import numpy as np
import pytest
import yaml

from neuroemu.cli import main
from neuroemu.studies import eprop_pcm


def config(path, **extra):
    cfg = {
        "experiment": "eprop_pcm", "seeds": [0, 1], "workers": 1,
        "task": {"n_in": 20, "t_steps": 200},
        "model": {"n_rec": 20, "init": "kaiming", "readout_bias": True},  # learns in 30 updates of 0.2 s
        "train": {"updates": 30, "lr": 2e-5, "lr_out": 1e-3, "eval_every": 10},
        "hardware": {"w_max": 0.3},
        "eval": {"delays": [3600]},
        "runs": [{"name": "fp32", "card": "ideal", "scheme": "ideal", "exact_reads": True},
                 {"card": "pcm_nandakumar2018", "scheme": "mixed_precision", "scheme_params": {"refresh_every": 5}},
                 {"card": "pcm_nandakumar2018", "scheme": "sign"}],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_eprop_pcm_end_to_end_and_reproducible(tmp_path, capsys):
    cfg = config(tmp_path / "cfg.yaml")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "final NMSE" in printed and "mixed_precision" in printed
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["run"]: r for r in summary["table"]}
    assert set(rows) == {"fp32", "pcm_nandakumar2018/mixed_precision", "pcm_nandakumar2018/sign"}
    assert rows["fp32"]["pulses_per_synapse"] == 0
    assert rows["pcm_nandakumar2018/mixed_precision"]["pulses_per_synapse"] > 0
    for name in ("learning_curves", "final_error", "patterns", "conductances", "pulses_per_device", "drift"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    text = (out / "RESULTS.md").read_text()
    assert "after 1 h" in text and "fp32" in text
    # learning happened in float: the error after training is below the first recorded one
    runs = {p.stem: json.loads(p.read_text())["result"] for p in (out / "runs").glob("*.json")}
    fp = runs["fp32_seed0"]
    assert fp["final"] < fp["curve"][0]["nmse"]
    # operations per update (a sequence task: no per-inference batch)
    pcm = runs["pcm_nandakumar2018_mixed_precision_seed0"]["ops"]
    assert pcm["updates"] == 30 and pcm["energy_per_update_pJ"]["total"] > 0 and "per_inference" not in pcm
    assert pcm["energy_per_update_pJ"]["pulses"] > 0 and fp["ops"]["energy_per_update_pJ"]["pulses"] == 0
    assert "## Operations and energy" in text and len(summary["energy"]) == 3
    assert [len(t) for t in fp["target"]] == [200] * 3 and len(fp["curve"]) == 3  # three patterns
    # same seed, same chip, same numbers: the whole study again from scratch
    again = tmp_path / "again"
    assert main(["run", str(cfg), "--out", str(again), "--quiet"]) == 0
    s2 = json.loads((again / "summary.json").read_text())
    assert [r["final"] for r in s2["table"]] == [r["final"] for r in summary["table"]]


def test_chip_excludes_autapses_and_reads_with_noise():
    from neuroemu.config import validate
    from neuroemu.data import tasks
    from neuroemu.rules.base import run_step

    cfg = validate(yaml.safe_load(config_text()), eprop_pcm.SCHEMA, "t")
    cfg = eprop_pcm.check(cfg, "t")
    job = eprop_pcm.jobs(cfg)[1]  # the PCM run
    job = {**job, "train": {**job["train"], "lr": 1e-2}}
    task = tasks.pattern_generation(n_in=20, t_steps=200, rng=0)
    chip, rule = eprop_pcm.network(job, 20, 1, np.random.default_rng(0))
    rule.bind(chip)
    before = chip["recurrent"].weights()
    measured = run_step(rule, chip, task)
    assert measured["nmse"] > 0 and measured["rate_hz"] >= 0 and measured["y"].shape == (200, 1, 1)
    after = chip["recurrent"].weights()
    np.testing.assert_array_equal(np.diag(after), np.diag(before))  # the diagonal is never programmed
    assert np.any(after != before)
    t1, y1 = chip.forward(task.x)
    t2, y2 = chip.forward(task.x)
    assert not np.array_equal(y1, y2)  # every read is a new noisy read


def config_text():
    return yaml.safe_dump({
        "experiment": "eprop_pcm", "seeds": [0], "task": {"n_in": 20, "t_steps": 200}, "model": {"n_rec": 20},
        "runs": [{"card": "ideal", "scheme": "ideal"},
                 {"card": "pcm_nandakumar2018", "scheme": "stochastic"}]})


@pytest.mark.parametrize("run, fragment", [
    ({"card": "pcm_nandakumar2018", "scheme": "stochastic_coincidence"}, "sum over time"),
    ({"card": "pcm_nandakumar2018", "scheme": "tikitaka"}, "got 'tikitaka' (did you mean 'tiki_taka'?)"),
    ({"card": "pcm_nandakumar2019", "scheme": "sign"}, "no such device card"),
    ({"card": "pcm_joshi2020", "scheme": "sign"}, "programmed by target"),
])
def test_eprop_pcm_config_errors(tmp_path, capsys, run, fragment):
    cfg = config(tmp_path / "cfg.yaml", runs=[run])
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and str(cfg) in err and len(err.strip().splitlines()) == 1


def test_a_typo_in_the_scheme_is_not_blamed_on_e_prop(tmp_path, capsys):
    cfg = config(tmp_path / "cfg.yaml", runs=[{"card": "pcm_nandakumar2018", "scheme": "tikitaka"}])
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert "sum over time" not in capsys.readouterr().err


def test_an_edited_card_is_not_served_from_old_results(tmp_path, capsys):
    from neuroemu.hardware.cards import cards_dir

    card = tmp_path / "my_step.yaml"
    card.write_text((cards_dir() / "linear_step.yaml").read_text().replace("name: linear_step", "name: my_step"))
    cfg = config(tmp_path / "cfg.yaml", seeds=[0], train={"updates": 2, "lr": 2e-5, "eval_every": 1},
                 eval={"delays": []}, runs=[{"card": str(card), "scheme": "mixed_precision"}])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    card.write_text(card.read_text().replace("dw_min: 0.001", "dw_min: 0.002"))
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "card_data.parameters.dw_min" in err and "--overwrite" in err, err


def test_evidence_accumulation_with_alif_runs(tmp_path, capsys):
    cfg = config(tmp_path / "cfg.yaml", seeds=[0],
                 task={"name": "evidence_accumulation", "n_in": 8, "batch": 2},
                 model={"n_rec": 12, "n_alif": 6},
                 train={"updates": 2, "lr": 1e-4, "eval_every": 1}, eval={"delays": [], "trials": 4},
                 runs=[{"name": "fp32", "card": "ideal", "scheme": "ideal", "exact_reads": True},
                       {"card": "pcm_nandakumar2018", "scheme": "mixed_precision"}])
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "accuracy" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert all(0.0 <= r["final"] <= 1.0 and r["metric"] == "accuracy" for r in summary["table"])
    # the report explains accuracy, and lists only the chip-side differences from Demirag et al.'s code
    text = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "Accuracy = the fraction of the test trials" in text and "NMSE =" not in text
    assert "Bellec et al.'s evidence-accumulation code" in text and "**Read noise**" in text
    assert "**Initial weights**" not in text and "This configuration" not in text


def test_the_evidence_config_follows_bellec_et_al():
    """examples/eprop_pcm/evidence.yaml: the network, time constants and adaptation of Bellec et al.'s
    evidence-accumulation code, every run tuned by the same search on seeds it is not scored on."""
    from pathlib import Path

    from neuroemu.studies import resolve

    root = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((root / "examples/eprop_pcm/evidence.yaml").read_text())
    _, cfg = resolve(root / "examples/eprop_pcm/evidence.yaml")
    t, m = cfg["task"], cfg["model"]
    assert (t["name"], t["n_in"], m["n_rec"], m["n_alif"], m["n_ref"]) == ("evidence_accumulation", 40, 100, 50, 5)
    assert (m["tau_m"], m["tau_out"], m["tau_a"], m["v_th"], m["f_target"]) == (0.02, 0.02, 2.0, 0.6, 10.0)
    rule = eprop_pcm._config(eprop_pcm.jobs(cfg)[0])
    # their beta_a = 1.7 (1 − ρ)/(1 − α) on the threshold, in absolute units
    assert rule.beta == pytest.approx(1.7 * (1 - math.exp(-1 / 2000)) / (1 - math.exp(-1 / 20)), rel=0.01)
    assert rule.loss == "ce" and rule.reg_form == "loss" and math.isinf(rule.grad_clip)
    # their Adam on batches of 64 trials; their reg_f 1 in this loss scale (× 64 × 150 × 2e-6), feedback scale
    # (× 0.1) and read-out filter (the task gradient passes F_κ without their (1 − κ): × 1/(1 − κ))
    assert (t["batch"], cfg["train"]["optimizer"], cfg["train"]["lr"]) == (64, "adam", 5e-3)
    assert m["c_reg"] == pytest.approx(2 * 150 * 64 * 1e-6 * 0.1 / (1 - math.exp(-1e-3 / m["tau_out"])), rel=1e-3)
    # Bellec's W ~ randn/√fan_in: Kaiming-normal × 1/√2
    gains = eprop_pcm.initial_gains(m, 40, 100, cfg["hardware"]["w_max"])
    assert gains["in_gain"] == pytest.approx(1.0, rel=1e-3) and gains["rec_gain"] == pytest.approx(1.0, rel=1e-3)
    assert [r["name"] for r in cfg["runs"]] == ["fp32", "pcm_nandakumar2018/mixed_precision"]
    assert not set(raw["tune"]["seeds"]) & set(cfg["seeds"]) and len(cfg["seeds"]) >= 3
    lines = eprop_pcm.differences_markdown(cfg)
    assert [ln for ln in lines if ln.startswith("* **")] == \
        [f"* **{k}**: {v}" for k, v in eprop_pcm.DIFFERENCES if k in eprop_pcm.CHIP_DIFFERENCES]


def test_eprop_sweep_same_numbers_on_processes_and_dask(tmp_path, capsys):
    """The e-prop study as a sweep (grid x seeds) on local processes and on a local Dask cluster."""
    import csv

    distributed = pytest.importorskip("distributed")
    cfg = config(tmp_path / "cfg.yaml", train={"updates": 10, "lr": 2e-5, "eval_every": 5},
                 runs=[{"card": "pcm_nandakumar2018", "scheme": "mixed_precision"}])
    grid = ["--grid", "hardware.w_max=0.2,0.3", "--seeds", "2"]

    def rows(out):
        with open(out / "sweep.csv", newline="") as f:
            return [{k: v for k, v in r.items() if k != "train_time_s"} for r in csv.DictReader(f)]

    assert main(["sweep", str(cfg), *grid, "--out", str(tmp_path / "p"), "--workers", "2", "--quiet"]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        assert main(["sweep", str(cfg), *grid, "--out", str(tmp_path / "d"), "--scheduler",
                     cluster.scheduler_address, "--quiet"]) == 0
    a, b = rows(tmp_path / "p"), rows(tmp_path / "d")
    assert len(a) == 4 and a == b
    assert {r["hardware.w_max"] for r in a} == {"0.2", "0.3"} and all(float(r["final"]) > 0 for r in a)
    capsys.readouterr()


def test_blown_up_error_is_marked_diverged_not_averaged(tmp_path, capsys):
    """lr 1e6: the NMSE blows up (the read-out bias alone makes it 1e16 after one update) and the
    runs are marked, not reported; on the mixed-precision chip the updates are clipped to the pulse
    limit, so the job ends quickly, warns once and says how often the limit was hit."""
    from neuroemu.hardware.schemes import PulseLimitWarning

    cfg = config(tmp_path / "cfg.yaml", train={"updates": 20, "lr": 1e6, "lr_out": 1e6, "eval_every": 10},
                 runs=[{"name": "fp32", "card": "ideal", "scheme": "ideal", "exact_reads": True},
                       {"name": "mixed", "card": "pcm_nandakumar2018", "scheme": "mixed_precision"}])
    out = tmp_path / "out"
    with pytest.warns(PulseLimitWarning) as caught:
        assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert sorted(str(w.message).split("]")[0] for w in caught) == ["[mixed@seed0", "[mixed@seed1"]
    message = str(caught[0].message)
    assert "max_pulses = 1000" in message and "pulses on one synapse" in message and "lower it" in message
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["run"]: r for r in summary["table"]}
    assert set(summary["diverged"]) == {"fp32@seed0", "fp32@seed1", "mixed@seed0", "mixed@seed1"}
    for d in summary["diverged"].values():
        assert d == {"at": 10, "metric": "nmse", "value": d["value"], "bound": d["bound"]}
        assert d["value"] > 1e10 * d["bound"] and d["bound"] > 0
    for row in summary["table"]:
        assert row["diverged"] == row["seeds"] == 2 and "final" not in row
    assert rows["mixed"]["pulse_limit_hits"] > 0 and rows["fp32"]["pulse_limit_hits"] == 0
    runs = {p.stem: json.loads(p.read_text())["result"] for p in (out / "runs").glob("*.json")}
    assert runs["mixed_seed0"]["pulse_limit_hits"] > 0 and len(runs["fp32_seed0"]["curve"]) == 0
    assert [line.split()[1] for line in printed.splitlines()[1:3]] == ["diverged", "diverged"]
    assert "pulse limit hit" in printed
    text = (out / "RESULTS.md").read_text()
    assert "| fp32 | diverged |" in text and "* diverged: fp32, seed 0, at update 10: nmse" in text
    assert "pulse limit hit" in text
    assert not (out / "figures").exists()  # nothing to draw: every run diverged


def test_warnings_and_progress_of_worker_processes_reach_the_console(tmp_path, capfd, monkeypatch):
    from neuroemu.studies import run_experiment

    monkeypatch.setenv("NEUROEMU_PROGRESS_S", "0")
    monkeypatch.delenv("NEUROEMU_QUIET", raising=False)
    cfg = config(tmp_path / "cfg.yaml", train={"updates": 3, "lr": 10.0, "eval_every": 1},
                 runs=[{"name": "mixed", "card": "pcm_nandakumar2018", "scheme": "mixed_precision"}])
    run_experiment(cfg, tmp_path / "out", workers=2)
    err = capfd.readouterr().err
    for seed in (0, 1):
        assert f"PulseLimitWarning: [mixed@seed{seed}]" in err
        assert f"[mixed@seed{seed}] update 1/3  nmse" in err


# ---------------------------------------------------------------------------------------- the authors' setup
def _job(tmp_path, run=None, **extra):
    from neuroemu.config import validate

    raw = yaml.safe_load(config(tmp_path / "cfg.yaml", **extra).read_text())
    if run is not None:
        raw["runs"] = [run]
    cfg = eprop_pcm.check(validate(raw, eprop_pcm.SCHEMA, "t"), "t")
    return cfg, eprop_pcm.jobs(cfg)[0]


def test_the_study_follows_the_authors_setup():
    """examples/eprop_pcm/schemes.yaml sets every shared setting of the authors' code (AUTHORS), and
    docs/eprop_pcm.md lists every difference the experiment's RESULTS.md lists."""
    from pathlib import Path

    from neuroemu.studies import resolve

    root = Path(__file__).resolve().parents[1]
    _, cfg = resolve(root / "examples/eprop_pcm/schemes.yaml")
    assert eprop_pcm.departures(cfg) == []
    assert eprop_pcm.departures(resolve(root / "examples/eprop_pcm/tuned.yaml")[1]) == []  # the main job
    m, tr = cfg["model"], cfg["train"]
    assert (m["feedback"], m["v_th"], cfg["task"]["patterns"], tr["grad_clamp"]) == ("random", 0.193, 3, 100.0)
    rule = eprop_pcm._config(eprop_pcm.jobs(cfg)[0])
    assert rule.grad_clip == pytest.approx(100 / 0.193) and rule.grad_clip_out == 100.0
    assert rule.reg_form == "signal" and rule.c_reg == 8.4e-4 and rule.n_ref == 0
    # 11.825 µS per weight unit on the PCM card, the authors' xbar_scale
    from neuroemu.hardware.factory import make_tile

    tile = make_tile(2, 2, "pcm_nandakumar2018", w_max=cfg["hardware"]["w_max"])
    assert tile.scale == pytest.approx(11.825, rel=1e-3)
    docs = (root / "docs/eprop_pcm.md").read_text()
    for title, _ in eprop_pcm.DIFFERENCES:
        assert f"**{title}**" in docs, title
    assert eprop_pcm.departures({**cfg, "model": {**m, "feedback": "symmetric"}}) == \
        ["model.feedback symmetric (the authors': random)"]


def test_random_feedback_is_drawn_once_and_never_updated(tmp_path):
    from neuroemu.data import tasks
    from neuroemu.rules.base import run_step
    from neuroemu.rules.eprop import EpropNetwork

    for run in ({"card": "ideal", "scheme": "ideal"}, {"card": "pcm_nandakumar2018", "scheme": "mixed_precision"}):
        _, job = _job(tmp_path, run=run, model={"n_rec": 20, "feedback": "random"},
                      train={"updates": 5, "lr": 1e-3, "lr_out": 1e-3})
        chip, rule = eprop_pcm.network(job, 20, 1, np.random.default_rng(0), np.random.default_rng(1))
        rule.bind(chip)
        b0 = rule.feedback.copy()
        # Kaiming-normal × init_gain: the first draw after the weights' (EpropNetwork.init's order)
        net = EpropNetwork.init(eprop_pcm._config(job), 20, 20, 1, feedback="random", rng=np.random.default_rng(0),
                                **eprop_pcm.initial_gains(job["model"], 20, 20, job["hardware"]["w_max"]))
        np.testing.assert_array_equal(b0, net.b_feedback)
        assert np.std(b0) == pytest.approx(0.237 * np.sqrt(2 / 20), rel=0.4)
        task = tasks.pattern_generation(n_in=20, t_steps=200, rng=0)
        w_out0 = chip["output"].weights().copy()
        for _ in range(5):
            run_step(rule, chip, task)
        assert not np.array_equal(chip["output"].weights(), w_out0)  # the read-out learned
        np.testing.assert_array_equal(rule.feedback_matrix(chip), b0)  # the feedback did not
        with pytest.raises(ValueError):
            rule.feedback[0, 0] = 1.0


def test_initial_weights_are_the_authors_device_init(tmp_path):
    """init "devices": every device at 0.237 µS ± 10 %, so every weight is N(0, (√2·0.0237/11.825)²),
    the same for every run of a seed; "kaiming": their float init."""
    _, job = _job(tmp_path, run={"card": "pcm_nandakumar2018", "scheme": "sign"},
                  model={"n_rec": 100}, task={"n_in": 100, "t_steps": 200}, hardware={"w_max": 1.006})
    ideal = {**job, "run": {**job["run"], "card": "ideal", "scheme": "ideal", "exact_reads": True}}
    chips = [eprop_pcm.network(j, 100, 1, np.random.default_rng(3))[0] for j in (job, ideal)]
    want = np.sqrt(2) * 0.0237 / 11.83
    for w in chips[0].weights().values():
        assert np.std(w) == pytest.approx(want, rel=0.2)
    for a, b in zip(chips[0].weights().values(), chips[1].weights().values()):
        np.testing.assert_allclose(a, b, atol=1e-12)  # one initial network for every run
    kaiming = {**job, "model": {**job["model"], "init": "kaiming"}}
    w_in = eprop_pcm.network(kaiming, 100, 1, np.random.default_rng(3))[0]["input"].weights()
    assert np.std(w_in) == pytest.approx(0.237 * np.sqrt(2 / 100), rel=0.1)


def test_three_patterns_are_trained_in_turn_and_the_nmse_is_their_mean(tmp_path):
    cfg, job = _job(tmp_path, run={"name": "fp32", "card": "ideal", "scheme": "ideal", "exact_reads": True},
                    train={"updates": 9, "lr": 2e-5, "eval_every": 3})
    assert cfg["task"]["patterns"] == 3  # null: the authors' three
    result = eprop_pcm.run_job(job)
    assert len(result["final_each"]) == 3 and result["final"] == pytest.approx(np.mean(result["final_each"]))
    assert len(result["y"]) == len(result["target"]) == 3 and all(len(t) == 200 for t in result["target"])
    t = np.array(result["target"])
    assert np.abs(t[0] - t[1]).max() > 0.2 and np.abs(t[1] - t[2]).max() > 0.2
    assert [c["update"] for c in result["curve"]] == [3, 6, 9]
    assert set(result["after"]) == {"3600"}
    one = eprop_pcm.run_job({**job, "task": {**job["task"], "patterns": 1}})
    assert len(one["final_each"]) == 1 and one["final"] == one["final_each"][0]


def test_gradient_clamp_and_update_interval_reach_the_chip(tmp_path, monkeypatch):
    _, job = _job(tmp_path, run={"card": "pcm_nandakumar2018", "scheme": "mixed_precision"},
                  model={"n_rec": 20, "v_th": 0.5}, train={"updates": 4, "lr": 1e-3, "grad_clamp": 2.0,
                                                           "update_interval": 100.0, "eval_every": 2})
    rule = eprop_pcm._config(job)
    assert rule.grad_clip == 4.0 and rule.grad_clip_out == 2.0  # ±clamp/v_th on input and recurrent
    from neuroemu.chip import Chip

    steps = []
    monkeypatch.setattr(Chip, "advance", lambda self, dt: steps.append(dt))
    result = eprop_pcm.run_job(job)
    assert steps == [100.0] * 4 + [3600.0]  # chip time between updates, then the drift delay
    assert result["clip_updates"] == 4 and result["clipped_entries"] > 0
    off = {**job, "train": {**job["train"], "grad_clamp": None, "update_interval": None}}
    assert eprop_pcm._config(off).grad_clip == np.inf
    steps.clear()
    assert eprop_pcm.run_job(off)["clipped_entries"] == 0
    assert steps[:4] == [pytest.approx(0.2)] * 4  # null: the sequence length, 200 steps of 1 ms


@pytest.mark.parametrize("section, values, fragment", [
    ("task", {"patterns": 0}, "task.patterns: expected"),
    ("task", {"name": "evidence_accumulation", "n_in": 8, "patterns": 3}, "only pattern_generation"),
    ("train", {"grad_clamp": 0}, "train.grad_clamp: expected a number > 0 (or null)"),
    ("train", {"grad_clamp": -100}, "train.grad_clamp: expected a number > 0"),
    ("train", {"update_interval": 0}, "train.update_interval: expected a number > 0"),
    ("train", {"stop_accuracy": 0.93}, "train.stop_accuracy: pattern_generation is scored by its NMSE"),
    ("train", {"stop_accuracy": 1.5}, "train.stop_accuracy: expected"),
    ("model", {"init": "zero"}, "model.init: expected one of devices, kaiming"),
    ("model", {"reg_form": "filter"}, "model.reg_form: expected one of signal, loss"),
    ("model", {"feedback": "fixed"}, "model.feedback: expected one of symmetric, random, adaptive"),
])
def test_bad_setup_values_are_refused_early(tmp_path, capsys, section, values, fragment):
    base = {"task": {"n_in": 20, "t_steps": 200}, "model": {"n_rec": 20},
            "train": {"updates": 30, "lr": 2e-5, "eval_every": 10}}
    base[section] = {**base[section], **values}
    cfg = config(tmp_path / "cfg.yaml", **{section: base[section]})
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and str(cfg) in err and len(err.strip().splitlines()) == 1, err


def test_a_run_can_have_its_own_training_values(tmp_path, capsys):
    """Tuned learning rates are committed per run (and searched by neuroemu tune through TUNE)."""
    cfg, _ = _job(tmp_path, seeds=[0], train={"updates": 2, "lr": 2e-5, "eval_every": 1}, eval={"delays": []},
                  runs=[{"name": "fp32", "card": "ideal", "scheme": "ideal", "exact_reads": True,
                         "train": {"lr": 1e-6}},
                        {"card": "pcm_nandakumar2018", "scheme": "mixed_precision"}])
    jobs = {j["run"]["name"]: j for j in eprop_pcm.jobs(cfg)}
    assert jobs["fp32"]["train"]["lr"] == 1e-6 and jobs["fp32"]["train"]["updates"] == 2
    assert jobs["pcm_nandakumar2018/mixed_precision"]["train"]["lr"] == 2e-5
    assert "train" not in jobs["pcm_nandakumar2018/mixed_precision"]["run"]  # no override: the job it had
    assert eprop_pcm.TUNE["resource"] == "train.updates" and eprop_pcm.TUNE["mode"](cfg) == "min"
    assert eprop_pcm.tune_trial(cfg, "t")["eval"]["delays"] == []
    out = tmp_path / "out"
    path = config(tmp_path / "own.yaml", seeds=[0], train={"updates": 2, "lr": 2e-5, "eval_every": 1},
                  eval={"delays": []}, runs=[{"name": "fp32", "card": "ideal", "scheme": "ideal", "exact_reads": True,
                                              "train": {"lr": 1e-6}}])
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    text = (out / "RESULTS.md").read_text()
    assert "runs with their own training values: fp32: lr 1e-06" in text
    assert "ΔW = −lr·g through each run's scheme" in text
    # optimizer: a plain-SGD job leaves the field out (it keeps the hash it had before the field existed)
    adam, _ = _job(tmp_path, seeds=[0], train={"updates": 2, "lr": 1e-3, "optimizer": "adam"},
                   runs=[{"name": "fp32", "card": "ideal", "scheme": "ideal", "exact_reads": True},
                         {"name": "sgd", "card": "ideal", "scheme": "ideal", "train": {"optimizer": "sgd"}}])
    assert [j["train"].get("optimizer") for j in eprop_pcm.jobs(adam)] == ["adam", None]
    assert all("optimizer" not in j["train"] for j in eprop_pcm.jobs(cfg))
    assert "## Differences from the authors' setup" in text and "**Initial weights**" in text
    assert "model.init kaiming (the authors': devices)" in text  # the test config departs, and says so
    bad = config(tmp_path / "bad.yaml", runs=[{"card": "ideal", "scheme": "ideal", "train": {"lr": -1.0}}])
    capsys.readouterr()
    assert main(["run", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "runs[0].train.lr: expected" in capsys.readouterr().err
    typo = config(tmp_path / "typo.yaml", runs=[{"card": "ideal", "scheme": "ideal", "train": {"lrr": 1.0}}])
    assert main(["run", str(typo), "--out", str(tmp_path / "o3")]) == 2
    assert "lrr" in capsys.readouterr().err


@pytest.mark.parametrize("extra, optimizer", [
    ({}, "sgd"),
    ({"task": {"name": "evidence_accumulation", "n_in": 8, "batch": 2}, "model": {"n_rec": 12, "n_alif": 6},
      "eval": {"delays": [3600], "trials": 4}}, "sgd"),
    ({"task": {"name": "evidence_accumulation", "n_in": 8, "batch": 2}, "model": {"n_rec": 12, "n_alif": 6},
      "eval": {"delays": [3600], "trials": 4}}, "adam"),
], ids=["pattern_generation", "evidence_accumulation", "evidence_accumulation_adam"])
def test_an_interrupted_job_resumes_from_its_checkpoint_with_the_same_result(tmp_path, monkeypatch, extra, optimizer):
    """The trainer checkpoints the whole job at every evaluation (Adam's moments included); a job run
    again after an interruption resumes there and ends with the result of an uninterrupted run, bit for bit."""
    from tests.checkpoints import resumes_identically

    _, job = _job(tmp_path, run={"card": "pcm_nandakumar2018", "scheme": "mixed_precision"},
                  train={"updates": 6, "lr": 1e-3 if optimizer == "sgd" else 0.05, "eval_every": 2,
                         "optimizer": optimizer}, **extra)  # Adam's lr: the step size, pulses within 6 steps
    assert job["train"].get("optimizer", "sgd") == optimizer

    straight = resumes_identically(monkeypatch, tmp_path, eprop_pcm.run_job, job, done=4,
                                   clean=lambda r: {k: v for k, v in r.items() if k != "train_time_s"})
    assert [row["update"] for row in straight["curve"]] == [2, 4, 6] and straight["pulses"] > 0


def test_the_stopping_rule_ends_training_at_the_first_batch_that_reaches_the_accuracy(tmp_path):
    """train.stop_accuracy (Bellec et al.'s rule): training ends at the first learning-curve point
    whose batch, scored before its update, reaches it; jobs without it keep their key set (hash)."""
    ev = {"task": {"name": "evidence_accumulation", "n_in": 8, "batch": 2}, "model": {"n_rec": 12, "n_alif": 6},
          "eval": {"delays": [], "trials": 4}}
    run = {"name": "fp32", "card": "ideal", "scheme": "ideal", "exact_reads": True}
    _, plain = _job(tmp_path, run=run, train={"updates": 6, "lr": 1e-4, "eval_every": 2}, **ev)
    assert "stop_accuracy" not in plain["train"] and "updates_trained" not in eprop_pcm.run_job(plain)
    _, always = _job(tmp_path, run=run, train={"updates": 6, "lr": 1e-4, "eval_every": 2, "stop_accuracy": 0.0}, **ev)
    done = eprop_pcm.run_job(always)  # every batch scores >= 0: stops at the first point
    assert done["updates_trained"] == 2 and [row["update"] for row in done["curve"]] == [2]
    _, never = _job(tmp_path, run=run, train={"updates": 6, "lr": 1e-4, "eval_every": 2, "stop_accuracy": 1.0}, **ev)
    full = eprop_pcm.run_job(never)  # stops at the first point where both trials of the batch were right, if any
    first = next((row["update"] for row in full["curve"] if row["accuracy"] >= 1.0), 6)
    assert full["updates_trained"] == first == full["curve"][-1]["update"]
    cfg = config(tmp_path / "stop.yaml", seeds=[0], runs=[run], train={"updates": 6, "lr": 1e-4, "eval_every": 2,
                                                                       "stop_accuracy": 0.0}, **ev)
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    text = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "6 updates at most (stopping at accuracy 0)" in text and "updates trained: fp32: 2 (seed 0)" in text


def test_a_stopped_run_stays_stopped_after_a_resume(tmp_path):
    """A task that set ``stop`` (kept in the checkpoint with it) trains no further update."""
    from neuroemu.train import Protocol, Trainer

    _, job = _job(tmp_path, run={"name": "fp32", "card": "ideal", "scheme": "ideal", "exact_reads": True},
                  task={"name": "evidence_accumulation", "n_in": 8, "batch": 2}, model={"n_rec": 12, "n_alif": 6},
                  train={"updates": 4, "lr": 1e-4, "eval_every": 2}, eval={"delays": [], "trials": 4})
    task = eprop_pcm.task(job, np.random.default_rng(0), np.random.default_rng(1))
    chip, rule = eprop_pcm.network(job, 8, 2, np.random.default_rng(2))
    task.stop = True  # as a checkpoint saved at the evaluation that stopped the run
    result = Trainer(chip, rule, task, Protocol(updates=4, eval_every=2)).run()
    assert result.rows == [] and result.ops["updates"] == 0


def test_differences_of_the_config_and_of_its_learning_rates_reach_results_md():
    """The config's own differences come first, once; the rates line says whether the runs carry
    tuned rates of their own (examples/eprop_pcm/tuned.yaml) or share the config's."""
    from pathlib import Path

    from neuroemu.studies import resolve

    root = Path(__file__).resolve().parents[1]
    _, ev = resolve(root / "examples/eprop_pcm/evidence.yaml")
    text = "\n".join(eprop_pcm.differences_markdown(ev))
    assert text.count("## Differences from the authors' setup") == 1 and ev["differences"]
    assert all(text.count(f"* {d}") == 1 for d in ev["differences"])
    assert text.index(ev["differences"][-1]) < text.index("**Read noise**")
    _, tuned = resolve(root / "examples/eprop_pcm/tuned.yaml")
    rates = [ln for ln in eprop_pcm.differences_markdown(tuned) if ln.startswith("* **Its learning rates**")]
    assert rates == ["* **Its learning rates**: each run its own (lr 1e-07 to 0.001, lr_out 1.66e-05 to 0.000166), "
                     "as its run in the config sets them (`neuroemu tune` writes them there: a search with the same "
                     "budget per run on validation seeds). Where the command above changes the training with `--set`, "
                     "the rates are those set for the config without the change."]
    _, plain = resolve(root / "examples/eprop_pcm/schemes.yaml")
    assert "not searched per scheme" in "\n".join(eprop_pcm.differences_markdown(plain))
