"""Figures of runs, on a log step axis (the grokking literature's convention): one run's curves, several seeds
of one setting as a mean and a min–max band, settings compared, and a sweep's steps-to-grok heatmap.

Every figure labels its axes with units (optimizer steps, nats, fractions), uses the Okabe-Ito palette or
a perceptually uniform map (readable by colour-blind readers and in greyscale print), and never cuts a
curve off: a loss of exactly 0, which a log axis cannot show, is drawn at a floor and the figure says so.
Each function writes a PNG to `path`, or returns its bytes when `path` is None.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

# Okabe-Ito: readable by colour-blind readers and in greyscale print
COLORS = {"train": "#0072B2", "val": "#D55E00", "test": "#009E73"}
STYLES = {"train": "-", "val": "-", "test": (0, (4, 2))}  # test dashed: it often lies on top of val
# the rest of Okabe-Ito, for settings compared in one figure (yellow left out: too faint on paper)
SERIES_COLORS = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7")
SERIES_STYLES = ("-", (0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)))
MARK_STYLES = {"memorised": ":", "grokked": "--"}
STEP_LABEL = "optimizer steps (log scale)"
LOSS_LABEL = "cross-entropy loss (nats per answer token, log scale)"
ACC_LABEL = "exact-match accuracy (fraction right)"
# a run that memorises a text: the loss is on every token, and exact match over windows is not its measure
TEXT_LOSS_LABEL = "cross-entropy loss (nats per token, log scale)"
TEXT_ACC_LABEL = "per-token accuracy (teacher-forced, fraction right)"


def _measure(text: bool) -> tuple[str, str, str]:
    """(loss label, accuracy label, accuracy key suffix) of an equation run or of a text run."""
    return (TEXT_LOSS_LABEL, TEXT_ACC_LABEL, "token_acc") if text else (LOSS_LABEL, ACC_LABEL, "acc")
LOSS_FLOOR = 1e-7  # where a loss of exactly 0 is drawn on the log axis
DPI = 110
MAX_BANDS = 4  # settings compared in one panel with their bands; more are drawn as lines only


def new_figure(**kwargs: Any):
    """A figure of its own, never pyplot's: drawing changes no global state (a notebook's backend, pyplot's
    current figure), so groups training in threads may draw at once, and nothing needs closing."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig, path: str | Path | None, dpi: int) -> Path | bytes:
    if path is None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def _floored(values: Sequence[float | None]) -> tuple[list[float], bool]:
    """Losses for a log axis: None becomes NaN (a gap), 0 becomes LOSS_FLOOR; and whether that happened."""
    out, floored = [], False
    for v in values:
        if v is None:
            out.append(math.nan)
        elif v <= 0:
            out.append(LOSS_FLOOR)
            floored = True
        else:
            out.append(v)
    return out, floored


def _plain(v: float) -> str:
    return f"{v:,.0f}" if v >= 1000 else f"{v:g}"


def _log_ticks(axis, span: tuple[float, float]) -> None:
    """A log axis that spans less than 30× gets plain-number labels between the powers of ten, at 2 and 5
    (at every minor tick under 3×): matplotlib would write 2 × 10⁰, or leave the axis with one label."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    lo, hi = sorted(span)

    def label(v: float, _pos: Any) -> str:
        mantissa = v / 10 ** math.floor(math.log10(v) + 1e-9)
        return _plain(v) if hi / lo < 3 or any(abs(mantissa - m) < 1e-6 for m in (2, 5)) else ""

    axis.set_minor_formatter(FuncFormatter(label) if lo > 0 and hi / lo < 30 else NullFormatter())


def _dress(ax_loss, ax_acc, floored: bool, text: bool = False) -> None:
    """Scales, labels and grid of a (loss, accuracy) pair of panels (after the curves are drawn)."""
    loss_label, acc_label, _ = _measure(text)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel(loss_label)
    ax_acc.set_ylabel(acc_label)
    ax_acc.set_ylim(-0.02, 1.02)
    for ax in (ax_loss, ax_acc):
        ax.set_xscale("log")
        ax.set_xlabel(STEP_LABEL)
        ax.grid(True, which="major", alpha=0.3)
        _log_ticks(ax.xaxis, ax.get_xlim())
    _log_ticks(ax_loss.yaxis, ax_loss.get_ylim())
    if floored:
        ax_loss.annotate(f"a loss of exactly 0 is drawn at {LOSS_FLOOR:g}", (0.01, 0.01), xycoords="axes fraction",
                         fontsize=7, color="0.3")


def _splits(histories: Sequence[Sequence[dict]], acc: str = "acc") -> list[str]:
    """The splits that have values in any of these histories (test may be absent)."""
    return [s for s in COLORS if any(h.get(f"{s}_{acc}") is not None for rows in histories for h in rows)]


def plot_curves(history: Sequence[dict], path: str | Path | None, title: str, marks: dict[str, int | None],
                dpi: int = DPI, text: bool = False) -> Path | bytes:
    """One run: loss and accuracy of each split, with vertical lines at the marked steps. `text`: a run that
    memorised a text (loss per token, per-token accuracy)."""
    acc = _measure(text)[2]
    rows = [h for h in history if h["step"] > 0]
    steps = [h["step"] for h in rows]
    fig = new_figure(figsize=(11, 4.2), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    floored = False
    for split in _splits([rows], acc):
        style = {"color": COLORS[split], "linestyle": STYLES[split], "label": split}
        losses, f = _floored([h[f"{split}_loss"] for h in rows])
        floored |= f
        ax_loss.plot(steps, losses, **style)
        ax_acc.plot(steps, [math.nan if h.get(f"{split}_{acc}") is None else h[f"{split}_{acc}"] for h in rows],
                    **style)
    shown = [(label, step) for label, step in marks.items() if step]
    for label, step in shown:
        for ax in (ax_loss, ax_acc):
            ax.axvline(step, color="0.35", linestyle=MARK_STYLES.get(label, "-."), linewidth=1)
    _dress(ax_loss, ax_acc, floored, text)
    lo, hi = (math.log(x) for x in ax_acc.get_xlim())
    for label, step in shown:  # written beside its line, on the side with room
        left = hi > lo and (math.log(step) - lo) / (hi - lo) > 0.7
        ax_acc.annotate(f"{label} @ {step:,}", (step, 0.03 + 0.08 * list(marks).index(label)), fontsize=8,
                        xytext=(-4 if left else 4, 0), textcoords="offset points", ha="right" if left else "left")
    for ax in (ax_loss, ax_acc):
        ax.legend(loc="best")
    fig.suptitle(title)
    return save_figure(fig, path, dpi)


def band_stats(histories: Sequence[Sequence[dict]], key: str) -> tuple[list[int], list[float], list[float],
                                                                         list[float], list[int]]:
    """(steps, mean, min, max, n) of `key` over the runs that were evaluated at each step (a run stopped
    early, or failed, drops out from then on: n says how many remain)."""
    by_step: dict[int, list[float]] = {}
    for rows in histories:
        for h in rows:
            if h["step"] > 0 and h.get(key) is not None:
                by_step.setdefault(h["step"], []).append(h[key])
    steps = sorted(by_step)
    vals = [by_step[s] for s in steps]
    return (steps, [sum(v) / len(v) for v in vals], [min(v) for v in vals], [max(v) for v in vals],
            [len(v) for v in vals])


def median(values: Sequence[float]) -> float:
    """The median (the mean of the middle two for an even count); math.inf may be among the values."""
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def plot_band(histories: Sequence[Sequence[dict]], marks: Sequence[dict[str, int | None]], path: str | Path | None,
              title: str, dpi: int = DPI, text: bool = False) -> Path | bytes:
    """Several runs of one setting (seeds): each split's mean with a min–max band; below the accuracy panel
    a strip with each run's steps-to-memorise and steps-to-grok, and their medians as lines on the curves."""
    fig = new_figure(figsize=(11, 4.8), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(5, 1.1))
    ax_loss = fig.add_subplot(grid[:, 0])
    ax_acc = fig.add_subplot(grid[0, 1])
    ax_marks = fig.add_subplot(grid[1, 1], sharex=ax_acc)
    floored = False
    n_runs = len(histories)
    acc = _measure(text)[2]
    for split in _splits(histories, acc):
        color = COLORS[split]
        for ax, key in ((ax_loss, f"{split}_loss"), (ax_acc, f"{split}_{acc}")):
            steps, mean, lo, hi, n = band_stats(histories, key)
            if ax is ax_loss:
                (mean, f1), (lo, f2), (hi, f3) = _floored(mean), _floored(lo), _floored(hi)
                floored |= f1 or f2 or f3
            ax.fill_between(steps, lo, hi, color=color, alpha=0.2, linewidth=0)
            ax.plot(steps, mean, color=color, linestyle=STYLES[split], label=f"{split} (mean, band min–max)")
            if ax is ax_acc and min(n, default=n_runs) < n_runs:
                first = next(s for s, k in zip(steps, n) if k < n_runs)
                ax.annotate(f"from {first:,}: {min(n)} of {n_runs} runs", (first, 0.5), fontsize=7, color="0.3",
                            rotation=90, va="center")
    events = (("memorised", COLORS["train"], "^", 1), ("grokked", COLORS["val"], "D", 0))
    counts = {}
    for label, color, marker, row in events:
        steps = [m[label] for m in marks if m.get(label)]
        if steps:
            ax_marks.plot(steps, [row] * len(steps), linestyle="none", marker=marker, color=color, alpha=0.75,
                          markersize=6)
            med = median(steps)
            some = "" if len(steps) == n_runs else f" of the {len(steps)} of {n_runs} that did"
            for ax in (ax_loss, ax_acc):
                ax.axvline(med, color="0.35", linestyle=MARK_STYLES[label], linewidth=1,
                           label=f"{label}: median {med:,.0f}{some}" if ax is ax_acc else None)
        counts[label] = f"{label} ({len(steps)}/{n_runs})"
    if text:
        counts["grokked"] = "no verdict (a text)"
    ax_marks.set_yticks([0, 1], [counts["grokked"], counts["memorised"]], fontsize=8)
    ax_marks.set_ylim(-0.6, 1.6)
    ax_marks.set_xlabel(STEP_LABEL)
    ax_marks.grid(True, axis="x", which="major", alpha=0.3)
    _dress(ax_loss, ax_acc, floored, text)
    ax_acc.set_xlabel("")
    ax_acc.tick_params(labelbottom=False)
    ax_loss.legend(loc="best", fontsize=8)
    ax_acc.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path, dpi)


def compare_bands(series: Sequence[tuple[str, Sequence[Sequence[dict]]]]) -> bool:
    """Whether plot_compare draws min–max bands: a few settings, some with several runs."""
    return len(series) <= MAX_BANDS and any(len(h) > 1 for _, h in series)


def plot_compare(series: Sequence[tuple[str, Sequence[Sequence[dict]]]], key: str, path: str | Path | None,
                 title: str, dpi: int = DPI, text: bool = False) -> Path | bytes:
    """One metric (e.g. val_acc) of several settings in one panel: each setting's mean over its runs, with
    its min–max band when there are few settings (more bands than that hide each other); colours and dash
    patterns both differ, so settings stay apart in greyscale."""
    fig = new_figure(figsize=(10, 4.4), layout="constrained")
    ax = fig.subplots()
    loss = key.endswith("_loss")
    floored = False
    bands = compare_bands(series)
    for i, (label, histories) in enumerate(series):
        steps, mean, lo, hi, _ = band_stats(histories, key)
        if loss:
            (mean, f1), (lo, _), (hi, _) = _floored(mean), _floored(lo), _floored(hi)
            floored |= f1
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        style = SERIES_STYLES[(i // len(SERIES_COLORS)) % len(SERIES_STYLES)]
        if bands and len(histories) > 1:
            ax.fill_between(steps, lo, hi, color=color, alpha=0.15, linewidth=0)
        ax.plot(steps, mean, color=color, linestyle=style, label=label)
    split = key.split("_", 1)[0]
    loss_label = _measure(text)[0]
    ax.set_xscale("log")
    ax.set_xlabel(STEP_LABEL)
    _log_ticks(ax.xaxis, ax.get_xlim())
    if loss:
        ax.set_yscale("log")
        ax.set_ylabel(f"{split} {loss_label}")
        _log_ticks(ax.yaxis, ax.get_ylim())
    else:
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"{split} {TEXT_ACC_LABEL if key.endswith('token_acc') else ACC_LABEL}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8,
              title="mean over seeds" + ("; band min–max" if bands else ""))
    if floored:
        ax.annotate(f"a loss of exactly 0 is drawn at {LOSS_FLOOR:g}", (0.01, 0.01), xycoords="axes fraction",
                    fontsize=7, color="0.3")
    ax.set_title(title)
    return save_figure(fig, path, dpi)


# how a heatmap cell without a colour looks, and what its legend entry says (kind -> face, hatch, edge, line);
# a cell with no run at all ("missing") looks like one not finished
CELL_STYLES = {
    "never": ("0.86", "///", "0.55", "-", "never grokked within the step budget"),
    "untrained": ("white", "", "0.45", ":", "not finished: pending or stopped part-way (dotted outline on a coloured cell: some seeds)"),
    "failed": ("#f6d5d0", "xx", "#b0463a", "-", "failed (non-finite)"),
}
PARTIAL_LABEL = "not every seed grokked (k/n in the cell)"


def _cell_legend(kinds: set[str], values: bool) -> list:
    from matplotlib.patches import Patch

    handles = []
    if values:
        handles.append(Patch(facecolor="#35b779", label="steps to grok (colour bar); seeds: their median"))
    if "partial" in kinds:
        handles.append(Patch(facecolor="white", edgecolor="black", linestyle="--", linewidth=2, label=PARTIAL_LABEL))
    for kind, (face, hatch, edge, line, label) in CELL_STYLES.items():
        if kind in kinds:
            handles.append(Patch(facecolor=face, hatch=hatch, edgecolor=edge, linestyle=line, label=label))
    return handles


def _look(cell: dict[str, Any]) -> str:
    """The CELL_STYLES entry (or "partial", "grokked") a heatmap cell is drawn with."""
    kind = cell.get("kind", "never")
    return "untrained" if kind == "missing" else kind


def plot_heatmap(cells: Sequence[Sequence[dict[str, Any]]], xlabels: Sequence[str], ylabels: Sequence[str],
                 xname: str, yname: str, path: str | Path | None, title: str, dpi: int = DPI) -> Path | bytes:
    """A phase diagram: steps-to-grok of each (y, x) cell on a log colour scale. A cell is a dict with
    `value` (steps, or None), `text` (what to print in it) and `kind`: a cell with no value is drawn by its
    kind (never grokked: grey, hatched; not finished: white, dotted; failed: red, crossed), a "partial" cell
    (not every seed grokked) gets a dashed outline; a legend below names each look the figure uses."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    ny, nx = len(ylabels), len(xlabels)
    fig = new_figure(figsize=(max(5.5, 1.45 * nx + 2.8), max(3.4, 0.8 * ny + 2.6)), layout="constrained")
    ax = fig.subplots()
    values = [c["value"] for row in cells for c in row if c["value"] is not None]
    cmap = colormaps["viridis"]
    norm = None
    if values:
        lo, hi = min(values), max(values)
        if lo == hi:
            lo, hi = lo / 2, hi * 2
        norm = LogNorm(vmin=max(lo, 1), vmax=max(hi, 2))
        grid = [[math.nan if c["value"] is None else c["value"] for c in row] for row in cells]
        image = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto", origin="lower")
        bar = fig.colorbar(image, ax=ax, label="steps to grok (optimizer steps, log scale)")
        from matplotlib.ticker import FuncFormatter

        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _plain(v)))
        _log_ticks(bar.ax.yaxis, (norm.vmin, norm.vmax))
    else:
        ax.imshow([[math.nan] * nx for _ in range(ny)], aspect="auto", origin="lower", cmap=cmap)
    for y, row in enumerate(cells):
        for x, cell in enumerate(row):
            kind = _look(cell)
            if cell["value"] is None:
                face, hatch, edge, line, _ = CELL_STYLES.get(kind, CELL_STYLES["never"])
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor=face, edgecolor=edge, hatch=hatch,
                                       linestyle=line, linewidth=1.2 if line == ":" else 0))
                color = "black"
            else:
                shade = norm(cell["value"]) if norm is not None else 0.0
                color = "white" if shade < 0.6 else "black"  # viridis: dark at the low end
            # outlines black over white, so that they show on dark and on light cells alike
            for inset, line, wanted in ((0.44, "--", kind == "partial"), (0.48, ":", bool(cell.get("incomplete")))):
                if wanted:  # not every seed grokked; some of its seeds are not finished
                    for edge, width, style in (("white", 3.2, "-"), ("black", 2, line)):
                        ax.add_patch(Rectangle((x - inset, y - inset), 2 * inset, 2 * inset, fill=False,
                                               edgecolor=edge, linestyle=style, linewidth=width))
            box = dict(facecolor="white", edgecolor="none", alpha=0.85, pad=1.5) if cell["value"] is None else None
            ax.text(x, y, cell["text"], ha="center", va="center", fontsize=8, color=color, bbox=box)
    ax.set_xticks(range(nx), xlabels)
    ax.set_yticks(range(ny), ylabels)
    ax.set_xlabel(xname)
    ax.set_ylabel(yname)
    ax.set_title(title, fontsize=10)
    kinds = {_look(c) for row in cells for c in row}
    kinds |= {"untrained" for row in cells for c in row if c.get("incomplete")}
    handles = _cell_legend(kinds, bool(values))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7.5, frameon=False)
    return save_figure(fig, path, dpi)
