"""Many runs -> engine groups: runs that share a model shape, vocabulary size, step budget and evaluation
schedule train together; a group too large for the device's memory is split into chunks that train one
after another. Nothing here trains: `train_runs` does, for each chunk."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch

from groklab import checkpoint as ckpt
from groklab.config import RunConfig
from groklab.dataset import RunData, load_run_data
from groklab.errors import GroklabError
from groklab.model import param_layout
from groklab.train import OpenGroup, group_key, open_group, record_failure, resolve_device, train_group, train_runs

MEMORY_SHARE = 0.6  # of the free GPU memory a chunk may plan to use: the estimate below is rough


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


def chunk_size(configs: Sequence[RunConfig], datas: Sequence[RunData], device: torch.device,
               share: float = MEMORY_SHARE) -> int:
    """How many of these (same-shape) runs fit the device at once; all of them on the CPU."""
    if device.type != "cuda" or not configs:
        return max(len(configs), 1)
    per_run = max(bytes_per_run(c, d.block_size, d.tokenizer.vocab_size, sum(len(x) for x in d.splits.values()))
                  for c, d in zip(configs, datas))
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(len(configs), int(free * share) // per_run))


def plan_groups(configs: Sequence[RunConfig], datas: Sequence[RunData] | None = None) -> list[list[int]]:
    """Indices of `configs`, grouped by train.group_key, then by batch size (a group pads every run to its
    largest batch, which would make a batch-64 run cost as much as a batch-512 one) and, for runs that
    resume, by the step they resume from. First-seen order."""
    if datas is None:
        datas = [load_run_data(c.data, c.model) for c in configs]
    groups: dict[tuple, list[int]] = {}
    for i, (cfg, data) in enumerate(zip(configs, datas)):
        start = ckpt.saved_step(cfg.train.out_dir) if cfg.train.resume else None
        groups.setdefault((group_key(cfg, data), cfg.train.batch_size, start), []).append(i)
    return list(groups.values())


def plan_chunks(configs: Sequence[RunConfig], datas: Sequence[RunData], max_group: int | None,
                share: float | None = MEMORY_SHARE) -> list[list[int]]:
    """The groups of plan_groups, each split into chunks of at most `max_group` runs and, with a memory
    `share`, of as many as fit that share of this machine's free GPU memory (None: the caller cannot see the
    device that will train them, as a Ray driver cannot)."""
    chunks: list[list[int]] = []
    for group in plan_groups(configs, datas):
        size = len(group)
        if share is not None:
            size = chunk_size([configs[i] for i in group], [datas[i] for i in group],
                              resolve_device(configs[group[0]].train.device), share=share)
        if max_group:
            size = min(size, max_group)
        chunks += [group[i : i + size] for i in range(0, len(group), size)]
    return chunks


def _written(configs: Sequence[RunConfig]) -> bool:
    return any((Path(c.train.out_dir) / ckpt.CONFIG_FILE).exists() for c in configs)


class Progress(Protocol):
    """What a sweep watches: a chunk of runs starting, steps taken (summed over runs), a chunk's results."""

    def started(self, runs: Sequence[RunConfig]) -> None: ...
    def run_steps(self, n: int) -> None: ...
    def finished(self, runs: Sequence[RunConfig], results: Sequence[dict]) -> None: ...


MAX_AUTO_CONCURRENT = 8  # groups trained at once on one GPU by default: enough to fill an H100 with small groups


def train_many(configs: Sequence[RunConfig], argv: list[str] | None = None,
               log: Callable[[str], None] = print, max_group: int | None = None,
               progress: Progress | None = None, isolate: bool = False, concurrent: int | None = None) -> list[dict]:
    """Train any number of runs: grouped by shape, chunked to fit memory, `concurrent` chunks at a time, each
    in its own thread (and, on a GPU, its own CUDA stream). Default: one at a time on a CPU; on a GPU as many
    as MAX_AUTO_CONCURRENT, since small groups leave it mostly idle. Results in input order.
    `isolate`: an error in one chunk marks its runs failed (failed.json, with the reason) and the other
    chunks go on, as a sweep wants; otherwise it propagates."""
    datas: list[RunData | None] = []
    results: list[dict | None] = [None] * len(configs)
    for i, c in enumerate(configs):  # once a run: grouping, sizing and training
        try:
            datas.append(load_run_data(c.data, c.model))
        except GroklabError as e:
            if not isolate:
                raise
            datas.append(None)
            results[i] = record_failure(c.train.out_dir, f"data: {e}")
    ok = [i for i, d in enumerate(datas) if d is not None]
    if not ok:
        return [r for r in results if r is not None]
    device = resolve_device(configs[ok[0]].train.device)

    def plan(workers: int) -> list[list[int]]:
        return [[ok[i] for i in chunk] for chunk in plan_chunks([configs[i] for i in ok], [datas[i] for i in ok],
                                                                 max_group, share=MEMORY_SHARE / workers)]

    if concurrent is None and device.type == "cuda":
        chunks = plan(1)
        workers = min(MAX_AUTO_CONCURRENT, len(chunks))
        if workers > 1:
            chunks = plan(workers)
    else:
        workers = max(1, concurrent or 1)
        chunks = plan(workers)
    workers = min(workers, len(chunks))
    if workers > 1 and device.type == "cuda" and any(configs[i].model.dropout > 0 for i in ok):
        # a captured graph reads the global generator's seed at replay; each group reseeds it when opened
        log("dropout > 0: groups train one after another on a GPU, so that each replays its own random stream")
        workers = 1

    def guarded(part: list[int], fn: Callable[[list[RunConfig]], object], pending: list[list[int]] | None,
                chunk_log: Callable[[str], None]):
        """fn(the part's configs) under the sweep's error policy: its value; or the part's failure records;
        or None when out of GPU memory split it in two (queued on `pending`; None: it may not be split)."""
        cfgs = [configs[i] for i in part]
        try:
            return fn(cfgs)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if pending is None or len(part) == 1 or (_written(cfgs) and not all(c.train.resume for c in cfgs)):
                error = GroklabError(
                    f"out of GPU memory with a group of {len(part)} run(s) after its run directories were "
                    "written; rerun with --resume (it will split the group) or fewer runs or groups at once")
                if not isolate:
                    raise error from None
                return [record_failure(c.train.out_dir, str(error)) for c in cfgs]
            half = len(part) // 2
            chunk_log(f"out of GPU memory with {len(part)} runs at once: splitting into {half} + {len(part) - half}")
            pending[:0] = [part[:half], part[half:]]
            return None
        except (GroklabError, RuntimeError, ValueError) as e:
            if not isolate:
                raise
            return [record_failure(c.train.out_dir, f"{type(e).__name__}: {e}") for c in cfgs]

    def started(part: list[int]) -> None:
        if progress is not None:
            progress.started([configs[i] for i in part])

    def finished(part: list[int], out: list[dict] | None) -> None:
        if progress is not None:
            progress.finished([configs[i] for i in part], out or [])
        for i, result in zip(part, out or []):
            results[i] = result

    def steps_hook(part: list[int]):
        return (lambda n, k=len(part): progress.run_steps(n * k)) if progress else None

    def tagged(k: int) -> Callable[[str], None]:
        return log if workers <= 1 else (lambda line: log(f"[group {k + 1}/{len(chunks)}] {line}"))

    def group_args(k: int, part: list[int]) -> dict:
        """What train_runs / open_group take besides the configs, for this part of chunk k."""
        return {"argv": argv, "log": tagged(k), "datas": [datas[i] for i in part], "on_steps": steps_hook(part)}

    def train_chunk(k: int, chunk: list[int]) -> None:
        pending = [chunk]
        while pending:
            part = pending.pop(0)
            started(part)
            finished(part, guarded(part, lambda cfgs: train_runs(cfgs, **group_args(k, part)), pending, tagged(k)))

    def train_wave(wave: list[tuple[int, list[int]]]) -> None:
        """Several groups on one GPU at once: each is opened (its step captured as a CUDA graph) here, one
        after another, before any trains; then each trains in its own thread and CUDA stream. A capture while
        other threads launch work fails inside torch (seen on an H100), so no capture overlaps training."""
        opened: list[tuple[list[int], OpenGroup]] = []
        for k, chunk in wave:
            pending = [chunk]
            while pending:
                part = pending.pop(0)
                started(part)
                got = guarded(part, lambda cfgs: open_group(cfgs, **group_args(k, part)), pending, tagged(k))
                if isinstance(got, OpenGroup):
                    opened.append((part, got))
                else:
                    finished(part, got)
        torch.cuda.synchronize(device)  # what opening wrote on this stream is ready for the groups' own streams

        def run(part: list[int], group: OpenGroup) -> None:
            stream = torch.cuda.Stream(device)
            with torch.cuda.stream(stream):
                out = guarded(part, lambda cfgs: train_group(group), None, group.log)
                stream.synchronize()
            finished(part, out)

        with ThreadPoolExecutor(max(1, len(opened))) as pool:
            for f in [pool.submit(run, part, group) for part, group in opened]:
                f.result()

    if workers <= 1:
        for k, chunk in enumerate(chunks):
            train_chunk(k, chunk)
    elif device.type != "cuda":
        with ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(train_chunk, k, c) for k, c in enumerate(chunks)]:
                f.result()  # re-raise what a chunk raised (only without `isolate`)
    else:
        for first in range(0, len(chunks), workers):
            train_wave(list(enumerate(chunks))[first:first + workers])
    return [r for r in results if r is not None]
