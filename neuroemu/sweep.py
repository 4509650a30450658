"""Parameter sweeps over an experiment config: ``neuroemu sweep``.

    neuroemu sweep CONFIG --grid train.lr=0.1,0.01 --grid runs.0.scheme=sign,stochastic --seeds 3 --out DIR

The grid is the Cartesian product of the ``--grid KEY=V1,V2,...`` options (the first option varies
slowest). A key is any dotted config path that ``--set`` accepts (list items by index, e.g.
``runs.0.scheme``); each value is parsed as YAML, like a ``--set`` value. Values are separated by
commas outside brackets and quotes, so ``model.hidden=[8],[16,16]`` has two values. ``--seeds K``
sets ``seeds`` to [0, …, K−1] at every grid point.

Every grid point is resolved and validated before anything runs (so a typo fails at once). The jobs
of all points go to one :func:`~neuroemu.runner.run_jobs` call, so they share the workers; each job
id gets a prefix naming its grid point (e.g. ``train.lr_0.1/fp32@seed0``), so the results of
all points live side by side in ``DIR/runs/``: a finished job is never recomputed, an interrupted
sweep resumes, and adding a value to the grid runs only the new points. A job id finished there with
other settings (e.g. other ``--set`` values) stops the sweep before anything runs, unless
``--overwrite`` (``overwrite=True``) replaces those results.

Jobs run here one after the other (``workers=1``), in local worker processes (BLAS pinned to one
thread each), or on a Dask cluster (``scheduler="tcp://host:8786"``, needs the ``neuroemu[dask]``
extra; Dask's worker nannies pin BLAS/OpenMP to one thread by default).

Output: ``DIR/sweep.csv``, one row per (grid point, seed, run) with the grid values as columns,
then ``seed``, ``run`` and the job's scalar metrics; ``DIR/sweep.json`` (grid, points, command,
versions, failed jobs). An experiment module turns one job's result into flat rows with
``tidy(result) -> list[dict]`` (keys ``run``, ``seed`` and metrics); a module without ``tidy``
gets one row of the result's top-level scalars.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

from .config import apply_overrides, load_yaml
from .errors import ConfigError, NeuroemuError
from .io import atomic_write_json, versions, write_csv, yaml_load
from .runner import JobsFailed, load_results, run_jobs, slug

__all__ = ["dask_executor", "grid_points", "parse_grid", "run_sweep", "split_values", "tidy_rows"]

_GRID_HINT = "expected KEY=V1,V2,..., e.g. --grid train.lr=0.1,0.01"
_MAX_PREFIX = 80


# ---------------------------------------------------------------------------------------- the grid
def split_values(text: str) -> list[str]:
    """Split ``V1,V2,...`` at the commas that are outside brackets, braces and quotes."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_grid(items: list[str]) -> dict[str, list[tuple[str, Any]]]:
    """``["key=v1,v2", ...]`` -> {key: [(text, value), ...]} in the order given.

    Raises :class:`ConfigError` naming the option on a missing ``=``, an empty key or value, a
    repeated key or value, or a value that is not valid YAML."""
    grid: dict[str, list[tuple[str, Any]]] = {}
    for item in items or []:
        where = f"--grid {item!r}"
        if "=" not in item:
            raise ConfigError(f"{where}: {_GRID_HINT}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{where}: expected a dotted config key before '=', e.g. train.lr")
        if key in grid:
            raise ConfigError(f"{where}: key {key!r} is given twice; list all its values in one --grid option")
        texts = split_values(raw)
        if any(t == "" for t in texts):
            raise ConfigError(f"{where}: empty value; {_GRID_HINT}")
        values = []
        for t in texts:
            try:
                values.append((t, yaml_load(t)))
            except yaml.YAMLError:
                raise ConfigError(f"{where}: value {t!r} is not valid YAML") from None
        seen = [json.dumps(v, sort_keys=True, default=str) for _, v in values]
        if len(set(seen)) != len(seen):
            raise ConfigError(f"{where}: a value is listed twice")
        grid[key] = values
    return grid


def grid_points(grid: dict[str, list[tuple[str, Any]]]) -> list[dict[str, tuple[str, Any]]]:
    """The Cartesian product of the grid: one {key: (text, value)} per point, first key slowest.
    An empty grid has one point with no overrides."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _label(point: dict[str, tuple[str, Any]]) -> str:
    return ",".join(f"{k}={t}" for k, (t, _) in point.items())


def _prefixes(points: list[dict[str, tuple[str, Any]]]) -> list[str]:
    """A readable, file-name-safe and unique job id prefix per point, derived from its values only
    (not from its position), so that extending the grid keeps the ids of the existing points."""
    out = []
    for point in points:
        label = "+".join(f"{k}={t}" for k, (t, _) in point.items())
        text = slug(label)
        if len(text) > _MAX_PREFIX:
            text = text[:_MAX_PREFIX - 9].rstrip("_") + "-" + hashlib.sha256(label.encode()).hexdigest()[:8]
        out.append(text)
    if len(set(out)) != len(out):  # values that differ only in characters slug() drops
        out = [f"{p}-{hashlib.sha256(_label(pt).encode()).hexdigest()[:8]}" for p, pt in zip(out, points)]
    return out


def _cell(value: Any) -> Any:
    """A grid value as a CSV cell: scalars as they are, lists and mappings as JSON."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


# ---------------------------------------------------------------------------------------- results
def tidy_rows(module: Any, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows (run, seed, scalar metrics) of one job's result, through the module's ``tidy``
    when it has one, else one row of the result's top-level scalar values."""
    if hasattr(module, "tidy"):
        rows = module.tidy(result)
    else:
        rows = [{"run": result.get("run", ""), "seed": result.get("seed"),
                 **{k: v for k, v in result.items() if k not in ("run", "seed")}}]
    return [{k: v for k, v in row.items() if _scalar(v)} for row in rows]


#: Fields of a diverged job's tidy row (:func:`neuroemu.divergence.tidy`): not metrics.
_DIVERGED = ("diverged_at", "diverged_metric", "diverged_value")


def _main_metric(rows: list[dict[str, Any]], skip: set[str]) -> str | None:
    if any("test_acc" in r for r in rows):
        return "test_acc"
    for r in rows:
        for k, v in r.items():
            if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool):
                return k
    return None


def console_table(rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """One line per (grid point, run): the grid values, the run, the main metric's mean ± std over
    seeds and the number of seeds. Rows of diverged jobs (they carry ``diverged_at``, see
    :func:`neuroemu.divergence.tidy`) are left out of the mean and counted: "… (diverged
    k/n)", or "diverged" when every seed did."""
    if not rows:
        return []
    skip = {*keys, "seed", "run", *_DIVERGED}
    metric = _main_metric([r for r in rows if "diverged_at" not in r] or rows, skip)
    groups: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault(tuple(str(r.get(k)) for k in keys) + (str(r.get("run")),),
                              {"vals": [], "seeds": 0, "diverged": 0})
        g["seeds"] += 1
        if "diverged_at" in r:
            g["diverged"] += 1
            continue
        v = r.get(metric) if metric else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            g["vals"].append(float(v))
    scale, head = (100.0, "test acc %") if metric == "test_acc" else (1.0, metric or "")
    cells = []
    for key, g in groups.items():
        vals, n, k = g["vals"], len(g["vals"]), g["diverged"]
        if k == g["seeds"]:
            cells.append([*key, "diverged", str(k)])
            continue
        stat = "–"
        if n:
            mean = sum(vals) / n * scale
            std = math.sqrt(sum((v * scale - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
            stat = f"{mean:.4g}±{std:.2g}" if metric != "test_acc" else f"{mean:.2f}±{std:.2f}"
        cells.append([*key, stat + (f" (diverged {k}/{g['seeds']})" if k else ""), str(g["seeds"])])
    header = [*keys, "run", head, "seeds"]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    right = len(keys) + 1  # numbers right-aligned, labels left-aligned

    def line(cols):
        return "  ".join(c.rjust(w) if i >= right else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))

    return [line(header).rstrip()] + [line(c).rstrip() for c in cells]


# ---------------------------------------------------------------------------------------- executors
def _dask_client(address: str):
    """The ``distributed.Client`` class, once the optional dependency and the address are checked."""
    try:
        from distributed import Client
    except ImportError:
        raise NeuroemuError("--scheduler needs Dask's distributed package, an optional dependency: "
                            "pip install 'neuroemu[dask]'") from None
    try:  # an address with a bad scheme or port would leave a Client that hangs in its finaliser
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend
    except ImportError:  # internal modules moved: the Client checks the address itself
        return Client
    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme != "inproc":
            parse_host_port(location)
    except ValueError as exc:
        raise NeuroemuError(f"--scheduler {address!r}: expected a Dask scheduler address such as "
                            f"tcp://host:8786 ({exc})") from None
    return Client


@contextlib.contextmanager
def dask_executor(address: str) -> Iterator[Any]:
    """A ``concurrent.futures`` executor on the Dask cluster whose scheduler is at ``address``."""
    client_class = _dask_client(address)
    try:
        client = client_class(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise NeuroemuError(f"--scheduler {address}: could not connect to a Dask scheduler: "
                            f"{type(exc).__name__}: {exc}".replace("\n", " ")) from None
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()


# ---------------------------------------------------------------------------------------- the sweep
def _check_seeds(seeds: Any) -> int:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds: expected an integer >= 1 (seeds 0 .. K-1), got {seeds!r}")
    return seeds


def run_sweep(config_path: str | Path, out_dir: str | Path, grid: list[str] | None = None, *,
              seeds: int | None = None, overrides: list[str] | None = None, workers: int | None = None,
              scheduler: str | None = None, quiet: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run every grid point × seed × run of an experiment; write ``sweep.csv`` and ``sweep.json``.

    ``grid``: ``KEY=V1,V2,...`` strings; ``seeds``: K sets ``seeds`` to [0, …, K−1]; ``overrides``:
    ``KEY=VALUE`` applied at every point before the grid values; ``workers``: local processes
    (default: the config's ``workers``; 1 = here, serially); ``scheduler``: a Dask scheduler address
    (overrides ``workers``); ``overwrite``: recompute and replace finished jobs of the same ids that
    used other settings (otherwise :class:`~neuroemu.runner.ResultsDiffer`, before anything runs).
    Returns ``rows`` (the CSV rows), ``points``, ``console`` (the summary table as lines of text) and
    ``failed``; raises :class:`~neuroemu.runner.JobsFailed` after writing the tables when some jobs
    failed.
    """
    from .studies import EXPERIMENTS, resolve

    start = time.perf_counter()
    where = f"{config_path}:"
    raw = load_yaml(config_path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} expected a mapping at the top level")
    parsed = parse_grid(grid or [])
    if seeds is not None:
        _check_seeds(seeds)
        if "seeds" in parsed:
            raise ConfigError("--grid seeds=... and --seeds: give one of them")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers: expected an integer >= 1, got {workers!r}")
    if scheduler is not None:
        _dask_client(scheduler)  # fail now, not after the configs are resolved and the data fetched
    fixed = list(overrides or [])
    points = grid_points(parsed)
    prefixes = _prefixes(points)

    module, resolved, all_jobs, owner = None, [], [], {}
    for index, (point, prefix) in enumerate(zip(points, prefixes)):
        grid_over = [f"{k}={t}" for k, (t, _) in point.items()]
        trial = apply_overrides(copy.deepcopy(raw), fixed)
        apply_overrides(trial, grid_over, where="--grid")
        name = trial.get("experiment")
        mod = EXPERIMENTS.get(name) if isinstance(name, str) else None
        seed_over = []
        if seeds is not None and mod is not None:
            if "seeds" not in mod.SCHEMA:
                raise ConfigError(f"{where} --seeds: experiment {name!r} has no 'seeds' field; its jobs are not "
                                  "seeded that way (drop --seeds)")
            seed_over = [f"seeds=[{', '.join(map(str, range(seeds)))}]"]
        try:
            mod, cfg = resolve(config_path, fixed + seed_over + grid_over)
        except ConfigError as exc:
            at = f" (grid point {_label(point)})" if point else ""
            raise ConfigError(f"{exc}{at}") from None
        if module is not None and mod is not module:
            raise ConfigError(f"--grid: every grid point must run the same experiment; point {_label(point)} "
                              f"runs {mod.NAME!r}, the first runs {module.NAME!r}")
        module = mod
        resolved.append(cfg)
        for job in mod.jobs(cfg):
            job = dict(job, id=f"{prefix}/{job['id']}" if prefix else job["id"])
            all_jobs.append(job)
            owner[job["id"]] = index

    files: dict[str, str] = {}
    for job in all_jobs:
        f = slug(job["id"])
        if f in files:
            raise ConfigError(f"--grid: jobs {files[f]!r} and {job['id']!r} would share the result file runs/{f}.json; "
                              "use grid values that differ in letters or digits")
        files[f] = job["id"]

    out = Path(out_dir)
    load_results(out, all_jobs, overwrite=overwrite)  # refuse before anything is fetched or written
    out.mkdir(parents=True, exist_ok=True)
    prepared = set()
    for cfg in resolved:  # fetch data once per distinct data section, before workers start
        key = json.dumps(cfg.get("data"), sort_keys=True, default=str)
        if key not in prepared:
            module.prepare(cfg)
            prepared.add(key)
    n_workers = workers or (resolved[0].get("workers") if isinstance(resolved[0].get("workers"), int) else 1)
    if not quiet:
        how = f"Dask scheduler {scheduler}" if scheduler else \
            ("serially" if n_workers <= 1 else f"{n_workers} worker processes")
        print(f"{len(points)} grid point(s), {len(all_jobs)} job(s) -> {out} ({how})", file=sys.stderr, flush=True)

    failure = None
    with (dask_executor(scheduler) if scheduler else contextlib.nullcontext()) as executor:
        try:
            results = run_jobs(all_jobs, module.run_job, out, workers=n_workers, quiet=quiet, executor=executor,
                               overwrite=overwrite)
            finished = all_jobs
        except JobsFailed as exc:  # tabulate what finished, then fail
            failure, results = exc, exc.results
            finished = [j for j in all_jobs if j["id"] not in exc.failed]

    keys = list(parsed)
    rows = []
    for job, res in zip(finished, results):
        point = points[owner[job["id"]]]
        for r in tidy_rows(module, res):
            row = {k: _cell(point[k][1]) for k in keys}
            row["seed"] = r.get("seed", job.get("seed"))
            row["run"] = r.get("run", "")
            row.update({k: v for k, v in r.items() if k not in ("seed", "run")})
            rows.append(row)
    write_csv(out / "sweep.csv", rows)

    args = [str(config_path)] + [x for g in grid or [] for x in ("--grid", g)] + \
        (["--seeds", str(seeds)] if seeds is not None else []) + [x for o in fixed for x in ("--set", o)] + \
        ["--out", str(out_dir)]
    point_info = [{"index": i, "values": {k: v for k, (_, v) in p.items()},
                   "overrides": [f"{k}={t}" for k, (t, _) in p.items()], "prefix": prefix,
                   "jobs": [j["id"] for j in all_jobs if owner[j["id"]] == i]}
                  for i, (p, prefix) in enumerate(zip(points, prefixes))]
    atomic_write_json(out / "sweep.json", {
        "experiment": module.NAME, "config": str(config_path),
        "command": "neuroemu sweep " + " ".join(shlex.quote(a) for a in args),
        "grid": {k: [v for _, v in vals] for k, vals in parsed.items()},
        "seeds": list(range(seeds)) if seeds is not None else None, "overrides": fixed, "points": point_info,
        "executor": f"dask {scheduler}" if scheduler else ("serial" if n_workers <= 1 else f"{n_workers} processes"),
        "versions": versions(), "wall_time_s": time.perf_counter() - start,
        "failed": failure.failed if failure else {}, "rows": len(rows),
    })
    summary = {"rows": rows, "points": point_info, "console": console_table(rows, keys),
               "failed": failure.failed if failure else {}}
    if failure is not None:
        raise failure
    return summary
