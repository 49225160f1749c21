"""Per-run optimisation settings of a group as (E, 1) tensors, and the learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from groklab.config import OptimConfig


def scheduled_lr(lr: torch.Tensor, warmup: torch.Tensor, t: torch.Tensor,
                 decay_steps: torch.Tensor | None = None, min_lr: torch.Tensor | None = None) -> torch.Tensor:
    """The learning rate of update number t (counting from 1): a linear warm-up over `warmup` updates, then
    constant or, where decay_steps > 0, nanoGPT's cosine from lr down to min_lr at update decay_steps and
    min_lr after. Any broadcastable tensors: the host (float64 scalars) and the step ((E, 1) float32) share
    these ops, so both give what each would give alone. decay_steps None: no run decays (fewer kernels)."""
    warm = torch.clamp(t / warmup.clamp(min=1), max=1.0)
    if decay_steps is None:
        return lr * warm
    ratio = torch.clamp((t - warmup) / (decay_steps - warmup).clamp(min=1), min=0.0, max=1.0)
    cosine = min_lr + 0.5 * (1.0 + torch.cos(math.pi * ratio)) * (lr - min_lr)
    return torch.where(decay_steps > 0, cosine, lr) * warm


@dataclass
class Hyper:
    """Per-run optimisation settings as (E, 1) float tensors (seeds and batch sizes as (E,) int64)."""

    lr: torch.Tensor
    weight_decay: torch.Tensor
    beta1: torch.Tensor
    beta2: torch.Tensor
    eps: torch.Tensor
    grad_clip: torch.Tensor
    warmup: torch.Tensor
    decay_steps: torch.Tensor  # (E, 1): the cosine decay's last step, 0 = no decay
    min_lr: torch.Tensor
    seeds: torch.Tensor
    batch_sizes: torch.Tensor
    grokfast_alpha: torch.Tensor
    grokfast_lamb: torch.Tensor
    orthograd: torch.Tensor  # (E, 1): 1 where ⊥Grad is on
    l2: torch.Tensor  # (E, 1): 1 where weight decay is an L2 term in the gradient (Adam), 0 decoupled (AdamW)
    decay_all: torch.Tensor  # (E, 1): 1 where weight decay acts on every parameter, 0 on 2-D weights only
    grokfast: str = "none"  # one filter kind and window a group: their state buffers have one shape
    grokfast_window: int = 100

    @classmethod
    def build(
        cls, optims: Sequence[OptimConfig], seeds: Sequence[int], batch_sizes: Sequence[int], device: torch.device
    ) -> "Hyper":
        def col(values: Sequence[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=device)[:, None]

        return cls(
            lr=col([o.learning_rate for o in optims]),
            weight_decay=col([o.weight_decay for o in optims]),
            beta1=col([o.beta1 for o in optims]),
            beta2=col([o.beta2 for o in optims]),
            eps=col([o.eps for o in optims]),
            grad_clip=col([o.grad_clip for o in optims]),
            warmup=col([o.warmup_steps for o in optims]),
            decay_steps=col([o.lr_decay_steps for o in optims]),
            min_lr=col([o.final_lr for o in optims]),
            seeds=torch.tensor(seeds, dtype=torch.long, device=device),
            batch_sizes=torch.tensor(batch_sizes, dtype=torch.long, device=device),
            grokfast_alpha=col([o.grokfast_alpha for o in optims]),
            grokfast_lamb=col([o.grokfast_lamb for o in optims]),
            orthograd=col([float(o.orthograd) for o in optims]),
            l2=col([float(o.weight_decay_mode == "l2") for o in optims]),
            decay_all=col([float(o.decay_on == "all") for o in optims]),
            grokfast=_one({o.grokfast for o in optims}, "grokfast"),
            grokfast_window=_one({o.grokfast_window for o in optims}, "grokfast_window"),
        )


    def lr_at(self, t: torch.Tensor, lr_decay: bool) -> torch.Tensor:
        """Each run's rate (E, 1) for update number t, in t's dtype (float32 in the step, float64 on the host
        for the fused optimizer); `lr_decay`: some run decays (otherwise fewer ops)."""
        def cast(c: torch.Tensor) -> torch.Tensor:
            return c.to(t.dtype)  # no copy in the step, where the dtypes already agree

        decay = (cast(self.decay_steps), cast(self.min_lr)) if lr_decay else ()
        return scheduled_lr(cast(self.lr), cast(self.warmup), t, *decay)


def _one(values: set, name: str):
    if len(values) != 1:
        raise ValueError(f"runs of one group must share {name}, got {sorted(values)}")
    return values.pop()
