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


def _bias_in_gemm(x2: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """--bias gemm: the compiled GPU path's product with its bias as before 2026-12-02, baddbmm, which on a GPU
    first copies the broadcast bias into the output."""
    return torch.baddbmm(b[:, None, :], x2, w)


def _bias_rounded(x2: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """--bias rounded: the bias added after the product, the sum rounded to the product's dtype (round 19's)."""
    y = torch.bmm(x2, w)
    return (y + b[:, None, :]).to(y.dtype)


# --bias: what stands in for gpt._product_then_bias, the compiled GPU path's product with a bias ("after",
# round 18's experiment, is the model's own way since)
BIAS = {"model": gpt._product_then_bias, "after": gpt._product_then_bias, "gemm": _bias_in_gemm,
        "rounded": _bias_rounded}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--E", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rows", type=int, default=18)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--bias", default="model", choices=sorted(BIAS),
                    help="a linear layer's bias: as the model adds it (compiled on a GPU: after a plain bmm), in "
                         "the product (baddbmm, which on a GPU first copies the broadcast bias into the output), "
                         "after a plain bmm left in float32, or after it rounded to the product's dtype")
    ap.add_argument("--ops", action="store_true",
                    help="also the ATen operators that launch kernels, by input shape (which op launches what)")
    inductor_args(ap)
    args = ap.parse_args()
    apply_inductor(args.inductor)
    gpt._product_then_bias = BIAS[args.bias]
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
