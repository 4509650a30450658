"""Rules, network models and tasks by name: the package's own, or a user's from outside it.

A config names each of them by a short name of the package (:data:`REGISTRY`), by an import path
``package.module:Name``, by a file ``path/to/file.py:Name`` (relative to the config's directory), or
by the name of an entry point a package registers in the groups ``neuroemu.rules``,
``neuroemu.models`` and ``neuroemu.tasks`` (``[project.entry-points."neuroemu.rules"]`` in its
pyproject.toml). :func:`make` builds one from a config mapping ``{name: ..., <its parameters>}``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, did_you_mean

KINDS = ("rule", "model", "task")

#: The package's own, by kind: short name -> import path.
REGISTRY: dict[str, dict[str, str]] = {
    "rule": {
        "backprop": "neuroemu.rules.backprop:Backprop",
        "boltzmann": "neuroemu.rules.boltzmann:Boltzmann",
        "eprop": "neuroemu.rules.eprop:Eprop",
        "eqprop": "neuroemu.rules.eqprop:EqProp",
        "hebbian": "neuroemu.rules.hebbian:Hebbian",
        "sparse_bptt": "neuroemu.rules.sparse:SparseBPTT",
        "surrogate_bptt": "neuroemu.rules.surrogate:SurrogateBPTT",
        "target_backprop": "neuroemu.rules.sdt:TargetBackprop",
    },
    "model": {
        "eqprop": "neuroemu.models.eqprop:EqPropModel",
        "hebbian_conv": "neuroemu.models.hebbian:ConvLayer",
        "hebbian_dense": "neuroemu.models.hebbian:DenseLayer",
        "mlp": "neuroemu.models.mlp:MLP",
        "nir": "neuroemu.interop.nir:from_nir",
        "rsnn": "neuroemu.models.rsnn:RSNN",
        "sampling_bm": "neuroemu.models.sampling:sampling_network",
        "sdt_cnn": "neuroemu.models.convnet:sdt_cnn",
        "sdt_mlp": "neuroemu.models.convnet:clip_mlp",
        "snn": "neuroemu.models.snn:spiking_network",
    },
    "task": {
        "boltzmann_target": "neuroemu.data.boltzmann:boltzmann_target",
        "evidence_accumulation": "neuroemu.data.sequences:evidence_accumulation_task",
        "fashion_mnist": "neuroemu.data.classification:fashion_mnist_task",
        "pattern_generation": "neuroemu.data.sequences:pattern_generation_task",
    },
}


def _group(kind: str) -> str:
    return f"neuroemu.{kind}s"


def _from_file(path: Path, attr: str, where: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{where}: no such file {path}")
    # the same name in every process: a checkpoint pickles the plug-in's objects by module name
    name = "neuroemu_plugin_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: dataclasses and pickling look it up
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[name]
            raise
    return _attr(module, attr, where, str(path))


def _attr(module: Any, attr: str, where: str, source: str) -> Any:
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise ConfigError(f"{where}: {source} has no {attr!r}{did_you_mean(attr, names)}") from None


def load(kind: str, name: str, *, base_dir: str | Path | None = None, where: str | None = None) -> Any:
    """The class (or factory) a config names for ``kind`` (rule, model, task); see the module
    docstring. Errors name ``where`` (default: the kind) and what was expected."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    where = where or kind
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: expected the name of a {kind}, got {name!r}")
    own = REGISTRY[kind]
    if name in own:
        name = own[name]
    if ":" in name:
        source, attr = name.rsplit(":", 1)
        if source.endswith(".py") or "/" in source:
            if not source.endswith(".py"):
                raise ConfigError(f"{where}: {source}: expected a Python file, a name ending in .py (file.py:Name)")
            path = Path(source)
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            return _from_file(path, attr, where)
        try:
            module = importlib.import_module(source)
        except ImportError as exc:
            raise ConfigError(f"{where}: cannot import {source} ({exc})") from None
        return _attr(module, attr, where, source)
    found = [ep for ep in entry_points(group=_group(kind)) if ep.name == name]
    if found:
        return found[0].load()
    known = sorted(own) + sorted({ep.name for ep in entry_points(group=_group(kind))})
    raise ConfigError(f"{where}: unknown {kind} {name!r}{did_you_mean(name, known)}; expected one of "
                      f"{', '.join(known)}, an import path 'package.module:Name', a file 'file.py:Name', or an "
                      f"entry point of the group {_group(kind)}")


def file_digest(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_digest(obj: Any) -> str | None:
    """The SHA-256 of the file that defines ``obj`` (a rule, model or task :func:`load` returned) when
    it comes from outside the package; a study puts it into each job, so that runs finished with an
    earlier version of the file are redone, not served. None for the package's own (every job holds
    the package's version) and for an object without a source file. Only that file counts, not the
    modules it imports."""
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    name, path = getattr(module, "__name__", ""), getattr(module, "__file__", None)
    if module is None or not path or name == "neuroemu" or name.startswith("neuroemu."):
        return None
    try:
        return file_digest(path)
    except OSError:
        return None


def make(kind: str, spec: str | Mapping[str, Any], *, base_dir: str | Path | None = None, where: str | None = None,
         **extra: Any) -> Any:
    """Build the ``kind`` a config describes: ``spec`` is its name, or a mapping with ``name`` and
    its parameters (passed as keyword arguments, with ``extra``)."""
    where = where or kind
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"{where}: expected a name or a mapping with 'name' and the {kind}'s parameters, got {spec!r}")
    params = {k: v for k, v in spec.items() if k != "name"}
    factory = load(kind, spec["name"], base_dir=base_dir, where=f"{where}.name")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        allowed = [n for n, p in signature.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for key in params:
            if not accepts_any and key not in allowed:
                raise ConfigError(f"{where}.{key}: {spec['name']} takes no parameter {key!r}"
                                  f"{did_you_mean(key, allowed)}; it takes {', '.join(allowed) or 'none'}")
    try:
        return factory(**params, **extra)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {spec['name']}: {exc}") from None
