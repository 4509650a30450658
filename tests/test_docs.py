"""Every code block in README.md and docs/*.md is checked for real.

A new page under docs/ is covered as soon as it exists. What each kind of fenced block gets:

* ``python``: executed, the blocks of one page in order in one namespace, in a temporary working
  directory that sees the repository's ``devices/``, ``examples/`` and ``benchmarks/``.
* ``bash``: every command on every line (``&&``/``;`` chains, ``\\`` continuations, ``#`` comments)
  must be one of these, checked as stated:
    - ``python3 -m venv .venv`` and ``. .venv/bin/activate`` (or ``source``): their exact shape;
    - ``pip install [-q] -e .`` or ``-e '.[extra,...]'`` (bare or ``.venv/bin/pip``): each extra is
      declared in pyproject.toml;
    - ``neuroemu devices ...``: run through ``neuroemu.cli.main`` (``--out DIR`` goes to a temporary
      directory) and must exit 0;
    - ``neuroemu run|sweep CONFIG ...``: parsed by ``neuroemu.cli.build_parser()``, the config
      resolved and validated with every ``--set`` (and, for a sweep, every grid point and
      ``--seeds``), and its jobs listed, without running them;
    - ``neuroemu data|--help|--version ...``: parsed (``--help``/``--version`` run);
    - ``python SCRIPT.py [flags]``: the script exists, its ``--help`` runs, and every flag given is
      in that help;
    - ``python -m pytest ...``: the shape only.
  A bare ``neuroemu``, ``pip`` or ``python`` needs the virtual environment: an activate command
  earlier on the page, or the words "with the venv active" in the page's text before the block.
* ``yaml``: parsed; a block with ``schema:`` and ``kind:`` is validated as a device card.
* ``text``: not code (output, trees); not checked.

Any other fence, or one without a language, fails. A block opts out only with a first line
``# docs-test: skip: <why>``, the reason spelled out. Inline code spans in the prose that start
with ``neuroemu `` or ``python `` are checked like bash lines, and every relative link or image
must point to a file that exists.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import runpy
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_WORDS = "with the venv active"
SKIP = re.compile(r"^#\s*docs-test:\s*skip:\s*(.*)$")
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
OPS = {"&&", ";", "||"}
PYTHONS = {"python", "python3", ".venv/bin/python", ".venv/bin/python3"}


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def blocks(page: Path) -> list[tuple[str, str, int, int]]:
    """(language, code, line of the fence, offset of the fence in the text) of every fenced block."""
    text = page.read_text(encoding="utf-8")
    return [(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1, m.start())
            for m in FENCE.finditer(text)]


def prose(page: Path) -> str:
    """The page without its fenced blocks."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def skip_reason(code: str) -> str | None:
    first = code.splitlines()[0].strip() if code.strip() else ""
    m = SKIP.match(first)
    if m is None:
        return None
    assert len(m.group(1).strip()) >= 10, f"'# docs-test: skip:' needs a reason, got {first!r}"
    return m.group(1).strip()


# ---------------------------------------------------------------------------------------- bash
def logical_lines(code: str) -> list[str]:
    return [ln for ln in re.sub(r"\\\n", " ", code).splitlines() if ln.strip()]


def commands(line: str) -> list[list[str]]:
    """The commands of one shell line, split at ``&&``, ``;`` and ``||``; comments dropped."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
    lex.whitespace_split = True
    lex.commenters = "#"
    out, cur = [], []
    for tok in lex:
        if tok in OPS:
            out.append(cur)
            cur = []
        elif tok and set(tok) <= set(";&|<>()"):
            raise AssertionError(f"unsupported shell operator {tok!r} in {line!r}")
        else:
            cur.append(tok)
    out.append(cur)
    assert all(out), f"empty command in {line!r}"
    return out


def extras() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"].get("optional-dependencies", {}))


class Shell:
    """Checks the commands of one page, in order; remembers whether the venv is active."""

    def __init__(self, page: Path, tmp: Path, capsys):
        self.page, self.tmp, self.capsys = page, tmp, capsys
        self.active = False
        self.seen: list[str] = []

    def need_venv(self, cmd: list[str]) -> None:
        assert self.active, (f"`{' '.join(cmd)}` needs the virtual environment: activate it earlier on the "
                             f"page, write '{VENV_WORDS}' before the block, or call .venv/bin/{cmd[0]}")

    def check_line(self, line: str) -> None:
        for cmd in commands(line):
            self.check(cmd)
            self.seen.append(" ".join(cmd))

    def check(self, cmd: list[str]) -> None:
        head, args = cmd[0], cmd[1:]
        if head == "python3" and args[:1] == ["-m"] and args[1:2] == ["venv"]:
            assert args == ["-m", "venv", ".venv"], f"expected `python3 -m venv .venv`, got {cmd}"
        elif head in (".", "source"):
            assert args == [".venv/bin/activate"], f"expected `. .venv/bin/activate`, got {cmd}"
            self.active = True
        elif head in ("pip", ".venv/bin/pip"):
            if head == "pip":
                self.need_venv(cmd)
            self.pip(args)
        elif head in ("neuroemu", ".venv/bin/neuroemu"):
            if head == "neuroemu":
                self.need_venv(cmd)
            self.neuroemu(args)
        elif head in PYTHONS:
            if not head.startswith(".venv/"):
                self.need_venv(cmd)
            self.python(args)
        else:
            raise AssertionError(f"unknown command {head!r} in {' '.join(cmd)!r}: use one tests/test_docs.py "
                                 "checks, or mark the block '# docs-test: skip: <why>'")

    def pip(self, args: list[str]) -> None:
        assert args[:1] == ["install"], f"pip: only `pip install` is checked, got {args}"
        rest = [a for a in args[1:] if a not in ("-q", "--quiet", "-U", "--upgrade")]
        assert rest[:1] == ["-e"] and len(rest) == 2, f"expected `pip install [-q] -e .[extras]`, got {args}"
        m = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", rest[1])
        assert m, f"expected `.` or `.[extra]`, got {rest[1]!r}"
        unknown = set((m.group(1) or "").split(",")) - {""} - extras()
        assert not unknown, f"pip install: extra(s) {sorted(unknown)} not in pyproject.toml ({sorted(extras())})"

    def neuroemu(self, args: list[str]) -> None:
        from neuroemu.cli import build_parser, main

        assert args, "bare `neuroemu`"
        if args[0] in ("-h", "--help", "--version"):
            with pytest.raises(SystemExit) as exc:
                main(args)
            assert exc.value.code in (0, None)
            return
        try:
            parsed = build_parser().parse_args(args)
        except SystemExit:
            raise AssertionError(f"`neuroemu {' '.join(args)}`: rejected by the argument parser "
                                 f"({self.capsys.readouterr().err.strip()})") from None
        if parsed.command == "devices" and parsed.action == "plot" and self._chip(parsed.target):
            pass  # parsed; a chip's figures take ~10 s and tests/test_cli.py draws them
        elif parsed.command == "devices":
            argv = list(args)
            if "--out" in argv:
                i = argv.index("--out") + 1
                argv[i] = str(self.tmp / "out" / argv[i].strip("/").replace("/", "_"))
            code = main(argv)
            err = self.capsys.readouterr().err
            assert code == 0, f"`neuroemu {' '.join(args)}` exited {code}: {err.strip()}"
        elif parsed.command == "run":
            self.plan(parsed.config, parsed.set)
        elif parsed.command == "sweep":
            self.plan_sweep(parsed)
        elif parsed.command == "tune":
            from neuroemu.tune import plan

            assert plan(self._config(parsed.config), parsed.set).first, f"`neuroemu {' '.join(args)}`: no trials"
        elif parsed.command == "data":
            pass  # parsed; finding or fetching the data is not a documentation check
        else:
            raise AssertionError(f"no check for `neuroemu {parsed.command}`; teach tests/test_docs.py")

    @staticmethod
    def _chip(target: str | None) -> bool:
        from neuroemu.hardware.cards import load_card

        return target is not None and load_card(target).kind == "analog_chip"

    @staticmethod
    def _config(path: str) -> Path:
        p = Path(path)
        p = p if p.is_absolute() else ROOT / p
        assert p.is_file(), f"no such config: {path}"
        return p

    def plan(self, config: str, overrides: list[str]) -> None:
        from neuroemu.studies import resolve

        module, cfg = resolve(self._config(config), overrides)
        assert module.jobs(cfg), f"{config}: no jobs"

    def plan_sweep(self, parsed) -> None:
        from neuroemu.studies import EXPERIMENTS, resolve
        from neuroemu.sweep import grid_points, parse_grid

        config = self._config(parsed.config)
        points = grid_points(parse_grid(parsed.grid))
        name = yaml.safe_load(config.read_text())["experiment"]
        seeds = []
        if parsed.seeds is not None:
            assert parsed.seeds >= 1, "--seeds: expected >= 1"
            assert "seeds" in EXPERIMENTS[name].SCHEMA, f"{parsed.config}: --seeds on an experiment without seeds"
            seeds = [f"seeds=[{', '.join(map(str, range(parsed.seeds)))}]"]
        for point in points:
            module, cfg = resolve(config, parsed.set + seeds + [f"{k}={t}" for k, (t, _) in point.items()])
            assert module.jobs(cfg), f"{parsed.config}: no jobs at grid point {point}"

    def python(self, args: list[str]) -> None:
        if args[:2] == ["-m", "pytest"]:
            return
        if args[:2] == ["-m", "neuroemu"]:
            return self.neuroemu(args[2:])
        assert args and args[0].endswith(".py") and not args[0].startswith("-"), \
            f"python: expected `python SCRIPT.py [flags]` or `python -m pytest`, got {args}"
        script = ROOT / args[0]
        assert script.is_file(), f"no such script: {args[0]}"
        help_text = script_help(script)
        for flag in (a.split("=")[0] for a in args[1:] if a.startswith("-")):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text), \
                f"{args[0]}: flag {flag} is not in its --help"


_HELP: dict[Path, str] = {}


def script_help(script: Path) -> str:
    """``python SCRIPT --help``, run in this process (the scripts parse their arguments first)."""
    if script not in _HELP:
        out = io.StringIO()
        argv, path = sys.argv, list(sys.path)
        try:
            sys.argv = [str(script), "--help"]
            with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
                runpy.run_path(str(script), run_name="__main__")
        finally:
            sys.argv, sys.path[:] = argv, path
        assert exc.value.code in (0, None), f"{script.relative_to(ROOT)} --help exited {exc.value.code}"
        assert "usage:" in out.getvalue(), f"{script.relative_to(ROOT)} --help printed no usage"
        _HELP[script] = out.getvalue()
    return _HELP[script]


# ---------------------------------------------------------------------------------------- tests
@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory that sees the repository's data files, so examples may write freely."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("devices", "examples", "benchmarks"):
        (work / name).symlink_to(ROOT / name, target_is_directory=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return work


def test_the_docs_exist():
    names = {p.name for p in PAGES}
    assert {"README.md", "cli.md", "devices.md", "api.md", "data.md", "benchmarks.md"} <= names
    assert (ROOT / "docs" / "README.md").is_file()


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_code_blocks(page, workdir, capsys):
    shell = Shell(page, workdir, capsys)
    text = page.read_text(encoding="utf-8")
    namespace: dict = {"__name__": "__docs__"}
    for lang, code, line, at in blocks(page):
        where = f"{_rel(page)}:{line}"
        if lang == "text":
            continue
        if skip_reason(code) is not None:
            continue
        if VENV_WORDS in " ".join(FENCE.sub("", text[:at]).split()).lower():
            shell.active = True
        try:
            if lang == "python":
                exec(compile(code, where, "exec"), namespace)
            elif lang == "bash":
                for ln in logical_lines(code):
                    shell.check_line(ln)
            elif lang == "yaml":
                check_yaml(code, where)
            else:
                raise AssertionError(f"fence language {lang!r}: use python, bash, yaml or text")
        except Exception as exc:  # name the page and line of the block
            raise AssertionError(f"{where}: {type(exc).__name__}: {exc}") from exc


def check_yaml(code: str, where: str) -> None:
    from neuroemu.hardware.cards import parse_card

    data = yaml.safe_load(code)
    if isinstance(data, dict) and "schema" in data and "kind" in data:
        parse_card(data, where)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_inline_commands(page, workdir, capsys):
    """`neuroemu ...` and `python X.py ...` written inline in the prose hold as well."""
    shell = Shell(page, workdir, capsys)
    shell.active = True  # inline commands are references, not steps to copy in order
    for span in INLINE.findall(prose(page)):
        span = span.strip()
        if re.match(r"(neuroemu|python3?) ", span) and not re.match(r"python3? -m venv", span):
            if re.search(r"[A-Z]{3,}\.yaml|\bDIR\b|\.\.\.|…", span) or re.fullmatch(r"neuroemu (run|sweep)", span):
                continue  # a placeholder in a usage line or a subcommand's name, not a command
            try:
                shell.check_line(span)
            except Exception as exc:
                raise AssertionError(f"{_rel(page)}: `{span}`: {type(exc).__name__}: {exc}") from exc


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    missing = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{_rel(page)}: links to missing files: {missing}"


def test_docs_index_links_every_page():
    index = (ROOT / "docs" / "README.md").read_text()
    for page in PAGES:
        if page.parent.name == "docs" and page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"


def test_every_example_config_is_documented():
    text = "\n".join(p.read_text() for p in PAGES)
    for config in sorted((ROOT / "examples").glob("*/*.yaml")):
        assert str(config.relative_to(ROOT)) in text, f"{config.relative_to(ROOT)} appears in no doc page"


def test_cli_page_names_every_subcommand_and_flag():
    from neuroemu.cli import build_parser

    text = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    for name, p in sub.choices.items():
        assert f"neuroemu {name}" in text, f"docs/cli.md does not show `neuroemu {name}`"
        flags |= {o for a in p._actions for o in a.option_strings if o.startswith("--")}
        for a in p._actions:
            if a.choices and not a.option_strings:
                for c in a.choices:
                    assert f"{name} {c}" in text, f"docs/cli.md does not show `neuroemu {name} {c}`"
    missing = sorted(f for f in flags - {"--help"} if f not in text)
    assert not missing, f"docs/cli.md does not mention {missing}"


def test_devices_page_names_every_card_and_field():
    from neuroemu.hardware.cards import COMMON, KINDS, SOURCE_KEYS, TOP_LEVEL, list_cards

    text = (ROOT / "docs" / "devices.md").read_text()
    for name in list_cards():
        assert f"`{name}`" in text, f"docs/devices.md does not describe the card {name}"
    fields = set(COMMON) | set(itertools.chain.from_iterable(KINDS.values())) | TOP_LEVEL | SOURCE_KEYS | set(KINDS)
    missing = sorted(f for f in fields if f"`{f}`" not in text)
    assert not missing, f"docs/devices.md does not document {missing}"


def test_checker_catches_typos(workdir, capsys):
    """The checks above can fail: a wrong config path, flag, override, extra or script is caught."""
    shell = Shell(ROOT / "README.md", workdir, capsys)
    shell.active = True
    bad = ["neuroemu run examples/eprop_pcm/schemes.yml --out r",
           "neuroemu run examples/eprop_pcm/schemes.yaml --outt r",
           "neuroemu run examples/eprop_pcm/schemes.yaml --out r --set train.updatez=750",
           "neuroemu sweep examples/eprop_pcm/schemes.yaml --grid train.lr=1e-5,x --out r",
           "neuroemu devices show pcm_nandakumar2019",
           "pip install -e '.[tests]'",
           "python benchmarks/bench_forward.py --quik",
           "python benchmarks/bench_nothing.py",
           "rm -rf results"]
    for line in bad:
        with pytest.raises(Exception):
            shell.check_line(line)
    fresh = Shell(ROOT / "README.md", workdir, capsys)
    with pytest.raises(AssertionError, match="virtual environment"):
        fresh.check_line("neuroemu devices")
    fresh.check_line("python3 -m venv .venv && . .venv/bin/activate && neuroemu devices")
    assert os.getcwd() == str(workdir)


def test_opt_out_needs_a_reason():
    assert skip_reason("# docs-test: skip: needs a running Dask scheduler\nneuroemu sweep x\n") == \
        "needs a running Dask scheduler"
    assert skip_reason("neuroemu devices\n") is None
    with pytest.raises(AssertionError, match="reason"):
        skip_reason("# docs-test: skip:\nneuroemu sweep x\n")
