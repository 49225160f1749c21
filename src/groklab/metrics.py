"""Grokking measures computed from a run's evaluation history."""

from __future__ import annotations

from typing import Sequence


def steps_to_stay_above(steps: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """The first evaluated step from which `values` stays >= threshold up to the last evaluation; None if never.

    "Stays" matters: grokking curves spike and fall back, and a single lucky evaluation is not generalisation.
    """
    first = None
    for step, value in zip(steps, values):
        if value >= threshold:
            if first is None:
                first = step
        else:
            first = None
    return first


def grokking_summary(history: Sequence[dict], threshold: float) -> dict:
    """steps_to_memorise (train acc), steps_to_grok (val acc), their gap and ratio, final and best values."""
    steps = [h["step"] for h in history]
    memorise = steps_to_stay_above(steps, [h["train_acc"] for h in history], threshold)
    grok = steps_to_stay_above(steps, [h["val_acc"] for h in history], threshold)
    last = history[-1] if history else {}
    return {
        "threshold": threshold,
        "steps_to_memorise": memorise,
        "steps_to_grok": grok,
        "grokking_delay": None if memorise is None or grok is None else grok - memorise,
        "grokking_ratio": None if not memorise or grok is None else grok / memorise,
        "best_val_acc": max((h["val_acc"] for h in history), default=None),
        "final": {k: v for k, v in last.items() if k != "run"},
    }
