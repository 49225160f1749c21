"""What a run's folder needs before a group is formed: a fresh start, a resume (from which step, its kept
evaluations checked against the schedule), or nothing (finished, failed). Read-only: refusals raise."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Sequence

from groklab.config import RunConfig, TrainConfig
from groklab.data.dataset import RunData
from groklab.store import rundir
from groklab.training.evaluation import schedule


def plan_runs(configs: Sequence[RunConfig], datas: Sequence[RunData], retry_failed: bool = False) -> list[rundir.Plan]:
    """What each run's folder holds for it now (read-only; refusals raise)."""
    return [plan_run(c, d, retry_failed) for c, d in zip(configs, datas)]


def plan_run(cfg: RunConfig, data: RunData, retry_failed: bool = False) -> rundir.Plan:
    """`rundir.plan`, and for a resume: its metrics.jsonl must hold every evaluation of the schedule up to the
    checkpoint, since the grokking measures and the early stop are computed from that kept history (the
    schedule is the loop's, so the check is made here)."""
    p = rundir.plan(cfg, data, retry_failed)
    if p.kind == "resume":
        t = cfg.train
        every = schedule(t.max_steps, t.eval_points_per_decade, t.eval_interval, extra=snapshot_steps(t))
        rundir.require_evaluations(Path(t.out_dir), p.step, itertools.takewhile(lambda s: s <= p.step, every))
    return p


def snapshot_steps(tcfg: TrainConfig) -> set[int]:
    """The steps whose weights are kept (each is an evaluation too)."""
    steps = set(schedule(tcfg.max_steps, tcfg.snapshots_per_decade)) if tcfg.snapshots_per_decade else set()
    if tcfg.snapshot_interval:  # linearly spaced too: the phases of a long run need more than log spacing gives
        steps |= set(range(tcfg.snapshot_interval, tcfg.max_steps + 1, tcfg.snapshot_interval))
    return steps


def finished_result(cfg: RunConfig, plan: rundir.Plan) -> dict:
    """What a run that needs no training returns: its summary (done) or its failure (failed)."""
    run_dir = Path(cfg.train.out_dir)
    if plan.kind == "done":
        return {**rundir.read_summary(run_dir), "status": "done", "run_dir": str(run_dir), "already": True}
    assert plan.failure is not None
    return {**plan.failure, "status": "failed", "run_dir": str(run_dir), "already": True}
