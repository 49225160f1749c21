"""What a report is made from: each run of a sweep folder (or the one run of a run folder) with its results
row, axis values, evaluations, meta.json and config, read from the folders; and the words for its state."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groklab import plots
from groklab.config import SECTION_CLASSES, RunConfig
from groklab.fields import flag_words
from groklab.metrics import curve_marks
from groklab.store import rundir, sweepdir

METRIC_KEYS = ("step", "elapsed_s", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
               "train_token_acc", "val_token_acc", "test_token_acc")
UNFINISHED = ("partial", "pending")


@dataclass
class Run:
    row: dict[str, Any]  # results.collect's run row: flat config, status, grokking measures, final metrics
    params: dict[str, Any]  # the run's axis values in its sweep
    history: list[dict]
    meta: dict[str, Any]
    argv: list[str] | None
    config: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.row["run_id"]

    @property
    def status(self) -> str:
        return self.row["status"]

    @property
    def is_text(self) -> bool:
        """A run that memorised a text (no held-out data: no grokking verdict, loss on every token)."""
        return self.row.get("text_file") is not None

    @property
    def unfinished(self) -> bool:
        """Stopped part-way (partial) or not trained (pending): its curves, if any, end early."""
        return self.status in UNFINISHED

    @property
    def marks(self) -> dict[str, int | None]:
        """The steps marked on its curves; a failed run's failure, an unfinished run's last evaluation too; a
        text run has no "grokked"."""
        marks = curve_marks(self.row, self.is_text)
        if self.status == "failed":
            marks["failed"] = self.row.get("failed_step")
        if self.unfinished and self.history:
            marks["unfinished, stopped"] = self.history[-1]["step"]
        return marks

    @property
    def wall_time(self) -> float | None:
        if self.row.get("wall_time_s") is not None:
            return self.row["wall_time_s"]
        return self.history[-1].get("elapsed_s") if self.history else None


def load(folder: Path) -> tuple[dict | None, list[dict], list[Run]]:
    """(sweep header or None, experiments [{name, description, axes}], runs in the sweep's order)."""
    rows, evals = sweepdir.collect(folder)
    header, params = None, {}
    if (folder / sweepdir.SWEEP_FILE).exists():
        header, sweep_runs = sweepdir.read_sweep(folder)
        params = {r.run_id: r.params for r in sweep_runs}
    histories: dict[str, list[dict]] = {}
    for e in evals:
        histories.setdefault(e["run_id"], []).append({k: e.get(k) for k in METRIC_KEYS})
    runs = []
    for row in rows:
        run_dir = Path(row["run_dir"])
        meta = rundir.read_meta(run_dir)
        saved = rundir.read_config(run_dir) if (run_dir / rundir.CONFIG_FILE).exists() else None
        config = saved.cfg.to_dict() if saved else _sweep_config(header, row["run_id"])
        runs.append(Run(row, params.get(row["run_id"], {}), sorted(histories.get(row["run_id"], []),
                                                                  key=lambda h: h["step"]),
                        meta, saved.argv if saved else None, config))
    experiments = [dict(e) for e in header["experiments"]] if header else []
    for r in runs:  # runs of an earlier spec kept in the folder, or a single run folder
        if r.row["experiment"] not in {e["name"] for e in experiments}:
            experiments.append({"name": r.row["experiment"], "description": "", "axes": list(r.params)})
    return header, experiments, runs


def _sweep_config(header: dict | None, run_id: str) -> dict:
    for r in (header or {}).get("runs", []):
        if r["run_id"] == run_id:
            return r["config"]
    return {}


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "x"


def distinct(values: Sequence[Any]) -> list[Any]:
    """Values in order of first appearance (a sweep lists its axes' values in the order the spec gave)."""
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def run_command(config: dict[str, Any]) -> list[str]:
    """`groklab train` with every config field that differs from the default: the same run, alone (the flags
    spelled by fields.flag_words, as the command line reads them)."""
    cfg = RunConfig.from_dict(config)
    default = RunConfig()
    argv = ["groklab", "train"]
    for section in SECTION_CLASSES:
        ours, theirs = getattr(cfg, section), getattr(default, section)
        for name in ours.__dataclass_fields__:
            value = getattr(ours, name)
            if name == "resume" or value == getattr(theirs, name) or value is None:
                continue
            argv += flag_words(name, value)
    return argv


def status_text(run: Run) -> str:
    """'done', 'failed', 'partial (evaluated up to step 20 of 40)', 'pending', 'pending (evaluated up to step 8
    of 40, stopped before its first checkpoint)'."""
    last, budget = run.row.get("last_step") or 0, run.row.get("max_steps")
    of = f" of {budget:,}" if budget else ""
    if run.status == "partial":
        return f"partial (evaluated up to step {last:,}{of})"
    if run.status == "pending" and last:
        return f"pending (evaluated up to step {last:,}{of}, stopped before its first checkpoint)"
    return run.status


def median_reached(done: Sequence[Run], key: str) -> tuple[int, float, int]:
    """Of finished runs: how many reached `key` (a step count, None where never), the median over all of them
    (a run that never got there counted as +inf; +inf when none did) and the longest step budget among them."""
    values = [r.row[key] for r in done if r.row[key] is not None]
    middle = plots.median([*values, *[math.inf] * (len(done) - len(values))]) if values else math.inf
    return len(values), middle, max((r.row["max_steps"] for r in done), default=0)
