"""A sweep's steps-to-grok heatmap (the phase diagram of the grokking literature): which axes it spans, and
what each cell says. A cell of several seeds shows their median with a seed that never grokked counted as
+∞, so a cell where half the seeds never grokked cannot read as a step count; such a cell, and any where
not every seed grokked, is drawn apart and says "k/n grokked". Never grokked, not finished and failed are
three different looks, named in the figure's legend."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from groklab import plots
from groklab.reporting.blocks import Block, Figure
from groklab.reporting.runs import Run, distinct, fmt_value, median_reached

SEED_AXIS = "seed"


def heatmap_cell(runs: Sequence[Run]) -> dict[str, Any]:
    """One cell: `value` (steps, for the colour; None where there is none to show), `text` (what it says) and
    `kind` (grokked: every seed grokked; partial: some did; never; untrained; failed; missing); `incomplete`
    where some of its runs are not finished (pending, or stopped part-way: the cell's text says how many)."""
    if not runs:
        return {"value": None, "text": "no run", "kind": "missing"}
    done = [r for r in runs if r.status == "done"]
    failed = sum(r.status == "failed" for r in runs)
    untrained = sum(r.unfinished for r in runs)
    notes = ([f"{failed} failed"] if failed else []) + ([f"{untrained} not finished"] if untrained and done else [])
    if not done:
        text = "failed" if failed == len(runs) else "not finished" if not failed else f"{failed} failed\nrest not finished"
        return {"value": None, "text": text, "kind": "failed" if failed == len(runs) else "untrained"}
    grokked, value, budget = median_reached(done, "steps_to_grok")
    incomplete = {"incomplete": True} if untrained else {}  # drawn with the not-trained outline too
    if not grokked:
        return {"value": None, "text": "\n".join([f"never\n(> {budget:,})", *notes]), "kind": "never", **incomplete}
    shown = f"{value:,.0f}" if math.isfinite(value) else f"median\n> {budget:,}"
    count = [f"{grokked}/{len(runs)} grokked"] if len(runs) > 1 else []
    return {"value": value if math.isfinite(value) else None, "text": "\n".join([shown, *count, *notes]),
            "kind": "grokked" if grokked == len(runs) else "partial", **incomplete}


def heatmap_axes(axes: Sequence[str], runs: Sequence[Run]) -> tuple[str, str, list[str]] | None:
    """(y axis, x axis, facet axes) of an experiment's heatmap, or None when fewer than two axes vary.
    Seeds are aggregated when two other axes vary; with one other axis, seed is the second axis."""
    varying = [a for a in axes if len(distinct([r.params.get(a) for r in runs])) > 1]
    others = [a for a in varying if a != SEED_AXIS]
    if len(others) >= 2:
        return others[0], others[1], others[2:]
    if len(others) == 1 and SEED_AXIS in varying:
        return others[0], SEED_AXIS, []
    return None


def heatmaps(exp: dict, runs: list[Run], figure: Callable[..., Figure]) -> list[Block]:
    """The experiment's heatmaps (one per value of any further axes), each with a caption that says how to
    read its cells."""
    spec = heatmap_axes(exp["axes"], runs)
    if spec is None:
        return []
    y_axis, x_axis, facets = spec
    ys = distinct([r.params.get(y_axis) for r in runs])
    xs = distinct([r.params.get(x_axis) for r in runs])
    blocks: list[Block] = []
    seeds = x_axis != SEED_AXIS and len(distinct([r.row["seed"] for r in runs])) > 1
    for fv in distinct([tuple(r.params.get(a) for a in facets) for r in runs]):
        part = [r for r in runs if tuple(r.params.get(a) for a in facets) == fv]
        cells = [[heatmap_cell([r for r in part if r.params.get(y_axis) == y and r.params.get(x_axis) == x])
                  for x in xs] for y in ys]
        where = ", ".join(f"{a}={fmt_value(v)}" for a, v in zip(facets, fv))
        title = f"{exp['name']}: steps to grok" + (f" · {where}" if where else "")
        kinds = [c["kind"] for row in cells for c in row]
        blocks.append(figure(
            f"heatmap {exp['name']} {where}",
            partial(plots.plot_heatmap, cells, [fmt_value(x) for x in xs], [fmt_value(y) for y in ys], x_axis,
                    y_axis, None, title),
            f"Steps to grok (val accuracy ≥ the threshold and staying there) over {y_axis} × {x_axis}"
            + (f", {where}" if where else "") + ". "
            + ("Each cell: the median over its seeds, a seed that never grokked counted as +∞ (where half or more "
               "never grokked, the cell says \"median > budget\"), and how many grokked. " if seeds else "")
            + f"Cells: {kinds.count('never')} never grokked (grey, hatched), {kinds.count('partial')} where only "
            f"some seeds grokked (dashed outline), {kinds.count('untrained') + kinds.count('missing')} not finished "
            f"(white, dotted outline), {kinds.count('failed')} failed (red, crossed)"
            + (f", {incomplete} with some seeds not finished (dotted outline, and the cell says how many)"
               if (incomplete := sum(bool(c.get('incomplete')) for row in cells for c in row)) else "")
            + "; the legend says the same.",
            f"heatmap of steps to grok over {y_axis} and {x_axis}"))
    return blocks
