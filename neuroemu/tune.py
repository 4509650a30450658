"""Hyperparameter search per run, on equal terms: ``neuroemu tune``.

    neuroemu tune CONFIG --out DIR [--workers N | --scheduler ADDRESS] [--set KEY=VALUE ...] [--then-run]

A scheme judged at another scheme's learning rate proves nothing, so every run of a study gets its
own search, and every run the same one: the same number of configurations (``budget``), the same
rungs, the same validation seeds. The search is declared in the config's ``tune:`` section::

    tune:
      budget: 8                   # configurations per run, the same for every run
      seeds: [100, 101]           # validation seeds, disjoint from the config's (reported) seeds
      space:                      # searched for every run
        train.lr: {log: [1.0e-3, 1.0]}
      runs:                       # per run (by name): keys added or replaced; null removes a key
        pcm_nandakumar2018/sign: {scheme_params.threshold: [1.0e-3, 1.0e-2]}
        fp32: null                # this run is not tuned and runs as configured

Every space key is set on the run: a field of the run (``scheme_params.threshold``, ``w_max``,
``n_devices``) as it is, a field of a config section (``train.lr``) in the run's own values of that
section (``runs[i].train.lr``), which the experiment must allow (its ``TUNE["sections"]``). A value
spec is a list of values, ``{log: [lo, hi]}`` or ``{lin: [lo, hi]}`` (``points: n`` and ``int: true``
optional). A run's grid is the Cartesian product of its keys' values and has exactly ``budget``
points: ranges without ``points`` share what the budget leaves after the lists (one range: budget /
product of the list lengths points), and any other product is an error. So every run is searched
with the same number of configurations, whatever its space.

Method (``method: grid_halving``, the default): successive halving over that grid. Rung 0 trains
every configuration with a fraction of the resource, each later rung keeps the best
``floor(n / eta)`` (at least one) and trains them with ``eta`` times more, the last with the full
resource, until one is left (or for ``rungs`` rungs). The resource is the experiment's training
length (``TUNE["resource"]``: ``train.epochs`` for crossbar_mlp, ``train.updates`` for e-prop;
another integer config key with ``resource: KEY``) or, with ``resource: seeds``, the number of
validation seeds scored (then every trial trains for the full length). Rung k's resource is
``max(min_resource, round(R · eta^(k − K + 1)))`` of the full ``R``. ``method: grid`` trains every
configuration at the full resource (one rung). A job at a resource already trained is loaded, not
rerun (e.g. two rungs that round to the same number of epochs).

Scoring: a trial's score is the mean over its validation seeds of the experiment's main metric
(``TUNE["metric"]`` and ``TUNE["mode"]``; ``metric``/``mode`` in the section override them), taken
from the jobs' tidy rows (:func:`neuroemu.sweep.tidy_rows`). A configuration that diverged on any
seed (see :mod:`neuroemu.divergence`) scores worst. Ties go to the earlier grid point.
Trials run on the validation seeds only and through the experiment's ``TUNE["trial"]`` hook
(crossbar_mlp: scored on held-out training images, the test set is not loaded); ``tune.set`` gives
values for the trials only (e.g. ``{data.validation: 10000}``).

Every trial is a set of jobs (one per validation seed) run by :func:`neuroemu.runner.run_jobs`:
in local worker processes or on a Dask cluster, saved in ``DIR/runs/`` as it finishes; a rerun
recomputes nothing that finished (job ids name the run, the values and the resource).

Output: ``DIR/trials.csv`` (every trial: run, rung, resource, values, score, seeds, diverged,
promoted, chosen), ``DIR/tune.json`` (the plan, every trial with its per-seed values, the chosen
values), ``DIR/tuned.yaml`` (the config with each run's chosen values, without the ``tune:``
section: ``neuroemu run DIR/tuned.yaml`` runs it on the reported seeds), ``DIR/RESULTS.md`` and
``DIR/figures/score_vs_lr.png`` (score against the learning rate, one panel per run), written by
:mod:`neuroemu.tune_report`. With ``then_run`` the tuned config is run into ``DIR/run/``.

An experiment module supports tuning by declaring ``TUNE = {"metric": ..., "mode": "min"|"max",
"resource": "train.epochs", "sections": ("train",), "trial": fn, "about": text}``: the metric and
its direction (either may be a function of the resolved config), the integer config key of its
training length, the config sections a run may have its own values of, ``trial(cfg, where) -> cfg``
that turns a resolved config into a trial's (e.g. keep off the test set), and a sentence on how the
trials keep off the reported data (for RESULTS.md). ``sections`` and ``trial`` and ``about`` are
optional.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import itertools
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import apply_overrides, load_yaml
from .tune_section import METHODS, check_section  # noqa: F401 - METHODS: part of this module's API
from .errors import ConfigError, NeuroemuError, did_you_mean
from .io import versions
from .runner import JobsFailed, load_results, run_jobs, slug
from .tune_report import console_table, values_label, write

__all__ = ["METHODS", "Plan", "check_section", "expand", "halving_sizes", "lin_grid", "log_grid", "plan", "promote",
           "rung_resources", "run_tune"]

_MAX_LABEL = 80
_SIG = 6  # significant digits of generated grid values: clean YAML and short job ids


# ---------------------------------------------------------------------------------------- grids
def _round(value: float) -> float:
    return float(f"{value:.{_SIG}g}")


def log_grid(lo: float, hi: float, n: int, *, integer: bool = False) -> list[float] | list[int]:
    """``n`` log-spaced values from ``lo`` to ``hi`` (both included; one value: their geometric mean),
    rounded to 6 significant digits, or to integers with ``integer``."""
    vals = [math.sqrt(lo * hi)] if n == 1 else np.geomspace(lo, hi, n).tolist()
    return [int(round(v)) for v in vals] if integer else [_round(v) for v in vals]


def lin_grid(lo: float, hi: float, n: int, *, integer: bool = False) -> list[float] | list[int]:
    """``n`` evenly spaced values from ``lo`` to ``hi`` (one value: the midpoint)."""
    vals = [(lo + hi) / 2] if n == 1 else np.linspace(lo, hi, n).tolist()
    return [int(round(v)) for v in vals] if integer else [_round(v) for v in vals]


def _values(spec: dict[str, Any], n: int, where: str) -> list[Any]:
    if "values" in spec:
        return spec["values"]
    lo, hi = spec["range"]
    vals = (log_grid if spec["scale"] == "log" else lin_grid)(lo, hi, n, integer=spec["int"])
    if len(set(vals)) != len(vals):
        raise ConfigError(f"{where}: {n} points in [{lo:g}, {hi:g}] are not distinct ({vals}); widen the range or "
                          "give fewer points")
    return vals


def expand(space: dict[str, dict[str, Any]], budget: int, where: str = "tune") -> tuple[list[dict[str, Any]],
                                                                                      dict[str, list[Any]]]:
    """The grid of one run: (``budget`` points, each {key: value}, first key slowest; the values of
    each key). Lists and ranges with ``points`` have their sizes; the ranges without share what the
    budget leaves, equally; the product must be ``budget`` exactly (:class:`ConfigError` otherwise)."""
    fixed = {k: len(s["values"]) if "values" in s else s["points"] for k, s in space.items()
             if "values" in s or s["points"]}
    free = [k for k in space if k not in fixed]
    prod = math.prod(fixed.values())
    sizes = dict(fixed)
    if free:
        q, rem = divmod(budget, prod)
        n = round(q ** (1 / len(free))) if q else 0
        if rem or q < 1 or n ** len(free) != q:
            shown = " × ".join(f"{k}: {v}" for k, v in fixed.items()) or "nothing"
            raise ConfigError(f"{where}: budget {budget} cannot be shared by the range(s) {', '.join(free)} after "
                              f"{shown} (product {prod}); every run's grid must have exactly budget points: give "
                              "a budget that is a multiple of that product (a power, for several ranges), or points")
        sizes.update(dict.fromkeys(free, n))
    elif prod != budget:
        shown = " × ".join(f"{k}: {v}" for k, v in fixed.items())
        raise ConfigError(f"{where}: the grid has {prod} points ({shown}), the budget is {budget}; every run is searched "
                          "with exactly budget configurations: give a range ({log: [lo, hi]}) whose points the "
                          "budget sets, or lists whose lengths multiply to the budget")
    values = {k: _values(space[k], sizes[k], f"{where}.{k}") for k in space}
    keys = list(space)
    points = [dict(zip(keys, combo)) for combo in itertools.product(*(values[k] for k in keys))]
    return points, values


def halving_sizes(budget: int, eta: int, rungs: int | None = None) -> list[int]:
    """Configurations per rung: ``budget``, then floor(n / eta) (at least 1) until one is left, or
    for ``rungs`` rungs."""
    sizes = [budget]
    while (rungs is None and sizes[-1] > 1) or (rungs is not None and len(sizes) < rungs):
        sizes.append(max(1, sizes[-1] // eta))
    return sizes


def rung_resources(full: int, n_rungs: int, eta: int, min_resource: int = 1) -> list[int]:
    """Resource of each rung: ``max(min_resource, round(full · eta^(k − n_rungs + 1)))``, at most
    ``full``; the last rung gets ``full``."""
    return [min(full, max(min_resource, int(round(full * float(eta) ** (k - n_rungs + 1))))) for k in range(n_rungs)]


def promote(scores: list[float], keep: int, mode: str) -> list[int]:
    """Indices of the ``keep`` best scores (``mode`` "min" or "max"; NaN counts as worst), ties to
    the earlier index, in that order of rank."""
    def key(i):
        s = scores[i]
        worst = math.isnan(s)
        return (worst, s if mode == "min" else -s, i) if not worst else (True, 0.0, i)
    return sorted(range(len(scores)), key=key)[:keep]


# ---------------------------------------------------------------------------------------- the plan
def _get(data: Any, dotted: str) -> Any:
    node = data
    for part in dotted.split("."):
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(dotted)
    return node


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {} if nxt is None else nxt
        if not isinstance(nxt, dict):
            raise ConfigError(f"{dotted}: '{part}' is not a section")
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def _prefix(values: dict[str, Any], resource: tuple[str, int] | None) -> str:
    """A readable, file-name-safe job id prefix derived from the values and the resource only."""
    label = values_label(values) or "as_configured"
    text = slug(label)
    if len(text) > _MAX_LABEL:
        text = text[:_MAX_LABEL - 9].rstrip("_") + "-" + hashlib.sha256(label.encode()).hexdigest()[:8]
    return f"tune/{text}" + (f"/{resource[0]}={resource[1]}" if resource else "")


@dataclasses.dataclass
class RunSpace:
    """One run's search: its index and name in the config, its space and grid (empty: not tuned)."""

    index: int
    name: str
    space: dict[str, dict[str, Any]]
    points: list[dict[str, Any]]
    values: dict[str, list[Any]]

    @property
    def tuned(self) -> bool:
        return bool(self.points)


@dataclasses.dataclass
class Plan:
    """Everything ``neuroemu tune`` will do, resolved and validated before anything runs."""

    config_path: str
    overrides: list[str]
    module: Any
    raw: dict[str, Any]          # the config as written (with --set), without its tune section
    cfg: dict[str, Any]          # ... resolved
    section: dict[str, Any]      # the tune section, validated
    runs: list[RunSpace]
    sizes: list[int]             # configurations per rung
    resource: str                # a config key or "seeds"
    resources: list[int]         # resource per rung
    metric: str
    mode: str
    trial_hook: Callable | None
    about: str = ""              # the experiment's words on how its trials keep off the reported data
    first: dict[tuple[str, int], list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    first_cfg: dict[str, Any] | None = None  # the first trial's resolved config (to fetch the data once)

    @property
    def seeds(self) -> list[int]:
        return self.section["seeds"]

    def rung_seeds(self, rung: int) -> list[int]:
        return self.seeds[:self.resources[rung]] if self.resource == "seeds" else self.seeds

    def trial(self, run: RunSpace, point: int, rung: int) -> list[dict[str, Any]]:
        """The jobs of one trial: ``run`` at its grid point ``point`` on rung ``rung``'s resource, one
        per validation seed of the rung; their ids start with ``tune/<values>/<resource>=<n>/``."""
        if rung == 0 and (run.name, point) in self.first:
            return self.first[(run.name, point)]
        cfg, prefix = self.trial_config(run, point, rung)
        return [dict(job, id=f"{prefix}/{job['id']}") for job in self.module.jobs(cfg)]

    def trial_config(self, run: RunSpace, point: int, rung: int) -> tuple[dict[str, Any], str]:
        """(the resolved config of one trial, its job id prefix): the config as written with
        ``tune.set``, only this run, its values, the rung's resource and validation seeds, passed
        through the experiment's trial rule."""
        values = run.points[point]
        raw = copy.deepcopy(self.raw)
        for key, value in self.section["set"].items():
            _set(raw, key, value)
        raw_run = copy.deepcopy(self.raw["runs"][run.index])
        raw_run["name"] = run.name
        for key, value in values.items():
            _set(raw_run, key, value)
        raw["seeds"] = self.rung_seeds(rung)
        resource = None
        if self.resource != "seeds":
            resource = (self.resource, self.resources[rung])
            _set(raw, self.resource, resource[1])
            section, _, field = self.resource.partition(".")
            if isinstance(raw_run.get(section), dict) and field in raw_run[section]:
                _set(raw_run, self.resource, resource[1])  # the run's own value would hide the rung's
        raw["runs"] = [raw_run]
        where = f"{self.config_path}: tune trial of run {run.name!r} ({values_label(values) or 'as configured'}):"
        from .studies import resolve_data

        _, cfg = resolve_data(raw, where, base_dir=Path(self.config_path).resolve().parent)
        if self.trial_hook is not None:
            cfg = self.trial_hook(cfg, where)
        return cfg, _prefix(values, resource)

    def run_config(self, run: RunSpace, values: dict[str, Any], raw: dict[str, Any]) -> None:
        """Set ``values`` on run ``run`` of ``raw`` (in place): as the tuned config carries them."""
        target = raw["runs"][run.index]
        target["name"] = run.name
        for key, value in values.items():
            _set(target, key, value)


def _declaration(module: Any, cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """The module's ``TUNE`` declaration, checked; a ``metric`` or ``mode`` given as a function of
    the resolved config (e.g. one per task) is evaluated."""
    from .studies import EXPERIMENTS

    decl = getattr(module, "TUNE", None)
    if decl is None:
        able = [n for n, m in EXPERIMENTS.items() if getattr(m, "TUNE", None) is not None]
        raise ConfigError(f"{where} experiment {module.NAME!r} cannot be tuned yet: its module declares no TUNE (the "
                          "metric that scores a trial and its direction, the config key of its training length for "
                          "the rungs, and how a trial keeps off the reported test data); experiments that can: "
                          f"{', '.join(able) or 'none'}")
    decl = {**decl, **{k: decl[k](cfg) for k in ("metric", "mode") if callable(decl.get(k))}}
    missing = [k for k in ("metric", "mode", "resource") if k not in decl]
    if missing or decl["mode"] not in ("min", "max"):
        raise NeuroemuError(f"experiment {module.NAME!r}: TUNE needs metric, mode ('min' or 'max') and resource; "
                            f"got {decl!r}")
    if "seeds" not in module.SCHEMA:
        raise ConfigError(f"{where} experiment {module.NAME!r} has no 'seeds' field: tuning scores trials on "
                          "validation seeds")
    return decl


def _spaces(sec: dict[str, Any], names: list[str], top: set[str], sections: tuple[str, ...],
            module: Any, where: str) -> list[tuple[str, dict[str, Any] | None]]:
    """Each run's space: the common space with the run's entries merged in (None: not tuned)."""
    unknown = [n for n in sec["runs"] if n not in names]
    if unknown:
        raise ConfigError(f"{where}.runs.{unknown[0]}: no run of that name{did_you_mean(unknown[0], names)}; "
                          f"runs: {', '.join(names)}")
    out = []
    for name in names:
        if name in sec["runs"] and sec["runs"][name] is None:
            out.append((name, None))
            continue
        space = dict(sec["space"])
        for key, spec in (sec["runs"].get(name) or {}).items():
            if spec is None:
                space.pop(key, None)
            else:
                space[key] = spec
        for key in space:
            head = key.split(".")[0]
            w = f"{where}.runs.{name}.{key}" if key in (sec["runs"].get(name) or {}) else f"{where}.space.{key}"
            if head in top and "." not in key:
                raise ConfigError(f"{w}: {key} is a config value shared by all runs; a per-run search sets values "
                                  "of a run, or a run's own values of a config section (e.g. train.lr)")
            if head in top and head not in sections:
                raise ConfigError(f"{w}: a run of {module.NAME} cannot have its own {head} values, so {key} cannot be "
                                  f"searched per run; per-run sections: {', '.join(sections) or 'none'}; or search "
                                  "a field of the run (e.g. scheme_params.threshold)")
        out.append((name, space))
    return out


def plan(config_path: str | Path, overrides: list[str] | None = None) -> Plan:
    """Load the config and its ``tune:`` section, check them and every run's grid, and resolve the
    first rung's trials (so a typo fails now). Nothing is run or written."""
    config_path = str(config_path)
    where = f"{config_path}:"
    raw = load_yaml(config_path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} expected a mapping at the top level")
    apply_overrides(raw, overrides or [])
    section = raw.pop("tune", None)
    if section is None:
        raise ConfigError(f"{where} tune: missing; add a tune section (budget, seeds, space) to the config, see "
                          "docs/tune.md")
    from .studies import resolve_data

    module, cfg = resolve_data(raw, where, base_dir=Path(config_path).resolve().parent)
    decl = _declaration(module, cfg, where)
    sec = check_section(section, f"{where} tune")
    tw = f"{where} tune"
    both = sorted(set(sec["seeds"]) & set(cfg["seeds"]))
    if both:
        raise ConfigError(f"{tw}.seeds: validation seeds must be disjoint from the reported seeds {cfg['seeds']}; "
                          f"{', '.join(map(str, both))} {'is' if len(both) == 1 else 'are'} in both")
    names = [r["name"] for r in cfg["runs"]]
    top = set(module.SCHEMA)
    spaces = _spaces(sec, names, top, tuple(decl.get("sections", ())), module, tw)
    runs = []
    for i, (name, space) in enumerate(spaces):
        if space is None or not space:
            runs.append(RunSpace(i, name, {}, [], {}))
            continue
        w = f"{tw} (run {name!r})"
        points, values = expand(space, sec["budget"], w)
        runs.append(RunSpace(i, name, space, points, values))
    if not any(r.tuned for r in runs):
        raise ConfigError(f"{tw}.space: no run has anything to search; give keys such as train.lr: {{log: [1.0e-3, 1.0]}}")
    natural = len(halving_sizes(sec["budget"], sec["eta"]))
    if sec["rungs"] is not None and sec["rungs"] > natural:
        raise ConfigError(f"{tw}.rungs: budget {sec['budget']} with eta {sec['eta']} leaves one configuration after "
                          f"{natural} rung(s); expected rungs <= {natural}, got {sec['rungs']}")
    if sec["metric"] not in (None, decl["metric"]) and sec["mode"] is None:
        raise ConfigError(f"{tw}.mode: metric {sec['metric']!r} is not the experiment's own ({decl['metric']!r}); "
                          "say whether lower or higher is better: mode: min or mode: max")
    sizes = halving_sizes(sec["budget"], sec["eta"], 1 if sec["method"] == "grid" else sec["rungs"])
    resource = sec["resource"] or decl["resource"]
    if resource == "seeds":
        full = len(sec["seeds"])
    else:
        if any(resource in r.space for r in runs):
            raise ConfigError(f"{tw}.resource: {resource} is searched; the rungs cannot ration it too")
        try:
            full = _get(cfg, resource)
        except (KeyError, IndexError, ValueError):
            raise ConfigError(f"{tw}.resource: {resource!r} is not a config key of {module.NAME}; expected an integer "
                              "config key such as its training length, or 'seeds'") from None
        if isinstance(full, bool) or not isinstance(full, int) or full < 1:
            raise ConfigError(f"{tw}.resource: {resource} is {full!r}; expected a config key holding an integer >= 1")
    resources = rung_resources(full, len(sizes), sec["eta"], sec["min_resource"])
    metric, mode = sec["metric"] or decl["metric"], sec["mode"] or decl["mode"]
    p = Plan(config_path, list(overrides or []), module, raw, cfg, sec, runs, sizes, resource, resources, metric,
             mode, decl.get("trial"), decl.get("about", ""))
    for run in p.runs:  # every configuration resolves (on the first rung), before anything runs
        for i in range(len(run.points)):
            cfg, prefix = p.trial_config(run, i, 0)
            p.first_cfg = p.first_cfg or cfg
            p.first[(run.name, i)] = [dict(job, id=f"{prefix}/{job['id']}") for job in module.jobs(cfg)]
    return p


# ---------------------------------------------------------------------------------------- running
def _scores(plan: Plan, results: dict[str, dict[str, Any]], trial: dict[str, Any]) -> None:
    """Fill a trial record's per-seed values, diverged count and score from its jobs' results."""
    from .sweep import tidy_rows

    per_seed, diverged, available = [], 0, set()
    for job_id in trial["jobs"]:
        res = results[job_id]
        for row in tidy_rows(plan.module, res):
            if "diverged_at" in row or res.get("diverged"):
                diverged += 1
                per_seed.append(None)
                continue
            available |= {k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            value = row.get(plan.metric)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{plan.config_path}: tune.metric: the trials' results have no {plan.metric!r} "
                                  f"(job {job_id}); they have: {', '.join(sorted(available - {'seed'}))}")
            per_seed.append(float(value))
    trial["per_seed"], trial["diverged"] = per_seed, diverged
    ok = [v for v in per_seed if v is not None and math.isfinite(v)]
    trial["score"] = float(np.mean(ok)) if ok and not diverged and len(ok) == len(per_seed) else None


def run_tune(config_path: str | Path, out_dir: str | Path, overrides: list[str] | None = None, *,
             workers: int | None = None, scheduler: str | None = None, quiet: bool = False, overwrite: bool = False,
             then_run: bool = False) -> dict[str, Any]:
    """Tune every run of a config (see the module docstring); write trials.csv, tune.json,
    tuned.yaml, RESULTS.md and figures/ into ``out_dir``; with ``then_run``, run tuned.yaml into
    ``out_dir/run``. Returns ``chosen`` ({run: values}), ``trials``, ``console`` (lines of text) and,
    with ``then_run``, ``run`` (the summary of that run)."""
    from .sweep import _dask_client, dask_executor

    start = time.perf_counter()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers: expected an integer >= 1, got {workers!r}")
    if scheduler is not None:
        _dask_client(scheduler)  # fail now, not after the plan is resolved
    p = plan(config_path, overrides)
    out = Path(out_dir)
    tuned = [r for r in p.runs if r.tuned]
    load_results(out, [j for jobs in p.first.values() for j in jobs], overwrite=overwrite)  # refuse before writing
    out.mkdir(parents=True, exist_ok=True)
    p.module.prepare(p.first_cfg)  # fetch the data once, before workers start (tune.set may not touch runs)
    n_workers = workers or (p.cfg["workers"] if isinstance(p.cfg.get("workers"), int) else 1)
    how = f"Dask scheduler {scheduler}" if scheduler else \
        ("serially" if n_workers <= 1 else f"{n_workers} worker processes")

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    trials: list[dict[str, Any]] = []
    loaded: set[str] = set()  # jobs loaded from an earlier invocation, not computed
    finished: set[str] = set()  # jobs finished in any rung so far (a later rung may reuse them)
    train_s: dict[str, float] = {}  # each finished job's training time, where its study records one
    active = {r.name: list(range(len(r.points))) for r in tuned}
    failure: JobsFailed | None = None
    with (dask_executor(scheduler) if scheduler else contextlib.nullcontext()) as executor:
        for rung, size in enumerate(p.sizes):
            jobs, rung_trials = [], []
            for r in tuned:
                for i in active[r.name]:
                    tj = p.trial(r, i, rung)
                    jobs += tj
                    rung_trials.append({"run": r.name, "point": i, "values": r.points[i], "rung": rung,
                                        "resource": p.resources[rung], "seeds": p.rung_seeds(rung),
                                        "jobs": [j["id"] for j in tj]})
            unique = list({j["id"]: j for j in jobs}.values())
            what = "validation seeds" if p.resource == "seeds" else p.resource
            say(f"rung {rung + 1}/{len(p.sizes)}: {len(rung_trials)} configuration(s) ({len(tuned)} run(s)), "
                f"{what} {p.resources[rung]}, {len(unique)} job(s) -> {out} ({how})")
            rung_loaded: set[str] = set()
            try:
                results = run_jobs(unique, p.module.run_job, out, workers=n_workers, quiet=quiet, executor=executor,
                                   overwrite=overwrite, loaded=rung_loaded)
                done = {j["id"]: res for j, res in zip(unique, results)}
            except JobsFailed as exc:
                failure = exc
                done = {j["id"]: res for j, res in
                        zip([j for j in unique if j["id"] not in exc.failed], exc.results)}
            loaded.update(rung_loaded - finished)
            finished.update(done)
            train_s.update({i: float(r["train_time_s"]) for i, r in done.items()
                            if isinstance(r.get("train_time_s"), (int, float))})
            for t in rung_trials:
                if all(j in done for j in t["jobs"]):
                    _scores(p, done, t)
                else:
                    t.update(per_seed=[], diverged=0, score=None, failed=True)
                t["promoted"] = t["chosen"] = False
            trials += rung_trials
            if failure is not None:
                break
            for r in tuned:
                mine = [t for t in rung_trials if t["run"] == r.name]
                ranked = promote([_rank(t["score"]) for t in mine], p.sizes[rung + 1] if rung + 1 < len(p.sizes)
                                 else 1, p.mode)
                for k in ranked:
                    mine[k]["promoted" if rung + 1 < len(p.sizes) else "chosen"] = True
                active[r.name] = [mine[k]["point"] for k in ranked]
    order = {r.name: i for i, r in enumerate(p.runs)}
    trials.sort(key=lambda t: (order[t["run"]], t["rung"], t["point"]))
    chosen = {t["run"]: t["values"] for t in trials if t["chosen"]}
    meta = _meta(p, out, overrides, workers, scheduler, then_run, n_workers, start, failure)
    meta.update(jobs=len({j for t in trials for j in t["jobs"]}), jobs_loaded=len(loaded),
                train_time_s=sum(train_s.values()) if train_s else None)
    write(p, out, trials, chosen, meta)
    if failure is not None:
        raise failure
    summary: dict[str, Any] = {"chosen": chosen, "trials": trials, "console": console_table(p, trials, chosen)}
    if then_run:
        from .studies import run_experiment

        say(f"running the tuned config on the reported seeds {p.cfg['seeds']} -> {out / 'run'}")
        summary["run"] = run_experiment(out / "tuned.yaml", out / "run", workers=workers, quiet=quiet,
                                        overwrite=overwrite)
    return summary


def _rank(score: float | None) -> float:
    return float("nan") if score is None else score


def _meta(p: Plan, out: Path, overrides, workers, scheduler, then_run, n_workers, start, failure) -> dict[str, Any]:
    args = [p.config_path, "--out", str(out)] + [x for o in overrides or [] for x in ("--set", o)] + \
        (["--workers", str(workers)] if workers else []) + (["--scheduler", scheduler] if scheduler else []) + \
        (["--then-run"] if then_run else [])
    return {"command": "neuroemu tune " + " ".join(shlex.quote(a) for a in args),
            "executor": f"dask {scheduler}" if scheduler else ("serial" if n_workers <= 1 else f"{n_workers} processes"),
            "versions": versions(), "wall_time_s": time.perf_counter() - start,
            "failed": failure.failed if failure else {}}
