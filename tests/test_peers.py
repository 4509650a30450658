"""benchmarks/bench_peers.py --quick runs, prints neuroemu's rows, and reports absent peers as skipped."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_peers.py"
NEUROEMU_ROWS = ["neuroemu SparseSNN dense", "neuroemu SparseSNN sparse", "neuroemu SpikingMLP (CUBA)",
                 "neuroemu Tile (linear_step", "neuroemu stochastic coincidence (linear_step)",
                 "neuroemu mixed precision (linear_step)", "neuroemu Tiki-Taka (linear_step)",
                 "neuroemu mixed precision (PCM)"]


def _run(*args: str, hide: Path | None = None) -> str:
    env = dict(os.environ)
    if hide is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(hide), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _rows(out: str, threads: int) -> list[str]:
    return [ln for ln in out.splitlines() if ln.strip().startswith(f"{threads}  ")]


@pytest.mark.slow
def test_quick_without_peers(tmp_path):
    """With torch (and so snnTorch) made unimportable and aihwkit absent: every peer is reported as
    skipped with how to install it, and every neuroemu row is printed at 1 and 2 threads."""
    hide = tmp_path / "hide"
    for name in ("torch", "snntorch", "aihwkit"):
        (hide / name).mkdir(parents=True)
        (hide / name / "__init__.py").write_text(f"raise ImportError('{name} hidden by tests/test_peers.py')\n")
    out = _run(hide=hide)
    for name in ("torch", "snntorch", "aihwkit"):
        assert f"{name}: not installed - skipped; to install:" in out, out
    for threads in (1, 2):
        rows = "\n".join(_rows(out, threads))
        for row in NEUROEMU_ROWS:
            assert row in rows, f"{row!r} missing at {threads} thread(s):\n{out}"
        assert "PyTorch" not in rows and "snnTorch" not in rows and "aihwkit" not in rows
    assert "ratio = neuroemu SparseSNN dense / row" in out
    assert "peak memory of workload 1" in out and "neuroemu SparseSNN sparse" in out.split("peak memory")[1]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None or importlib.util.find_spec("snntorch") is None,
                    reason="torch and snntorch not installed (pip install -e '.[peers]')")
def test_quick_with_torch_and_snntorch():
    """The installed peers get their rows and their gradients agree with neuroemu's dense backward."""
    out = _run("--threads", "1", "--no-memory")
    rows = "\n".join(_rows(out, 1))
    for row in NEUROEMU_ROWS + ["PyTorch", "snnTorch", "PyTorch float32 x @ W.T", "PyTorch float32 SGD"]:
        assert row in rows, f"{row!r} missing:\n{out}"
    assert "ratio = PyTorch / row" in out
    for side in ("PyTorch", "snnTorch"):
        line = next(ln for ln in out.splitlines() if ln.startswith(f"check {side} vs neuroemu dense"))
        assert float(line.rsplit("=", 1)[1]) < 1e-3, line
    if importlib.util.find_spec("aihwkit") is None:
        assert "aihwkit: not installed - skipped" in out
