"""The ``tune:`` section of a config (:mod:`neuroemu.tune` runs it): its fields and their check.

Kept apart from the tuning itself so that resolving a config (:mod:`neuroemu.studies`) can check
the section without importing the tuner, which builds on the studies.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .config import Opt, check_seeds, validate
from .errors import ConfigError

METHODS = ("grid_halving", "grid")
_SPEC_HINT = "expected a list of values, {log: [lo, hi]} or {lin: [lo, hi]} (optional points: n, int: true)"


def _check_spec(value: Any, where: str) -> dict[str, Any]:
    """A value spec, normalised: {"values": [...]} or {"scale": "log"|"lin", "range": [lo, hi],
    "points": n or None, "int": bool}."""
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: expected at least one value; {_SPEC_HINT}")
        seen = [json.dumps(v, sort_keys=True, default=str) for v in value]
        if len(set(seen)) != len(seen):
            raise ConfigError(f"{where}: a value is listed twice: {value!r}")
        return {"values": list(value)}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {_SPEC_HINT}, got {value!r}")
    scales = [k for k in ("log", "lin") if k in value]
    if len(scales) != 1:
        raise ConfigError(f"{where}: {_SPEC_HINT}, got {value!r}")
    scale = scales[0]
    spec = validate(value, {scale: Opt("list"), "points": Opt("int", None, 1, 10**6, nullable=True),
                            "int": Opt("bool", False)}, where)
    rng = spec[scale]
    if len(rng) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                for v in rng):
        raise ConfigError(f"{where}.{scale}: expected [lo, hi], two numbers, got {rng!r}")
    lo, hi = float(rng[0]), float(rng[1])
    if not lo < hi or (scale == "log" and lo <= 0):
        need = "0 < lo < hi" if scale == "log" else "lo < hi"
        raise ConfigError(f"{where}.{scale}: expected [lo, hi] with {need}, got {rng!r}")
    return {"scale": scale, "range": [lo, hi], "points": spec["points"], "int": spec["int"]}


def _check_space(value: Any, where: str, *, removable: bool = False) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of dotted keys to value specs, e.g. "
                          "{train.lr: {log: [1.0e-3, 1.0]}}, got {value!r}")
    out = {}
    for key, spec in value.items():
        w = f"{where}.{key}"
        if not isinstance(key, str) or not key or not all(key.split(".")):
            raise ConfigError(f"{where}: expected dotted config keys such as train.lr, got {key!r}")
        if key.split(".")[0] in ("seeds", "runs", "tune", "experiment", "name"):
            raise ConfigError(f"{w}: not searchable ({key.split('.')[0]} is set by the tuning itself or names "
                              "the run); search the values of a run or of a config section, e.g. train.lr")
        out[key] = None if spec is None and removable else _check_spec(spec, w)
    return out


def _check_runs(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of run names to spaces (or null: not tuned), got {value!r}")
    return {str(name): None if space is None else _check_space(space, f"{where}.{name}", removable=True)
            for name, space in value.items()}


def _check_set(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and k and all(k.split(".")) for k in value):
        raise ConfigError(f"{where}: expected a mapping of dotted config keys to values (for the trials only), "
                          f"e.g. {{data.validation: 10000}}, got {value!r}")
    bad = [k for k in value if k.split(".")[0] in ("seeds", "runs", "tune", "experiment")]
    if bad:
        raise ConfigError(f"{where}.{bad[0]}: not settable for the trials (seeds come from tune.seeds, runs from "
                          "tune.space)")
    return dict(value)


#: Fields of the ``tune:`` section (validated the same way for every experiment).
SECTION: dict[str, Any] = {
    "method": Opt("str", "grid_halving", choices=METHODS, doc="grid_halving: successive halving over the grid; "
                  "grid: every configuration at the full resource"),
    "budget": Opt("int", lo=1, hi=100000, doc="configurations per run: every run's grid has exactly this many points"),
    "seeds": Opt("list", check=check_seeds, doc="validation seeds, disjoint from the config's seeds"),
    "space": Opt("dict", {}, check=_check_space, doc="dotted key -> value spec, for every run"),
    "runs": Opt("dict", {}, check=_check_runs, doc="run name -> keys added or replaced (null: removed); "
                "a run mapped to null is not tuned"),
    "eta": Opt("int", 3, 2, 1000, doc="each rung keeps the best 1/eta and gives them eta times the resource"),
    "rungs": Opt("int", None, 1, 100, nullable=True, doc="number of rungs (default: until one configuration is "
                 "left; grid: 1)"),
    "resource": Opt("str", None, nullable=True, doc="what the rungs ration: an integer config key (default: the "
                    "experiment's training length) or 'seeds' (the number of validation seeds scored)"),
    "min_resource": Opt("int", 1, 1, 10**9, doc="the least resource of a rung"),
    "metric": Opt("str", None, nullable=True, doc="score (a tidy-row value; default: the experiment's)"),
    "mode": Opt("str", None, choices=("min", "max"), nullable=True, doc="whether lower or higher scores are better"),
    "set": Opt("dict", {}, check=_check_set, doc="dotted key -> value for the trials only"),
}


def check_section(value: Any, where: str) -> dict[str, Any]:
    """The ``tune:`` section validated and filled with defaults (``where`` names it, e.g.
    ``"cfg.yaml: tune"``)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping (budget, seeds, space, ...), got {value!r}")
    sec = validate(value, SECTION, where)
    if sec["method"] == "grid" and sec["rungs"] not in (None, 1):
        raise ConfigError(f"{where}.rungs: method grid trains every configuration at the full resource (one rung); "
                          f"got rungs {sec['rungs']}; use method grid_halving")
    clash = sorted(set(sec["set"]) & ({*sec["space"], *(k for s in sec["runs"].values() if s for k in s)}))
    if clash:
        raise ConfigError(f"{where}.set.{clash[0]}: also searched in the space; give it in one place")
    return sec
