"""Loss and accuracy curves of one run, on a log step axis (the grokking literature's convention)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

# Okabe-Ito: readable by colour-blind readers and in greyscale print
COLORS = {"train": "#0072B2", "val": "#D55E00", "test": "#009E73"}
STYLES = {"train": "-", "val": "-", "test": (0, (4, 2))}  # test dashed: it often lies on top of val


def plot_curves(history: Sequence[dict], path: str | Path, title: str, marks: dict[str, int | None]) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    rows = [h for h in history if h["step"] > 0]
    steps = [h["step"] for h in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for split, color in COLORS.items():
        if rows and rows[0].get(f"{split}_acc") is not None:
            style = {"color": color, "linestyle": STYLES[split], "label": split}
            ax_loss.plot(steps, [h[f"{split}_loss"] for h in rows], **style)
            ax_acc.plot(steps, [h[f"{split}_acc"] for h in rows], **style)
    styles = {"memorised": ":", "grokked": "--"}
    for label, step in marks.items():
        if step:
            for ax in (ax_loss, ax_acc):
                ax.axvline(step, color="0.35", linestyle=styles.get(label, "-."), linewidth=1)
            ax_acc.annotate(f"{label} @ {step:,}", (step, 0.03 + 0.08 * list(marks).index(label)), fontsize=8,
                            xytext=(4, 0), textcoords="offset points")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("cross-entropy loss (nats per answer token)")
    ax_acc.set_ylabel("exact-match accuracy (whole answer right)")
    ax_acc.set_ylim(-0.02, 1.02)
    for ax in (ax_loss, ax_acc):
        ax.set_xscale("log")
        ax.set_xlabel("optimizer steps")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best")
    fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
