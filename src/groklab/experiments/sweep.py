"""Run a sweep: every run of a spec, trained in engine groups, resumable, with failures recorded.

The sweep folder's files are `sweepdir`'s; what each run folder holds is `rundir`'s. Running the same
command again skips what is done and resumes the rest (runs interrupted by Ctrl-C or SIGTERM included:
an interrupt is never a failure). One sweep writes a folder at a time.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from groklab.store import rundir
from groklab.config import RunConfig, differences
from groklab.errors import GroklabError
from groklab.training.groups import train_many
from groklab.training.interrupts import Interrupted
from groklab.experiments.spec import MAX_RUNS, SpecError, SweepSpec
from groklab.store.sweepdir import LOG_FILE, SWEEP_FILE, SweepFolder, SweepRun, read_sweep, run_folder, write_store


def _wandb_group(cfg: RunConfig, name: str) -> dict[str, str]:
    """--wandb in a sweep: its runs form one W&B group, named after the sweep unless --wandb_group says."""
    return {"wandb_group": cfg.train.wandb_group or name} if cfg.train.wandb else {}


def prepare(folder: SweepFolder, spec: SweepSpec, overrides: Mapping[str, Any] | None = None,
            argv: Sequence[str] | None = None, max_runs: int = MAX_RUNS,
            echo: Callable[[str], None] = print) -> list[SweepRun]:
    """Expand the spec into run configs under the (claimed) sweep folder and write spec.toml and sweep.json.
    A sweep folder can be extended (new runs are added) and run with other execution settings (device,
    compile, ...), but a run that exists there with a different config of what it is, is refused."""
    out = folder.path.resolve()  # absolute: Ray workers do not share the driver's working directory
    planned = spec.expand(overrides, max_runs=max_runs, echo=echo)
    # each run's lines go to sweep.log, which stays whole whatever the console shows (--quiet)
    runs = [SweepRun(p.run_id, p.experiment, p.params,
                     p.config.replace(out_dir=str(out / run_folder(p.run_id)), progress=False,
                                      verbosity="verbose" if p.config.train.verbosity == "verbose" else "normal",
                                      **_wandb_group(p.config, spec.name)), run_folder(p.run_id))
            for p in planned]
    previous: dict[str, SweepRun] = {}
    if (out / SWEEP_FILE).exists():
        previous = {r.run_id: r for r in read_sweep(out)[1]}
    for r in runs:
        old = previous.get(r.run_id)
        changed = differences(old.config, r.config) if old is not None else []
        if changed:
            name, was, now = changed[0]
            raise SpecError(f"{out}: run {r.run_id} already exists there with {name}={was!r} (now {now!r}); "
                            "use another --out for a changed sweep")
    kept = [r for r in previous.values() if r.run_id not in {x.run_id for x in runs}]
    header = {"name": spec.name, "description": spec.description, "kind": "spec",
              "experiments": [{"name": e.name, "description": e.description, "axes": e.axes} for e in spec.experiments]}
    folder.write(header, kept + runs, argv, spec.source)
    return runs


PROGRESS_INTERVAL = 30.0  # seconds between the progress lines of a sweep whose bar is off (a log, nohup)


class LiveLine:
    """One line for the whole sweep: runs done / running / failed, run-steps and the ETA. In a terminal it is
    a progress bar; otherwise (a log, `nohup`) a plain line at each change of the counts and, every
    `interval` seconds while runs train, one with the steps done and the time left. `clock`: for tests."""

    def __init__(self, name: str, runs: Sequence[SweepRun], log: Callable[[str], None],
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic, show: bool = True):
        from tqdm.auto import tqdm  # a widget in Jupyter

        statuses = [rundir.status(r.run_dir) for r in runs]
        self.name, self.total_runs = name, len(runs)
        self.done = statuses.count("done")
        self.failed = statuses.count("failed")
        self.running = 0
        self.log, self.clock, self.show = log, clock, show
        self.interval = PROGRESS_INTERVAL if interval is None else interval
        todo = [r for r, st in zip(runs, statuses) if st in ("partial", "pending")]
        self.total = sum(r.config.train.max_steps for r in runs)
        self.steps = self.total - sum(r.config.train.max_steps - (rundir.saved_step(r.run_dir) or 0) for r in todo)
        self.first_steps, self.started_at = self.steps, clock()
        self.last_line = self.started_at
        self.bar = tqdm(total=self.total, initial=self.steps, unit="step", dynamic_ncols=True,
                        disable=None if show else True, file=sys.stderr, desc=self._counts(),
                        bar_format="{desc} |{bar:20}| {percentage:3.0f}% · {n_fmt}/{total_fmt} run-steps · "
                                   "{elapsed}<{remaining}")
        self._lock = threading.Lock()  # groups may train in threads

    def _counts(self) -> str:
        return (f"sweep {self.name}: {self.done}/{self.total_runs} done · {self.running} running · "
                f"{self.failed} failed")

    def _show(self) -> None:
        if not self.show:
            return
        if self.bar.disable:
            self.log(self._counts())
        else:
            self.bar.set_description_str(self._counts())

    def progress_line(self) -> str:
        """The counts, the run-steps done and, once some were taken, the time left at the rate so far."""
        line = f"{self._counts()} · {self.steps:,}/{self.total:,} run-steps ({100 * self.steps / max(self.total, 1):.0f} %)"
        elapsed = self.clock() - self.started_at
        rate = (self.steps - self.first_steps) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            line += f" · {_duration(elapsed)} elapsed, about {_duration((self.total - self.steps) / rate)} left"
        return line

    def write(self, line: str) -> None:
        """A line of the sweep's own (--verbose: the groups' lines), written above the bar."""
        with self._lock:
            if self.bar.disable:
                self.log(line)
            else:
                with self.bar.external_write_mode(file=sys.stdout):
                    self.log(line)

    def started(self, runs: Sequence[RunConfig]) -> None:
        with self._lock:
            self.running += len(runs)
            self._show()

    def run_steps(self, n: int) -> None:
        """n steps summed over runs (a Ray task reports only when it ends)."""
        with self._lock:
            self.steps += n
            self.bar.update(n)
            now = self.clock()
            if self.show and self.bar.disable and now - self.last_line >= self.interval:
                self.last_line = now
                self.log(self.progress_line())

    def finished(self, runs: Sequence[RunConfig], results: Sequence[dict]) -> None:
        with self._lock:
            self.running -= len(runs)
            self.done += sum(r.get("status") == "done" for r in results)
            self.failed += sum(r.get("status") == "failed" for r in results)
            self._show()

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def sweep_verbosity(spec: SweepSpec, overrides: Mapping[str, Any] | None) -> str:
    """What the sweep prints on the console: --quiet / --verbose, or its spec's [base] verbosity."""
    return str((overrides or {}).get("verbosity", spec.base.get("verbosity", "normal")))


def _tee(*logs: Callable[[str], None]) -> Callable[[str], None]:
    def log(line: str) -> None:
        for each in logs:
            each(line)

    return log


def counts(runs: Sequence[SweepRun]) -> dict[str, int]:
    out = {s: 0 for s in ("done", "failed", "partial", "pending")}
    for r in runs:
        out[rundir.status(r.run_dir)] += 1
    return out


def run_sweep(spec: SweepSpec, out: str | Path | SweepFolder, overrides: Mapping[str, Any] | None = None, *,
              backend: str = "local", address: str | None = None, gpus_per_group: float = 1.0,
              retry_failed: bool = False, max_group: int | None = None, concurrent_groups: int | None = None,
              argv: Sequence[str] | None = None, max_runs: int = MAX_RUNS,
              echo: Callable[[str], None] = print) -> dict[str, int]:
    """Train every run of the spec that is not done yet; returns counts by status. Results go to
    `out/results/` (Parquet) if pandas and pyarrow are installed. Interrupted is raised, after the store is
    written, when SIGINT/SIGTERM stopped it. `out`: a folder, or a SweepFolder the caller has claimed."""
    if backend not in ("local", "ray"):
        raise GroklabError(f"--backend must be 'local' or 'ray', got {backend!r}")
    with (contextlib.nullcontext(out) if isinstance(out, SweepFolder) else SweepFolder(out)) as folder:
        runs = prepare(folder, spec, overrides, argv, max_runs, echo)
        log = folder.log()
        todo_status = [rundir.status(r.run_dir) for r in runs]
        todo = [r.config for r, st in zip(runs, todo_status) if st in ("partial", "pending")
                or (st == "failed" and retry_failed)]
        resuming = sum(st == "partial" or (st == "failed" and retry_failed) for st in todo_status)
        verbosity = sweep_verbosity(spec, overrides)
        if verbosity != "quiet":
            echo(f"sweep {spec.name}: {len(runs)} runs in {folder.path} · {len(runs) - len(todo)} already finished · "
                 f"{len(todo)} to train ({resuming} resuming) · backend {backend} · log {folder.path / LOG_FILE}")
        live = LiveLine(spec.name, runs, echo, show=verbosity != "quiet")
        if verbosity == "verbose":  # the groups' lines on the console too, not only in sweep.log
            log = _tee(log, live.write)
        interrupted: Interrupted | None = None
        try:
            if backend == "local":
                train_many(todo, argv=list(argv) if argv else None, log=log, max_group=max_group, progress=live,
                           isolate=True, concurrent=concurrent_groups, retry_failed=retry_failed)
            else:
                from groklab.experiments.ray_backend import train_on_ray

                train_on_ray(todo, argv=list(argv) if argv else None, address=address, gpus_per_group=gpus_per_group,
                             max_group=max_group, retry_failed=retry_failed, progress=live,
                             log_path=folder.path / LOG_FILE)
        except Interrupted as exc:
            interrupted = exc
        finally:
            live.close()
            written = write_store(folder.path)
        tally = counts(runs)
        unfinished = tally["partial"] + tally["pending"]
        echo(f"sweep {spec.name}: {tally['done']} done, {tally['failed']} failed"
             + (f", {unfinished} unfinished" if unfinished else "")
             + (f" · results: {written}" if written else " · results store skipped (pip install 'groklab[parquet]')"))
        for r in runs:
            if rundir.status(r.run_dir) == "failed":
                echo(f"  failed: {r.run_id}: {rundir.read_failure(r.run_dir).get('reason')}")
        if interrupted is not None:
            raise Interrupted(interrupted.signum, f"{interrupted}; {unfinished} run(s) unfinished, none marked failed")
        return tally
