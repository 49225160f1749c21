"""The sweep folder: this module owns it, as `rundir` owns a run folder.

    sweep.json    every run's id, axis values, folder and full config; the commands that ran the sweep
    spec.toml     the spec as given (a `--seeds` folder has none)
    runs/<experiment>/<run>/   ordinary run folders (a `--seeds` folder keeps them at seed<N>/)
    sweep.log     what the groups printed;  results/  the Parquet store;  tables.md, report*  outputs

The run folders are the truth: a run is done when it has summary.json, failed when it has failed.json,
resumable when it has a checkpoint; the results store is rebuilt from them and can be deleted at any time.
One writer at a time (the folder's lock); a folder groklab did not write is never written into.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groklab.store import rundir
from groklab.config import COMPILED, ConfigError, RunConfig, differences
from groklab.data.equations import fingerprint
from groklab.errors import CheckpointError, GroklabError
from groklab.files import append_text, atomic_write, read_json, require, write_json
from groklab.lock import LOCK_FILE, FolderLock

SWEEP_FILE = "sweep.json"
SPEC_FILE = "spec.toml"
LOG_FILE = "sweep.log"
RUNS_DIR = "runs"
RESULTS_DIR = "results"
RUNS_PARQUET = "runs.parquet"
EVALS_PARQUET = "evals.parquet"
TABLES_FILE = "tables.md"
SWEEP_FORMAT = "groklab-sweep/2"
OWN_NAMES = (SWEEP_FILE, SPEC_FILE, LOG_FILE, RUNS_DIR, RESULTS_DIR, TABLES_FILE, *rundir.REPORT_FILES)
FINAL_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
              "train_token_acc", "val_token_acc", "test_token_acc")  # token acc: None in runs from before it
SUMMARY_KEYS = ("threshold", "steps_to_memorise", "steps_to_grok", "grokking_delay", "grokking_ratio",
                "best_val_acc", "steps", "wall_time_s", "device",
                # first crossing and held (groklab.metrics): None in runs from before them
                "steps_to_memorise_first", "steps_to_grok_first", "steps_to_memorise_held", "steps_to_grok_held")


@dataclass(frozen=True)
class SweepRun:
    run_id: str
    experiment: str
    params: dict[str, Any]
    config: RunConfig  # out_dir: the run's folder inside the sweep folder, wherever that is now
    folder: str  # relative to the sweep folder

    @property
    def run_dir(self) -> Path:
        return Path(self.config.train.out_dir)


def run_folder(run_id: str) -> str:
    return f"{RUNS_DIR}/{run_id}"


def _relative_ok(folder: str) -> bool:
    parts = Path(folder).parts
    return bool(parts) and not Path(folder).is_absolute() and ".." not in parts


def read_sweep(out: Path) -> tuple[dict[str, Any], list[SweepRun]]:
    """sweep.json: its header and its runs, each checked. A run lives at OUT/<its folder> wherever OUT is now:
    a sweep folder can be moved, copied, or read from another directory than the one it was started in."""
    path = out / SWEEP_FILE
    if not path.exists():
        raise GroklabError(f"{out}: not a sweep folder (no {SWEEP_FILE})")
    saved = read_json(path, CheckpointError, "a sweep file")
    require(isinstance(saved, dict) and isinstance(saved.get("runs"), list), path, CheckpointError,
            "expected an object with a \"runs\" list")
    runs = []
    for n, r in enumerate(saved["runs"]):
        ok = (isinstance(r, dict) and isinstance(r.get("run_id"), str) and isinstance(r.get("experiment"), str)
              and isinstance(r.get("params", {}), dict) and isinstance(r.get("config"), dict)
              and _relative_ok(r.get("folder", run_folder(str(r.get("run_id"))))))
        require(ok, path, CheckpointError, f"run {n} is not a run record")
        folder = r.get("folder", run_folder(r["run_id"]))
        try:
            cfg = RunConfig.from_dict(r["config"]).replace(out_dir=str(out / folder))
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"{path}: run {r['run_id']!r}: not a groklab run config ({exc})") from None
        runs.append(SweepRun(r["run_id"], r["experiment"], r.get("params", {}), cfg, folder))
    require(isinstance(saved.get("experiments", []), list), path, CheckpointError, "\"experiments\" must be a list")
    return saved, runs


def is_ours(out: Path) -> bool:
    """A sweep folder: its sweep.json reads, or it is one that a sweep began and died in before writing it
    (spec.toml alone, beside the lock file that only a writer which passed this check creates)."""
    try:
        read_sweep(out)
    except GroklabError:
        return rundir.entries(out) == [SPEC_FILE] and (out / LOCK_FILE).is_file() and not (out / SWEEP_FILE).exists()
    return True


def refuse_foreign(out: Path, what: str = "--out") -> None:
    if out.exists() and not out.is_dir():
        raise GroklabError(f"{out}: is a file; {what} must name a folder")
    present = rundir.entries(out)
    if present and not is_ours(out):
        if (out / SWEEP_FILE).is_file():
            read_sweep(out)  # a sweep.json that does not read: its own error names the file and what is wrong
        shown = ", ".join(present[:6]) + (f", ... ({len(present)} in all)" if len(present) > 6 else "")
        raise GroklabError(f"{out} already holds files groklab did not write as a sweep ({shown}); choose another "
                           f"{what} or an empty folder")


class SweepFolder:
    """The writer of a sweep folder: holds its lock from `claim` until `close` (a `with` block does both)."""

    def __init__(self, out: str | Path):
        self.path = Path(out)
        self.lock = FolderLock(self.path)

    def claim(self, what: str = "--out") -> "SweepFolder":
        """Take the lock, refusing a folder that is not a sweep's: checked first, so that a foreign folder is
        left as it was, and again once held, for what another writer did meanwhile. `what`: the flag a refusal
        names."""
        self.lock.acquire_checked(lambda path: refuse_foreign(path, what))  # another sweep mid-write: "in use"
        return self

    def close(self) -> None:
        self.lock.release()

    def __enter__(self) -> "SweepFolder":
        return self.claim()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, header: dict[str, Any], runs: Sequence[SweepRun], argv: Sequence[str] | None,
              spec_source: str | None = None) -> None:
        """spec.toml (if any) and sweep.json: `header` (name, description, kind, experiments), the runs, the
        command that first defined the sweep and every command run on it since."""
        old = read_sweep(self.path)[0] if (self.path / SWEEP_FILE).exists() else {}
        commands = [c for c in old.get("commands", [old["argv"]] if old.get("argv") else []) if isinstance(c, list)]
        if argv:
            commands.append(list(argv))
        # sweep.json first: it is what makes the folder a sweep's, so a kill between the two leaves one
        write_json(self.path / SWEEP_FILE, {
            **header, "format": SWEEP_FORMAT, "argv": old.get("argv") or (list(argv) if argv else None),
            "commands": commands,
            "runs": [{"run_id": r.run_id, "experiment": r.experiment, "params": r.params, "folder": r.folder,
                      "config": r.config.to_dict()} for r in runs],
        })
        if spec_source is not None:
            atomic_write(self.path / SPEC_FILE, spec_source)

    def log(self) -> Callable[[str], None]:
        return log_to(self.path / LOG_FILE)


def log_to(path: str | Path) -> Callable[[str], None]:
    """A log function appending timestamped lines to a sweep's log (in-process or on a Ray worker), in UTF-8
    whatever the locale."""

    def log(line: str) -> None:
        append_text(path, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    return log


# ---------------------------------------------------------------- the results store's rows

def runs_of(folder: Path) -> list[dict[str, Any]]:
    """(run_id, experiment, params, config dict, run_dir) of a sweep folder's runs, or of a single run folder."""
    if (folder / SWEEP_FILE).exists():
        _, runs = read_sweep(folder)
        return [{"run_id": r.run_id, "experiment": r.experiment, "params": r.params,
                 "config": r.config.to_dict(), "run_dir": r.run_dir} for r in runs]
    if (folder / rundir.CONFIG_FILE).exists():
        cfg = rundir.read_config(folder).cfg.to_dict()
        return [{"run_id": folder.name, "experiment": folder.name, "params": {}, "config": cfg, "run_dir": folder}]
    raise GroklabError(f"{folder}: neither a sweep folder ({SWEEP_FILE}) nor a run folder ({rundir.CONFIG_FILE})")


def ran_config(run_dir: Path, planned: RunConfig) -> RunConfig:
    """The config a run folder says its run trained with: config.json's, with what its last resume changed in
    how it executes (meta.json's resumes; each records its changes against config.json, which a resume
    never rewrites); `planned` (its sweep.json record) where it has not started. out_dir: `planned`'s, where
    the folder is now."""
    if not (run_dir / rundir.CONFIG_FILE).is_file():
        return planned
    try:
        cfg = rundir.read_config(run_dir).cfg
        meta = rundir.read_meta(run_dir)
    except GroklabError:  # a damaged file: the report names it; the row keeps what the sweep planned
        return planned
    resumes = meta.get("resumes") or []
    changed = resumes[-1].get("changed") if resumes else None
    if isinstance(changed, dict):
        try:
            cfg = cfg.replace(**{k: v[1] for k, v in changed.items() if isinstance(v, list) and len(v) == 2})
        except (ConfigError, TypeError):
            pass  # not a record groklab wrote: config.json alone
    # compiled or not as it last ran: unset means "on a CUDA device", and a compile can fail (then it ran without)
    engine = (resumes[-1] if resumes and "engine" in resumes[-1] else meta).get("engine")
    if isinstance(engine, str):
        cfg = cfg.replace(compile=engine.endswith(COMPILED))
    return cfg.replace(out_dir=planned.train.out_dir)


def collect(folder: str | Path) -> tuple[list[dict], list[dict]]:
    """(run rows, evaluation rows) as plain dicts, read from the run folders: each row's config is what its
    folder says the run trained with, not what the latest command on the sweep asked for."""
    run_rows, eval_rows = [], []
    for r in runs_of(Path(folder)):
        run_dir: Path = r["run_dir"]
        status = rundir.status(run_dir)
        history = rundir.read_metrics(run_dir)
        row: dict[str, Any] = {"run_id": r["run_id"], "experiment": r["experiment"], "status": status}
        config = ran_config(run_dir, RunConfig.from_dict(r["config"])).to_dict()
        for section in config.values():
            row.update(section)
        summary = rundir.read_summary(run_dir) if status == "done" else {}
        for k in SUMMARY_KEYS:
            row[k] = summary.get(k)
        final = summary.get("final") or (history[-1] if history else {})
        for k in FINAL_KEYS:
            row[f"final_{k}"] = final.get(k)
        failure = rundir.read_failure(run_dir) if status == "failed" else {}
        row["failure"] = failure.get("reason")
        row["failed_step"] = failure.get("step")
        row["last_step"] = history[-1]["step"] if history else 0
        row["run_dir"] = str(run_dir)
        run_rows.append(row)
        for h in history:
            eval_rows.append({"run_id": r["run_id"], "experiment": r["experiment"], **r["params"], **h})
    return run_rows, eval_rows


def frames(folder: Path):
    """The rows as pandas DataFrames (the parquet extra)."""
    try:
        import pandas as pd
    except ImportError:
        raise GroklabError("the results store needs pandas and pyarrow: pip install 'groklab[parquet]'") from None
    runs, evals = collect(folder)
    columns = ["run_id", "experiment", "step", "elapsed_s", *FINAL_KEYS]
    return pd.DataFrame(runs), pd.DataFrame(evals) if evals else pd.DataFrame(columns=columns)


def store_files(folder: Path) -> list[Path]:
    return [folder / RESULTS_DIR / RUNS_PARQUET, folder / RESULTS_DIR / EVALS_PARQUET]


def write_store(folder: str | Path) -> Path | None:
    """Rebuild results/runs.parquet and results/evals.parquet (atomically); None without pandas/pyarrow.
    Only the sweep folder's writer calls it."""
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return None
    folder = Path(folder)
    runs, evals = frames(folder)
    for frame, path in zip((runs, evals), store_files(folder)):
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        atomic_write(path, buf.getvalue())
    return folder / RESULTS_DIR


# ---------------------------------------------------------------- `groklab train --seeds`: a one-axis sweep

def _legacy_seeds_folder(out: Path) -> bool:
    """A `--seeds` folder written before it had a sweep.json: nothing in it but run folders seed<N>."""
    present = rundir.entries(out)
    return (not (out / SWEEP_FILE).exists() and bool(present)
            and all(re.fullmatch(r"seed-?\d+", n) and rundir.is_ours(out / n) for n in present))


def check_run_folders(runs: Sequence[SweepRun], flag: str = "--out", whose: str = "sweep") -> None:
    """Every run folder, before anything is written or trains: empty or groklab's, holding this run if any,
    and not in use by another command (which would stop the sweep half-way). `flag`, `whose`: what the
    refusals name (a sweep's --out; a --seeds command's --out_dir)."""
    for r in runs:
        rundir.refuse_foreign(r.run_dir, flag)  # as a run's own command refuses it
        if not rundir.entries(r.run_dir):
            continue
        if (r.run_dir / rundir.CONFIG_FILE).is_file():
            saved = rundir.read_config(r.run_dir).cfg
            changed = differences(saved, r.config, roles=("is",))
            if changed:
                field, was, now = changed[0]
                raise GroklabError(f"{r.run_dir}: holds a run with {field}={was!r}, and this {whose}'s run "
                                   f"{r.run_id} has {field}={now!r}; move it away, or give the {whose} another {flag}")
        FolderLock(r.run_dir).acquire().release()  # raises FolderInUse naming the folder


def _legacy_seed(out: Path, name: str) -> SweepRun:
    cfg = rundir.read_config(out / name).cfg
    return SweepRun(name, out.name, {"seed": cfg.train.seed}, cfg.replace(out_dir=str(out / name)), name)


def _refuse_other_seeds(out: Path, old: Sequence[SweepRun], configs: Sequence[RunConfig]) -> None:
    """A --seeds folder is one experiment whose only axis is the seed: new seeds must be the same run in every
    field of what a run is but the seed, and train on the same data, compared by content as a resume compares
    it (a data folder may be spelled another way, or the same spelling hold other data now)."""
    for r in old:  # every one: a folder from before sweep.json may hold seeds that already disagree
        changed = [d for d in differences(r.config, configs[0], roles=("is",)) if d[0] != "seed"]
        if changed:
            field, was, now = changed[0]
            raise GroklabError(f"{out} holds seeds trained with {field}={was!r} ({r.run_id}), and this command "
                               f"gives {field}={now!r}: a --seeds folder varies the seed alone; give another --out_dir")
    trained = [r for r in old if (r.run_dir / rundir.CONFIG_FILE).is_file()]  # a seed never started has no data
    if not trained:
        return
    from groklab.data.dataset import load_run_data  # here: reading results needs no torch (test_imports)

    now = fingerprint(load_run_data(configs[0].data, configs[0].model).files())
    for r in trained:
        was = rundir.trained_data_hash(r.run_dir, rundir.read_config(r.run_dir))
        if was != now:
            raise GroklabError(f"{out} holds seeds trained on other data than this command gives ({r.run_id}: "
                               f"content {was[:12]}, now {now[:12]}): a --seeds folder varies the seed alone; "
                               "give another --out_dir")


def claim_seeds_folder(out: Path, configs: Sequence[RunConfig], argv: Sequence[str] | None) -> SweepFolder:
    """The folder of `--seeds A,B --out_dir OUT` as a sweep folder of one axis (seed), its runs at OUT/seed<N>
    (where they have always been), so `groklab report OUT` and `results.load(OUT)` read it. Claimed: the
    caller closes it."""
    folder = SweepFolder(out)
    if _legacy_seeds_folder(out):
        folder.lock.acquire()
    else:
        folder.claim("--out_dir")
    try:
        old: list[SweepRun] = []
        if (out / SWEEP_FILE).exists():
            header, old = read_sweep(out)
            if header.get("kind") != "seeds":
                raise GroklabError(f"{out} is the folder of a sweep spec; train its runs with `groklab sweep`, or "
                                   "give --seeds another --out_dir")
        else:  # a folder from before sweep.json: its seeds are adopted, as they were trained
            old = [_legacy_seed(out, name) for name in sorted(rundir.entries(out))
                   if (out / name / rundir.CONFIG_FILE).is_file()]
        _refuse_other_seeds(out, old, configs)
        runs = [SweepRun(f"seed{c.train.seed}", out.name, {"seed": c.train.seed}, c, f"seed{c.train.seed}")
                for c in configs]
        check_run_folders(runs, "--out_dir", "command")  # before sweep.json records them
        new_ids = {r.run_id for r in runs}
        header = {"name": out.name, "description": f"groklab train --seeds into {out.name}", "kind": "seeds",
                  "experiments": [{"name": out.name, "description": "", "axes": ["seed"]}]}
        folder.write(header, [r for r in old if r.run_id not in new_ids] + runs, argv)
    except BaseException:
        folder.close()
        raise
    return folder
