"""When a group is evaluated and what an evaluation does: the schedule of evaluation steps (log-spaced, every
N steps, snapshot steps, the last step), each run's metrics on its full splits written as they come, a run
gone non-finite marked failed, and the early-stop test. `Member` is one run of a group."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from groklab.config import RunConfig
from groklab.data.dataset import RunData
from groklab.engine.evaluate import evaluate
from groklab.model.gpt import GPT
from groklab.store import rundir
from groklab.store.runfolder import RunFolder

SPLITS = rundir.SPLITS


def _log_points(max_steps: int, per_decade: int) -> Iterator[int]:
    k = 0
    while (s := round(10 ** (k / per_decade))) <= max_steps:
        yield s
        k += 1


def schedule(max_steps: int, per_decade: int, interval: int = 0, after: int = 0,
             extra: Sequence[int] = ()) -> Iterator[int]:
    """The evaluation steps after step `after`, ascending, without repeats: log-spaced (per_decade a decade,
    from step 1), every `interval` steps if set, the `extra` steps, and the last step. Lazy, so a schedule of
    10^12 steps costs nothing until it is walked."""
    parts = [_log_points(max_steps, per_decade), iter(sorted(extra)), iter((max_steps,))]
    if interval:
        first = (after // interval + 1) * interval
        parts.append(iter(range(first, max_steps + 1, interval)))
    return (s for s, _ in itertools.groupby(heapq.merge(*parts)) if after < s <= max_steps)


def eval_steps(max_steps: int, per_decade: int, interval: int = 0) -> list[int]:
    """Every evaluation step of a run from its start (for tests and small schedules)."""
    return list(schedule(max_steps, per_decade, interval))


@dataclass
class Member:
    """One run of the group: its config, folder (held, locked, from opening to the end), data and history."""

    cfg: RunConfig
    folder: RunFolder
    data: RunData
    history: list[dict] = field(default_factory=list)
    failed: dict | None = None  # {"step", "reason"} once the run has gone non-finite; it is then left alone

    @property
    def run_dir(self) -> Path:
        return self.folder.path


def evaluate_members(members: Sequence[Member], model: GPT, eval_sets: dict, step: int,
                     elapsed: float) -> list[str]:
    """Evaluate every run and append its row to its history and metrics.jsonl; a run whose weights or losses
    are no longer finite is marked failed instead. What happened to those runs, a line each."""
    results = {split: evaluate(model, stacked) for split, stacked in eval_sets.items()}
    results = {s: tuple(t.tolist() for t in r) for s, r in results.items()}  # host sync
    finite_weights = torch.isfinite(model.flat).all(dim=1).tolist()  # host sync
    failures = []
    for e, m in enumerate(members):
        if m.failed:
            continue
        row = {"step": step, "elapsed_s": round(elapsed, 3)}
        for split in SPLITS:
            has = split in results and len(m.data.scored[split]) > 0
            row[f"{split}_loss"] = results[split][0][e] if has else None
            row[f"{split}_acc"] = results[split][1][e] if has else None
            row[f"{split}_token_acc"] = results[split][2][e] if has else None
        bad = [k for k, v in row.items() if k.endswith("_loss") and v is not None and not math.isfinite(v)]
        if bad or not finite_weights[e]:
            what = "weights" if not finite_weights[e] else bad[0].replace("_", " ")
            m.failed = m.folder.fail(f"non-finite {what} at step {step:,}", step)
            failures.append(f"{m.run_dir}: {m.failed['reason']}; the run is stopped, the others go on")
            continue
        m.history.append(row)
        m.folder.append(row)
    return failures


def confirmed_grokked(members: Sequence[Member], k: int, threshold: float) -> bool:
    """Early stop: every (healthy) run's last k evaluations all have val accuracy >= threshold."""
    if k <= 0:
        return False
    return all(len(m.history) >= k and all(h["val_acc"] >= threshold for h in m.history[-k:])
               for m in members if not m.failed)
