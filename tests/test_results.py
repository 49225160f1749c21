"""Results as DataFrames (groklab.analysis.results, the README's `groklab.results.load`) and the rows behind them
(groklab.store.sweepdir.collect): one row per run and one per evaluation, read from the Parquet store while it
is up to date and rebuilt from the run folders when a run is newer; without pandas or pyarrow, one error naming
the [parquet] extra."""

from __future__ import annotations

import builtins
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from groklab.analysis import results
from groklab.config import RunConfig, flat_fields
from groklab.engine.device import resolve_device
from groklab.errors import GroklabError
from groklab.experiments.spec import parse_spec
from groklab.experiments.sweep import run_sweep
from groklab.store import sweepdir
from groklab.training.loop import train_runs
from helpers import tiny_config, tiny_spec

SPEC = tiny_spec("tiny", """eval_points_per_decade = 3
train_fraction = 0.6
val_fraction = 0.2
[[experiment]]
name = "seeds"
[experiment.grid]
seed = [1, 2]
[[experiment]]
name = "wd"
[experiment.grid]
weight_decay = [0.0, 1.0]
""")
RUN_COLUMNS = {"run_id", "experiment", "status", *flat_fields(RunConfig()), *sweepdir.SUMMARY_KEYS,
               *(f"final_{k}" for k in sweepdir.FINAL_KEYS), "failure", "failed_step", "last_step", "run_dir"}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    """A finished sweep of four tiny runs in two experiments, its results store written at the end."""
    root = tmp_path_factory.mktemp("results")
    counts = run_sweep(parse_spec(SPEC, "spec.toml", root), root / "sweep", echo=lambda _: None)
    assert counts["done"] == 4
    return root / "sweep"


@pytest.fixture
def sweep(finished_sweep, tmp_path) -> Path:
    """A copy of the finished sweep, its results store written again in the copy (as its sweep writer would)."""
    copy = Path(shutil.copytree(finished_sweep, tmp_path / "sweep"))
    assert sweepdir.write_store(copy) == copy / sweepdir.RESULTS_DIR
    return copy


def pd_read(path: Path):
    import pandas as pd

    return pd.read_parquet(path)


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_load_gives_a_row_per_run_and_a_row_per_evaluation(sweep):
    r = results.load(sweep)
    _, runs = sweepdir.read_sweep(sweep)
    assert set(r.runs.columns) == RUN_COLUMNS
    assert r.runs.run_id.tolist() == [x.run_id for x in runs] and len(runs) == 4  # sweep.json's order
    assert r.runs.experiment.tolist() == ["seeds", "seeds", "wd", "wd"]
    assert r.runs.status.tolist() == ["done"] * 4 and r.runs.last_step.tolist() == [12] * 4
    assert r.runs.seed.tolist() == [1, 2, 42, 42] and r.runs.weight_decay.tolist() == [0.1, 0.1, 0.0, 1.0]
    for row, run in zip(r.runs.itertuples(), runs):
        summary = json.loads((run.run_dir / "summary.json").read_text())
        assert row.run_dir == str(run.run_dir) and row.steps == summary["steps"] == 12
        assert row.final_val_acc == summary["final"]["val_acc"] and row.best_val_acc == summary["best_val_acc"]
    metric_keys = set().union(*(metrics_rows(x.run_dir)[0] for x in runs))
    assert set(r.evals.columns) == {"run_id", "experiment", "seed", "weight_decay", *metric_keys}
    for run in runs:
        evals = r.evals[r.evals.run_id == run.run_id]
        rows = metrics_rows(run.run_dir)
        assert evals.step.tolist() == [m["step"] for m in rows] == [1, 2, 5, 10, 12]  # 3 a decade and the last
        assert evals.val_loss.tolist() == [m["val_loss"] for m in rows]
        for axis, value in run.params.items():  # each run's axis values, on every one of its evaluations
            assert (evals[axis] == value).all()


def test_the_store_is_read_while_fresh_and_rebuilt_when_a_run_is_newer(sweep, monkeypatch):
    store = sweepdir.store_files(sweep)
    assert all(f.exists() for f in store)
    written = [f.read_bytes() for f in store]
    made = min(f.stat().st_mtime for f in store)
    _, runs = sweepdir.read_sweep(sweep)
    metrics = runs[0].run_dir / "metrics.jsonl"
    metrics.write_text("".join(line + "\n" for line in metrics.read_text().splitlines()[:-1]))  # one eval fewer
    os.utime(metrics, (made - 60, made - 60))  # ... but older than the store
    real_collect = sweepdir.collect
    calls = []
    monkeypatch.setattr(sweepdir, "collect", lambda folder: calls.append(folder) or real_collect(folder))
    fresh = results.load(sweep)
    assert calls == [] and len(fresh.evals) == 20  # the store's rows: the run folders were not read
    os.utime(metrics, (made + 60, made + 60))  # now a run has changed since the store was written
    rebuilt = results.load(sweep)
    assert calls == [sweep] and len(rebuilt.evals) == 19
    assert rebuilt.runs.drop(columns="last_step").equals(fresh.runs.drop(columns="last_step"))
    assert rebuilt.runs.last_step.tolist() == [10, 12, 12, 12]
    assert [f.read_bytes() for f in store] == written  # load only reads: the store is the sweep writer's
    store[1].unlink()
    assert len(results.load(sweep).evals) == 19 and len(calls) == 2  # an incomplete store: rebuilt


def test_a_moved_sweep_names_its_run_folders_where_they_are_now(finished_sweep, tmp_path):
    """sweep.json keeps each run's folder relative to the sweep folder, so a sweep can be moved or copied; its
    store, written where the sweep was, names the old places (absolute paths, as DuckDB users read them)."""
    moved = Path(shutil.copytree(finished_sweep, tmp_path / "elsewhere"))  # file times kept: the store looks fresh
    stale = pd_read(sweepdir.store_files(moved)[0]).run_dir.tolist()
    assert all(p.startswith(str(finished_sweep)) for p in stale)
    r = results.load(moved)
    assert r.runs.run_dir.tolist() == [str(x.run_dir) for x in sweepdir.read_sweep(moved)[1]]
    assert all(p.startswith(str(moved)) for p in [*r.runs.run_dir, *r.runs.out_dir]) and len(r.evals) == 20


def blocked_import(monkeypatch, *names: str) -> None:
    """`import NAME` (and its submodules) fails from here on, as if the package were not installed."""
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.split(".")[0] in names:
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


@pytest.mark.parametrize("how", ["sys.modules", "builtins.__import__"])
def test_without_pandas_the_error_names_the_parquet_extra(sweep, monkeypatch, how):
    if how == "sys.modules":
        monkeypatch.setitem(sys.modules, "pandas", None)
    else:
        blocked_import(monkeypatch, "pandas")
    with pytest.raises(GroklabError) as err:
        results.load(sweep)
    assert str(err.value) == "results.load needs pandas: pip install 'groklab[parquet]'"
    with pytest.raises(GroklabError) as err:
        sweepdir.frames(sweep)
    assert str(err.value) == "the results store needs pandas and pyarrow: pip install 'groklab[parquet]'"
    shutil.rmtree(sweep / sweepdir.RESULTS_DIR)
    assert sweepdir.write_store(sweep) is None and not (sweep / sweepdir.RESULTS_DIR).exists()  # skipped, no error
    rows, evals = sweepdir.collect(sweep)  # the plain rows need no extra
    assert len(rows) == 4 and len(evals) == 20


def test_without_pyarrow_a_fresh_store_is_refused_naming_the_extra(sweep, monkeypatch):
    import pandas  # noqa: F401  (imported before pyarrow goes: pandas itself is installed)

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "fastparquet", None)  # pandas' other Parquet engine
    with pytest.raises(GroklabError) as err:
        results.load(sweep)
    assert str(err.value) == "reading the results store needs pyarrow: pip install 'groklab[parquet]'"


def test_collect_reads_a_single_run_folder(tmp_path):
    cfg = tiny_config(tmp_path / "run", seed=3, device="auto")
    train_runs([cfg], log=lambda _: None)
    (row,), evals = sweepdir.collect(tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(row) == RUN_COLUMNS
    assert (row["run_id"], row["experiment"], row["status"]) == ("run", "run", "done")
    config = {k: v for k, v in flat_fields(cfg).items() if k not in ("device", "compile")}
    assert {k: row[k] for k in config} == config  # the config, flat; but "device" is also a summary key, and
    ran = str(resolve_device("auto"))  # "cpu" or "cuda:0": where "auto" put it
    assert row["device"] == summary["device"] == ran and cfg.train.device == "auto"  # where it ran wins
    # and "compile" unset means "on a CUDA device": the row says whether the step was compiled as it ran
    engine = json.loads((tmp_path / "run" / "meta.json").read_text())["engine"]
    assert cfg.train.compile is None and row["compile"] is ("torch.compile" in engine) and (ran != "cpu" or
                                                                                           row["compile"] is False)
    assert all(row[k] == summary.get(k) for k in sweepdir.SUMMARY_KEYS)
    assert all(row[f"final_{k}"] == summary["final"].get(k) for k in sweepdir.FINAL_KEYS)
    assert (row["failure"], row["failed_step"], row["last_step"], row["run_dir"]) == (None, None, 12,
                                                                                     str(tmp_path / "run"))
    assert evals == [{"run_id": "run", "experiment": "run", **m} for m in metrics_rows(tmp_path / "run")]

    # as it last ran: a compile that failed ran uncompiled, and a resume's engine is the one that ran last
    meta_path = tmp_path / "run" / "meta.json"
    meta = json.loads(meta_path.read_text())
    for engine, resumes, compiled in [
            ("eager: not a CUDA device (torch.compile failed, ran uncompiled: InductorError: no compiler)", [], False),
            ("eager: not a CUDA device", [{"engine": "eager: not a CUDA device + torch.compile",
                                           "changed": {"compile": [None, True]}}], True),
            ("cuda-graph + torch.compile", [{"engine": "cuda-graph", "changed": {"compile": [None, False]}}], False)]:
        meta_path.write_text(json.dumps({**meta, "engine": engine, "resumes": resumes}))
        assert sweepdir.collect(tmp_path / "run")[0][0]["compile"] is compiled, engine

    train_runs([tiny_config(tmp_path / "diverged", learning_rate=1e30)], log=lambda _: None)
    (row,), evals = sweepdir.collect(tmp_path / "diverged")
    failure = json.loads((tmp_path / "diverged" / "failed.json").read_text())
    assert row["status"] == "failed" and row["failure"] == failure["reason"] and row["failed_step"] == failure["step"]
    assert row["steps_to_grok"] is None and row["last_step"] == (evals[-1]["step"] if evals else 0)

    (tmp_path / "neither").mkdir()
    with pytest.raises(GroklabError, match=r"neither: neither a sweep folder \(sweep.json\) nor a run folder "
                                           r"\(config.json\)"):
        sweepdir.collect(tmp_path / "neither")
