"""Many runs -> engine groups: runs that share a model shape, vocabulary size, step budget and evaluation
schedule train together; a group too large for the device's memory is split into chunks that train one
after another. Nothing here trains: `train_runs` does, for each chunk."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import torch

from groklab import checkpoint as ckpt
from groklab.config import RunConfig
from groklab.dataset import RunData, load_run_data
from groklab.errors import GroklabError
from groklab.model import param_layout
from groklab.train import group_key, resolve_device, train_runs

MEMORY_SHARE = 0.6  # of the free GPU memory a chunk may plan to use: the estimate below is rough


def bytes_per_run(cfg: RunConfig, block_size: int, vocab: int, n_examples: int) -> int:
    """A generous estimate of one run's device memory: weights, gradient and two Adam moments; the
    activations of one step kept for backward (~80 floats a channel a token a layer, fp32); its data."""
    m = dataclasses.replace(cfg.model, block_size=block_size)
    n_params = sum(s.numel for s in param_layout(m, vocab))
    tokens = cfg.train.batch_size * block_size
    activations = tokens * (m.n_layer * 80 * m.n_embd + 3 * vocab) * 4
    data = n_examples * block_size * 8 * 3
    return 4 * 4 * n_params + activations + data


def chunk_size(configs: Sequence[RunConfig], datas: Sequence[RunData], device: torch.device) -> int:
    """How many of these (same-shape) runs fit the device at once; all of them on the CPU."""
    if device.type != "cuda" or not configs:
        return max(len(configs), 1)
    per_run = max(bytes_per_run(c, d.block_size, d.tokenizer.vocab_size, sum(len(x) for x in d.splits.values()))
                  for c, d in zip(configs, datas))
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(len(configs), int(free * MEMORY_SHARE) // per_run))


def plan_groups(configs: Sequence[RunConfig], datas: Sequence[RunData] | None = None) -> list[list[int]]:
    """Indices of `configs`, grouped by train.group_key, in first-seen order."""
    if datas is None:
        datas = [load_run_data(c.data, c.model) for c in configs]
    groups: dict[tuple, list[int]] = {}
    for i, (cfg, data) in enumerate(zip(configs, datas)):
        groups.setdefault(group_key(cfg, data), []).append(i)
    return list(groups.values())


def _written(configs: Sequence[RunConfig]) -> bool:
    return any((Path(c.train.out_dir) / ckpt.CONFIG_FILE).exists() for c in configs)


def train_many(configs: Sequence[RunConfig], argv: list[str] | None = None,
               log: Callable[[str], None] = print, max_group: int | None = None) -> list[dict]:
    """Train any number of runs: grouped by shape, chunked to fit memory. Summaries in the input order."""
    datas = [load_run_data(c.data, c.model) for c in configs]  # once a run: grouping, sizing and training
    summaries: list[dict | None] = [None] * len(configs)
    for group in plan_groups(configs, datas):
        device = resolve_device(configs[group[0]].train.device)
        size = chunk_size([configs[i] for i in group], [datas[i] for i in group], device)
        if max_group:
            size = min(size, max_group)
        pending = [group[i : i + size] for i in range(0, len(group), size)]
        while pending:
            chunk = pending.pop(0)
            chunk_cfgs = [configs[i] for i in chunk]
            try:
                results = train_runs(chunk_cfgs, argv=argv, log=log, datas=[datas[i] for i in chunk])
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                resumable = all(c.train.resume for c in chunk_cfgs)
                if len(chunk) == 1 or (_written(chunk_cfgs) and not resumable):
                    raise GroklabError(
                        f"out of GPU memory with a group of {len(chunk)} run(s) after its run directories were "
                        "written; rerun with --resume (it will split the group) or fewer runs at once"
                    ) from None
                half = len(chunk) // 2
                log(f"out of GPU memory with {len(chunk)} runs at once: splitting into {half} + {len(chunk) - half}")
                pending[:0] = [chunk[:half], chunk[half:]]
                continue
            for i, summary in zip(chunk, results):
                summaries[i] = summary
    return [s for s in summaries if s is not None]
