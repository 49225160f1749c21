"""The batch of each step, drawn on the device from a counter-based hash of (run seed, step, slot): no
generator state to save, the data position after a restart is a function of the step, and no host round-trip
is needed to make a batch. A run with batch size 0 trains full batch (Nanda et al. 2023): every step takes its
whole train split, in order; rows past its own split (padding) are masked out.
"""

from __future__ import annotations

import torch

from groklab.data.examples import Stacked

_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (lowbias32-style) in int64 arithmetic that never overflows: inputs stay
    below 2**32 and the multipliers below 2**31."""
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & _MASK32
    x = ((x ^ (x >> 15)) * 0x46B5B2A5) & _MASK32  # odd constant below 2**31
    return x ^ (x >> 16)


def batch_indices(seeds: torch.Tensor, step: torch.Tensor, batch: int, counts: torch.Tensor) -> torch.Tensor:
    """Row indices (E, batch) into each run's train split, from (seed, step, slot) alone."""
    slots = torch.arange(batch, device=seeds.device)
    h = _mix32(seeds[:, None] & _MASK32)
    h = _mix32(h ^ (step & _MASK32))
    h = _mix32(h ^ slots[None, :])
    return h % counts[:, None]


def draw_batch(seeds: torch.Tensor, step: torch.Tensor, batch: int, train: Stacked, slot_valid: torch.Tensor,
               full: torch.Tensor | None = None, rows: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Inputs (E, B, T), loss positions (E, B, K) or None, and answers (E, B, K) of the batch at `step`;
    slots past a run's own batch size answer -1 (no loss). `full` (E,): the runs that take their whole split
    in order (batch size 0), slot i being row `rows[0, i]`."""
    idx = batch_indices(seeds, step, batch, train.counts)  # (E, B)
    if full is not None:
        idx = torch.where(full[:, None], rows, idx)
    idx = idx[..., None]  # (E, B, 1)
    x = torch.gather(train.inputs, 1, idx.expand(-1, -1, train.inputs.shape[-1]))
    rows = idx.expand(-1, -1, train.answers.shape[-1])
    pos = None if train.positions is None else torch.gather(train.positions, 1, rows)
    y = torch.gather(train.answers, 1, rows)
    return x, pos, torch.where(slot_valid[..., None], y, -1)
