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
