"""Grokking measures computed from a run's evaluation history.

Three ways to say when a curve (train accuracy: memorised; val accuracy: grokked) reached the threshold θ:
- first crossing (`*_first`): the first evaluated step with value >= θ;
- stays above (`steps_to_memorise`, `steps_to_grok`, the measures groklab always had): the first evaluated
  step from which the value is >= θ at every later evaluation;
- held (`*_held`): the first step at >= θ after which the value never falls below θ - HOLD_BAND for more
  than HOLD_DIP_STEPS steps, and the run does not end below it. A single evaluation below (a dip to 0.971, an
  Adam loss spike that recovers within a few dozen steps) does not undo it; a real relapse does.
`grokking_delay` and `grokking_ratio` are computed from the held measures, so one dip does not move them.

Why held needs both a band and a duration (docs/benchmarks.md, "Grokking measures that survive a dip"): near
100 % train accuracy a run's accuracy wanders just below 0.99 (in every one of the 16 CPU runs of the main
job, stays-above puts memorisation 707-4,819 steps after the first crossing; a band of 0.09 alone fixes 15), and
runs trained on after grokking have Adam loss spikes that drop accuracy below 0.5 for 10-30 steps and recover
(the 120 GPU runs of the precision evidence, evaluated every 10 steps: a band alone leaves no train curve held
before its spikes end; band and duration together give the first crossing in 117 of 120).
"""

from __future__ import annotations

from typing import Sequence

HOLD_BAND = 0.09  # held: leave only below threshold - HOLD_BAND (0.90 for the default 0.99) ...
HOLD_DIP_STEPS = 100  # ... for more than this many steps (the first and last evaluation of the dip further apart)


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


def first_step_at_or_above(steps: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """The first evaluated step with value >= threshold; None if never."""
    return next((step for step, value in zip(steps, values) if value >= threshold), None)


def steps_to_hold(steps: Sequence[int], values: Sequence[float], threshold: float, band: float = HOLD_BAND,
                  dip_steps: int = HOLD_DIP_STEPS) -> int | None:
    """The first evaluated step at >= threshold after which the value is never below threshold - band at
    evaluations spanning more than `dip_steps` steps, and the last evaluation is not below it; None if never.

    Hysteresis in level and in time: entering needs the threshold itself; leaving needs a dip both deep (below
    the band) and lasting (longer than dip_steps), so one evaluation below never leaves.
    """
    low = threshold - band
    start = dip = None  # the step the current stretch began; the step the current dip below `low` began
    for step, value in zip(steps, values):
        if start is None:
            if value >= threshold:
                start, dip = step, None
        elif value < low:
            dip = step if dip is None else dip
            if step - dip > dip_steps:
                start = dip = None
        else:
            dip = None
    return None if dip is not None else start


def held_measure(row: dict, what: str) -> int | None:
    """steps_to_{what}_held of a summary or results row ("grok" or "memorise"); for one written before the
    held measure existed (no first crossing recorded either), its stays-above measure."""
    value = row.get(f"steps_to_{what}_held")
    if value is None and row.get(f"steps_to_{what}_first") is None:
        return row.get(f"steps_to_{what}")
    return value


def curve_marks(row: dict, text: bool = False) -> dict[str, int | None]:
    """The steps marked on a run's curves: the held measures, which one dip does not move, where the eye sees
    the jump; a text run (memorisation only) has no "grokked"."""
    marks = {"memorised": held_measure(row, "memorise")}
    return marks if text else marks | {"grokked": held_measure(row, "grok")}


def _delay(memorised: int | None, grokked: int | None) -> tuple[int | None, float | None]:
    if memorised is None or grokked is None:
        return None, None
    return grokked - memorised, (grokked / memorised if memorised else None)


def grokking_summary(history: Sequence[dict], threshold: float) -> dict:
    """Steps to memorise (train acc) and to grok (val acc), each as stays-above, first crossing and held; the
    gap and ratio of the held ones; final and best values."""
    steps = [h["step"] for h in history]
    train, val = [h["train_acc"] for h in history], [h["val_acc"] for h in history]
    memorise_held, grok_held = steps_to_hold(steps, train, threshold), steps_to_hold(steps, val, threshold)
    delay, ratio = _delay(memorise_held, grok_held)
    last = history[-1] if history else {}
    return {
        "threshold": threshold,
        "steps_to_memorise": steps_to_stay_above(steps, train, threshold),
        "steps_to_grok": steps_to_stay_above(steps, val, threshold),
        "steps_to_memorise_first": first_step_at_or_above(steps, train, threshold),
        "steps_to_grok_first": first_step_at_or_above(steps, val, threshold),
        "steps_to_memorise_held": memorise_held,
        "steps_to_grok_held": grok_held,
        "grokking_delay": delay,
        "grokking_ratio": ratio,
        "best_val_acc": max(val, default=None),
        "final": {k: v for k, v in last.items() if k != "run"},
    }
