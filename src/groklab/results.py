"""The results store of a sweep: one row per run (config, status, grokking measures) and one row per
evaluation of every run, as Parquet files under `results/` (pandas + pyarrow: `pip install 'groklab[parquet]'`).

    from groklab import results
    r = results.load("out/my-sweep")
    r.runs.groupby("batch_size").steps_to_grok.median()
    r.evals.query("experiment == 'batch'")

The run folders stay the truth; the store is rebuilt from them after every group (and by `load` when it is
missing or older than a run), so it can be deleted at any time. DuckDB reads the same files:
`SELECT * FROM 'out/my-sweep/results/evals.parquet'`.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groklab import checkpoint as ckpt
from groklab.errors import GroklabError
from groklab.extras import has, need
from groklab.files import atomic_write
from groklab.train import FAILED_FILE, METRICS_FILE, SUMMARY_FILE

RESULTS_DIR = "results"
RUNS_FILE = "runs.parquet"
EVALS_FILE = "evals.parquet"
FINAL_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
SUMMARY_KEYS = ("threshold", "steps_to_memorise", "steps_to_grok", "grokking_delay", "grokking_ratio",
                "best_val_acc", "steps", "wall_time_s", "device")


def _read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: the evaluation is redone on resume
            continue
    return rows


def _runs_of(folder: Path) -> list[dict]:
    """(run_id, experiment, params, config dict, run_dir) for a sweep folder, or a single run folder."""
    from groklab.sweep import SWEEP_FILE, read_sweep

    if (folder / SWEEP_FILE).exists():
        _, runs = read_sweep(folder)
        return [{"run_id": r.run_id, "experiment": r.experiment, "params": r.params,
                 "config": r.config.to_dict(), "run_dir": r.run_dir} for r in runs]
    if (folder / ckpt.CONFIG_FILE).exists():
        cfg = ckpt.read_json(folder / ckpt.CONFIG_FILE)["config"]
        return [{"run_id": folder.name, "experiment": folder.name, "params": {}, "config": cfg, "run_dir": folder}]
    raise GroklabError(f"{folder}: neither a sweep folder (sweep.json) nor a run folder (config.json)")


def collect(folder: str | Path) -> tuple[list[dict], list[dict]]:
    """(run rows, evaluation rows) as plain dicts, read from the run folders."""
    from groklab.sweep import run_status

    run_rows, eval_rows = [], []
    for r in _runs_of(Path(folder)):
        run_dir: Path = r["run_dir"]
        status = run_status(run_dir)
        history = _read_metrics(run_dir / METRICS_FILE)
        row: dict[str, Any] = {"run_id": r["run_id"], "experiment": r["experiment"], "status": status}
        for section in r["config"].values():
            row.update(section)
        summary = ckpt.read_json(run_dir / SUMMARY_FILE) if status == "done" else {}
        for k in SUMMARY_KEYS:
            row[k] = summary.get(k)
        final = summary.get("final") or (history[-1] if history else {})
        for k in FINAL_KEYS:
            row[f"final_{k}"] = final.get(k)
        failure = ckpt.read_json(run_dir / FAILED_FILE) if status == "failed" else {}
        row["failure"] = failure.get("reason")
        row["failed_step"] = failure.get("step")
        row["last_step"] = history[-1]["step"] if history else 0
        row["run_dir"] = str(run_dir)
        run_rows.append(row)
        for h in history:
            eval_rows.append({"run_id": r["run_id"], "experiment": r["experiment"], **r["params"], **h})
    return run_rows, eval_rows


def _frames(folder: Path):
    try:
        import pandas as pd
    except ImportError:
        raise GroklabError("the results store needs pandas and pyarrow: pip install 'groklab[parquet]'") from None
    runs, evals = collect(folder)
    columns = ["run_id", "experiment", "step", "elapsed_s", *(k for k in FINAL_KEYS)]
    return pd.DataFrame(runs), pd.DataFrame(evals) if evals else pd.DataFrame(columns=columns)


def write_store(folder: str | Path) -> Path | None:
    """Rebuild results/runs.parquet and results/evals.parquet (atomically); None without pandas/pyarrow."""
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return None
    folder = Path(folder)
    runs, evals = _frames(folder)
    out = folder / RESULTS_DIR
    for frame, name in ((runs, RUNS_FILE), (evals, EVALS_FILE)):
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        atomic_write(out / name, buf.getvalue())
    return out


@dataclass
class Results:
    runs: Any  # pandas.DataFrame: one row per run
    evals: Any  # pandas.DataFrame: one row per evaluation of each run


def load(folder: str | Path) -> Results:
    """The results of a sweep (or of one run) as DataFrames; from the Parquet store when it is up to date,
    else rebuilt from the run folders (a sweep still running, or one trained without pyarrow)."""
    need("pandas", "pandas", "parquet", "results.load")
    import pandas as pd

    folder = Path(folder)
    store = folder / RESULTS_DIR
    files = [store / RUNS_FILE, store / EVALS_FILE]
    if all(f.exists() for f in files) and has("pyarrow"):
        newest = max((p.stat().st_mtime for r in _runs_of(folder) for p in Path(r["run_dir"]).glob("*.json*")),
                     default=0.0)
        if min(f.stat().st_mtime for f in files) >= newest:
            return Results(pd.read_parquet(files[0]), pd.read_parquet(files[1]))
    runs, evals = _frames(folder)
    return Results(runs, evals)
