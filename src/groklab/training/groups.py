"""Many runs -> engine groups: runs that share a model shape, vocabulary size, step budget and evaluation
schedule train together; a group too large for the device's memory is split into chunks that train one
after another (or, on a GPU, several chunks at once, each in its own thread and CUDA stream). `ManyRuns`
plans and schedules; `train.train_runs` / `train.open_group` train each part."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch

from groklab.config import RunConfig
from groklab.data.dataset import RunData, load_run_data
from groklab.engine.device import resolve_device
from groklab.errors import GroklabError
from groklab.training.interrupts import Interrupted, StopRequest, signal_name, stop_on_signals
from groklab.lock import FolderInUse
from groklab.model.gpt import param_layout
from groklab.store.runfolder import RunFolder
from groklab.training.loop import OpenGroup, group_key, open_group, train_group, train_runs
from groklab.training.plan import finished_result, plan_run
from groklab.training.precompile import Precompile

MEMORY_SHARE = 0.6  # of the free GPU memory a chunk may plan to use: the estimate below is rough
MAX_AUTO_CONCURRENT = 8  # groups trained at once on one GPU by default: enough to fill an H100 with small groups
WORKER_SHARE = 0.25  # compile workers only where their groups' copies fit this share of the free GPU memory,
WORKER_CONTEXT = 1 << 30  # counting this much for each worker's own CUDA context


def bytes_per_run(cfg: RunConfig, block_size: int, vocab: int, n_examples: int) -> int:
    """A generous estimate of one run's device memory: weights, gradient, two Adam moments (and a Grokfast
    filter's state, and a weight-decay mask row for decay_on "all"); the activations of one step kept for
    backward (~80 floats a channel a token a layer, fp32); its data."""
    m = dataclasses.replace(cfg.model, block_size=block_size)
    n_params = sum(s.numel for s in param_layout(m, vocab))
    tokens = (cfg.train.batch_size or n_examples) * block_size  # batch size 0: full batch, the whole split
    activations = tokens * (m.n_layer * 80 * m.n_embd + 3 * vocab) * 4
    data = n_examples * block_size * 8 * 3
    o = cfg.optim
    filter_state = {"ema": 1, "ma": o.grokfast_window + 1}.get(o.grokfast, 0) * 4 * n_params
    decay_mask = 4 * n_params if o.decay_on == "all" else 0
    return 4 * 4 * n_params + activations + data + filter_state + decay_mask


def data_bytes_per_run(cfg: RunConfig, data: RunData) -> int:
    """bytes_per_run for a run of this data (its context, vocabulary and every split's examples)."""
    return bytes_per_run(cfg, data.block_size, data.tokenizer.vocab_size, sum(len(x) for x in data.splits.values()))


def chunk_size(configs: Sequence[RunConfig], datas: Sequence[RunData], device: torch.device,
               share: float = MEMORY_SHARE) -> int:
    """How many of these (same-shape) runs fit the device at once; all of them on the CPU."""
    if device.type != "cuda" or not configs:
        return max(len(configs), 1)
    per_run = max(data_bytes_per_run(c, d) for c, d in zip(configs, datas))
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(len(configs), int(free * share) // per_run))


def plan_groups(configs: Sequence[RunConfig], datas: Sequence[RunData] | None = None,
                starts: Sequence[int] | None = None) -> list[list[int]]:
    """Indices of `configs`, grouped by train.group_key, then by batch size (a group pads every run to its
    largest batch, which would make a batch-64 run cost as much as a batch-512 one) and by the step each
    starts from (`starts`, 0 for fresh runs). First-seen order."""
    if datas is None:
        datas = [load_run_data(c.data, c.model) for c in configs]
    groups: dict[tuple, list[int]] = {}
    for i, (cfg, data) in enumerate(zip(configs, datas)):
        start = starts[i] if starts is not None else 0
        groups.setdefault((group_key(cfg, data), cfg.train.batch_size, start), []).append(i)
    return list(groups.values())


def plan_chunks(configs: Sequence[RunConfig], datas: Sequence[RunData], max_group: int | None,
                share: float | None = MEMORY_SHARE, starts: Sequence[int] | None = None) -> list[list[int]]:
    """The groups of plan_groups, each split into chunks of at most `max_group` runs and, with a memory
    `share`, of as many as fit that share of this machine's free GPU memory (None: the caller cannot see the
    device that will train them, as a Ray driver cannot)."""
    chunks: list[list[int]] = []
    for group in plan_groups(configs, datas, starts):
        size = len(group)
        if share is not None:
            size = chunk_size([configs[i] for i in group], [datas[i] for i in group],
                              resolve_device(configs[group[0]].train.device), share=share)
        if max_group:
            size = min(size, max_group)
        chunks += [group[i : i + size] for i in range(0, len(group), size)]
    return chunks


class Progress(Protocol):
    """What a sweep watches: a chunk of runs starting, steps taken (summed over runs), a chunk's results."""

    def started(self, runs: Sequence[RunConfig]) -> None: ...
    def run_steps(self, n: int) -> None: ...
    def finished(self, runs: Sequence[RunConfig], results: Sequence[dict]) -> None: ...


def fail_run(cfg: RunConfig, reason: str) -> dict:
    """Record a run's failure in its folder (claimed for the moment it takes); a folder groklab may not write
    (not ours, in use) gets nothing, and the record says so."""
    folder = RunFolder(Path(cfg.train.out_dir))
    try:
        folder.claim()
    except GroklabError as exc:
        return {"status": "failed", "run_dir": str(folder.path), "step": None, "reason": f"{reason} ({exc})"}
    try:
        return folder.fail(reason)
    finally:
        folder.close()


class ManyRuns:
    """Train any number of runs: planned (what each folder holds), grouped by shape, chunked to fit memory,
    `concurrent` chunks at a time. Default concurrency: one at a time on a CPU; on a GPU as many as
    MAX_AUTO_CONCURRENT, since small groups leave it mostly idle. `isolate`: an error in one chunk marks its
    runs failed (failed.json) and the other chunks go on, as a sweep wants; otherwise it propagates. An
    interrupt is never a failure: every group stops at its step boundary, saves, and Interrupted is raised
    once all have. `train_part` / `open_part`: what trains a part (replaced by tests)."""

    def __init__(self, configs: Sequence[RunConfig], argv: list[str] | None = None,
                 log: Callable[[str], None] | None = None, max_group: int | None = None, progress: Progress | None = None,
                 isolate: bool = False, concurrent: int | None = None, retry_failed: bool = False,
                 train_part: Callable[..., list[dict]] = train_runs, open_part: Callable[..., OpenGroup] = open_group):
        self.configs, self.argv, self.max_group = list(configs), argv, max_group
        self.log = log  # None: nothing is printed (the Python API's default), by the groups either
        self.progress, self.isolate, self.concurrent, self.retry_failed = progress, isolate, concurrent, retry_failed
        self.train_part, self.open_part = train_part, open_part
        self.results: list[dict | None] = [None] * len(self.configs)
        self.datas: list[RunData | None] = [None] * len(self.configs)
        self.starts: list[int] = [0] * len(self.configs)
        self.stop = StopRequest()
        self.stopped: list[Interrupted] = []  # what each interrupted group said

    # ------------------------------------------------------------ planning
    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    def _failed(self, i: int, reason: str) -> None:
        if not self.isolate:
            raise GroklabError(reason)
        self.results[i] = fail_run(self.configs[i], reason)
        self._say(f"{self.configs[i].train.out_dir}: {reason}")

    def prepare(self) -> list[int]:
        """Load each run's data and decide what its folder needs; the indices left to train."""
        loaded: dict[tuple, RunData] = {}  # runs that differ only in seed or optimizer share one dataset
        for i, c in enumerate(self.configs):
            key = (c.data, c.model.block_size)
            try:
                if key not in loaded:
                    loaded[key] = load_run_data(c.data, c.model)
                self.datas[i] = loaded[key]
            except GroklabError as e:
                self._failed(i, f"data: {e}")
                continue
            try:
                p = plan_run(c, self.datas[i], self.retry_failed)
            except GroklabError as e:  # a folder that is not this run's: reported, never written
                if not self.isolate:
                    raise
                self.results[i] = {"status": "failed", "run_dir": c.train.out_dir, "step": None, "reason": str(e)}
                self._say(str(e))
                continue
            if p.kind in ("done", "failed"):
                self.results[i] = finished_result(c, p)
            else:  # a resume is said once its folder is claimed (open_group), not here: another process may hold it
                self.starts[i] = p.step
        return [i for i, r in enumerate(self.results) if r is None]

    def chunks(self, todo: list[int], workers: int) -> list[list[int]]:
        configs = [self.configs[i] for i in todo]
        datas = [self.datas[i] for i in todo]
        starts = [self.starts[i] for i in todo]
        return [[todo[j] for j in chunk] for chunk in plan_chunks(configs, datas, self.max_group,  # type: ignore[arg-type]
                                                                  MEMORY_SHARE / workers, starts)]

    # ------------------------------------------------------------ running
    def guarded(self, part: list[int], fn: Callable[[list[RunConfig]], object], pending: list[list[int]] | None,
                log: Callable[[str], None] | None):
        """fn(the part's configs) under the error policy: its value; or the part's failure records; or None
        when out of GPU memory split it in two (queued on `pending`; None: it may not be split)."""
        cfgs = [self.configs[i] for i in part]
        try:
            return fn(cfgs)
        except Interrupted as exc:
            self.stopped.append(exc)
            raise  # never a failure of the runs: nothing is marked
        except FolderInUse:
            raise
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            # the halves decide again under their folders' locks where they start (a run that checkpointed
            # before the error resumes), so a split is always safe; a single run, or one already training in
            # a wave (pending None), cannot be split
            if pending is None or len(part) == 1:
                error = GroklabError(
                    f"out of GPU memory with a group of {len(part)} run(s); run the command again with fewer runs "
                    "or groups at once (--max_group, --concurrent_groups): it resumes what was saved")
                if not self.isolate:
                    raise error from None
                return [fail_run(c, str(error)) for c in cfgs]
            half = len(part) // 2
            if log is not None:
                log(f"out of GPU memory with {len(part)} runs at once: splitting into {half} + {len(part) - half}")
            pending[:0] = [part[:half], part[half:]]
            return None
        except (GroklabError, RuntimeError, ValueError) as e:
            if not self.isolate:
                raise
            return [fail_run(c, f"{type(e).__name__}: {e}") for c in cfgs]

    def _started(self, part: list[int]) -> None:
        if self.progress is not None:
            self.progress.started([self.configs[i] for i in part])

    def _finished(self, part: list[int], out: list[dict] | None) -> None:
        if self.progress is not None:
            self.progress.finished([self.configs[i] for i in part], out or [])
        for i, result in zip(part, out or []):
            self.results[i] = result

    def _args(self, log: Callable[[str], None] | None, part: list[int]) -> dict:
        """What train_runs / open_group take besides the configs, for this part."""
        steps = (lambda n, k=len(part): self.progress.run_steps(n * k)) if self.progress else None
        return {"argv": self.argv, "log": log, "datas": [self.datas[i] for i in part], "on_steps": steps,
                "retry_failed": self.retry_failed}

    def train_chunk(self, chunk: list[int], log: Callable[[str], None] | None) -> None:
        pending = [chunk]
        while pending and not self.stop:
            part = pending.pop(0)
            self._started(part)
            try:
                out = self.guarded(part, lambda cfgs: self.train_part(cfgs, stop=self.stop, **self._args(log, part)),
                                   pending, log)
            except BaseException:
                self._finished(part, None)
                raise
            self._finished(part, out)

    def train_wave(self, wave: list[tuple[list[int], Callable[[str], None] | None]], device: torch.device) -> None:
        """Several groups on one GPU at once: each is opened (its step captured as a CUDA graph) here, one
        after another, before any trains; then each trains in its own thread and CUDA stream. A capture while
        other threads launch work fails inside torch (seen on an H100), so no capture overlaps training."""
        opened = self.open_wave(wave, device)
        torch.cuda.synchronize(device)  # what opening wrote on this stream is ready for the groups' own streams

        def run(part: list[int], group: OpenGroup) -> None:
            stream = torch.cuda.Stream(device)
            out = None
            try:
                with torch.cuda.stream(stream):
                    out = self.guarded(part, lambda cfgs: train_group(group, self.stop), None, group.log)
                    stream.synchronize()
            finally:
                group.close()
                self._finished(part, out)

        with ThreadPoolExecutor(max(1, len(opened))) as pool:
            for f in [pool.submit(run, part, group) for part, group in opened]:
                f.result()

    def open_wave(self, wave: list[tuple[list[int], Callable[[str], None] | None]],
                  device: torch.device) -> list[tuple[list[int], OpenGroup]]:
        """A wave's groups opened one after another (a part that runs out of memory split in two), while
        workers compile the others into the compile cache (precompile.py); on an error or a stop, the ones
        opened are closed again."""
        opened: list[tuple[list[int], OpenGroup]] = []
        precompile = None
        try:
            precompile = Precompile([[self.configs[i] for i in chunk] for chunk, _ in wave],
                                    room=self._room_for_workers([i for chunk, _ in wave for i in chunk], device))
            for k, (chunk, log) in enumerate(wave):
                precompile.wait(k, lambda: bool(self.stop))
                pending = [chunk]
                while pending and not self.stop:
                    part = pending.pop(0)
                    self._started(part)
                    got = self.guarded(part, lambda cfgs: self.open_part(cfgs, **self._args(log, part)), pending, log)
                    if isinstance(got, OpenGroup):
                        opened.append((part, got))
                        if got.engine.compiled:  # compiled, not fallen back: the cache holds it now
                            precompile.opened([self.configs[i] for i in part])
                    else:
                        self._finished(part, got)
        except BaseException:
            for _, group in opened:
                group.close()
            raise
        finally:
            if precompile is not None:
                precompile.close()
        return opened

    def _room_for_workers(self, runs: list[int], device: torch.device) -> bool:
        """Whether the GPU has memory for compile workers' copies of these runs' groups (each worker holds
        its group and a CUDA context of its own while this process opens the wave): a small share of it."""
        need = sum(data_bytes_per_run(self.configs[i], d) for i in runs if (d := self.datas[i]) is not None)
        free, _ = torch.cuda.mem_get_info(device)
        return need + WORKER_CONTEXT * MAX_AUTO_CONCURRENT <= WORKER_SHARE * free

    def run(self) -> list[dict]:
        with stop_on_signals(self.stop):
            todo = self.prepare()
            if todo:
                self._schedule(todo)
            if self.stop:
                left = sum(r is None for r in self.results)
                if len(self.stopped) == 1 and left == 1:
                    raise self.stopped[0]  # one run: its own words ("interrupted (SIGINT) at step N")
                raise Interrupted(self.stop.signum or 2, f"interrupted ({signal_name(self.stop.signum or 2)}): "
                                  f"{left} run(s) not finished; each goes on from its last checkpoint, if any, else anew")
        return [r for r in self.results if r is not None]

    def _schedule(self, todo: list[int]) -> None:
        device = resolve_device(self.configs[todo[0]].train.device)
        if self.concurrent is None and device.type == "cuda":
            chunks = self.chunks(todo, 1)
            workers = min(MAX_AUTO_CONCURRENT, len(chunks))
            if workers > 1:
                chunks = self.chunks(todo, workers)
        else:
            workers = max(1, self.concurrent or 1)
            chunks = self.chunks(todo, workers)
        workers = min(workers, len(chunks))
        if workers > 1 and device.type == "cuda" and any(self.configs[i].model.dropout > 0 for i in todo):
            # a captured graph reads the global generator's seed at replay; each group reseeds it when opened
            self._say("dropout > 0: groups train one after another on a GPU, so that each replays its own random stream")
            workers = 1

        def tagged(k: int) -> Callable[[str], None] | None:
            if self.log is None or workers <= 1:
                return self.log
            return lambda line, say=self.log: say(f"[group {k + 1}/{len(chunks)}] {line}")

        tagged_chunks = [(chunk, tagged(k)) for k, chunk in enumerate(chunks)]
        try:
            if workers <= 1:
                for chunk, log in tagged_chunks:
                    self.train_chunk(chunk, log)
            elif device.type != "cuda":
                with ThreadPoolExecutor(workers) as pool:
                    for f in [pool.submit(self.train_chunk, c, log) for c, log in tagged_chunks]:
                        f.result()  # re-raise what a chunk raised (only without `isolate`)
            else:
                for first in range(0, len(tagged_chunks), workers):
                    if self.stop:
                        break
                    self.train_wave(tagged_chunks[first:first + workers], device)
        except Interrupted:
            self.stop.request(self.stop.signum or 2)  # the others stop too; run() says it once


def train_many(configs: Sequence[RunConfig], argv: list[str] | None = None,
               log: Callable[[str], None] | None = None, max_group: int | None = None,
               progress: Progress | None = None, isolate: bool = False, concurrent: int | None = None,
               retry_failed: bool = False) -> list[dict]:
    """Train any number of runs (see ManyRuns); results in input order."""
    return ManyRuns(configs, argv, log, max_group, progress, isolate, concurrent, retry_failed).run()
