"""The FastHebb semi-supervised experiment end to end on tiny synthetic data, and its errors."""

import json

import numpy as np
import pytest
import yaml

from neuroemu.cli import main
from neuroemu.studies.fasthebb import label_subset
from tests.test_spiking_fmnist import tiny_data  # noqa: F401 - the fixture


def config(path, data_dir, **extra):
    cfg = {
        "experiment": "fasthebb", "seeds": [0], "workers": 1,
        "data": {"dir": str(data_dir), "download": False},
        "zca": {"fit_images": 240, "eps": 1.0},  # few images: strong regularisation
        "layer": {"units": 8, "kernel": 5, "pool": 2},
        "readout": {"epochs": 3, "min_steps": 30, "batch_size": 32},
        "backprop": {"epochs": 2, "min_steps": 20, "batch_size": 32},
        "labels": [0.25, 1.0],
        "eval": {"batch_size": 40},
        "runs": [{"features": "hebbian"}, {"features": "random"}, {"features": "backprop"},
                 {"features": "hebbian", "card": "pcm_nandakumar2018", "scheme": "stochastic"}],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_fasthebb_end_to_end(tmp_path, tiny_data, capsys):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, hebbian={"epochs": 2})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert "labels 0.25" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["run"]: r for r in summary["table"]}
    assert list(rows) == ["hebbian", "random", "backprop", "hebbian/pcm_nandakumar2018/stochastic"]
    assert rows["hebbian"]["acc_1"] > 50  # ten classes: chance is 10 %
    assert rows["hebbian"]["images_per_s"] > 0 and "images_per_s" not in rows["backprop"]
    assert rows["hebbian/pcm_nandakumar2018/stochastic"]["pulses_per_synapse"] > 0
    assert rows["hebbian/pcm_nandakumar2018/stochastic"]["acc_1"] > 50
    chip = json.loads((out / "runs" / "hebbian_pcm_nandakumar2018_stochastic_seed0.json").read_text())["result"]
    assert np.asarray(chip["filters"]).shape == (8, 25) and chip["pulses"] > 0
    assert chip["g_hist"]["steps"] == [0, 2]  # as written, and after the last Hebbian epoch
    text = (out / "RESULTS.md").read_text()
    assert "| hebbian/pcm_nandakumar2018/stochastic | pcm_nandakumar2018 | stochastic |" in text
    # operations: Hebbian updates on the chip, and the feature layer's inference per test image
    assert chip["ops"]["energy_per_update_pJ"]["pulses"] > 0 and chip["ops"]["energy_per_inference_pJ"]["total"] > 0
    energy = {r["run"]: r for r in summary["energy"]}
    assert set(energy) == {"hebbian", "random", "hebbian/pcm_nandakumar2018/stochastic"}  # backprop: no chip
    assert energy["random"]["update"] is None and energy["random"]["inference"]["total"] > 0
    assert "## Operations and energy" in text
    for name in ("accuracy_vs_labels", "filters", "conductances", "pulses_per_device"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000


def test_fasthebb_dense_layer_and_overrides(tmp_path, tiny_data):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, runs=[{"features": "hebbian"}, {"features": "backprop"}])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "layer.kind=dense",
                 "--set", "layer.units=20", "--set", "hebbian.rule=hpca", "--set", "hebbian.weighting=mean",
                 "--set", "labels=[1.0]"]) == 0
    rows = {r["run"]: r for r in json.loads((out / "summary.json").read_text())["table"]}
    assert set(rows["hebbian"]) >= {"acc_1"} and "acc_0.25" not in rows["hebbian"]
    assert not (out / "figures" / "filters.png").exists()


def test_label_subsets_are_class_balanced():
    y = np.repeat(np.arange(10), 100)
    idx = label_subset(y, 0.1, np.random.default_rng(0))
    assert len(idx) == 100 and np.all(np.bincount(y[idx]) == 10)
    assert len(label_subset(y, 1.0, np.random.default_rng(0))) == 1000


@pytest.mark.parametrize("extra,message", [
    ({"runs": [{"features": "random", "card": "pcm_nandakumar2018"}]}, "only hebbian features are learned on a chip"),
    ({"runs": [{"features": "hebbian", "card": "pcm_nandakumar2018", "scheme": "magic"}]}, "scheme: expected one of"),
    ({"runs": [{"features": "hebbian", "card": "pcm_joshi2020", "scheme": "sign"}]}, "programmed by target"),
    ({"hebbian": {"rule": "kwta", "k": 9}}, "hebbian.k: expected at most layer.units"),
    ({"hebbian": {"rule": "oja", "weighting": "responses"}}, "needs a competitive rule"),
    ({"labels": [0.0, 1.0]}, "label fractions in (0, 1]"),
    ({"layer": {"units": 8, "kernel": 5, "pool": 25}}, "layer.pool: expected at most the feature-map side 24"),
    ({"runs": [{"features": "hebbian"}, {"features": "hebbian"}]}, "clashes"),
])
def test_fasthebb_config_errors(tmp_path, tiny_data, capsys, extra, message):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, **extra)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_a_run_may_name_its_own_seeds(tmp_path, tiny_data):  # noqa: F811
    from neuroemu.studies import resolve

    cfg = config(tmp_path / "cfg.yaml", tiny_data, seeds=[0, 1, 2],
                 runs=[{"features": "hebbian"}, {"features": "backprop", "seeds": [4]}])
    module, resolved = resolve(cfg)
    ids = [j["id"] for j in module.jobs(resolved)]
    assert ids == ["hebbian@seed0", "hebbian@seed1", "hebbian@seed2", "backprop@seed4"]
    assert all("seeds" not in j["run"] for j in module.jobs(resolved))  # not part of a job: adding seeds reruns nothing


def test_a_diverged_read_out_is_marked(tmp_path, tiny_data, capsys):  # noqa: F811
    cfg = config(tmp_path / "cfg.yaml", tiny_data, runs=[{"features": "random"}],
                 readout={"epochs": 3, "min_steps": 30, "batch_size": 32, "lr": 1000.0})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    summary = json.loads((out / "summary.json").read_text())
    d = summary["diverged"]["random@seed0"]
    assert d["metric"] == "read-out loss (labels 0.25)" and d["bound"] == pytest.approx(5 * np.log(10))
    row = summary["table"][0]
    assert row["diverged"] == 1 and not any(k.startswith("acc_") for k in row)
    assert printed[1].split()[1:] == ["diverged", "diverged", "diverged"]
    assert "| random | - | - | 1 (diverged) | diverged | diverged |" in (out / "RESULTS.md").read_text()


def test_an_interrupted_hebbian_job_resumes_mid_run(tmp_path, tiny_data, monkeypatch):  # noqa: F811
    """A job on a PCM tile killed after its first Hebbian epoch goes on from its checkpoint when run
    again, and ends with the result of a run never interrupted."""
    from neuroemu.studies import fasthebb, resolve
    from tests.checkpoints import resumes_identically

    cfg = config(tmp_path / "cfg.yaml", tiny_data, hebbian={"epochs": 3}, labels=[1.0],
                 runs=[{"features": "hebbian", "card": "pcm_nandakumar2018", "scheme": "stochastic"}])
    _, resolved = resolve(cfg)
    job = fasthebb.jobs(resolved)[0]

    resumed = resumes_identically(monkeypatch, tmp_path, fasthebb.run_job, job, done=1, clean=lambda r: {
        k: v for k, v in r.items() if k not in ("train_time_s", "hebbian_time_s", "images_per_s")})
    assert resumed["g_hist"]["steps"] == [0, 3] and resumed["pulses"] > 0


# ---------------------------------------------------------------------------------------- the deep stack
STACK = [{"units": 6, "kernel": 5, "pool": 2}, {"units": 8, "kernel": 3, "readout": True},
         {"units": 10, "kernel": 3, "pool": 2, "norm": "bn_relative"}, {"kind": "dense", "units": 12}]


def _stack(layers=STACK):
    from neuroemu.studies.fasthebb import _stack as build

    from neuroemu.config import validate
    from neuroemu.studies.fasthebb import STACK_LAYER

    return build([validate(lay, STACK_LAYER, "t") for lay in layers])


def _images(n=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(np.float32)


def test_stack_shapes_and_outputs():
    stack = _stack()
    # 28 -5+1-> 24 -pool 2-> 12 -3+1-> 10 -3+1-> 8 -pool 2-> 4; then dense over 10·4·4
    assert stack.shapes == [(1, 28, 28), (6, 12, 12), (8, 10, 10), (10, 4, 4), (12,)]
    w0 = stack.init_weights(0)
    assert [w.shape for w in w0] == [(6, 25), (8, 54), (10, 72), (12, 160)]
    assert all(np.allclose(np.linalg.norm(w, axis=1), 1, atol=1e-6) for w in w0)
    x = _images()
    for i, w in enumerate(w0):
        stack.set_layer(i, w, x)
    feats = stack.features(x, [1, 3], batch=5)
    assert feats[1].shape == (16, 800) and feats[3].shape == (16, 12) and feats[1].dtype == np.float32
    assert stack.transform(x).shape == (16, 12)
    y1 = stack.transform(x, 2)  # bn: every channel zero mean, unit variance over the images
    assert np.allclose(y1.mean(axis=(0, 2, 3)), 0, atol=1e-4) and np.allclose(y1.var(axis=(0, 2, 3)), 1, atol=1e-3)
    y2 = stack.transform(x, 3)  # bn_relative: zero mean, unit variance on average over the channels only
    v = y2.var(axis=(0, 2, 3))
    assert np.allclose(y2.mean(axis=(0, 2, 3)), 0, atol=1e-4) and np.isclose(v.mean(), 1, atol=1e-3) and v.std() > 0.01


def test_greedy_training_changes_only_the_layer_being_trained():
    from neuroemu.chip import Hardware
    from neuroemu.models.hebbian import LAYER
    from neuroemu.rules.hebbian import Hebbian, Unlabelled
    from neuroemu.train import Protocol, Trainer

    stack, x = _stack(), _images(32)
    w0 = stack.init_weights(1)
    stack.set_layer(0, w0[0], x)
    stack.set_layer(1, w0[1], x)
    below = [np.array(w) for w in stack.weights[:2]]
    norms = [tuple(np.array(a) for a in n) for n in stack.norms[:2]]
    model = stack.trainable(2)
    assert model.samples(x[:4]).shape == (4 * 8 * 8, 72)  # the patches of layer 1's output
    chip = model.build(Hardware.exact(), weights={LAYER: w0[2]})
    rule = Hebbian("swta", lr=0.1, temperature=0.02, weighting="responses")
    trained = Trainer(chip, rule, Unlabelled(x, 8, 2), Protocol(epochs=1), progress=False).run().chip
    assert not np.allclose(trained[LAYER].weights(), w0[2])  # the layer being trained learned
    for i in range(2):  # the layers below did not
        assert np.array_equal(stack.weights[i], below[i]) and np.array_equal(model.below.weights[i], below[i])
        assert all(np.array_equal(a, b) for a, b in zip(stack.norms[i], norms[i]))
    assert stack.weights[2] is None  # nor was the stack's own slot for it touched
    with pytest.raises(ValueError, match=r"layers\[3\]: the layers below it are not set yet"):
        stack.trainable(3)


def test_stack_geometry_errors_name_the_layer():
    from neuroemu.models.hebbian import HebbianStack, StackLayer

    with pytest.raises(ValueError, match=r"layers\[1\]\.kind: a conv layer cannot follow a dense layer"):
        HebbianStack((1, 28, 28), [StackLayer("dense", 10), StackLayer("conv", 4, 3)])
    with pytest.raises(ValueError, match=r"layers\[1\]\.kernel: expected at most the input side 4"):
        HebbianStack((1, 28, 28), [StackLayer(units=4, kernel=5, pool=6), StackLayer(units=4, kernel=5)])


def stack_config(path, data_dir, **extra):
    cfg = {
        "experiment": "fasthebb", "seeds": [0, 1], "workers": 1,
        "data": {"dir": str(data_dir), "download": False},
        "zca": {"fit_images": 240, "eps": 1.0},
        "layers": [{"units": 8, "kernel": 5, "pool": 2}, {"units": 10, "kernel": 3, "pool": 2, "readout": True},
                   {"units": 12, "kernel": 3, "norm": "bn_relative"}],
        "hebbian": {"batch_size": 32},
        "readout": {"epochs": 3, "min_steps": 30, "batch_size": 32},
        "backprop": {"epochs": 1, "min_steps": 10, "batch_size": 32},
        "labels": [0.25, 1.0],
        "eval": {"batch_size": 40},
        "runs": [{"features": "hebbian"}, {"features": "random"}, {"features": "backprop", "seeds": [0]}],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_deep_stack_end_to_end(tmp_path, tiny_data):  # noqa: F811
    cfg = stack_config(tmp_path / "cfg.yaml", tiny_data)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["run"]: r for r in summary["table"]}
    assert list(rows) == ["hebbian", "random", "backprop"]
    assert rows["hebbian"]["acc_1"] > 50  # ten classes: chance is 10 %
    assert all(f"acc_{f}" in rows[r] for f in ("0.25", "1") for r in rows)
    assert rows["hebbian"]["images_per_s"] > 0
    heb = json.loads((out / "runs" / "hebbian_seed0.json").read_text())["result"]
    rnd = json.loads((out / "runs" / "random_seed0.json").read_text())["result"]
    assert set(heb["accuracy_by_layer"]) == {"2", "3"} and heb["accuracy"] == heb["accuracy_by_layer"]["3"]
    # the random control: the same architecture (the same first-layer shape), its filters the untrained start
    assert np.asarray(heb["filters"]).shape == np.asarray(rnd["filters"]).shape == (8, 25)
    assert heb["shapes"] == rnd["shapes"] == [[1, 28, 28], [8, 12, 12], [10, 5, 5], [12, 3, 3]]
    assert not np.allclose(heb["filters"], rnd["filters"])
    text = (out / "RESULTS.md").read_text()
    assert "conv 8 5×5 → ReLU → max-pool 2 → bn; conv 10 3×3" in text and "read-outs on layer(s) 2, 3" in text
    assert "| hebbian | 2 |" in text and "| random | 3 |" in text
    assert (out / "figures" / "filters.png").stat().st_size > 1000


def test_deep_stack_controls_have_the_stack_architecture():
    from neuroemu.studies import fasthebb

    job = {"layers": [{"kind": "conv", "units": 8, "kernel": 5, "pool": 2, "norm": "bn", "readout": False},
                      {"kind": "dense", "units": 12, "kernel": 3, "pool": 1, "norm": "bn_relative", "readout": False}]}
    net = fasthebb._backprop_stack(job["layers"], np.random.default_rng(0))
    names = [type(p).__name__ for p in net]
    assert names == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Linear"]
    assert net[4].w.shape == (12, 8 * 12 * 12) and net[-1].w.shape == (10, 12)
    stack = fasthebb._stack(job["layers"])
    assert [w.shape for w in stack.init_weights(0)] == [(8, 25), (12, 8 * 12 * 12)]


def test_single_layer_jobs_do_not_change_with_stacks(tmp_path, tiny_data):  # noqa: F811
    """A config without `layers` gives the jobs it gave before the stack existed (no `layers` key)."""
    from neuroemu.studies import resolve

    module, resolved = resolve(config(tmp_path / "cfg.yaml", tiny_data))
    assert all("layers" not in j and "layer" in j for j in module.jobs(resolved))
    module, resolved = resolve(stack_config(tmp_path / "deep.yaml", tiny_data))
    assert all("layers" in j and "layer" not in j for j in module.jobs(resolved))


@pytest.mark.parametrize("extra,message", [
    ({"layer": {"units": 8}}, "layer: leave the single-layer section out when `layers` is given"),
    ({"layers": []}, "layers: expected a non-empty list of layers"),
    ({"layers": [{"kernel": 5}]}, "layers[0].units: missing required field"),
    ({"layers": [{"units": 8, "pool": 2, "stride": 2}]}, "layers[0].stride: unknown field"),
    ({"layers": [{"units": 8, "norm": "layer"}]}, "layers[0].norm: expected one of none, bn, bn_relative"),
    ({"layers": [{"units": 8, "kernel": 5, "pool": 4}, {"units": 8, "kernel": 7}]},
     "layers[1].kernel: expected at most the input side 6"),
    ({"layers": [{"kind": "dense", "units": 8}, {"units": 8}]}, "layers[1].kind: a conv layer cannot follow"),
    ({"layers": [{"kind": "dense", "units": 8, "pool": 2}]}, "layers[0].pool: a dense layer has no pooling"),
    ({"hebbian": {"rule": "kwta", "k": 9}}, "hebbian.k: expected at most layers[0].units (8)"),
    ({"runs": [{"features": "hebbian", "card": "pcm_nandakumar2018", "scheme": "sign"}]},
     "runs[0].card: the deep stack (`layers`) learns with float weights only"),
])
def test_deep_stack_config_errors(tmp_path, tiny_data, capsys, extra, message):  # noqa: F811
    cfg = stack_config(tmp_path / "cfg.yaml", tiny_data, **extra)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("stop_in,calls_before", [("_learn", 1), ("_readout_accuracy", 2)])
def test_an_interrupted_deep_stack_job_goes_on_after_its_last_finished_stage(tmp_path, tiny_data, monkeypatch,
                                                                           stop_in, calls_before):  # noqa: F811
    """Killed after its first learned layer, or after two read-outs, a deep-stack job run again
    learns and reads out only what it had not finished, and ends with the result of a run never
    interrupted; its stage file is gone at the end."""
    from neuroemu import train
    from neuroemu.runner import CHECKPOINT_ENV
    from neuroemu.studies import fasthebb, resolve
    from tests.checkpoints import Interrupted

    _, resolved = resolve(stack_config(tmp_path / "cfg.yaml", tiny_data, runs=[{"features": "hebbian"}]))
    job = fasthebb.jobs(resolved)[0]

    def clean(r):
        return {k: v for k, v in r.items() if k not in ("train_time_s", "hebbian_time_s", "images_per_s")}

    straight = clean(fasthebb.run_job(job))
    calls = {"_learn": 0, "_readout_accuracy": 0}
    originals = {name: getattr(fasthebb, name) for name in calls}

    def counted(name, stop_at=None):
        def call(*args, **kwargs):
            if calls[name] == stop_at:
                raise Interrupted
            calls[name] += 1
            return originals[name](*args, **kwargs)
        return call

    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "checkpoints"))
    for name in calls:
        monkeypatch.setattr(fasthebb, name, counted(name, stop_at=calls_before if name == stop_in else None))
    with pytest.raises(Interrupted):
        fasthebb.run_job(job)
    stages = train.Stages(job["id"], job)
    assert stages.path.is_file() and stages.load()["layers"]
    assert train.Stages(job["id"], {**job, "seed": 1}).load() == {}  # another job's stages are not taken
    first = dict(calls)
    for name in calls:
        calls[name] = 0
        monkeypatch.setattr(fasthebb, name, counted(name))
    resumed = fasthebb.run_job(job)
    assert clean(resumed) == straight
    n_layers, n_readouts = len(job["layers"]), 2 * len(job["labels"])  # read-outs on layers 2 and 3
    assert calls["_learn"] == n_layers - first["_learn"]
    assert calls["_readout_accuracy"] == n_readouts - first["_readout_accuracy"]
    assert not stages.path.exists() and stages.load() == {}


def test_differences_end_results_md_and_are_no_part_of_a_job(tmp_path, tiny_data, capsys):  # noqa: F811
    from neuroemu.runner import job_hash
    from neuroemu.studies import fasthebb, resolve

    items = ["Data: tiny synthetic images, for speed.", "Read-out:   three epochs\n  only."]
    plain = config(tmp_path / "plain.yaml", tiny_data, runs=[{"features": "random"}])
    cfg = config(tmp_path / "cfg.yaml", tiny_data, runs=[{"features": "random"}], differences=items)
    assert [job_hash(j) for j in fasthebb.jobs(resolve(cfg)[1])] == [job_hash(j) for j in fasthebb.jobs(resolve(plain)[1])]
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    text = (out / "RESULTS.md").read_text()
    assert text.rstrip().endswith("## Differences from the authors' setup\n\n* Data: tiny synthetic images, for "
                                  "speed.\n* Read-out: three epochs only.")
    assert main(["run", str(plain), "--out", str(tmp_path / "o2"), "--quiet"]) == 0
    assert "Differences from the authors' setup" not in (tmp_path / "o2" / "RESULTS.md").read_text()
    bad = config(tmp_path / "bad.yaml", tiny_data, differences=["fine", 3])
    assert main(["run", str(bad), "--out", str(tmp_path / "o3")]) == 2
    assert "differences: expected a list of non-empty strings" in capsys.readouterr().err


def test_an_interrupted_backprop_control_goes_on_after_its_last_finished_label_fraction(tmp_path, tiny_data,
                                                                                       monkeypatch):  # noqa: F811
    """The backprop control trains one network per label fraction: killed after the first, it trains
    only the others when run again, with the result of a run never interrupted."""
    from neuroemu import train
    from neuroemu.runner import CHECKPOINT_ENV
    from neuroemu.studies import fasthebb, resolve
    from tests.checkpoints import Interrupted

    _, resolved = resolve(config(tmp_path / "cfg.yaml", tiny_data, runs=[{"features": "backprop"}]))
    job = fasthebb.jobs(resolved)[0]
    straight = {k: v for k, v in fasthebb.run_job(job).items() if k != "train_time_s"}
    original, calls = fasthebb._backprop_accuracy, []

    def counted(*args, stop_at=None, **kwargs):
        if len(calls) == stop_at:
            raise Interrupted
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "checkpoints"))
    monkeypatch.setattr(fasthebb, "_backprop_accuracy", lambda *a, **k: counted(*a, stop_at=1, **k))
    with pytest.raises(Interrupted):
        fasthebb.run_job(job)
    assert train.Stages(job["id"], job).load()["accuracy"]
    calls.clear()
    monkeypatch.setattr(fasthebb, "_backprop_accuracy", counted)
    resumed = {k: v for k, v in fasthebb.run_job(job).items() if k != "train_time_s"}
    assert resumed == straight and len(calls) == len(job["labels"]) - 1
    assert not train.Stages(job["id"], job).path.exists()
