"""Rules, models and tasks from outside the package (neuroemu.plugins), and the config-driven
study that runs them on any chip (experiment: train)."""

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from neuroemu import plugins
from neuroemu.errors import ConfigError
from neuroemu.rules.backprop import Backprop
from tests.synthetic import write_tiny_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin_rule"


def test_load_by_short_name_import_path_and_file(tmp_path):
    assert plugins.load("rule", "backprop") is Backprop
    assert plugins.load("rule", "neuroemu.rules.backprop:Backprop") is Backprop
    (tmp_path / "mine.py").write_text("class Rule:\n    pass\n")
    cls = plugins.load("rule", "mine.py:Rule", base_dir=tmp_path)
    assert cls.__name__ == "Rule" and plugins.load("rule", f"{tmp_path}/mine.py:Rule") is cls


def test_load_by_entry_point(monkeypatch):
    class EP:
        name = "mine"

        def load(self):
            return Backprop

    monkeypatch.setattr(plugins, "entry_points", lambda group: [EP()] if group == "neuroemu.rules" else [])
    assert plugins.load("rule", "mine") is Backprop


@pytest.mark.parametrize("name, message", [
    ("backprob", r"unknown rule 'backprob'.*did you mean 'backprop'"),
    ("nowhere.mod:X", r"cannot import nowhere.mod"),
    ("neuroemu.rules.backprop:Backprob", r"has no 'Backprob'.*Backprop"),
    ("missing.py:X", r"no such file"),
    ("plugins/rule:X", r"plugins/rule: expected a Python file, a name ending in .py"),
])
def test_bad_names_say_what_was_expected(name, message):
    with pytest.raises(ConfigError, match=message):
        plugins.load("rule", name, where="cfg.yaml: rule.name")


def test_make_names_a_parameter_the_factory_does_not_take():
    assert plugins.make("rule", {"name": "backprop", "lr": 0.1}).lr == 0.1
    with pytest.raises(ConfigError, match=r"rule.lrate: backprop takes no parameter 'lrate'; it takes lr, optimizer"):
        plugins.make("rule", {"name": "backprop", "lrate": 0.1})
    with pytest.raises(ConfigError, match=r"rule: backprop: optimizer"):
        plugins.make("rule", {"name": "backprop", "lr": 0.1, "optimizer": "rmsprop"})


def _example(tmp_path, **changes):
    """The example config on tiny synthetic data, one seed, one epoch (its tune section dropped)."""
    data = write_tiny_fashion_mnist(tmp_path / "fmnist", 240, 60)
    raw = yaml.safe_load((EXAMPLE / "config.yaml").read_text())
    raw.pop("tune")
    raw.update(seeds=[0], workers=1)
    raw["task"].update(dir=str(data), download=False, train_limit=240, validation=40, batch_size=10)
    raw["protocol"].update(epochs=1)
    raw.update(changes)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    (tmp_path / "node_perturbation.py").write_text((EXAMPLE / "node_perturbation.py").read_text())
    return cfg


def test_the_example_rule_trains_on_pcm_and_rram_under_three_schemes(tmp_path):
    """The rule from outside the package, named in a config, on the float chip and on PCM and
    RRAM through sign, stochastic and mixed-precision updates: no change to neuroemu."""
    from neuroemu.studies import run_experiment

    cfg = _example(tmp_path)
    raw = yaml.safe_load(cfg.read_text())
    raw["chip"]["periphery"] = "ideal"  # exact reads: the two passes differ by the rule's noise alone
    cfg.write_text(yaml.safe_dump(raw))
    summary = run_experiment(cfg, tmp_path / "out", workers=1, quiet=True)
    rows = {r["run"]: r for r in summary["table"]}
    assert list(rows) == ["float"] + [f"{c}/{s}" for c in ("pcm_nandakumar2018", "rram_gong2018")
                                      for s in ("sign", "stochastic", "mixed_precision")]
    pulsed = 0
    for name, row in rows.items():
        if row.get("diverged"):  # a learning rate too large for a card is a result, recorded as such
            assert name != "float" and row["diverged_seeds"]["0"]["metric"] == "loss"
            continue
        assert 0 <= row["test_acc"] <= 100 and 0 <= row["val_acc"] <= 100
        assert ("test_acc_after_3600s" in row) and ("test_acc_after_86400s" in row)
        if name == "float":
            assert row["pulses_per_synapse"] == 0 and row["energy_uJ"] == 0
        pulsed += row["pulses_per_synapse"] > 0
    assert pulsed >= 3  # devices were programmed by pulses on the chips that did not diverge
    result = json.loads((tmp_path / "out" / "runs" / "rram_gong2018_mixed_precision_seed0.json").read_text())
    assert result["job"]["run"]["rule"]["name"].endswith("node_perturbation.py:NodePerturbation")
    assert [m["epoch"] for m in result["result"]["metrics"]] == [1]
    text = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "node_perturbation.py:NodePerturbation" in text and "(figures/learning_curves.png)" in text
    ops = json.loads((tmp_path / "out" / "runs" / "float_seed0.json").read_text())["result"]["ops"]
    # per update and, a classification task, per inference
    assert ops["energy_per_update_pJ"]["total"] > 0 and ops["energy_per_inference_pJ"]["total"] > 0
    assert "## Operations and energy" in text and summary["energy"][0]["run"] == "float"


def test_node_perturbation_estimates_the_gradient_of_the_loss():
    """The example rule's mean update over many noise draws is the backprop step (same lr)."""
    import sys

    from neuroemu.chip import Hardware, Update
    from neuroemu.models.mlp import MLP

    sys.path.insert(0, str(EXAMPLE))
    try:
        from node_perturbation import NodePerturbation
    finally:
        sys.path.remove(str(EXAMPLE))
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 6)), rng.integers(0, 3, 8)
    model = MLP([6, 5, 3])

    chip = model.build(Hardware.ideal(w_max=8.0), rng=1)

    def wanted(rule):  # the ΔW the rule asks for, not applied, in the chip's layer order
        asked = {u.layer: -u.lr * u.d.T @ u.x for u in rule.step(chip, (x, y)) if isinstance(u, Update)}
        return np.concatenate([asked[name].ravel() for name in chip.layers])

    want = wanted(Backprop(1.0))
    rule = NodePerturbation(lr=1.0, sigma=0.01, rng=2)
    got = np.mean([wanted(rule) for _ in range(4000)], axis=0)
    assert np.corrcoef(got, want)[0, 1] > 0.9
    assert np.linalg.norm(got) == pytest.approx(np.linalg.norm(want), rel=0.25)


def test_a_rule_on_a_network_it_has_no_meaning_on_fails_with_a_clear_error(tmp_path):
    from neuroemu.runner import JobsFailed
    from neuroemu.studies import run_experiment

    (tmp_path / "rec.py").write_text(textwrap.dedent("""
        from neuroemu.rules.base import Rule

        class RecurrentOnly(Rule):
            requires = frozenset({"recurrent", "spiking"})
    """))
    cfg = _example(tmp_path, runs=[{"name": "float", "chip": {"card": "ideal"}}])
    raw = yaml.safe_load(cfg.read_text())
    raw["rule"] = {"name": "rec.py:RecurrentOnly"}
    cfg.write_text(yaml.safe_dump(raw))
    with pytest.raises(JobsFailed):
        run_experiment(cfg, tmp_path / "out", workers=1, quiet=True)
    error = (tmp_path / "out" / "runs" / "float_seed0.error.txt").read_text()
    assert "RuleError: rule RecurrentOnly needs a network that is recurrent, spiking" in error


@pytest.mark.parametrize("change, message", [
    ({"rule": {"name": "nope.py:X"}}, r"runs\[0\].rule.name: no such file"),
    ({"runs": [{"rule": {"name": "plugins/rule:X"}}]}, r"runs\[0\].rule.name: plugins/rule: expected a Python file"),
    ({"model": {"name": "plugins/model:X"}}, r" model.name: plugins/model: expected a Python file"),
    ({"runs": [{"chip": {"card": "pcm_nandakumar2018", "scheme": "signn"}}]}, r"runs\[0\].chip.scheme: expected one of"),
    ({"runs": [{"chip": {}, "rules": {}}]}, r"runs\[0\].rules: unknown field.*did you mean 'rule'"),
    ({"protocol": {"epochs": 1, "updates": 3}}, r"runs\[0\].protocol: Protocol: give epochs or updates"),
    ({"rule": {"name": "backprop", "lrate": 1}}, None),  # a bad parameter fails when the rule is built
    ({"runs": [{"rule": {"_from": "/elsewhere"}}]}, r"runs\[0\].rule._from: the name '_from' is reserved"),
    ({"rule": {"name": "backprop", "opts": [{"_absolute": 1}]}}, r"rule.opts\[0\]._absolute: the name '_absolute' is reserved"),
])
def test_config_errors_name_the_field(tmp_path, change, message):
    from neuroemu.studies import resolve

    cfg = _example(tmp_path, **change)
    if message is None:
        from neuroemu.runner import JobsFailed
        from neuroemu.studies import run_experiment

        with pytest.raises(JobsFailed):
            run_experiment(cfg, tmp_path / "out", workers=1, quiet=True)
        assert "rule.lrate: backprop takes no parameter 'lrate'" in next((tmp_path / "out" / "runs").glob(
            "*.error.txt")).read_text()
        return
    with pytest.raises(ConfigError, match=message):
        resolve(cfg)


def test_an_edited_plugin_file_reruns_instead_of_serving_old_results(tmp_path):
    """Each job holds the SHA-256 of its plug-in's file: after an edit the finished runs no longer
    match (ResultsDiffer names the field); the package's own rules add nothing to the jobs."""
    from neuroemu.runner import ResultsDiffer, job_hash
    from neuroemu.studies import resolve, run_experiment

    cfg = _example(tmp_path, runs=[{"name": "float", "chip": {"card": "ideal"}}])
    run_experiment(cfg, tmp_path / "out", workers=1, quiet=True)
    module, resolved = resolve(cfg)
    before = job_hash(module.jobs(resolved)[0])
    assert "sources" not in (tmp_path / "out" / "config.yaml").read_text()  # derived, not written
    run_experiment(cfg, tmp_path / "out", workers=1, quiet=True)  # unchanged: loaded
    plugin = tmp_path / "node_perturbation.py"
    plugin.write_text(plugin.read_text() + "\n# edited\n")
    module, resolved = resolve(cfg)
    assert job_hash(module.jobs(resolved)[0]) != before
    with pytest.raises(ResultsDiffer, match="run.sources"):
        run_experiment(cfg, tmp_path / "out", workers=1, quiet=True)
    own = yaml.safe_load(cfg.read_text()) | {"rule": {"name": "backprop", "lr": 0.1}}
    cfg.write_text(yaml.safe_dump(own))
    module, resolved = resolve(cfg)
    assert "sources" not in resolved["runs"][0]
    assert plugins.source_digest(plugins.load("rule", "backprop")) is None


def test_the_digest_is_that_of_the_defining_file_for_files_and_import_paths(tmp_path, monkeypatch):
    import hashlib

    (tmp_path / "mymod.py").write_text("class Rule:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    digest = hashlib.sha256((tmp_path / "mymod.py").read_bytes()).hexdigest()
    assert plugins.source_digest(plugins.load("rule", "mymod:Rule")) == digest
    assert plugins.source_digest(plugins.load("rule", "mymod.py:Rule", base_dir=tmp_path)) == digest
    assert plugins.source_digest(Backprop) is None


def test_the_same_config_loads_the_same_results_from_any_working_directory(tmp_path, monkeypatch):
    """A job names a plug-in file by its file name and SHA-256; where it is stays local (``_from``:
    not hashed, not stored), so another working directory, or the written config.yaml, finds the
    finished runs."""
    from neuroemu.studies import run_experiment

    cfg = _example(tmp_path, runs=[{"name": "float", "chip": {"card": "ideal"}}])
    out = tmp_path / "out"
    run_experiment(cfg, out, workers=1, quiet=True)
    stored = (out / "runs" / "float_seed0.json").read_text()
    assert "_from" not in stored and f"\"{tmp_path}\"" not in stored  # the plug-in's directory
    assert json.loads(stored)["job"]["run"]["rule"]["name"] == "node_perturbation.py:NodePerturbation"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    run_experiment(cfg, out, workers=1, quiet=True)

    def loaded():
        meta = json.loads((out / "summary.json").read_text())["meta"]
        return meta["jobs_loaded"], meta["jobs"]

    assert loaded() == (1, 1)
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["rule"]["name"] == "../node_perturbation.py:NodePerturbation"  # relative to out/
    monkeypatch.chdir(out)
    run_experiment("config.yaml", out, workers=1, quiet=True)
    assert loaded() == (1, 1)
    assert "_from" not in (out / "RESULTS.md").read_text()  # the parameters shown, not where the file is


def test_a_plugin_file_is_identified_by_its_content_and_its_name(tmp_path):
    """Two files of the same name with other content are two jobs; a link is named as written; the
    digest is of the file the config names even when the object is defined in another module."""
    from neuroemu.runner import job_hash
    from neuroemu.studies import resolve

    def hashes(cfg):
        module, resolved = resolve(cfg)
        return [job_hash(j) for j in module.jobs(resolved)]

    text = "import functools\nfrom neuroemu.data.classification import fashion_mnist_task\n" \
           "Task = functools.partial(fashion_mnist_task, train_limit={})\n"
    found = []
    for name, limit in (("a", 100), ("b", 200), ("c", 100)):
        (tmp_path / name).mkdir()
        cfg = _example(tmp_path / name, task={"name": "task.py:Task", "batch_size": 10})
        (tmp_path / name / "task.py").write_text(text.format(limit))
        found.append(hashes(cfg))
    assert found[0] != found[1] and found[0] == found[2]  # same content in another folder: the same jobs
    (tmp_path / "d").mkdir()
    cfg = _example(tmp_path / "d", task={"name": "task.py:Task", "batch_size": 10})
    (tmp_path / "d" / "impl_v2.py").write_text(text.format(100))
    (tmp_path / "d" / "task.py").symlink_to(tmp_path / "d" / "impl_v2.py")
    assert hashes(cfg) == found[0]  # the link's name, not its target's


def test_an_absolute_plugin_path_stays_absolute_in_the_written_config(tmp_path):
    from neuroemu.studies import run_experiment

    cfg = _example(tmp_path, rule={"name": f"{tmp_path}/node_perturbation.py:NodePerturbation", "lr": 0.01},
                   runs=[{"name": "float", "chip": {"card": "ideal"}}])
    run_experiment(cfg, tmp_path / "out", workers=1, quiet=True)
    written = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert written["rule"]["name"] == f"{tmp_path.resolve()}/node_perturbation.py:NodePerturbation"


def test_relocate_keeps_plugin_files_found_from_another_directory(tmp_path):
    from neuroemu.studies import generic

    raw = {"rule": {"name": "node_perturbation.py:NodePerturbation"}, "model": "mlp", "task": {"name": "x"},
           "runs": [{"rule": {"name": "sub/other.py:R"}}, {"chip": {}}]}
    moved = generic.relocate(raw, tmp_path / "a", tmp_path / "b" / "c")
    assert moved["rule"]["name"] == "../../a/node_perturbation.py:NodePerturbation" and moved["model"] == "mlp"
    assert moved["runs"][0]["rule"]["name"] == "../../a/sub/other.py:R" and moved["runs"][1] == {"chip": {}}


def test_the_docs_page_shows_the_example_files_as_they_are():
    page = (ROOT / "docs" / "plugins.md").read_text()
    for name in ("node_perturbation.py", "config.yaml"):
        assert (EXAMPLE / name).read_text() in page, f"docs/plugins.md does not show examples/plugin_rule/{name} as it is"


def test_every_registered_name_loads_and_every_rule_refuses_a_network_it_has_no_meaning_on():
    from neuroemu.chip import Hardware
    from neuroemu.models.mlp import MLP
    from neuroemu.models.rsnn import RSNN
    from neuroemu.rules.base import RuleError

    for kind, names in plugins.REGISTRY.items():
        for name in names:
            assert callable(plugins.load(kind, name)), (kind, name)
    mlp = MLP([6, 4, 3]).build(Hardware.ideal(), rng=0)
    rsnn = RSNN(3, 5, 2).build(Hardware.ideal(), rng=0)
    params = {"eprop": {"lr": 1e-3}, "backprop": {"lr": 0.1}}
    for name in plugins.REGISTRY["rule"]:
        rule = plugins.make("rule", {"name": name, **params.get(name, {})})
        with pytest.raises(RuleError, match="needs|expects|requires"):
            rule.bind(rsnn if name == "backprop" else mlp)


def test_a_paper_study_written_as_a_train_config_gives_the_same_numbers(tmp_path):
    """The crossbar study is the MLP, backprop and Fashion-MNIST on each run's chip: written as an
    ``experiment: train`` config it trains the same networks, bit for bit."""
    from neuroemu.studies import crossbar_mlp, generic, resolve_data

    data = write_tiny_fashion_mnist(tmp_path / "fmnist", 240, 60)
    periphery = {"dac_bits": 7, "adc_bits": 9, "adc_range": 12.0, "out_noise": 0.06, "read_noise": True,
                 "noise_management": True, "bound_management": 0}
    runs = [("pcm_nandakumar2018", "mixed_precision", False), ("pcm_joshi2020", "ideal", True)]
    _, study = resolve_data({
        "experiment": "crossbar_mlp", "seeds": [0], "data": {"dir": str(data), "download": False, "validation": 40},
        "model": {"hidden": [16]}, "train": {"epochs": 2, "batch_size": 20, "lr": 0.1},
        "hardware": {"periphery": periphery}, "eval": {"delays": [3600.0]},
        "runs": [{"name": f"r{i}", "card": c, "scheme": s, "deploy": d} for i, (c, s, d) in enumerate(runs)]}, "study:")
    _, config = resolve_data({
        "experiment": "train", "seeds": [0], "model": {"name": "mlp", "sizes": [784, 16, 10]},
        "rule": {"name": "backprop", "lr": 0.1},
        "task": {"name": "fashion_mnist", "batch_size": 20, "validation": 40, "dir": str(data), "download": False},
        "protocol": {"epochs": 2, "seconds_per_update": 0.01, "delays": [3600.0], "drift_compensation": True},
        "chip": {"periphery": periphery},
        "runs": [{"name": f"r{i}", "chip": {"card": c, "scheme": s}, "protocol": {"deploy": d}}
                 for i, (c, s, d) in enumerate(runs)]}, "config:")
    studied = list(map(crossbar_mlp.run_job, crossbar_mlp.jobs(study)))
    for a, b in zip(studied, map(generic.run_job, generic.jobs(config))):
        assert (a["test_acc"], a["val_acc"]) == (b["final"]["test_acc"], b["final"]["val_acc"])
        assert a["test_acc_after"]["3600"] == b["after"]["3600"]["test_acc"]
        assert (a["pulses"], a["energy_pJ"]) == (b["pulses"], b["energy_pJ"])
        assert [m["val_acc"] for m in a["metrics"]] == [m["val_acc"] for m in b["metrics"]]
        # the same operations: per update (training) and per inference (the trained chip)
        for key in ("energy_per_update_pJ", "energy_per_inference_pJ"):
            assert a["ops"][key]["total"] > 0 and a["ops"][key]["total"] == pytest.approx(b["ops"][key]["total"])
        assert a["ops"]["updates"] == b["ops"]["updates"] == 2 * 200 // 20
        assert a["ops"]["per_inference"]["layers"]["layer1"]["macs"] == 784 * 16
    summary = crossbar_mlp.report(study, studied, tmp_path / "out", {"command": "test", "versions": {}})
    assert [r["run"] for r in summary["energy"]] == ["r0", "r1"] and summary["energy"][0]["latency_s"] > 0
    assert "## Operations and energy" in (tmp_path / "out" / "RESULTS.md").read_text()
    assert (tmp_path / "out" / "figures" / "energy.png").stat().st_size > 1000


def test_a_rule_from_a_file_pickles_across_processes(tmp_path):
    """A checkpoint holds the plug-in's objects by module name: another process that loads the same
    file (as a resumed job does) reads them back."""
    import subprocess
    import sys

    (tmp_path / "mine.py").write_text("class Rule:\n    def __init__(self, lr):\n        self.lr = lr\n")
    common = f"from neuroemu import plugins; R = plugins.load('rule', {str(tmp_path / 'mine.py:Rule')!r}); import pickle"
    subprocess.run([sys.executable, "-c", f"{common}; open({str(tmp_path / 'r.pkl')!r}, 'wb').write("
                    "pickle.dumps(R(0.5)))"], check=True)
    out = subprocess.run([sys.executable, "-c", f"{common}; print(pickle.loads(open({str(tmp_path / 'r.pkl')!r}, "
                          "'rb').read()).lr)"], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "0.5"


def test_the_spiking_network_and_its_rules_train_from_a_config(tmp_path):
    from neuroemu.studies import run_experiment

    data = write_tiny_fashion_mnist(tmp_path / "fmnist", 120, 40)
    cfg = tmp_path / "snn.yaml"
    cfg.write_text(yaml.safe_dump({
        "experiment": "train", "seeds": [0], "workers": 1,
        "model": {"name": "snn", "sizes": [784, 12, 10], "t_steps": 10},
        "rule": {"name": "sparse_bptt", "lr": 0.002},
        "task": {"name": "fashion_mnist", "batch_size": 20, "dir": str(data), "download": False},
        "protocol": {"epochs": 1},
        "runs": [{"name": "exact", "chip": {"scheme": "exact"}},
                 {"name": "surrogate", "chip": {"scheme": "exact"}, "rule": {"name": "surrogate_bptt", "lr": 0.002},
                  "model": {"name": "snn", "sizes": [784, 12, 10], "t_steps": 10, "dynamics": "surrogate"}},
                 {"chip": {"card": "rram_gong2018", "scheme": "sign"}}]}))
    rows = {r["run"]: r for r in run_experiment(cfg, tmp_path / "out", workers=1, quiet=True)["table"]}
    assert set(rows) == {"exact", "surrogate", "rram_gong2018/sign"} and not any(r.get("diverged") for r in rows.values())
    assert rows["rram_gong2018/sign"]["pulses_per_synapse"] > 0 and rows["exact"]["pulses_per_synapse"] == 0
