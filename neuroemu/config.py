"""Experiment configuration: YAML loading, ``--set`` overrides and schema validation.

A schema is a nested dict whose leaves are :class:`Opt` (one value) and whose inner nodes are
dicts (sections). ``validate(data, schema, where)`` returns a fully resolved copy with defaults
filled in, or raises :class:`~neuroemu.errors.ConfigError` naming the file, the dotted field and
what was expected.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from .errors import ConfigError, did_you_mean
from .io import atomic_write_text, read_yaml_file, yaml_load

_REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class Opt:
    """One config value: ``kind`` in {"int", "float", "bool", "str", "list", "dict", "any"}."""

    kind: str
    default: Any = _REQUIRED
    lo: float = -math.inf
    hi: float = math.inf
    choices: tuple | None = None
    nullable: bool = False
    doc: str = ""
    check: Callable[[Any, str], Any] | None = None  # extra validation, returns the value
    allow_inf: bool = False  # a float may be +inf (when hi is inf): "never", "no limit"

    def validate(self, value: Any, where: str) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"{where}: expected {self.expect()}, got null")
        k = self.kind
        if k == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}: expected {self.expect()}, got {value!r}")
        elif k == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) or (self.allow_inf and value == math.inf)):
                raise ConfigError(f"{where}: expected {self.expect()}, got {value!r}")
            value = float(value)
        elif k == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
        elif k == "str":
            if not isinstance(value, str):
                raise ConfigError(f"{where}: expected {self.expect()}, got {value!r}")
        elif k == "list":
            if not isinstance(value, list):
                raise ConfigError(f"{where}: expected a list, got {value!r}")
        elif k == "dict":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a mapping, got {value!r}")
            value = dict(value)
        if k in ("int", "float") and not (self.lo <= value <= self.hi):
            raise ConfigError(f"{where}: expected {self.expect()}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}: expected one of {', '.join(map(str, self.choices))}, got {value!r}"
                              f"{did_you_mean(value, self.choices)}")
        if self.check is not None:
            value = self.check(value, where)
        return value

    def expect(self) -> str:
        names = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                 "list": "a list", "dict": "a mapping", "any": "a value"}
        s = names[self.kind]
        if self.lo > -math.inf and self.hi < math.inf:
            s += f" in [{self.lo:g}, {self.hi:g}]"
        elif self.lo > -math.inf:
            s += f" >= {self.lo:g}"
        elif self.hi < math.inf:
            s += f" <= {self.hi:g}"
        if self.nullable:
            s += " or null"
        return s


def validate(data: Any, schema: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate ``data`` against ``schema``; unknown keys, missing required keys, wrong types and
    out-of-range values raise ConfigError with a dotted path."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = [str(k) for k in data if k not in schema]
    if unknown:
        k = unknown[0]
        raise ConfigError(f"{_join(where, k)}: unknown field{did_you_mean(k, schema)}; "
                          f"expected one of: {', '.join(schema)}")
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        w = _join(where, key)
        if isinstance(spec, Mapping):
            out[key] = validate(data.get(key), spec, w)
        elif key in data:
            out[key] = spec.validate(data[key], w)
        elif spec.default is _REQUIRED:
            raise ConfigError(f"{w}: missing required field ({spec.expect()})")
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


def check_layers(value: Any, where: str) -> list[int]:
    """A non-empty list of positive layer sizes (an ``Opt`` check)."""
    if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ConfigError(f"{where}: expected a list of positive layer sizes, e.g. [256], got {value!r}")
    return value


def check_seeds(value: Any, where: str) -> list[int]:
    """A non-empty list of distinct integer seeds >= 0 (an ``Opt`` check)."""
    if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ConfigError(f"{where}: expected a non-empty list of integer seeds >= 0, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: expected distinct seeds, got {value!r}")
    return value


def check_delays(value: Any, where: str) -> list[float]:
    """A list of delays in seconds >= 0 (an ``Opt`` check)."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ConfigError(f"{where}: expected a list of delays in seconds >= 0, got {value!r}")
    return [float(v) for v in value]


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where and not where.endswith(":") else f"{where} {key}".strip()


def load_yaml(path: str | Path) -> Any:
    """Read a YAML config file; errors name the file and the line (or byte)."""
    return read_yaml_file(path, ConfigError, "a YAML config file")


def apply_overrides(data: dict[str, Any], overrides: list[str], where: str = "--set") -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"{where} {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
        key, raw = item.split("=", 1)
        try:
            value = yaml_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"{where} {item!r}: value is not valid YAML") from None
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"{where} {item!r}: empty key; expected KEY=VALUE, e.g. train.epochs=3")
        node = data
        for part in parts[:-1]:
            if isinstance(node, list):
                nxt = node[_index(node, part, item, where)]
            else:
                nxt = node.get(part)
                if nxt is None:
                    nxt = node[part] = {}
            if not isinstance(nxt, (dict, list)):
                raise ConfigError(f"{where} {item!r}: '{part}' is not a section")
            node = nxt
        if isinstance(node, list):
            idx = _index(node, parts[-1], item, where)
            node[idx] = value
        else:
            node[parts[-1]] = value
    return data


def _index(node: list, part: str, item: str, where: str) -> int:
    try:
        idx = int(part)
        node[idx]
    except (ValueError, IndexError):
        raise ConfigError(f"{where} {item!r}: '{part}' is not an index of a list of {len(node)}") from None
    return idx


def dump_yaml(data: Any, path: str | Path) -> None:
    """Write YAML atomically."""
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
