"""Config files and overrides: every bad input is a ConfigError naming the file or the override."""

from __future__ import annotations

import pytest

from neuroemu.config import Opt, apply_overrides, load_yaml, validate
from neuroemu.errors import ConfigError, did_you_mean


def test_load_yaml_names_a_directory_a_missing_file_and_bad_bytes(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path}: is a directory; expected a YAML config file"):
        load_yaml(tmp_path)
    with pytest.raises(ConfigError, match="absent.yaml: no such file"):
        load_yaml(tmp_path / "absent.yaml")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("experiment: crossbar_mlp\ndescription: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml \(line 2, byte 41\): not UTF-8 text \(byte 0xe9\); "
                                          r"expected a YAML config file saved as UTF-8"):
        load_yaml(latin)
    latin.write_text("a: [1\n")
    with pytest.raises(ConfigError, match=r"latin.yaml \(line 2\): not valid YAML"):
        load_yaml(latin)
    latin.write_text("a: \x00\n")
    with pytest.raises(ConfigError, match=r"latin.yaml: not valid YAML: unacceptable character") as info:
        load_yaml(latin)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("item, message", [
    ("=3", "empty key"),
    ("train..lr=3", "empty key"),
    ("runs.0.scheme.x=1", "'scheme' is not a section"),
    ("runs.1.x=1", "'1' is not an index of a list of 1"),
    ("runs.0.x.y=1", "'0' is not a section"),
])
def test_bad_overrides(item, message):
    data = {"train": {"lr": 1}, "runs": [{"scheme": "sign"}]}
    if item.startswith("runs.0.x"):
        data["runs"] = ["sign"]
    with pytest.raises(ConfigError, match=message):
        apply_overrides(data, [item])


def test_suggestions_ignore_case_underscores_and_dashes():
    assert did_you_mean("tikitaka", ["sign", "tiki_taka"]) == " (did you mean 'tiki_taka'?)"
    assert did_you_mean("Tiki-Taka", ["sign", "tiki_taka"]) == " (did you mean 'tiki_taka'?)"
    assert did_you_mean("crossbar-mlp", ["crossbar_mlp", "sdt"]) == " (did you mean 'crossbar_mlp'?)"
    assert did_you_mean("pcm_nandakumar", ["pcm_nandakumar2018", "pcm_joshi2020"]) == \
        " (did you mean 'pcm_nandakumar2018'?)"
    assert did_you_mean("zzz", ["sign", "tiki_taka"]) == ""
    schema = {"scheme": Opt("str", choices=("sign", "tiki_taka")), "train": {"epochs": Opt("int", 1)}}
    with pytest.raises(ConfigError, match=r"cfg: scheme: .*got 'tikitaka' \(did you mean 'tiki_taka'\?\)"):
        validate({"scheme": "tikitaka"}, schema, "cfg:")
    with pytest.raises(ConfigError, match=r"cfg: Train: unknown field \(did you mean 'train'\?\)"):
        validate({"scheme": "sign", "Train": {}}, schema, "cfg:")


def _example_configs():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "examples"
    return sorted(p.relative_to(root.parent) for p in root.glob("**/*.yaml")
                  if not any(part.startswith("results") for part in p.parts))


@pytest.mark.parametrize("path", _example_configs(), ids=str)
def test_the_written_config_yaml_runs_as_it_is_and_gives_the_same_jobs(path, tmp_path, monkeypatch):
    """config.yaml in a results directory (as `neuroemu run` writes it) resolves to the jobs of the
    config it came from: nothing derived by a study's check, no file named relative to the wrong
    directory, no value the schema refuses (e.g. an infinite diverge_factor)."""
    from pathlib import Path

    from neuroemu.config import dump_yaml
    from neuroemu.runner import job_hash
    from neuroemu.studies import _as_written, resolve

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    module, cfg = resolve(path)
    if not hasattr(module, "jobs"):
        pytest.skip(f"{path}: not an experiment config")
    expected = [job_hash(j) for j in module.jobs(cfg)]
    out = tmp_path / "results"
    out.mkdir()
    dump_yaml(_as_written(cfg, module, out), out / "config.yaml")
    again_module, again = resolve(out / "config.yaml")
    assert again_module is module and [job_hash(j) for j in module.jobs(again)] == expected
