"""Experiments that ``neuroemu run CONFIG.yaml`` executes.

An experiment module provides ``NAME``, ``SCHEMA`` (see :mod:`neuroemu.config`), ``check(cfg, where)``
(cross-field validation), ``jobs(cfg)`` (independent jobs, each with an ``id``), ``run_job(job)``
(module-level, runs in a worker process), ``prepare(cfg)`` (fetch data once, before workers start) and
``report(cfg, results, out_dir, meta)`` (tables and figures; it returns the summary: ``table``,
``figures`` and, where runs can diverge, ``diverged`` — {job id: where and how it diverged}, see
:mod:`.divergence` — all of which land in summary.json) and ``console_table(rows)`` (the lines
``neuroemu run`` prints).
"""

from __future__ import annotations

import copy
import inspect
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..config import apply_overrides, dump_yaml, load_yaml, validate
from ..errors import ConfigError, did_you_mean
from ..io import atomic_write_json, atomic_write_text, versions
from ..runner import JobsFailed, load_results, run_jobs
from . import crossbar_mlp, eprop_pcm, fasthebb, generic, lif_sampling, nir_deploy, sdt, sparse_snn, spiking_fmnist
from .common import differences_markdown
from .lif_sampling import images as lif_images

EXPERIMENTS = {m.NAME: m for m in (crossbar_mlp, spiking_fmnist, eprop_pcm, sparse_snn, fasthebb, sdt, lif_sampling,
                                   lif_images, nir_deploy, generic)}


def resolve(config_path: str | Path, overrides: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """Load, override and validate an experiment config. Returns (module, resolved config)."""
    where = f"{config_path}:"
    raw = load_yaml(config_path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} expected a mapping at the top level")
    apply_overrides(raw, overrides or [])
    section = raw.pop("tune", None)  # the search of `neuroemu tune`: checked, not part of the experiment
    if section is not None:
        from ..tune_section import check_section

        check_section(section, f"{where} tune")
    return resolve_data(raw, where, base_dir=Path(config_path).resolve().parent)


def resolve_data(raw: dict[str, Any], where: str, base_dir: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Validate a config given as a mapping (without a ``tune`` section); ``where`` names its source
    in errors, ``base_dir`` the directory that files it names are relative to (plug-ins). Returns
    (module, resolved config); ``raw`` is not changed."""
    name = raw.get("experiment")
    if not isinstance(name, str) or name not in EXPERIMENTS:
        raise ConfigError(f"{where} experiment: expected one of {', '.join(EXPERIMENTS)}, got {name!r}"
                          f"{did_you_mean(name, EXPERIMENTS)}")
    module = EXPERIMENTS[name]
    cfg = validate(copy.deepcopy(raw), module.SCHEMA, where)
    if "base_dir" in inspect.signature(module.check).parameters:
        return module, module.check(cfg, where, base_dir=base_dir)
    return module, module.check(cfg, where)


def _as_written(cfg: Any, module: Any, out: Path) -> Any:
    """The resolved config as a user would write it into the directory ``out``: without the device
    cards' content that ``check`` copies into the runs (``card_data``, so that an edited card
    invalidates finished jobs; each ``runs/*.json`` keeps it), without what a study's ``check``
    derives into each run (its ``DERIVED_RUN_KEYS``) and without local keys (``_from``: where a file
    is on this machine); files it names are named relative to ``out`` (the study's ``relocate``).
    ``config.yaml`` then runs as it is and gives the same jobs."""
    from ..runner import identity

    relocate = getattr(module, "relocate", None)
    written = relocate(cfg, Path.cwd(), out.resolve()) if relocate is not None else cfg

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "card_data"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    written = strip(identity(written))
    derived = getattr(module, "DERIVED_RUN_KEYS", ())
    if derived and isinstance(written.get("runs"), list):
        written["runs"] = [{k: v for k, v in r.items() if k not in derived} for r in written["runs"]]
    return written


def run_experiment(config_path: str | Path, out_dir: str | Path, overrides: list[str] | None = None, *,
                   workers: int | None = None, quiet: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run an experiment; write config.yaml, metrics.csv, summary.json, RESULTS.md and figures/.
    Returns the summary, plus ``console``: the result table as lines of text.

    Runs finished in ``out_dir`` with the same settings are loaded, not recomputed. When it holds
    finished runs of the same names with other settings, :class:`~neuroemu.runner.ResultsDiffer` is
    raised before anything is written, unless ``overwrite`` (they are recomputed and replaced).
    ``workers``: local worker processes (default: the config's ``workers``; 1 = here, serially)."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers: expected an integer >= 1, got {workers!r}")
    module, cfg = resolve(config_path, overrides)
    out = Path(out_dir)
    job_list = module.jobs(cfg)
    loaded = load_results(out, job_list, overwrite=overwrite)  # refuse before config.yaml is replaced
    out.mkdir(parents=True, exist_ok=True)
    dump_yaml(_as_written(cfg, module, out), out / "config.yaml")
    start = time.perf_counter()
    module.prepare(cfg)
    if not quiet:
        print(f"{len(job_list)} job(s) -> {out}", file=sys.stderr, flush=True)
    failure = None
    try:
        results = run_jobs(job_list, module.run_job, out, workers=cfg["workers"] if workers is None else workers,
                           quiet=quiet, overwrite=overwrite)
    except JobsFailed as exc:  # report what finished, then fail
        results, failure = exc.results, exc
    command = "neuroemu run " + " ".join(shlex.quote(a) for a in [str(config_path), "--out", str(out_dir)] +
                                         [x for o in (overrides or []) for x in ("--set", o)])
    meta = {"command": command, "config": str(config_path), "versions": versions(),
            "wall_time_s": time.perf_counter() - start, "jobs": len(job_list), "jobs_loaded": len(loaded)}
    summary = module.report(cfg, results, out, meta) if results else {"table": []}
    if results and cfg.get("differences") and not getattr(module, "REPORTS_DIFFERENCES", False):
        text = (out / "RESULTS.md").read_text(encoding="utf-8").rstrip("\n")
        atomic_write_text(out / "RESULTS.md", "\n".join([text, "", *differences_markdown(cfg["differences"])]))
    atomic_write_json(out / "summary.json", {"meta": meta, "failed": failure.failed if failure else {}, **summary})
    if failure is not None:
        raise failure
    return {**summary, "console": module.console_table(summary["table"]) if summary["table"] else []}
