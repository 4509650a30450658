"""The LIF-sampling studies: configs, tiny jobs end to end, errors, and interrupted jobs that resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from neuroemu.errors import ConfigError
from neuroemu.studies import lif_images, lif_sampling, resolve, resolve_data, run_experiment
from tests.synthetic import write_tiny_fashion_mnist

SAMPLING = {
    "experiment": "lif_sampling", "seeds": [0], "workers": 1,
    "machines": {"sizes": [3]},
    "sampling": {"times_ms": [100.0, 1000.0], "calibration_ms": 200.0},
    "training": {"sizes": [3], "updates": 6, "eval_every": 3, "eval_ms": 300.0, "duration_ms": 100.0, "chains": 2},
    "runs": [{"neurons": "coba"},
             {"name": "chip", "neurons": "analog", "calibrated": True, "mapping": "calibrated", "compare_deploy": True}],
}


def sampling_config(**changes):
    cfg = copy.deepcopy(SAMPLING)
    cfg.update(changes)
    return resolve_data(cfg, "test:")[1]


def test_the_example_configs_resolve():
    _, cfg = resolve("examples/lif_sampling/sampling.yaml")
    jobs = lif_sampling.jobs(cfg)
    assert len(jobs) == len(cfg["runs"]) * len(cfg["seeds"]) * len(cfg["machines"]["sizes"])
    assert len(cfg["seeds"]) >= 5 and {5, 10} <= set(cfg["machines"]["sizes"])
    _, cfg = resolve("examples/lif_sampling/images.yaml")
    assert len(lif_images.jobs(cfg)) == len(cfg["runs"]) * len(cfg["seeds"])


def test_a_tiny_sampling_study_runs_end_to_end(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(SAMPLING))
    summary = run_experiment(cfg, tmp_path / "out", quiet=True)
    rows = {r["run"]: r for r in summary["table"]}
    assert set(rows) == {"coba/theory mapping", "chip"}
    for r in rows.values():
        assert len(r["dkl_theory"]) == 2 and all(np.isfinite(r["dkl_theory"])) and min(r["dkl_theory"]) >= 0
        assert len(r["dkl_trained"]) == 2
    assert "dkl_deployed" in rows["chip"] and "dkl_deployed" not in rows["coba/theory mapping"]
    text = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "| chip | 3 | 1 |" in text
    # operations per update of the training in the loop (no per-inference batch)
    energy = {r["run"]: r for r in summary["energy"]}
    assert energy["coba/theory mapping K=3"]["update"]["neurons"] > 0 and energy["chip K=3"]["inference"] is None
    assert "neuron updates of the analog chip" in energy["chip K=3"]["update"]["not_costed"]
    assert "## Operations and energy" in text
    for name in ("dkl_vs_time", "training", "joint_states"):
        assert (tmp_path / "out" / "figures" / f"{name}.png").is_file()


@pytest.mark.parametrize("run, match", [
    ({"neurons": "coba", "calibrated": True}, "only analog neurons"),
    ({"neurons": "cuba", "compare_deploy": True}, "nominal neurons"),
    ({"neurons": "coba", "synapses": "no_such_card"}, "no_such_card"),
    ({"neurons": "coba", "background": {"size": 4, "bogus": 1}}, "bogus"),
    ({"neurons": "ideal"}, "neurons"),
    ({"neurons": "coba", "card_params": {"membrane_noise": 0.0}}, "only analog neurons come from a chip card"),
    ({"neurons": "analog", "card_params": {"membrane_noise": -1.0}}, "membrane_noise"),
])
def test_bad_runs_are_refused_with_the_field(run, match):
    with pytest.raises(ConfigError, match=match):
        sampling_config(runs=[run])


def test_an_interrupted_sampling_job_resumes_mid_run(tmp_path, monkeypatch):
    from tests.checkpoints import resumes_identically

    job = [j for j in lif_sampling.jobs(sampling_config()) if j["run"] == "chip"][0]
    resumed = resumes_identically(monkeypatch, tmp_path, lif_sampling.run_job, job, done=3, clean=lambda r: {
        k: v for k, v in r.items() if k not in ("train_time_s", "theory_time", "trained_time")})
    assert [u for u, _ in resumed["train_curve"]] == [3, 6]


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    return write_tiny_fashion_mnist(tmp_path_factory.mktemp("fmnist"), 200, 60)


def images_config(data, **changes):
    cfg = {"experiment": "lif_images", "seeds": [0], "workers": 1,
           "data": {"dir": str(data), "download": False},
           "images": {"side": 6, "classes": [0, 5]},
           "network": {"hidden": 8, "calibration_ms": 100.0},
           "training": {"updates": 4, "eval_every": 2, "eval_images": 10, "duration_ms": 30.0, "batch_size": 4,
                        "chains": 4},
           "eval": {"images": 10, "duration_ms": 30.0},
           "runs": [{"neurons": "coba"}]}
    cfg.update(changes)
    return resolve_data(cfg, "test:")[1]


def test_an_image_job_classifies_and_completes(tiny_images):
    job = lif_images.jobs(images_config(tiny_images))[0]
    r = lif_images.run_job(job)
    assert r["units"] == [36, 8, 2] and [u for u, _ in r["curve"]] == [2, 4]
    for kind in ("lower_half", "left_half", "centre_patch"):
        assert 0 <= r[f"completion_error_{kind}"] <= 1 and 0 <= r[f"occluded_accuracy_{kind}"] <= 1
        assert len(r["completions"][kind]["completed"]) == 8
    assert 0 <= r["accuracy"] <= 1
    assert r["ops"]["updates"] == 4 and r["ops"]["energy_per_update_pJ"]["total"] > 0 and "per_inference" not in r["ops"]


def test_image_runs_must_fit_the_chip(tiny_images):
    with pytest.raises(ConfigError, match="do not fit the 512 neurons"):
        images_config(tiny_images, network={"hidden": 600}, runs=[{"neurons": "analog"}])
    with pytest.raises(ConfigError, match="classes"):
        images_config(tiny_images, images={"classes": [3]})


def test_an_interrupted_image_job_resumes_mid_run(tmp_path, monkeypatch, tiny_images):
    from tests.checkpoints import resumes_identically

    job = lif_images.jobs(images_config(tiny_images))[0]
    resumes_identically(monkeypatch, tmp_path, lif_images.run_job, job, done=2,
                        clean=lambda r: {k: v for k, v in r.items() if k != "train_time_s"})


def test_the_rule_trains_a_sampled_machine_from_a_config_on_any_card(tmp_path):
    """The registered model, rule and task through the generic train experiment, on a float chip and
    on PCM tiles written by a pulsed scheme."""
    from neuroemu.studies import generic

    _, cfg = resolve_data({
        "experiment": "train", "seeds": [0], "workers": 1,
        "model": {"name": "sampling_bm", "n": 3, "neurons": "cuba", "calibration_ms": 200.0},
        "rule": {"name": "boltzmann", "lr": 1.0, "chains": 2, "duration_ms": 100.0},
        "task": {"name": "boltzmann_target", "k": 3, "eval_ms": 500.0},
        "protocol": {"updates": 4, "eval_every": 2},
        "runs": [{"name": "float"},
                 {"name": "pcm", "chip": {"card": "pcm_nandakumar2018", "scheme": "mixed_precision", "w_max": 2.0}}],
    }, "test:")
    results = {r["run"]: r for r in map(generic.run_job, generic.jobs(cfg))}
    for r in results.values():
        assert np.isfinite(r["final"]["dkl"]) and r["final"]["dkl"] >= 0
    assert results["pcm"]["pulses"] > 0 and results["float"]["pulses"] == 0
