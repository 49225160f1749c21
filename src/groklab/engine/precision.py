"""The arithmetic of a training step: what `--precision` asked for, what actually runs, and the one global
switch it needs.

- fp32: every op in float32 (the default; bit for bit what groklab computed before precision existed).
- tf32: float32 storage everywhere; the matrix products of the captured CUDA graph run on the tensor cores
  with TF32 inputs (10-bit mantissa, float32 accumulation). A CPU has no TF32: there it is exactly fp32.
- bf16: the matrix products autocast to bfloat16 (thread-local `torch.autocast`), with float32 master
  weights, gradients and Adam moments; the residual stream, LayerNorm, the attention softmax, the loss and
  the AdamW update stay float32. On a CPU only where it multiplies bf16 natively (see CPU_BF16).

Evaluation always runs in float32 whatever the step ran in: the metrics measure the float32 weights, in
one arithmetic for every precision, so the precisions are compared on equal terms.

Why TF32 only inside a captured graph: in torch, TF32 for matrix products is one process-wide flag
(`torch.backends.cuda.matmul.allow_tf32`), read when a cuBLAS call is launched, while groups train at once
in threads (groups.train_wave). A CUDA graph bakes the kernels chosen at capture into the graph, and the
captures of a wave run one after another before any group trains, so setting the flag for the duration
of one capture (and back after it) gives that graph TF32 and nothing else: no two groups can race on it.
An eager step on a GPU (`--no-cuda_graph`, or a capture that failed) would have to hold the flag while
other threads launch their own work, so it runs fp32 instead, and meta.json records that.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Iterator

import torch

from groklab.errors import GroklabError

# bf16 on a CPU runs where the CPU multiplies bf16 natively (oneDNN's AVX512-BF16 or AMX kernels): on this
# project's CPU (AMD EPYC, avx512_bf16) a bf16 step measured no slower than fp32 at batch 64 and faster at
# batch 512 (docs/benchmarks.md, "Precision"). Elsewhere bf16 would be emulated, so it is refused.
CPU_BF16 = "bf16 on a CPU needs bf16 instructions (AVX512-BF16 or AMX), which this CPU lacks; use --precision fp32"


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (torch's own probes; True if this torch has none)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    probes = [p for p in probes if p is not None]
    return not probes or any(p() for p in probes)


@dataclass(frozen=True)
class StepPrecision:
    """What a step was asked to compute in (`asked`), what it computes in (`ran`), and why they differ."""

    asked: str
    ran: str
    why: str | None = None

    @classmethod
    def plan(cls, asked: str, device: torch.device) -> "StepPrecision":
        """Before capture: TF32 is only ever used inside a captured graph (see the module docstring)."""
        if asked == "tf32":
            why = ("a CPU has no TF32 matrix units" if device.type != "cuda" else
                   "the step is not captured as a CUDA graph, and TF32 is a process-wide switch that groups "
                   "training at once would race on")
            return cls(asked, "fp32", why)
        return cls(asked, asked)

    def captured(self, device: torch.device) -> "StepPrecision":
        """After a successful CUDA graph capture: the graph holds what was asked."""
        return dataclasses.replace(self, ran=self.asked, why=None) if device.type == "cuda" else self

    @property
    def bf16(self) -> bool:
        return self.ran == "bf16"

    @contextlib.contextmanager
    def capturing(self, device: torch.device) -> Iterator[None]:
        """Around a CUDA graph's warm-up and capture: TF32 on exactly when asked (off for fp32 and bf16,
        whatever the process had set), then the process's own setting back."""
        if device.type != "cuda":
            yield
            return
        matmul = torch.backends.cuda.matmul
        before = matmul.allow_tf32
        matmul.allow_tf32 = self.asked == "tf32"
        try:
            yield
        finally:
            matmul.allow_tf32 = before

    def record(self) -> dict:
        """For meta.json."""
        return {"asked": self.asked, "ran": self.ran} | ({"why": self.why} if self.why else {})


def autocast(enabled: bool, device: torch.device):
    """bf16 autocast of the matrix products (a no-op context when not enabled). The weight-cast cache is off:
    a CUDA graph capture must record the casts, and the cache would hand the replay stale copies."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


def check_device(asked: str, device: torch.device) -> None:
    """Refuse what this device cannot run as asked (one line, exit 2)."""
    if asked == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise GroklabError(f"precision: {CPU_BF16}")
