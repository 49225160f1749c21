"""One experiment of a report: its heatmap, the settings compared, each setting's curves (one run, or the mean
and band of its seeds), the seed-style table and what is not finished. A run that stopped part-way says so
on its own curves, in the figures that include it, and in the table."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

from groklab import plots
from groklab.reporting.blocks import Block, Details, Figure, Heading, Items, Para, Table
from groklab.reporting.heatmap import SEED_AXIS, heatmaps
from groklab.reporting.runs import Run, fmt_value, median_reached, slug, status_text
from groklab.tables import MISSING, mean_std, num, pct, seconds, steps

MAX_COMPARED = len(plots.SERIES_COLORS) * 2  # more settings than this in one panel is a tangle
SEED_FIGURE_DPI = 80  # each seed's own curves: one click away, smaller
TEXT_GROK = "n/a (a text)"  # a text to memorise has no held-out part: no grokking verdict
REACHED_NOTE = ("In a mean ± std row, steps to memorise and to grok say how many finished runs got there and the "
                "median over all of them, a run that never did counted as +∞ (\"median > budget\" when half or "
                "more never did).")


def condition_label(axes: Sequence[str], key: tuple) -> str:
    return ", ".join(f"{a}={fmt_value(v)}" for a, v in zip(axes, key))


def seed_table(cond_axes: Sequence[str], conditions: dict[tuple, list[Run]]) -> Table:
    """Each run's final numbers and grokking steps, and per setting with several finished runs a
    mean ± std row (over the finished runs)."""
    header = [*cond_axes, "seed", "status", "final train loss", "final train acc", "final val acc",
              "final test acc", "final val token acc", "steps to memorise", "steps to grok", "wall time"]
    rows: list[list[str]] = []
    strong: set[int] = set()
    for key, runs in conditions.items():
        values = [fmt_value(v) for v in key]
        for r in sorted(runs, key=lambda r: r.row["seed"]):
            done = r.status == "done"
            rows.append([*values, str(r.row["seed"]), status_text(r), num(r.row["final_train_loss"]),
                         pct(r.row["final_train_acc"]), pct(r.row["final_val_acc"]), pct(r.row["final_test_acc"]),
                         pct(r.row.get("final_val_token_acc")),
                         steps(r.row["steps_to_memorise"], "not memorised") if done else MISSING,
                         _grok_cell(r) if done else MISSING, seconds(r.wall_time)])
        done = [r for r in runs if r.status == "done"]
        if len(done) > 1:
            strong.add(len(rows))
            rows.append([*values, "mean ± std", f"{len(done)} done",
                         mean_std([r.row["final_train_loss"] for r in done], num),
                         mean_std([r.row["final_train_acc"] for r in done], pct),
                         mean_std([r.row["final_val_acc"] for r in done], pct),
                         mean_std([r.row["final_test_acc"] for r in done], pct),
                         mean_std([r.row.get("final_val_token_acc") for r in done], pct),
                         reached(done, "steps_to_memorise"),
                         TEXT_GROK if all(r.is_text for r in done) else reached(done, "steps_to_grok"),
                         mean_std([r.wall_time for r in done], seconds)])
    return Table(header, rows, strong, kind="seeds")


def _grok_cell(r: Run) -> str:
    return TEXT_GROK if r.is_text else steps(r.row["steps_to_grok"])


def reached(done: Sequence[Run], key: str) -> str:
    """'2 of 3 runs, median 1,200' (the median over all of them, a run that never got there counted as +∞);
    'median > 5,000' when half or more never did."""
    count, middle, budget = median_reached(done, key)
    if not count:
        return f"0 of {len(done)} runs"
    return f"{count} of {len(done)} runs, median " + (f"{middle:,.0f}" if math.isfinite(middle) else f"> {budget:,}")


def _unfinished_note(runs: Sequence[Run]) -> str:
    """' · 1 of 3 unfinished (stopped at step 20)' for a figure's title; '' when every run finished."""
    left = [r for r in runs if r.unfinished and r.history]
    if not left:
        return ""
    where = ", ".join(f"{r.history[-1]['step']:,}" for r in left)
    return f" · {len(left)} of {len(runs)} unfinished (stopped at step {where})"


def _run_figure(r: Run, label: str, figure: Callable[..., Figure], dpi: int = plots.DPI, short: bool = False):
    title = f"{r.run_id} · seed {r.row['seed']}" + (f" · {status_text(r)}" if r.unfinished else "")
    caption = (f"seed {r.row['seed']} ({status_text(r)})" if short else
               (f"{label} · " if label else "") + f"seed {r.row['seed']} ({status_text(r)}): loss and accuracy "
               "of each split; vertical lines at steps-to-memorise (dotted), steps-to-grok (dashed)"
               + (" and the failure (dash-dot)." if r.status == "failed" else
                  " and where it stopped, unfinished (dash-dot)." if r.unfinished and r.history else "."))
    # each draw is a plots function with its data bound (no closure): a worker process can draw it too
    return figure(f"{'seed' if short else 'curves'} {r.run_id}", partial(
        plots.plot_curves, r.history, None, title, r.marks, dpi=dpi, text=r.is_text), caption, f"curves of {r.run_id}")


def _curves(name: str, cond_axes: Sequence[str], curved: dict[tuple, list[Run]], text: bool,
            figure: Callable[..., Figure]) -> list[Block]:
    blocks: list[Block] = []
    if 2 <= len([k for k, v in curved.items() if v]) <= MAX_COMPARED:
        series = [(condition_label(cond_axes, k) + (" (unfinished)" if any(r.unfinished for r in v) else ""),
                   [r.history for r in v]) for k, v in curved.items() if v]
        bands = plots.compare_bands(series)
        blocks.append(figure(f"compare {name}", partial(
            plots.plot_compare, series, "val_token_acc" if text else "val_acc", None,
            f"{name}: val accuracy by setting", text=text),
            "Validation accuracy of each setting: the mean over its seeds"
            + (", with a min–max band." if bands else " (the bands of each setting are in its own figure below).")
            + (" A setting marked (unfinished) has runs that stopped part-way: its curve ends early or averages"
               " fewer runs from there." if any(r.unfinished for v in curved.values() for r in v) else ""),
            f"validation accuracy of each setting of {name}"))
    for key, cond in curved.items():
        label = condition_label(cond_axes, key)
        if len(cond) == 1:
            blocks.append(_run_figure(cond[0], label, figure))
            continue
        if not cond:
            continue
        seeds_text = ", ".join(str(r.row["seed"]) for r in cond)
        label = label or "all seeds"
        note = _unfinished_note(cond)
        title = f"{name}: {label} · {len(cond)} runs (seeds {seeds_text}){note}"
        blocks.append(figure(f"band {name} {label}", partial(
            plots.plot_band, [r.history for r in cond], [r.marks for r in cond], None, title, text=text),
            f"{label}: the mean over {len(cond)} runs (seeds {seeds_text}) with a min–max band; the strip "
            "below marks each run's steps-to-memorise (▲) and steps-to-grok (◆); grey lines: their medians"
            + note + ".", f"mean and band of {label}"))
        blocks.append(Details(f"Each seed of {label} ({len(cond)} figures)", [
            _run_figure(r, label, figure, SEED_FIGURE_DPI, short=True) for r in cond]))
    return blocks


def experiment_blocks(exp: dict, runs: list[Run], figure: Callable[..., Figure], single: bool) -> list[Block]:
    name = exp["name"]
    blocks: list[Block] = [] if single else [Heading(2, f"Experiment {name}", f"exp-{slug(name)}")]
    if exp.get("description"):
        blocks.append(Para(exp["description"]))
    cond_axes = [a for a in exp["axes"] if a != SEED_AXIS]
    conditions: dict[tuple, list[Run]] = {}
    for r in runs:
        conditions.setdefault(tuple(r.params.get(a) for a in cond_axes), []).append(r)
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "failed", "partial", "pending")}
    text = all(r.is_text for r in runs)  # texts memorised: no held-out data, so no grokking verdict or heatmap
    threshold = runs[0].row["grok_threshold"]
    blocks.append(Para(f"{len(runs)} run(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                       + (f" · axes: {', '.join(exp['axes'])}" if exp["axes"] else "")
                       + (" · a text to memorise: loss and per-token accuracy on every token; no grokking verdict "
                          "(its val split is the text itself)" if text else
                          f" · grokked means val accuracy ≥ {threshold:g} from then on")
                       + f"; memorised means train accuracy ≥ {threshold:g} from then on."))
    blocks += [] if text else heatmaps(exp, runs, figure)
    blocks += _curves(name, cond_axes, {k: [r for r in v if r.history] for k, v in conditions.items()}, text, figure)
    blocks.append(seed_table(cond_axes, conditions))
    if any(len([r for r in v if r.status == "done"]) > 1 for v in conditions.values()):
        blocks.append(Para(REACHED_NOTE))
    unfinished = [r for r in runs if r.status != "done"]
    if unfinished:
        blocks.append(Para("Not finished:"))
        blocks.append(Items([f"`{r.run_id}`: {status_text(r)}"
                             + (f" at step {r.row['failed_step']:,}" if r.row.get("failed_step") is not None else "")
                             + (f": {r.row['failure']}" if r.row.get("failure") else "") for r in unfinished]))
    return blocks
