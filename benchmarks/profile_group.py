"""Where a group step's GPU time goes: the PyTorch profiler over a few steps of E runs, built as the trainer
builds them (`--compile`, `--precision`), kernels counted per step and the top kernels by device time.

    python benchmarks/profile_group.py --E 256 --batch 64 [--compile] [--precision tf32] [--ops] [--bias gemm]
        [--inductor max_autotune=True]

The profiled steps are eager (the kernels the captured CUDA graph replays, launched one by one); the graph's
own replay time is timed beside them.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import apply_inductor, groklab_engine, inductor_args, seed000_data, window  # noqa: E402
from groklab.model import gpt  # noqa: E402


def _linear_bias_in_gemm(x: torch.Tensor, p: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """gpt._linear as it was before 2026-12-02 (--bias gemm): the bias inside the product, baddbmm, which on a
    GPU first copies the broadcast bias into the output."""
    E, B, T, C = x.shape
    w, b = p[f"{prefix}.weight"], p.get(f"{prefix}.bias")
    x2 = x.reshape(E, B * T, C)
    y = torch.bmm(x2, w) if b is None else torch.baddbmm(b[:, None, :], x2, w)
    return y.view(E, B, T, w.shape[-1])


def _linear_bias_after(x: torch.Tensor, p: dict[str, torch.Tensor], prefix: str, rounded: bool = False):
    """The bias added after the product, its sum left in float32 (--bias after, round 18's experiment, the
    model's way since) or rounded to the product's dtype (--bias rounded, round 19's)."""
    E, B, T, C = x.shape
    w, b = p[f"{prefix}.weight"], p.get(f"{prefix}.bias")
    y = torch.bmm(x.reshape(E, B * T, C), w)
    if b is not None:
        y = (y + b[:, None, :]).to(y.dtype) if rounded else y + b[:, None, :]
    return y.view(E, B, T, w.shape[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--E", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rows", type=int, default=18)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--bias", default="model", choices=["model", "gemm", "after", "rounded"],
                    help="a linear layer's bias: as the model adds it (compiled on a GPU: after a plain bmm), in "
                         "the product (baddbmm, which on a GPU first copies the broadcast bias into the output), "
                         "after a plain bmm left in float32, or after it rounded to the product's dtype")
    ap.add_argument("--ops", action="store_true",
                    help="also the ATen operators that launch kernels, by input shape (which op launches what)")
    inductor_args(ap)
    args = ap.parse_args()
    apply_inductor(args.inductor)
    if args.bias != "model":
        gpt._linear = {"gemm": _linear_bias_in_gemm, "after": _linear_bias_after,
                       "rounded": lambda x, p, prefix: _linear_bias_after(x, p, prefix, rounded=True)}[args.bias]
    device = torch.device("cuda")
    data, mcfg = seed000_data()
    engine = groklab_engine(data, mcfg, args.E, args.batch, device, compile=args.compile,
                            precision=args.precision)
    graph_ms = window(engine.step, device, 50)
    eager = engine._eager_step
    with engine.precision.capturing(device):  # the precision the graph was captured in (tf32: its switch)
        for _ in range(3):
            eager()
        torch.cuda.synchronize()
        activities = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if args.ops else [])
        with profile(activities=activities, record_shapes=args.ops) as prof:
            for _ in range(args.steps):
                eager()
            torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_ms = sum(e.device_time for e in kernels) / 1000 / args.steps
    print(f"E={args.E} batch={args.batch} bias={args.bias} inductor={args.inductor} path={engine.path} ran={engine.ran}: graph replay {graph_ms:.3f} ms/step; "
          f"eager: {len(kernels) / args.steps:.0f} kernels a step, {busy_ms:.3f} ms of kernel time a step")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=70))
    if args.ops:
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cuda_time_total", row_limit=40,
                                                                  max_name_column_width=40, max_shapes_column_width=80))


if __name__ == "__main__":
    main()
