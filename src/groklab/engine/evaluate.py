"""Evaluation of every run of a group on its whole split: loss, exact match, per-token accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from groklab.data.examples import Stacked
from groklab.model.gpt import GPT


def member_losses(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (E, B, T, V), targets (E, B, T) -> (summed token loss (E,), loss tokens (E,))."""
    E, B, T, V = logits.shape
    tok = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1, reduction="none")
    return tok.view(E, B * T).sum(1), (targets >= 0).view(E, B * T).sum(1)


@torch.no_grad()
def evaluate(model: GPT, split: Stacked, max_tokens: int = 1 << 17) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean answer-token loss, exact-match accuracy (every answer token right) and per-token accuracy (the
    share of scored answer tokens right) of each run on its whole split -> (loss, accuracy, token accuracy),
    each (E,), on the device.

    Teacher-forced argmax over the answer equals greedy generation of it exactly when every answer token is
    right, so exact match is that of greedy decoding, in one forward pass; per-token accuracy counts each
    token on its own (what character-level results are often quoted as).
    """
    was_training = model.training
    model.training = False
    dev = model.device
    split = split.to(dev)
    E, n_max, T = split.inputs.shape
    chunk = max(1, max_tokens // max(E * T, 1))
    loss_sum = torch.zeros(E, device=dev)
    tokens = torch.zeros(E, device=dev)
    correct = torch.zeros(E, device=dev)
    right_tokens = torch.zeros(E, device=dev)
    for start in range(0, n_max, chunk):
        x, y = split.inputs[:, start : start + chunk], split.answers[:, start : start + chunk]
        pos = None if split.positions is None else split.positions[:, start : start + chunk]
        rows = torch.arange(start, start + x.shape[1], device=dev)
        real = rows[None, :] < split.counts[:, None]  # (E, b): padding rows of shorter splits do not count
        y = torch.where(real[..., None], y, -1)
        logits = model(x, pos)
        s, c = member_losses(logits, y)
        loss_sum += s
        tokens += c
        hit = logits.argmax(-1) == y  # (E, b, K); False where y is -1
        correct += (((hit | (y < 0)).all(-1)) & real).sum(1)
        right_tokens += hit.sum((1, 2))
    model.training = was_training
    return loss_sum / tokens.clamp(min=1), correct / split.counts.clamp(min=1), right_tokens / tokens.clamp(min=1)
