"""The results of a sweep (or of one run) as pandas DataFrames: one row per run (config, status, grokking
measures, final metrics) and one row per evaluation of every run (`pip install 'groklab[parquet]'`).

    from groklab.analysis import results
    r = results.load("out/my-sweep")
    r.runs.groupby("batch_size").steps_to_grok.median()
    r.evals.query("experiment == 'batch'")

The run folders stay the truth. A sweep writes `results/runs.parquet` and `results/evals.parquet` from them
when it ends (and when it is interrupted); `load` reads those when they are newer than every run's files and
name the run folders where they are now, and otherwise rebuilds the frames from the folders (a sweep still
running, one trained without pyarrow, one moved or copied since).
DuckDB reads the same files: `SELECT * FROM 'out/my-sweep/results/evals.parquet'`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groklab.store import sweepdir
from groklab.errors import GroklabError


@dataclass
class Results:
    runs: Any  # pandas.DataFrame: one row per run
    evals: Any  # pandas.DataFrame: one row per evaluation of each run


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
            # a store written before the folder was moved or copied names the run folders where they were
            if [Path(p).resolve() for p in stored.runs.get("run_dir", [])] == [Path(r["run_dir"]).resolve()
                                                                                for r in listed]:
                return stored
    runs, evals = sweepdir.frames(folder)
    return Results(runs, evals)
