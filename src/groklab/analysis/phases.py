"""The three phases of grokking (Nanda et al. 2023, section 5.2) read off a run's curves, and the paper's
picture of them.

Definitions (groklab's, made computable; the paper marks its phases by eye from the same curves):
- grokked, G: the first evaluation at which the held-out (val) loss is below 0.01 — the paper's criterion
  ("test loss below 0.01"); `grokked_stays` is the first from which it stays below.
- memorisation ends, M: the snapshot with the lowest excluded loss before G. During memorisation train and
  excluded loss fall together; once the Fourier circuit starts to carry the train predictions, removing its
  frequencies hurts more and more, so the excluded loss turns up. Without restricted/excluded loss (no
  snapshots, or an operation they do not apply to): the first evaluation from which train accuracy stays at
  or above 0.99.
- cleanup begins (circuit formation ends), C: the first evaluation between M and G at which the val loss has
  fallen to a tenth of its peak over [M, G]: the onset of the sudden drop. Circuit formation is [M, C],
  cleanup [C, G].
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from groklab.metrics import steps_to_stay_above
from groklab.plots import COLORS, SERIES_COLORS as PALETTE, new_figure, save_figure

GROK_LOSS = 0.01  # Nanda et al.: grokked when test loss is below this
DROP = 10.0  # cleanup begins once the held-out loss is this many times below its peak
PHASE_COLORS = {"memorisation": "#E69F00", "circuit formation": "#56B4E9", "cleanup": "#009E73"}


def first_below(steps: Sequence[int], values: Sequence[float | None], threshold: float) -> int | None:
    return next((s for s, v in zip(steps, values) if v is not None and v < threshold), None)


def stays_below(steps: Sequence[int], values: Sequence[float | None], threshold: float) -> int | None:
    """The first step from which every later value is below threshold; None if the last one is not."""
    first = None
    for s, v in zip(steps, values):
        first = (first if first is not None else s) if v is not None and v < threshold else None
    return first


def phases(metrics: Sequence[dict], rows: Sequence[dict]) -> dict:
    """{"memorised", "circuit_formed", "grokked", "grokked_stays", "memorised_by"} from the evaluation history
    and analyze's rows over training (steps or None)."""
    steps = [m["step"] for m in metrics]
    val = [m.get("val_loss") for m in metrics]
    grokked = first_below(steps, val, GROK_LOSS)
    stays = stays_below(steps, val, GROK_LOSS)
    excluded = [(r["step"], r["excluded_loss"]) for r in rows
                if "excluded_loss" in r and (grokked is None or r["step"] <= grokked)]
    if excluded:
        memorised, by = min(excluded, key=lambda x: x[1])[0], "lowest excluded loss"
    else:
        memorised = steps_to_stay_above(steps, [m.get("train_acc") or 0.0 for m in metrics], 0.99)
        by = "train accuracy stays ≥ 0.99"
    circuit = None
    if memorised is not None and grokked is not None:
        window = [(s, v) for s, v in zip(steps, val) if v is not None and memorised <= s <= grokked]
        if window:
            peak_at, peak = max(window, key=lambda x: x[1])
            circuit = next((s for s, v in window if s >= peak_at and v <= peak / DROP), grokked)
    return {"memorised": memorised, "circuit_formed": circuit, "grokked": grokked, "grokked_stays": stays,
            "memorised_by": by}


def _spans(p: dict, last: int) -> list[tuple[str, int, int]]:
    m, c, g = p["memorised"], p["circuit_formed"], p["grokked"]
    spans = []
    if m:
        spans.append(("memorisation", 0, m))
        if c:
            spans += [("circuit formation", m, c), ("cleanup", c, g)]
        else:
            spans.append(("circuit formation", m, last))
    return spans


def plot_phases(metrics: Sequence[dict], analysis: dict, p: dict, path: str | Path | None, title: str) -> Path | bytes:
    """The paper's figure 7, on a linear step axis (full batch: a step is an epoch): (a) train and val loss
    with restricted and excluded loss; (b) the key frequencies' share of the embedding and each one's norm;
    (c) the sum of squared weights; the phases shaded and their boundaries marked."""
    rows = analysis["over_training"]
    steps = [r["step"] for r in rows]
    last = max([m["step"] for m in metrics] + steps + [1])
    fig = new_figure(figsize=(9, 9), layout="constrained")
    ax_loss, ax_freq, ax_norm = fig.subplots(3, 1, sharex=True)
    ms = [m["step"] for m in metrics]
    for split, label in (("train", "train loss"), ("val", "test (val) loss")):
        ax_loss.plot(ms, [max(m[f"{split}_loss"], 1e-9) for m in metrics], color=COLORS[split], label=label)
    if rows and "restricted_loss" in rows[0]:
        ax_loss.plot(steps, [r["restricted_loss"] for r in rows], "o-", ms=3, color=PALETTE[6],
                     label="restricted loss (train)")
        ax_loss.plot(steps, [r["excluded_loss"] for r in rows], "s-", ms=3, color=PALETTE[0],
                     label="excluded loss (train)")
    ax_loss.axhline(GROK_LOSS, color="0.5", lw=0.8, ls=":")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("cross-entropy (nats per answer, log scale)")
    keys = analysis.get("key_frequencies", [])
    if rows and "key_frequency_share" in rows[0]:
        ax_freq.plot(steps, [r["key_frequency_share"] for r in rows], "k-", lw=2, label="share of the key frequencies")
        if "fourier_norms" in rows[0]:
            top = max(max(r["fourier_norms"][1:]) for r in rows) or 1.0
            for i, k in enumerate(keys):
                ax_freq.plot(steps, [r["fourier_norms"][k] / top for r in rows], lw=1,
                             color=PALETTE[(i + 1) % len(PALETTE)], label=f"norm of k = {k} (scaled)")
        ax_freq.set_ylim(0, 1.02)
    ax_freq.set_ylabel("embedding: key frequencies")
    ax_norm.plot(steps, [r["weight_norm"] ** 2 for r in rows], "o-", ms=3, color=PALETTE[4])
    ax_norm.set_ylabel("sum of squared weights")
    ax_norm.set_xlabel("optimizer steps (full batch: epochs)")
    for ax in (ax_loss, ax_freq, ax_norm):
        for name, lo, hi in _spans(p, last):
            ax.axvspan(lo, hi, color=PHASE_COLORS[name], alpha=0.15, lw=0, label=name if ax is ax_norm else None)
        for key in ("memorised", "circuit_formed", "grokked"):
            if p[key]:
                ax.axvline(p[key], color="0.3", lw=0.8, ls="--")
        ax.grid(True, alpha=0.3)
    marks = ", ".join(f"{k.replace('_', ' ')} {p[k]:,}" for k in ("memorised", "circuit_formed", "grokked") if p[k])
    ax_loss.set_title(f"{title}\n{marks or 'no phase boundary found'}", fontsize=9)
    for ax, where in ((ax_loss, "upper right"), (ax_freq, "center right"), (ax_norm, "upper right")):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc=where)
    if not (rows and "key_frequency_share" in rows[0]):
        ax_freq.text(0.5, 0.5, "no Fourier measure for this operation", ha="center", va="center",
                     transform=ax_freq.transAxes, color="0.4")
    ax_norm.set_xlim(0, last)
    return save_figure(fig, path, dpi=110)
