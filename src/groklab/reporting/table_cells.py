"""The pieces every study table shares: a cell's distance from the report, the held measures (with a fallback
for summaries written before them), the learning-rate schedule in words, the settings trained with other than
the study's own, the notes on unfinished runs and on `--quick`."""

from __future__ import annotations

from collections.abc import Sequence

from groklab.config import field_roles, flat_fields
from groklab.experiments.spec import SweepSpec
from groklab.experiments.study import QUICK_DIVISOR
from groklab.metrics import held_measure as held  # noqa: F401 (the tables' name for it)
from groklab.tables import MISSING

WITHIN_POINTS = 2.0  # "within 2 points of the report": the summary lines' tolerance, in percentage points
MINUS = "\u2212"


def gap(ours: float | None, reported_pct: float | None, quick: bool = False) -> str:
    """groklab's value (a fraction) minus the report's (a percentage), in points: '−0.4 pt'; '–' when either is
    missing or the run is a pipeline check."""
    if ours is None or reported_pct is None or quick:
        return MISSING
    return f"{100 * ours - reported_pct:+.1f} pt".replace("-", MINUS)


def within(ours: float | None, reported_pct: float, points: float = WITHIN_POINTS) -> bool:
    # rounded as printed: a cell shown as "−2.0 pt" counts as within 2 points
    return ours is not None and round(abs(100 * ours - reported_pct), 1) <= points


def runs_of(rows: Sequence[dict], experiment: str) -> list[dict]:
    return [r for r in rows if r["experiment"] == experiment]


def status_note(runs: Sequence[dict]) -> str:
    unfinished = [r for r in runs if r["status"] != "done"]
    if not unfinished:
        return ""
    return ("\n\n" + f"{len(unfinished)} run(s) not finished: "
            + ", ".join(f"{r['run_id']} ({r['status']}" + (f": {r['failure']}" if r["failure"] else "") + ")"
                        for r in unfinished))


def schedule_line(runs: Sequence[dict], why_decay: str = "") -> str:
    """The learning-rate schedule the runs trained with, in one sentence."""
    if not runs:
        return "Learning rate: no runs yet."
    kinds = sorted({(r["learning_rate"], r["lr_decay_steps"], r["min_lr"], r["max_steps"]) for r in runs},
                   key=str)
    parts = []
    for lr, decay, min_lr, budget in kinds:
        if not decay:
            parts.append(f"constant at {lr:g} (no decay: `--lr_decay_steps 0`)")
            continue
        end = lr / 10 if min_lr is None else min_lr
        to = "the step budget" if decay == budget else f"the budget being {budget:,}"
        why = f", {why_decay}" if why_decay else ""
        parts.append(f"nanoGPT's cosine decay from {lr:g} to {end:g} at step {decay:,} ({to}){why}; "
                     "`--lr_decay_steps 0` keeps it constant")
    return "Learning rate: " + "; ".join(parts) + "."


# the budget and its schedule: said by schedule_line and the --quick banner, so not listed again
BUDGET_KEYS = ("max_steps", "lr_decay_steps", "checkpoint_interval", "eval_points_per_decade", "eval_interval")


def settings_line(rows: Sequence[dict], spec: SweepSpec) -> str:
    """The settings that change the numbers (role "is") the runs trained with other than the study's own
    (`reproduce seed-000 --precision tf32`, `--tokenizer number`), in one sentence; "" where there are none."""
    planned = {p.run_id: flat_fields(p.config) for p in spec.expand()}
    role = field_roles()
    changed: dict[str, tuple[set, set]] = {}
    for r in rows:
        own = planned.get(r["run_id"])
        for k, v in (own or {}).items():
            if role[k] == "is" and k not in BUDGET_KEYS and k in r and r[k] != v:
                ours, theirs = changed.setdefault(k, (set(), set()))
                ours.add(r[k])
                theirs.add(v)
    if not changed:
        return ""
    words = lambda values: " / ".join(sorted(map(str, values)))  # noqa: E731
    return ("Trained with settings other than the study's own: "
            + "; ".join(f"{k} = {words(ours)} (the study: {words(theirs)})" for k, (ours, theirs) in changed.items())
            + ".")


def quick_banner(trained: int, budget: int) -> str:
    return (f"**A pipeline check, not comparable with the report.** These runs trained {trained:,} of the study's "
            f"{budget:,} steps (`--quick` trains {QUICK_DIVISOR}× fewer): the tables show that every stage runs end "
            "to end, not what the study finds; the distances from the report are left out.")
