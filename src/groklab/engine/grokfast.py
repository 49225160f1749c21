"""Grokfast (Lee et al. 2024, "Grokfast: Accelerated Grokking by Amplifying Slow Gradients"): a low-pass
filter over each run's gradient sequence, whose output is added back, amplified, before the optimizer step.

With g_t the gradient at step t (t = 0, 1, ...), the paper's two filters are

    EMA:  h_0 = g_0,  h_t = alpha * h_{t-1} + (1 - alpha) * g_t,            g_t <- g_t + lamb * h_t
    MA:   once w gradients have been seen,  m_t = (1/w) * sum_{k=0}^{w-1} g_{t-k},  g_t <- g_t + lamb * m_t
          (before that the gradient passes unchanged, as in the paper's warm-up)

Both act on whole (E, N) gradient buffers with per-run (E, 1) alpha and lamb, in place, with no host
round-trip (the step is a device tensor), so they run inside a captured CUDA graph. The filter's state is
part of each run's checkpoint, so a resumed run continues the same filtered sequence.
"""

from __future__ import annotations

import torch


class GradFilter:
    """No filter: the gradient passes unchanged."""

    kind = "none"

    def apply(self, grad: torch.Tensor, step: torch.Tensor) -> None:
        """Filter `grad` (E, N) in place; `step` = optimizer steps taken before this one (a 0-d tensor)."""

    def member_state(self, e: int) -> dict[str, torch.Tensor]:
        return {}

    def load_member_state(self, e: int, state: dict[str, torch.Tensor]) -> None:
        pass

    def buffers(self) -> list[torch.Tensor]:
        """The state tensors (a CUDA graph capture rolls them back after its warm-up steps)."""
        return []


class EMAFilter(GradFilter):
    kind = "ema"

    def __init__(self, alpha: torch.Tensor, lamb: torch.Tensor, shape: tuple[int, int], device: torch.device):
        self.alpha, self.lamb = alpha, lamb  # (E, 1)
        self.h = torch.zeros(shape, device=device)

    @torch.no_grad()
    def apply(self, grad: torch.Tensor, step: torch.Tensor) -> None:
        h = torch.where(step == 0, grad, self.h * self.alpha + grad * (1 - self.alpha))
        self.h.copy_(h)
        grad.add_(h * self.lamb)

    def member_state(self, e: int) -> dict[str, torch.Tensor]:
        return {"grokfast_ema": self.h[e].detach().cpu().clone()}

    @torch.no_grad()
    def load_member_state(self, e: int, state: dict[str, torch.Tensor]) -> None:
        self.h[e].copy_(_expect(state, "grokfast_ema", tuple(self.h.shape[1:])))

    def buffers(self) -> list[torch.Tensor]:
        return [self.h]


class MAFilter(GradFilter):
    kind = "ma"

    def __init__(self, window: int, lamb: torch.Tensor, shape: tuple[int, int], device: torch.device):
        self.window, self.lamb = window, lamb
        self.buf = torch.zeros((window, *shape), device=device)  # the last `window` gradients, a ring
        self.total = torch.zeros(shape, device=device)  # their running sum

    @torch.no_grad()
    def apply(self, grad: torch.Tensor, step: torch.Tensor) -> None:
        slot = (step % self.window).reshape(1)
        # a running sum: one add and one subtract a step instead of a window-long sum; its rounding drift
        # stays around float32 epsilon times the gradient scale (checked against the exact mean in the tests)
        self.total.add_(grad - self.buf.index_select(0, slot)[0])
        self.buf.index_copy_(0, slot, grad[None])
        grad.add_(torch.where(step + 1 >= self.window, self.total * (self.lamb / self.window), 0.0))

    def member_state(self, e: int) -> dict[str, torch.Tensor]:
        # the running sum too: re-adding the window on load would round differently, and resume is exact
        return {"grokfast_ma": self.buf[:, e].detach().cpu().clone(),
                "grokfast_ma_sum": self.total[e].detach().cpu().clone()}

    @torch.no_grad()
    def load_member_state(self, e: int, state: dict[str, torch.Tensor]) -> None:
        self.buf[:, e].copy_(_expect(state, "grokfast_ma", (self.window, self.buf.shape[2])))
        self.total[e].copy_(_expect(state, "grokfast_ma_sum", (self.buf.shape[2],)))

    def buffers(self) -> list[torch.Tensor]:
        return [self.buf, self.total]


def _expect(state: dict[str, torch.Tensor], name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if name not in state:
        raise ValueError(f"{name}: the checkpoint has no Grokfast state (was the run started without it?)")
    t = state[name]
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, found {tuple(t.shape)}")
    return t


def make_filter(kind: str, window: int, alpha: torch.Tensor, lamb: torch.Tensor, shape: tuple[int, int],
                device: torch.device) -> GradFilter:
    if kind == "ema":
        return EMAFilter(alpha, lamb, shape, device)
    if kind == "ma":
        return MAFilter(window, lamb, shape, device)
    return GradFilter()
