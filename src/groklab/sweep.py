"""Run a sweep: every run of a spec, trained in engine groups, resumable, with failures recorded.

A sweep folder holds `spec.toml` (as given), `sweep.json` (every run's id, axis values and full config),
`runs/<experiment>/<run>/` (ordinary run folders), `sweep.log` and `results/` (the Parquet store). The run
folders are the truth: a run is done when it has summary.json, failed when it has failed.json, resumable
when it has a checkpoint; running the same command again skips what is done and resumes the rest.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from groklab import checkpoint as ckpt
from groklab.config import RunConfig
from groklab.errors import GroklabError
from groklab.files import atomic_write, write_json
from groklab.sweep_spec import PlannedRun, SpecError, SweepSpec
from groklab.train import FAILED_FILE, SUMMARY_FILE, unfinished

SWEEP_FILE = "sweep.json"
SPEC_FILE = "spec.toml"
LOG_FILE = "sweep.log"
RUNS_DIR = "runs"
Status = Literal["done", "failed", "partial", "pending"]


def run_status(run_dir: Path) -> Status:
    if (run_dir / SUMMARY_FILE).exists():
        return "done"
    if (run_dir / FAILED_FILE).exists():
        return "failed"
    if (run_dir / ckpt.STATE_FILE).exists():
        return "partial"
    return "pending"


def ready_to_train(cfg: RunConfig, retry_failed: bool = False) -> RunConfig | None:
    """The config to train this run with now: resume from its checkpoint if it has one, else start clean
    (a folder killed before its first checkpoint is cleared); None if it is done, or failed and not retried.
    Used by every backend, so a retried Ray task resumes exactly as a re-run command does."""
    run_dir = Path(cfg.train.out_dir)
    status = run_status(run_dir)
    if status == "done" or (status == "failed" and not retry_failed):
        return None
    if status == "failed":
        (run_dir / FAILED_FILE).unlink()
    if unfinished(run_dir) is not None:  # the same test `groklab train` applies to a repeated command
        return cfg.replace(resume=True)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return cfg.replace(resume=False)


@dataclass(frozen=True)
class SweepRun:
    run_id: str
    experiment: str
    params: dict[str, Any]
    config: RunConfig  # out_dir inside the sweep folder

    @property
    def run_dir(self) -> Path:
        return Path(self.config.train.out_dir)


def read_sweep(out: Path) -> tuple[dict, list[SweepRun]]:
    """sweep.json: its header and its runs."""
    path = out / SWEEP_FILE
    if not path.exists():
        raise GroklabError(f"{out}: not a sweep folder (no {SWEEP_FILE})")
    saved = ckpt.read_json(path)
    # a run lives at OUT/runs/<run_id> wherever OUT is now: a sweep folder can be moved, copied, or read
    # from another directory than the one it was started in
    runs = [SweepRun(r["run_id"], r["experiment"], r["params"],
                     RunConfig.from_dict(r["config"]).replace(out_dir=str(out / RUNS_DIR / r["run_id"])))
            for r in saved["runs"]]
    return saved, runs


def _wandb_group(cfg: RunConfig, name: str) -> dict[str, str]:
    """--wandb in a sweep: its runs form one W&B group, named after the sweep unless --wandb_group says."""
    return {"wandb_group": cfg.train.wandb_group or name} if cfg.train.wandb else {}


def prepare(spec: SweepSpec, out: str | Path, overrides: Mapping[str, Any] | None = None,
            argv: Sequence[str] | None = None) -> list[SweepRun]:
    """Expand the spec into run configs under `out` and write spec.toml and sweep.json. A sweep folder can be
    extended (new runs are added) but a run that exists with a different config is refused."""
    out = Path(out).resolve()  # absolute: Ray workers do not share the driver's working directory
    planned: list[PlannedRun] = spec.expand(overrides)
    runs = [SweepRun(p.run_id, p.experiment, p.params,
                     p.config.replace(out_dir=str(out / RUNS_DIR / p.run_id), progress=False,
                                      **_wandb_group(p.config, spec.name)))
            for p in planned]
    previous: dict[str, SweepRun] = {}
    if (out / SWEEP_FILE).exists():
        previous = {r.run_id: r for r in read_sweep(out)[1]}
    for r in runs:
        old = previous.get(r.run_id)
        # compile changes how a run is computed, not what: a study begun on a CPU may go on compiled on a GPU;
        # where it logs (TensorBoard, W&B) changes nothing about it either
        how = dict(resume=False, out_dir="-", compile=False, tensorboard=False, wandb=False, wandb_project="-",
                   wandb_group="-", wandb_mode=None)
        if old is not None and old.config.replace(**how) != r.config.replace(**how):
            changed = [k for k, v in _flat(r.config).items() if _flat(old.config).get(k) != v]
            raise SpecError(f"{out}: run {r.run_id} already exists there with {changed[0]}="
                            f"{_flat(old.config)[changed[0]]!r} (now {_flat(r.config)[changed[0]]!r}); "
                            "use another --out for a changed sweep")
    kept = [r for r in previous.values() if r.run_id not in {x.run_id for x in runs}]
    everything = kept + runs
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / SPEC_FILE, spec.source)
    write_json(out / SWEEP_FILE, {
        "name": spec.name, "description": spec.description, "argv": list(argv) if argv else None,
        "experiments": [{"name": e.name, "description": e.description, "axes": e.axes} for e in spec.experiments],
        "runs": [{"run_id": r.run_id, "experiment": r.experiment, "params": r.params,
                  "config": r.config.to_dict()} for r in everything],
    })
    return runs


def _flat(cfg: RunConfig) -> dict[str, Any]:
    return {k: v for section in cfg.to_dict().values() for k, v in section.items()}


def log_to(path: str | Path) -> Callable[[str], None]:
    """A log function appending timestamped lines to the sweep's log (in-process or on a Ray worker)."""

    def log(line: str) -> None:
        with open(path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    return log


class LiveLine:
    """One line for the whole sweep: runs done / running / failed, steps and ETA (tqdm's estimate). When
    stderr is not a terminal, a plain line at each change instead."""

    def __init__(self, name: str, runs: Sequence[SweepRun], log: Callable[[str], None]):
        from tqdm.auto import tqdm  # a widget in Jupyter

        statuses = [run_status(r.run_dir) for r in runs]
        self.total_runs = len(runs)
        self.done = statuses.count("done")
        self.failed = statuses.count("failed")
        self.running = 0
        self.log = log
        todo = [r for r, st in zip(runs, statuses) if st in ("partial", "pending")]
        total = sum(r.config.train.max_steps for r in runs)
        done_steps = total - sum(r.config.train.max_steps - (ckpt.saved_step(r.run_dir) or 0) for r in todo)
        self.bar = tqdm(total=total, initial=done_steps, unit="step", desc=name, dynamic_ncols=True, disable=None,
                        file=sys.stderr, bar_format="{desc}: {percentage:3.0f}% |{bar:20}| {postfix} · "
                                                    "{n_fmt}/{total_fmt} run-steps · {elapsed}<{remaining}")
        self._lock = threading.Lock()  # groups may train in threads

    def _show(self) -> None:
        text = f"{self.done}/{self.total_runs} done · {self.running} running · {self.failed} failed"
        if self.bar.disable:
            self.log(text)
        else:
            self.bar.set_postfix_str(text)

    def started(self, runs: Sequence[RunConfig]) -> None:
        with self._lock:
            self.running += len(runs)
            self._show()

    def run_steps(self, n: int) -> None:
        """n steps summed over runs (a Ray task reports only when it ends)."""
        with self._lock:
            self.bar.update(n)

    def finished(self, runs: Sequence[RunConfig], results: Sequence[dict]) -> None:
        with self._lock:
            self.running -= len(runs)
            self.done += sum(r.get("status") == "done" for r in results)
            self.failed += sum(r.get("status") == "failed" for r in results)
            self._show()

    def close(self) -> None:
        self.bar.close()


def run_sweep(spec: SweepSpec, out: str | Path, overrides: Mapping[str, Any] | None = None, *,
              backend: str = "local", address: str | None = None, gpus_per_group: float = 1.0,
              retry_failed: bool = False, max_group: int | None = None, concurrent_groups: int | None = None,
              argv: Sequence[str] | None = None,
              echo: Callable[[str], None] = print) -> dict[str, int]:
    """Train every run of the spec that is not done yet; returns counts by status. Results go to
    `out/results/` (Parquet) if pandas and pyarrow are installed."""
    from groklab import results

    out = Path(out)
    runs = prepare(spec, out, overrides, argv)
    log_path = out / LOG_FILE

    log = log_to(log_path)
    todo = [c for c in (ready_to_train(r.config, retry_failed) for r in runs) if c is not None]
    resuming = sum(c.train.resume for c in todo)
    echo(f"sweep {spec.name}: {len(runs)} runs in {out} · {len(runs) - len(todo)} already finished · "
         f"{len(todo)} to train ({resuming} resuming) · backend {backend} · log {log_path}")
    live = LiveLine(spec.name, runs, echo)
    try:
        if backend == "local":
            from groklab.groups import train_many

            train_many(todo, argv=list(argv) if argv else None, log=log, max_group=max_group, progress=live,
                       isolate=True, concurrent=concurrent_groups)
        elif backend == "ray":
            from groklab.ray_backend import train_on_ray

            train_on_ray(todo, argv=list(argv) if argv else None, address=address, gpus_per_group=gpus_per_group,
                         max_group=max_group, retry_failed=retry_failed, progress=live, log=log)
        else:
            raise GroklabError(f"--backend must be 'local' or 'ray', got {backend!r}")
    finally:
        live.close()
        written = results.write_store(out)
    counts = {s: 0 for s in ("done", "failed", "partial", "pending")}
    for r in runs:
        counts[run_status(r.run_dir)] += 1
    echo(f"sweep {spec.name}: {counts['done']} done, {counts['failed']} failed"
         + (f", {counts['partial'] + counts['pending']} unfinished" if counts["partial"] + counts["pending"] else "")
         + (f" · results: {written}" if written else " · results store skipped (pip install 'groklab[parquet]')"))
    for r in runs:
        if run_status(r.run_dir) == "failed":
            reason = ckpt.read_json(r.run_dir / FAILED_FILE).get("reason")
            echo(f"  failed: {r.run_id}: {reason}")
    return counts
