"""Small I/O helpers: atomic writes (a crash never leaves a half-written file) and run metadata."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that reads exponent floats without a dot (``1e-3``, ``12e-6``) as numbers,
    as YAML 1.2 does; PyYAML's YAML 1.1 rules would read them as strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text safely (exponent floats are numbers)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml_file(path: str | Path, error: type[Exception], what: str = "a YAML file") -> Any:
    """Read and parse a YAML file. A path that is missing, a directory, unreadable, not UTF-8 or not
    valid YAML raises ``error`` with a one-line message naming the file (and the line or byte)."""
    p = Path(path)
    if p.is_dir():
        raise error(f"{p}: is a directory; expected {what}")
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise error(f"{p}: no such file; expected {what}") from None
    except OSError as exc:
        raise error(f"{p}: cannot read ({exc.strerror or exc}); expected {what}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{p} (line {line}, byte {exc.start}): not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                    f"expected {what} saved as UTF-8") from None
    try:
        return yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{p}{at}: not valid YAML: {problem}") from None


def _publish(tmp: str, path: Path) -> None:
    """Give a finished temporary file the permissions of a normally created one, then move it in place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def _atomic_write(path: Path, write: Any, mode: str) -> None:
    """Write ``path`` via a temporary file in the same directory (``write(file)``) and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    _atomic_write(Path(path), lambda f: f.write(text), "w")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (as :func:`atomic_write_text`)."""
    _atomic_write(Path(path), lambda f: f.write(data), "wb")


def atomic_write_npz(path: str | Path, arrays: dict[str, Any]) -> Path:
    """Write named arrays to an .npz file atomically (as :func:`atomic_write_text`)."""
    import numpy as np

    path = Path(path)
    path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
    _atomic_write(path, lambda f: np.savez(f, **arrays), "wb")
    return path


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write dict rows as CSV (union of keys, in first-seen order), atomically."""
    rows = list(rows)
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def versions() -> dict[str, str]:
    """Versions of Python, neuroemu and the numerical stack, for results files."""
    import numba
    import numpy
    import scipy

    from ._version import __version__

    return {"neuroemu": __version__, "python": sys.version.split()[0], "numpy": numpy.__version__,
            "scipy": scipy.__version__, "numba": numba.__version__, "platform": platform.platform()}
