"""How numbers are written in groklab's tables (reproduce's tables.md, the report): one place, one style.

A missing value is an en dash; accuracies are percentages; steps have thousands separators; a run that
never grokked says so instead of showing a blank.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

MISSING = "–"


def pct(x: float | None) -> str:
    return MISSING if x is None else f"{100 * x:.2f}%"


def num(x: float | None, digits: int = 4) -> str:
    if x is None:
        return MISSING
    return f"{x:.{digits}f}" if abs(x) < 1e5 else f"{x:.3g}"  # a diverged loss: 4.13e+10


def steps(x: int | None, never: str = "not grokked") -> str:
    return never if x is None else f"{x:,}"


def seconds(x: float | None) -> str:
    if x is None:
        return MISSING
    if x < 120:
        return f"{x:.1f} s"
    return f"{x / 60:.1f} min" if x < 7200 else f"{x / 3600:.1f} h"


def mean_std(values: Sequence[float | None], fmt: Callable[[float | None], str]) -> str:
    """'mean ± std' over the values that exist (the sample std, as the seed reports); one value alone."""
    vals = [v for v in values if v is not None]
    if not vals:
        return MISSING
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(statistics.fmean(vals))} ± {fmt(statistics.stdev(vals)).rstrip('%')}"


def md_escape(cell: str) -> str:
    """A table cell's text, safe inside a Markdown table row."""
    return cell.replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(map(md_escape, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(md_escape, r)) + " |" for r in rows]
    return "\n".join(lines)
