"""⊥Grad (Prieto et al. 2025, "Grokking at the Edge of Numerical Stability"): before the optimizer step,
remove from each parameter tensor's gradient its component along that tensor's current weights,

    g_perp = g - (<w, g> / <w, w>) w

Past memorisation, the gradient aligns with the "naive loss minimisation" direction: scaling the weights
(and so the logits) up along themselves lowers the loss without changing any prediction, delays
generalisation and ends in softmax collapse. With that direction projected out, the paper reports grokking
without weight decay and much sooner. Chosen here as groklab's second accelerator because it acts on the
mechanism behind the delay rather than on its symptom, costs two reductions per tensor, needs no state
(nothing to checkpoint) and fits the engine's per-run rows and CUDA graph; Muon would need Newton-Schulz
iterations per matrix per run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from groklab.model.gpt import ParamSpec


@torch.no_grad()
def project_out_weights(grad: torch.Tensor, flat: torch.Tensor, specs: Sequence[ParamSpec],
                        on: torch.Tensor) -> None:
    """In place on the (E, N) gradient: for each parameter tensor of each run with on[e] = 1, subtract the
    projection of its gradient on its weights. `on` (E, 1) of 0/1; runs with 0 are left exactly as they were."""
    for s in specs:
        g = grad[:, s.offset : s.offset + s.numel]
        w = flat[:, s.offset : s.offset + s.numel]
        coef = (g * w).sum(1, keepdim=True) / (w * w).sum(1, keepdim=True).clamp(min=1e-30)
        g.sub_(on * coef * w)
