"""Run a sweep: every run of a spec, trained in engine groups, resumable, with failures recorded.

The sweep folder's files are `sweepdir`'s; what each run folder holds is `rundir`'s. Running the same
command again skips what is done and resumes the rest (runs interrupted by Ctrl-C or SIGTERM included:
an interrupt is never a failure). One sweep writes a folder at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from groklab.experiments.spec import MAX_RUNS, PlannedRun, SpecError, SweepSpec, require_data
from groklab.store.sweepdir import (LOG_FILE, SWEEP_FILE, SweepFolder, SweepRun, check_run_folders, ran_config,
                                     read_sweep, run_folder, write_store)


def _wandb_group(cfg: RunConfig, name: str) -> dict[str, str]:
    """--wandb in a sweep: its runs form one W&B group, named after the sweep unless --wandb_group says."""
    return {"wandb_group": cfg.train.wandb_group or name} if cfg.train.wandb else {}


def prepare(folder: SweepFolder, spec: SweepSpec, overrides: Mapping[str, Any] | None = None,
            argv: Sequence[str] | None = None, max_runs: int = MAX_RUNS,
            echo: Callable[[str], None] = print, retry_failed: bool = False,
            planned: Sequence[PlannedRun] | None = None) -> list[SweepRun]:
    """Expand the spec into run configs under the (claimed) sweep folder, check the folder and every run
    folder, then write sweep.json and spec.toml. A sweep folder belongs to one spec: the same spec may be
    extended (more values on its axes, more experiments: the new runs are added) and run with other
    execution settings (device, compile, ...), but another spec (another name, other axes, runs that are
    something else) or a run that exists there with a different config of what it is, is refused, and so is
    a run folder that is not that run's or is in use: all before anything is written or trains."""
    out = folder.path.resolve()  # absolute: Ray workers do not share the driver's working directory
    if planned is None:
        planned = spec.expand(overrides, max_runs=max_runs, echo=echo)
    # each run's lines go to sweep.log, which stays whole whatever the console shows (--quiet)
    runs = [SweepRun(p.run_id, p.experiment, p.params,
                     p.config.replace(out_dir=str(out / run_folder(p.run_id)), progress=False,
                                      verbosity="verbose" if p.config.train.verbosity == "verbose" else "normal",
                                      **_wandb_group(p.config, spec.name)), run_folder(p.run_id))
            for p in planned]
    old_header: dict[str, Any] = {}
    previous: dict[str, SweepRun] = {}
    if (out / SWEEP_FILE).exists():
        old_header, old_runs = read_sweep(out)
        previous = {r.run_id: r for r in old_runs}
        refuse_another_spec(folder.path, old_header, spec)
    for r in runs:
        old = previous.get(r.run_id)
        changed = differences(old.config, r.config) if old is not None else []
        if changed:
            name, was, now = changed[0]
            raise SpecError(f"{out}: run {r.run_id} already exists there with {name}={was!r} (now {now!r}); "
                            "use another --out for a changed sweep")
    refuse_other_runs(folder.path, spec, list(previous.values()), runs)
    check_run_folders(runs)
    # a run that will not train now keeps the record of what it trained with, not this command's settings
    runs = [r if _trains(r, retry_failed) else dataclasses.replace(r, config=ran_config(r.run_dir, r.config))
            for r in runs]
    kept = [r for r in previous.values() if r.run_id not in {x.run_id for x in runs}]
    names = {e.name for e in spec.experiments}
    experiments = [{"name": e.name, "description": e.description, "axes": e.axes} for e in spec.experiments]
    experiments += [e for e in old_header.get("experiments", []) if isinstance(e, dict) and e.get("name") not in names]
    header = {"name": spec.name, "description": spec.description, "kind": "spec", "experiments": experiments}
    folder.write(header, kept + runs, argv, spec.source)
    return runs


def _trains(run: SweepRun, retry_failed: bool) -> bool:
    st = rundir.status(run.run_dir)
    return st in ("partial", "pending") or (st == "failed" and retry_failed)


def refuse_another_spec(out: Path, header: Mapping[str, Any], spec: SweepSpec) -> None:
    """A sweep folder belongs to the spec that made it (by name): another spec on it would merge two sweeps
    under one title, or take over a `train --seeds` folder."""
    if header.get("kind") == "seeds":
        raise GroklabError(f"{out} is the folder of `groklab train --seeds` ({header.get('name')!r}); sweep "
                           f"{spec.name!r} ({spec.where}) may not train into it: give it another --out")
    name = header.get("name")
    if name is not None and name != spec.name:
        raise GroklabError(f"{out} holds sweep {name!r}, and {spec.where} is sweep {spec.name!r}: a sweep folder "
                           "belongs to one spec; give this one another --out")


def refuse_other_runs(out: Path, spec: SweepSpec, previous: Sequence[SweepRun], runs: Sequence[SweepRun]) -> None:
    """Extending a sweep adds values to its axes: an experiment already in the folder keeps its axes, and its
    new runs are the same runs as the old ones in every field of what a run is but those axes."""
    for exp in spec.experiments:
        old = [r for r in previous if r.experiment == exp.name]
        new = [r for r in runs if r.experiment == exp.name]
        if not old or not new:
            continue
        if set(old[0].params) != set(exp.axes):
            raise GroklabError(f"{out}: experiment {exp.name!r} there varies {', '.join(old[0].params) or 'nothing'}, "
                               f"and {spec.where} varies {', '.join(exp.axes) or 'nothing'}: that is another sweep; "
                               "give it another --out")
        axes = set(exp.axes)
        changed = [d for d in differences(old[0].config, new[0].config) if d[0] not in axes]
        if changed:
            field, was, now = changed[0]
            raise GroklabError(f"{out}: the runs of experiment {exp.name!r} there have {field}={was!r}, and "
                               f"{spec.where} gives {field}={now!r}: that is another sweep; give it another --out")


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
        self.started_at = clock()
        # (time, run-steps) at the first steps heard of: the rate is taken from there, so that the setup before
        # any step (data, compilation, capture) does not make the first estimates thousands of hours
        self.rate_from: tuple[float, int] | None = None
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
        """The counts, the run-steps done, the time since the sweep started and, once steps have been heard of
        over some time, the time left at the rate since the first of them."""
        line = f"{self._counts()} · {self.steps:,}/{self.total:,} run-steps ({100 * self.steps / max(self.total, 1):.0f} %)"
        now = self.clock()
        line += f" · {_duration(now - self.started_at)} elapsed"
        # and over a window of a quarter of the time so far at least: reports that come in bursts (a Ray task
        # reports its steps when it ends) would otherwise give a rate from two reports a second apart
        window = now - self.rate_from[0] if self.rate_from is not None else 0.0
        if window > 0 and window >= (now - self.started_at) / 4 and self.steps > self.rate_from[1]:
            rate = (self.steps - self.rate_from[1]) / window
            line += f", about {_duration((self.total - self.steps) / rate)} left"
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
            if self.rate_from is None:
                self.rate_from = (now, self.steps)
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
    planned = spec.expand(overrides, max_runs=max_runs, echo=echo)
    require_data(spec, planned)  # before the folder is made
    with (contextlib.nullcontext(out) if isinstance(out, SweepFolder) else SweepFolder(out)) as folder:
        runs = prepare(folder, spec, overrides, argv, max_runs, echo, retry_failed, planned)
        log = folder.log()
        todo_status = [rundir.status(r.run_dir) for r in runs]
        todo = [r.config for r, st in zip(runs, todo_status) if st in ("partial", "pending")
                or (st == "failed" and retry_failed)]
        resuming = sum(st == "partial" or (st == "failed" and retry_failed) for st in todo_status)
        verbosity = sweep_verbosity(spec, overrides)
        if verbosity != "quiet":
            echo(f"sweep {spec.name}: {len(runs)} runs in {folder.path} · {_start_counts(todo_status, retry_failed)}"
                 f"{len(todo)} to train ({resuming} resuming) · backend {backend} · log {folder.path / LOG_FILE}")
        live = LiveLine(spec.name, runs, echo, show=verbosity != "quiet")
        if verbosity == "verbose":  # the groups' lines on the console too, not only in sweep.log
            log = _tee(log, live.write)
        interrupted: Interrupted | None = None
        said: list[dict] = []  # what each run's training ended with (a refused run: why, its folder untouched)
        try:
            if backend == "local":
                said = train_many(todo, argv=list(argv) if argv else None, log=log, max_group=max_group,
                                  progress=live, isolate=True, concurrent=concurrent_groups, retry_failed=retry_failed)
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
        if unfinished:  # not stopped, yet not all trained: never a success
            raise GroklabError(_unfinished_line(spec.name, runs, said, unfinished, folder.path / LOG_FILE))
        return tally


def _start_counts(statuses: Sequence[str], retry_failed: bool) -> str:
    """'3 already finished · ' and, for failed runs that stay as they are, '1 failed (kept: --retry_failed
    trains it again) · ': a failed run is not a finished one."""
    done = statuses.count("done")
    kept = 0 if retry_failed else statuses.count("failed")
    return f"{done} already finished · " + (f"{kept} failed (kept: --retry_failed trains them again) · " if kept else "")


def _unfinished_line(name: str, runs: Sequence[SweepRun], said: Sequence[dict], unfinished: int, log: Path) -> str:
    """Why runs of a sweep that was not interrupted are still unfinished: the first one's reason."""
    reasons = {str(Path(r.get("run_dir", ""))): r.get("reason") for r in said if r.get("reason")}
    left = [r for r in runs if rundir.status(r.run_dir) in ("partial", "pending")]
    shown = next((r for r in left if reasons.get(str(r.run_dir))), left[0])
    why = reasons.get(str(shown.run_dir))
    first = f"{shown.run_id}: {why}" if why else f"{shown.run_id} (see {log})"
    more = f" (and {unfinished - 1} more; see {log})" if unfinished > 1 else ""
    return f"sweep {name}: {unfinished} run(s) not trained: {first}{more}; fix that and run the same command again"
