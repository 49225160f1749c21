"""`--tensorboard`: standard TensorBoard event files per run, in `<run_dir>/tb/`, written at each evaluation,
so that `tensorboard --logdir DIR` shows a run, or every run of a sweep, as users expect.

Scalars (x axis: optimizer steps): loss/{train,val,test}, accuracy/{train,val,test} (exact match),
weight_norm (the L2 norm of all of the run's weights together) and learning_rate (with its warm-up and decay).
An optional extra: `pip install 'groklab[tb]'`; nothing here is imported unless a run asks for it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

from groklab.config import OptimConfig
from groklab.engine.hyper import scheduled_lr
from groklab.errors import GroklabError
from groklab.store.rundir import TB_DIR

SPLITS = ("train", "val", "test")


def learning_rate(o: OptimConfig, step: int) -> float:
    """The rate of the update that made `step`, by the engine's schedule (warm-up, then constant or decayed)."""
    def f64(x: float) -> torch.Tensor:
        return torch.tensor(float(x), dtype=torch.float64)

    decay = (f64(o.lr_decay_steps), f64(o.final_lr)) if o.lr_decay_steps else ()
    return float(scheduled_lr(f64(o.learning_rate), f64(o.warmup_steps), f64(step), *decay))


class TensorBoard:
    """One SummaryWriter per run that asked for it (`members`: train.Member-like, with cfg, run_dir, history,
    failed)."""

    def __init__(self, writers: dict[int, Any]):
        self.writers = writers

    @classmethod
    def open(cls, members: Sequence[Any], start: int) -> "TensorBoard | None":
        """Writers for the runs with `tensorboard` set, or None when none has. A fresh run (start 0) clears
        the folder; a resumed one purges what was logged after its checkpoint (those evaluations are redone)."""
        wanted = [e for e, m in enumerate(members) if m.cfg.train.tensorboard]
        if not wanted:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise GroklabError("--tensorboard needs the tensorboard package: pip install 'groklab[tb]'") from None
        writers = {}
        for e in wanted:
            folder = Path(members[e].run_dir) / TB_DIR
            if start == 0 and folder.exists():
                shutil.rmtree(folder)
            writers[e] = SummaryWriter(str(folder), purge_step=start + 1 if start else None)
        return cls(writers)

    def write(self, members: Sequence[Any], flat, step: int) -> None:
        """Each run's scalars of the evaluation at `step` (runs that failed are left alone); `flat`: the
        group's (E, N) weights."""
        for e, writer in self.writers.items():
            m = members[e]
            if m.failed or not m.history or m.history[-1]["step"] != step:
                continue
            row = m.history[-1]
            for split in SPLITS:
                if row.get(f"{split}_loss") is not None:
                    writer.add_scalar(f"loss/{split}", row[f"{split}_loss"], step)
                    writer.add_scalar(f"accuracy/{split}", row[f"{split}_acc"], step)
            writer.add_scalar("weight_norm", torch.linalg.vector_norm(flat[e]).item(), step)  # host sync
            o = m.cfg.optim
            writer.add_scalar("learning_rate", learning_rate(o, step), step)
            writer.flush()  # evaluations are log-spaced: a kill loses nothing

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
