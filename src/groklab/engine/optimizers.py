"""Two AdamW paths behind one interface (`RowOptimizer`), computing the same update (a test holds them
together) on the group's (E, N) buffers, each run with its own hyperparameters:

- `FusedAdamW`: torch.optim.AdamW(fused=True) with one parameter group per run and region (decayed prefix,
  rest). One kernel per group: the fastest for a few runs, and on the CPU the same kernel as a plain nanoGPT
  loop. Not capturable (its rates are set on the host each step).
- `TensorAdamW`: the update as ~15 ops over the whole buffers with (E, 1) hyperparameters: a constant number of
  kernels whatever E, for large groups on a GPU, and capturable in a CUDA graph.
"""

from __future__ import annotations

from typing import Protocol

import torch

from groklab.engine.hyper import Hyper
from groklab.model.gpt import GPT

MOMENTS = ("exp_avg", "exp_avg_sq")


def _clip_coef(grad: torch.Tensor, max_norm: torch.Tensor) -> torch.Tensor:
    """Per-run clipping factor (E, 1), as torch.nn.utils.clip_grad_norm_ over that run's parameters (0 = off)."""
    norm = torch.linalg.vector_norm(grad, dim=1, keepdim=True)
    return torch.where(max_norm > 0, (max_norm / (norm + 1e-6)).clamp(max=1.0), 1.0)


def _adamw_rows(flat: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                step: torch.Tensor, h: "Hyper", decay_mask: torch.Tensor, clip: bool, l2: bool = False,
                lr_decay: bool = False) -> None:
    """AdamW on (E, N) buffers with (E, 1) hyperparameters, `step` already counting this update; the same
    order of operations as torch.optim.AdamW's single-tensor path (and torch.optim.Adam's, for the runs
    whose decay is L2: `l2` says some are). `lr_decay`: some run decays its learning rate. Computed out of
    place, written back at the end: one shape of code that eager mode and torch.compile both take."""
    g = grad * _clip_coef(grad, h.grad_clip) if clip else grad
    t = step.to(flat.dtype)
    lr = h.lr_at(t, lr_decay)
    decay = h.weight_decay * decay_mask
    if l2:
        g = g + (h.l2 * decay) * flat
        decay = decay * (1 - h.l2)
    new_flat = flat * (1 - lr * decay)
    m = torch.lerp(exp_avg, g, 1 - h.beta1)
    v = exp_avg_sq * h.beta2 + (1 - h.beta2) * g * g
    bias_correction1 = 1 - h.beta1**t
    bias_correction2_sqrt = (1 - h.beta2**t).sqrt()
    denom = v.sqrt() / bias_correction2_sqrt + h.eps
    flat.copy_(new_flat - (lr / bias_correction1) * m / denom)
    exp_avg.copy_(m)
    exp_avg_sq.copy_(v)


class RowOptimizer(Protocol):
    """Updates model.flat from model.grad for every run at once."""

    path: str
    capturable: bool

    def step(self, step_count: torch.Tensor, steps_taken: int) -> None:
        """Apply update number `steps_taken` (`step_count`: the same count on the device)."""

    def buffers(self) -> list[torch.Tensor]:
        """Every tensor of optimizer state a step changes: what a rolled-back step (the trial compile, a CUDA
        graph's warm-up) saves and restores."""

    def moment(self, e: int, name: str) -> torch.Tensor:
        """Run e's Adam moment `name` (N,)."""

    def load(self, e: int, name: str, values: torch.Tensor, step: int) -> None:
        """Set run e's moment `name`, taken after `step` updates."""


class TensorAdamW:
    """AdamW over whole (E, N) buffers; `compile`: the update fused by torch.compile."""

    path = "tensor"
    capturable = True

    def __init__(self, model: GPT, hyper: Hyper, decay_mask: torch.Tensor, compile: bool = False):
        self.model, self.hyper, self.decay_mask = model, hyper, decay_mask
        self.exp_avg = torch.zeros_like(model.flat)
        self.exp_avg_sq = torch.zeros_like(model.flat)
        self.clip = bool((hyper.grad_clip > 0).any())
        self.l2 = bool((hyper.l2 > 0).any())
        self.lr_decay = bool((hyper.decay_steps > 0).any())
        self._update = torch.compile(_adamw_rows, dynamic=False) if compile else _adamw_rows

    def step(self, step_count: torch.Tensor, steps_taken: int) -> None:
        self._update(self.model.flat, self.model.grad, self.exp_avg, self.exp_avg_sq, step_count, self.hyper,
                     self.decay_mask, self.clip, self.l2, self.lr_decay)

    def buffers(self) -> list[torch.Tensor]:
        return [self.exp_avg, self.exp_avg_sq]

    def moment(self, e: int, name: str) -> torch.Tensor:
        return getattr(self, name)[e]

    def load(self, e: int, name: str, values: torch.Tensor, step: int) -> None:
        getattr(self, name)[e].copy_(values)


class FusedAdamW:
    """torch's fused AdamW (Adam for runs whose decay is L2), one parameter group per run and region."""

    path = "fused"
    capturable = False

    def __init__(self, model: GPT, hyper: Hyper):
        self.model, self.hyper = model, hyper
        self.clip = bool((hyper.grad_clip > 0).any())
        self.lr_decay = bool((hyper.decay_steps > 0).any())
        m, h, D = model, hyper, model.n_decay
        groups: dict[bool, list[dict]] = {False: [], True: []}  # decoupled (AdamW) runs, L2 (Adam) runs
        regions = []
        for e in range(m.n_members):
            for lo, hi, decays in ((0, D, True), (D, m.numel, False)):
                if hi <= lo:
                    continue
                p = m.flat[e, lo:hi].detach()  # a contiguous leaf view of run e's region
                p.grad = m.grad[e, lo:hi]
                l2 = bool(h.l2[e] > 0)
                decays = decays or bool(h.decay_all[e] > 0)
                groups[l2].append({"params": [p], "lr": float(h.lr[e]), "betas": (float(h.beta1[e]), float(h.beta2[e])),
                                   "eps": float(h.eps[e]), "weight_decay": float(h.weight_decay[e]) if decays else 0.0,
                                   "run": e})
                regions.append((e, lo, hi, p, l2))
        opts = {l2: (torch.optim.Adam if l2 else torch.optim.AdamW)(g, fused=True) for l2, g in groups.items() if g}
        self._opts = list(opts.values())
        self._slices = [(e, lo, hi, p, opts[l2]) for e, lo, hi, p, l2 in regions]
        # the state torch would create at the first step, created now (the same tensors: a float32 step count on
        # the parameter's device for the fused kernel, zero moments), so that buffers() can hand it to a
        # rolled-back step and a checkpoint of a run that has not stepped reads real zeros
        for _, _, _, p, opt in self._slices:
            opt.state[p].update(step=torch.zeros((), dtype=torch.float32, device=p.device),
                                exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))

    def step(self, step_count: torch.Tensor, steps_taken: int) -> None:
        grad, h = self.model.grad, self.hyper
        if self.clip:
            grad.mul_(_clip_coef(grad, h.grad_clip))
        # the schedule on the host in float64, as Python floats would compute it
        rates = h.lr_at(torch.tensor(float(steps_taken), dtype=torch.float64), self.lr_decay).view(-1).tolist()
        for opt in self._opts:
            for g in opt.param_groups:
                g["lr"] = rates[g["run"]]
            opt.step()

    def buffers(self) -> list[torch.Tensor]:
        return [t for _, _, _, p, opt in self._slices for t in opt.state[p].values()]

    def moment(self, e: int, name: str) -> torch.Tensor:
        return torch.cat([opt.state[p][name] for run, _, _, p, opt in self._slices if run == e])

    def load(self, e: int, name: str, values: torch.Tensor, step: int) -> None:
        for run, lo, hi, p, opt in self._slices:
            if run == e:
                st = opt.state[p]
                st["step"].fill_(float(step))
                st[name].copy_(values[lo:hi])


def make_optimizer(path: str, model: GPT, hyper: Hyper, decay_mask: torch.Tensor, compile: bool) -> RowOptimizer:
    """'fused' or 'tensor' ('auto': fused on a CPU, tensor on a GPU, where the step is captured as a graph)."""
    if path == "auto":
        path = "fused" if model.device.type == "cpu" else "tensor"
    if path == "fused":
        return FusedAdamW(model, hyper)
    if path == "tensor":
        return TensorAdamW(model, hyper, decay_mask, compile)
    raise ValueError(f"optimizer path must be 'auto', 'fused' or 'tensor', got {path!r}")
