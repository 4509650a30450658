"""The README is the front door: its two commands are the ones that work, and it stays short.

Its code blocks and links are checked with every docs page in tests/test_docs.py.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def bash_blocks() -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", README.read_text(), re.S | re.M)


def test_the_test_command_is_what_ci_runs():
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    command = ci[-1]
    assert command.startswith("python3 -m venv .venv"), f".ci/run changed shape: {command!r}"
    lines = [ln for b in bash_blocks() for ln in b.splitlines()]
    assert command in lines, f"the README does not show .ci/run's command byte for byte: {command!r}"


def test_the_first_command_installs_activates_and_runs_the_main_study():
    first = bash_blocks()[0].strip()
    steps = [s.strip() for s in first.split("&&")]
    assert steps[:3] == ["python3 -m venv .venv", ". .venv/bin/activate", "pip install -e ."], steps
    assert steps[3].startswith("neuroemu run examples/eprop_pcm/tuned.yaml --out "), steps


def test_the_readme_links_every_study_page_and_stays_short():
    text = README.read_text()
    for page in ("eprop_pcm", "fmnist_crossbar", "sparse_snn", "fasthebb", "sdt", "brainscales2"):
        assert f"(docs/{page}.md)" in text, f"the README's study table lacks docs/{page}.md"
    assert "(docs/README.md)" in text
    n = len(text.splitlines())
    assert n <= 150, f"the README has {n} lines; move detail into docs/"
