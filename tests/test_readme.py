"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_api_example_runs(capsys):
    block = re.search(r"## Python API\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README lost its Python API example"
    exec(compile(block.group(1), "README.md", "exec"), {})
    assert "mixed_precision" in capsys.readouterr().out
