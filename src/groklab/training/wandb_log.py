"""`--wandb`: each groklab run as a Weights & Biases run of its own (a group of runs trains in one process, so
each gets its own `wandb.init(reinit="create_new")`): its config, every evaluation (the same scalars as
`--tensorboard`), the grokking measures in the run's summary, and a sweep's runs as one W&B group.

W&B's files go to `<run_dir>/wandb/` (in offline mode the whole run, for `wandb sync` later). A resumed run
continues the W&B run it started (its id is kept in `<run_dir>/wandb/groklab_run_id`); evaluations after the
checkpoint are logged again, against the x axis "step" rather than W&B's own step counter, which only grows.
An optional extra: `pip install 'groklab[wandb]'`; nothing here is imported unless a run asks for it.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from groklab.errors import GroklabError
from groklab.extras import need
from groklab.store.rundir import WANDB_DIR
from groklab.training.tensorboard import SPLITS, learning_rate

ID_FILE = "groklab_run_id"
SUMMARY_KEYS = ("status", "steps_to_memorise", "steps_to_grok", "grokking_delay", "grokking_ratio",
                "best_val_acc", "threshold", "steps", "wall_time_s", "reason", "steps_to_memorise_first",
                "steps_to_grok_first", "steps_to_memorise_held", "steps_to_grok_held")


def check_can_log(trains: Sequence[Any]) -> None:
    """Before any folder is touched: the runs that ask for --wandb online can log in. wandb.init found no API
    key only after the run folder had been made (config.json, data/, wandb/groklab_run_id) or a stopped run's
    meta.json had gained a resume that never trained. A console that can prompt is left to wandb's own
    prompt; a W&B release whose login internals differ from 0.2x-0.3x is left to wandb.init."""
    online = [t for t in trains if getattr(t, "wandb", False)
              and (getattr(t, "wandb_mode", None) or os.environ.get("WANDB_MODE") or "online") == "online"]
    if not online or _can_prompt():
        return
    need("wandb", "wandb", "wandb", "--wandb")
    try:
        import wandb
        from wandb.sdk.lib.wbauth import authenticate_session
    except ImportError:
        return
    try:
        auth = authenticate_session(host=wandb.Settings().base_url, source="groklab --wandb", prompt=False,
                                    update_session=False)
    except Exception as exc:  # wandb's own types (a malformed key): one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GroklabError(f"--wandb: {first} (`wandb login`, or --wandb_mode offline)") from None
    if auth is None:
        raise GroklabError("--wandb: No API key configured (`wandb login`, WANDB_API_KEY, or --wandb_mode "
                           "offline); nothing was written")


def _can_prompt() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _run_id(folder: Path, start: int) -> str:
    """The W&B id of this groklab run: new for a fresh start, the saved one for a resume."""
    path = folder / ID_FILE
    if start and path.is_file():
        return path.read_text(encoding="utf-8").strip()
    run_id = uuid.uuid4().hex[:16]  # W&B ids may not hold / \ # ? % :
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n", encoding="utf-8")
    return run_id


class WandB:
    """One W&B run per groklab run that asked for it (`members`: train.Member-like, with cfg, run_dir,
    history, failed)."""

    def __init__(self, runs: dict[int, Any]):
        self.runs = runs

    @classmethod
    def open(cls, members: Sequence[Any], start: int, log: Callable[[str], None] = print) -> "WandB | None":
        wanted = [e for e, m in enumerate(members) if m.cfg.train.wandb]
        if not wanted:
            return None
        need("wandb", "wandb", "wandb", "--wandb")
        import wandb

        runs = {}
        for e in wanted:
            m = members[e]
            t = m.cfg.train
            folder = Path(m.run_dir) / WANDB_DIR  # a fresh start has cleared it (rundir.OWN_NAMES)
            run_dir = Path(m.run_dir)
            try:
                run = wandb.init(
                    project=t.wandb_project, group=t.wandb_group or None, name=run_dir.name, dir=str(run_dir),
                    id=_run_id(folder, start), resume="allow", mode=t.wandb_mode, reinit="create_new",
                    config={**m.cfg.to_dict(), "run_dir": str(run_dir)},
                    settings=wandb.Settings(console="off", silent=True),  # one process, many runs: no stdout capture
                )
            except Exception as exc:  # wandb raises its own types (no login, no network): one line for the user
                for r in runs.values():
                    r.finish(exit_code=1)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise GroklabError(f"--wandb: {first} (`wandb login`, or --wandb_mode offline)") from None
            run.define_metric("*", step_metric="step")
            runs[e] = run
        t = members[wanted[0]].cfg.train
        log(f"W&B: {len(runs)} run(s) in project {t.wandb_project!r}"
            + (f", group {t.wandb_group!r}" if t.wandb_group else "")
            + (f"; files in RUN_DIR/{WANDB_DIR}" if t.wandb_mode == "offline" else ""))
        return cls(runs)

    def write(self, members: Sequence[Any], flat: torch.Tensor, step: int) -> None:
        """Each run's evaluation at `step` (runs that failed are left alone); `flat`: the group's (E, N) weights."""
        for e, run in self.runs.items():
            m = members[e]
            if m.failed or not m.history or m.history[-1]["step"] != step:
                continue
            row = m.history[-1]
            values: dict[str, float] = {"step": step}
            for split in SPLITS:
                if row.get(f"{split}_loss") is not None:
                    values[f"loss/{split}"] = row[f"{split}_loss"]
                    values[f"accuracy/{split}"] = row[f"{split}_acc"]
            values["weight_norm"] = torch.linalg.vector_norm(flat[e]).item()  # host sync
            values["learning_rate"] = learning_rate(m.cfg.optim, step)
            run.log(values)

    def close(self, results: Sequence[dict] | None = None) -> None:
        """The grokking measures into each run's summary (from train_runs' results, in member order), then
        finish it: exit code 1 for a run that failed or was interrupted (results None)."""
        for e, run in self.runs.items():
            result = results[e] if results is not None else {"status": "interrupted"}
            summary = {k: result[k] for k in SUMMARY_KEYS if result.get(k) is not None}
            summary.update({f"final/{k}": v for k, v in (result.get("final") or {}).items() if v is not None})
            run.summary.update(summary)
            run.finish(exit_code=0 if result.get("status") == "done" else 1)
