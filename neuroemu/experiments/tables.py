"""Result tables shared by the experiments: the aligned text table ``neuroemu run`` prints."""

from __future__ import annotations

from typing import Any


def console_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> list[str]:
    """Rows of an experiment's result table as aligned text: the run name, test accuracy mean ± std,
    then ``columns`` given as (header, key, format spec); a row without a column's key shows "–"."""
    width = max(len(r["run"]) for r in rows)
    widths = [max(len(h), 7) for h, _, _ in columns]
    lines = [f"{'run':<{width}}  {'test acc %':>12}" + "".join(f"  {h:>{w}}" for (h, _, _), w in zip(columns, widths))]
    for r in rows:
        acc = f"{r['test_acc']:.2f}±{r['test_acc_std']:.2f}"
        lines.append(f"{r['run']:<{width}}  {acc:>12}" +
                     "".join(f"  {format(r[k], f) if k in r else '–':>{w}}" for (_, k, f), w in zip(columns, widths)))
    return lines
