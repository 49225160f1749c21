"""The results of a sweep (or of one run) as pandas DataFrames: one row per run (config, status, grokking
measures, final metrics) and one row per evaluation of every run (`pip install 'groklab[parquet]'`).

    from groklab.analysis import results
    r = results.load("out/my-sweep")
    r.runs.groupby("batch_size").steps_to_grok.median()
    r.evals.query("experiment == 'batch'")

The run folders stay the truth. A sweep writes `results/runs.parquet` and `results/evals.parquet` from them
when it ends (and when it is interrupted); `load` reads those when they are newer than every run's files and
name the run folders where they are now, each with the status it has now, and otherwise rebuilds the frames
from the folders (a sweep still running, one trained without pyarrow, one moved or copied since, a run
folder or its summary deleted).
DuckDB reads the same files: `SELECT * FROM 'out/my-sweep/results/evals.parquet'`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groklab.store import rundir, sweepdir
from groklab.errors import GroklabError


@dataclass
class Results:
    runs: Any  # pandas.DataFrame: one row per run
    evals: Any  # pandas.DataFrame: one row per evaluation of each run


def _agrees(stored: Results, listed: list[dict[str, Any]]) -> bool:
    """Whether the store says what the run folders say: the same folders (a store written before the folder
    was moved or copied names them where they were) with the same status each (a run folder or its
    summary.json deleted since leaves no newer file behind, only a status that changed)."""
    runs = stored.runs
    if "run_dir" not in runs or "status" not in runs or len(runs) != len(listed):
        return False
    return all(Path(p).resolve() == Path(r["run_dir"]).resolve() and status == rundir.status(r["run_dir"])
               for p, status, r in zip(runs["run_dir"], runs["status"], listed))


def load(folder: str | Path) -> Results:
    """The results of a sweep (or of one run) as DataFrames; from the Parquet store when it is up to date,
    else rebuilt from the run folders."""
    try:
        import pandas as pd
    except ImportError:
        raise GroklabError("results.load needs pandas: pip install 'groklab[parquet]'") from None
    folder = Path(folder)
    files = sweepdir.store_files(folder)
    if all(f.exists() for f in files):
        listed = sweepdir.runs_of(folder)
        newest = max((p.stat().st_mtime for r in listed for p in Path(r["run_dir"]).glob("*.json*")), default=0.0)
        if min(f.stat().st_mtime for f in files) >= newest:
            try:
                stored = Results(pd.read_parquet(files[0]), pd.read_parquet(files[1]))
            except ImportError:
                raise GroklabError("reading the results store needs pyarrow: pip install 'groklab[parquet]'") from None
            if _agrees(stored, listed):
                return stored
    runs, evals = sweepdir.frames(folder)
    return Results(runs, evals)
