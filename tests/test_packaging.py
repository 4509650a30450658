"""A non-editable install must ship the device cards inside the package."""

import subprocess
import sys
from pathlib import Path

import pytest

from neuroemu.hardware.cards import list_cards

ROOT = Path(__file__).resolve().parents[1]


def test_build_copies_every_card_into_the_package(tmp_path):
    pytest.importorskip("setuptools")
    res = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    shipped = sorted(p.stem for p in (tmp_path / "neuroemu" / "cards").glob("*.yaml"))
    assert shipped == list_cards()
    assert (tmp_path / "neuroemu" / "hardware" / "cards.py").is_file()


def test_no_module_imports_a_module_that_imports_it_back():
    """No import circle in the package, lazy imports inside functions included (a lower floor never
    imports a higher one back)."""
    import ast

    package = ROOT / "neuroemu"
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    if target in modules and target != name:
                        graph[name].add(target)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules and a.name != name)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return False

    circles = sorted(f"{a} -> {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert not circles, circles


def test_the_version_is_the_projects():
    import tomllib

    from neuroemu import __version__

    assert __version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
