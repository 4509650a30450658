"""Packaging hook: ship the device cards of ``devices/`` inside the package as ``neuroemu/cards``.

Metadata lives in pyproject.toml. A checkout reads ``devices/`` directly; an installed (non-editable)
package reads its copy.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithCards(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "neuroemu" / "cards"
        target.mkdir(parents=True, exist_ok=True)
        for card in sorted(Path(__file__).parent.joinpath("devices").glob("*.yaml")):
            shutil.copy2(card, target / card.name)


setup(cmdclass={"build_py": BuildWithCards})
