"""Result tables shared by the studies: the aligned text table ``neuroemu run`` prints, and the
cells and notes every experiment's tables use for diverged seeds and pulse-limit hits.

A table row carries ``seeds`` (all of a run's seeds) and ``diverged`` (how many of them diverged,
see :mod:`neuroemu.divergence`); its means and stds are over the other seeds, and are absent when every
seed diverged. :func:`value_cell` and :func:`status` turn that into "81.20 ± 0.40 (diverged 1/3)"
or "diverged"; :func:`notes` lists the diverged jobs and the runs whose update schemes hit their
pulse limit (``pulse_limit_hits``, see :mod:`neuroemu.hardware.schemes`), for the console and RESULTS.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..divergence import seed_counts, split


def mean_std(values: list[float] | np.ndarray, scale: float = 1.0) -> tuple[float, float]:
    """Mean and sample std (0 for one value) of ``values`` × ``scale``."""
    v = np.asarray(values, dtype=float) * scale
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def run_groups(results: list[dict[str, Any]], key: str = "run"):
    """(name, all results of the run, the ones that did not diverge, seed fields of the row) per run,
    in the order the runs first appear; the seed fields are :func:`neuroemu.divergence.seed_counts`."""
    for name in dict.fromkeys(r[key] for r in results):
        rs = [r for r in results if r[key] == name]
        ok, _ = split(rs)
        yield name, rs, ok, seed_counts(rs)


def kept(row: dict[str, Any]) -> int:
    """Seeds of the row that did not diverge."""
    return row["seeds"] - row.get("diverged", 0)


def status(row: dict[str, Any]) -> str:
    """"" when no seed diverged, "diverged k/n" when some did, "diverged" when all did."""
    k = row.get("diverged", 0)
    if not k:
        return ""
    return "diverged" if k == row["seeds"] else f"diverged {k}/{row['seeds']}"


def value_cell(row: dict[str, Any], key: str, fmt: str = ".2f", *, sep: str = " ± ", std: str | None = None,
               std_from: int = 2, note: bool = True) -> str:
    """``mean ± std`` of ``key`` (std from ``std``, default ``key + "_std"``, shown when at least
    ``std_from`` seeds are kept), then " (diverged k/n)" when some seeds diverged (``note``);
    "diverged" when all did; "–" when the row has no such value."""
    if key not in row:
        return "diverged" if row.get("diverged") and not kept(row) else "–"
    text = format(row[key], fmt)
    std_key = std or f"{key}_std"
    if std_key in row and kept(row) >= std_from:
        text += f"{sep}{format(row[std_key], fmt)}"
    return f"{text} ({status(row)})" if note and status(row) else text


def number(row: dict[str, Any], key: str, fmt: str) -> str:
    """``row[key]`` formatted, or "–" (a run whose seeds all diverged has no numbers)."""
    return format(row[key], fmt) if key in row else "–"


def notes(rows: list[dict[str, Any]], unit: str = "") -> list[str]:
    """Lines under a table: every diverged seed (where, what, how large) and every run whose
    schemes clipped updates to their pulse limit. ``unit`` names ``at`` ("epoch", "update")."""
    out = []
    for r in rows:
        for seed, d in r.get("diverged_seeds", {}).items():
            where = f"{unit} {d['at']}".strip()
            value = d["value"] if isinstance(d["value"], str) else f"{d['value']:.4g}"
            bound = "" if d.get("bound") is None else \
                f", above {d['bound']:.4g} = diverge_factor × the untrained value"
            out.append(f"diverged: {r['run']}, seed {seed}, at {where}: {d['metric']} {value}{bound}")
    for r in rows:
        hits = r.get("pulse_limit_hits", 0)
        if hits:
            out.append(f"pulse limit hit {hits} times: {r['run']} (synapse updates clipped to the scheme's max_pulses, "
                       "all seeds; lower the learning rate or raise max_pulses)")
    return out


def markdown_notes(rows: list[dict[str, Any]], unit: str = "") -> list[str]:
    """:func:`notes` as Markdown list items after a blank line (nothing when there are none)."""
    lines = notes(rows, unit)
    return ["", *(f"* {n}" for n in lines)] if lines else []


def console_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]],
                  main: tuple[str, str, str] = ("test acc %", "test_acc", ".2f"), unit: str = "epoch") -> list[str]:
    """Rows of an experiment's result table as aligned text: the run name, the ``main`` column
    (header, key, format spec) as mean ± std, then ``columns`` given as (header, key, format spec);
    a row without a column's key shows "–". When a seed diverged, a last column says
    "diverged k/n" (or "diverged"), and :func:`notes` follow the table."""
    width = max(len(r["run"]) for r in rows)
    widths = [max(len(h), 7) for h, _, _ in columns]
    head, key, fmt = main
    cells = [value_cell(r, key, fmt, sep="±", std_from=1, note=False) for r in rows]
    main_w = max(12, len(head), *(len(c) for c in cells))
    flagged = any(r.get("diverged") for r in rows)
    lines = [f"{'run':<{width}}  {head:>{main_w}}" + "".join(f"  {h:>{w}}" for (h, _, _), w in zip(columns, widths)) +
             ("  status" if flagged else "")]
    for r, c in zip(rows, cells):
        lines.append(f"{r['run']:<{width}}  {c:>{main_w}}" +
                     "".join(f"  {number(r, k, f):>{w}}" for (_, k, f), w in zip(columns, widths)) +
                     (f"  {status(r)}" if flagged else ""))
    return lines + notes(rows, unit)
