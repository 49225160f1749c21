"""Many runs at once: model-steps per second of a group of E runs (one engine step trains all E) against
the eager nanoGPT-style loop running one model at a time, over E = 1, 2, 4, ..., with peak memory and
achieved TFLOP/s (model FLOPs: the full forward and backward, 3 x forward, as MFU counts them) against the
dense peak of the units that precision runs on (fp32: the CUDA cores; tf32 and bf16: the tensor cores).

    python benchmarks/bench_group.py --device cuda --batch 64 512 --max_E 1024 --json out.json
    python benchmarks/bench_group.py --device cuda --batch 64 --E 1024 --precision tf32 bf16 --compile
    python benchmarks/bench_group.py --device cpu --batch 64 --E 8          # the CPU target: E = 8, batch 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import eager_step_fn, groklab_engine, machine, seed000_data, window  # noqa: E402

# dense peaks from NVIDIA's datasheets (SXM parts; the H200's arithmetic is the H100 SXM's): fp32 on the CUDA
# cores, TF32 and bf16 on the tensor cores (without sparsity)
PEAK_TFLOPS = {"fp32": {"H100 80GB HBM3": 67.0, "H100 PCIe": 51.0, "H200": 67.0},
               "tf32": {"H100 80GB HBM3": 494.7, "H100 PCIe": 378.0, "H200": 494.7},
               "bf16": {"H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H200": 989.4}}


def model_flops_per_step(n_layer: int, C: int, V: int, T: int, batch: int) -> float:
    per_token_fwd = n_layer * (2 * 12 * C * C + 2 * 2 * T * C) + 2 * C * V
    return 3.0 * per_token_fwd * batch * T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--E", type=int, nargs="*", default=None, help="group sizes (default 1, 2, 4, ... max_E)")
    ap.add_argument("--max_E", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--tf32", action="store_true", help="the same as --precision tf32 (kept for old commands)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the loss and the optimizer (opt-in)")
    args = ap.parse_args()
    device = torch.device(args.device)
    precisions = ["tf32"] if args.tf32 else args.precision
    info = {**machine(device), "command": "python benchmarks/bench_group.py " + " ".join(sys.argv[1:])}
    data, mcfg = seed000_data()
    sizes = args.E or [2**i for i in range(11) if 2**i <= args.max_E]
    rows = []
    print(json.dumps(info))
    print("| batch | E | precision | ms/step | model-steps/s | × eager | peak memory GiB | TFLOP/s | % of its peak | "
          "path |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for batch, precision in [(b, p) for b in args.batch for p in precisions]:
        peak = next((v for k, v in PEAK_TFLOPS[precision].items() if k in info["device"]), None)
        eager = eager_step_fn(data, mcfg, batch, device)
        window(eager, device, args.steps)
        eager_ms = statistics.median(window(eager, device, args.steps) for _ in range(args.repeats))
        flops = model_flops_per_step(mcfg.n_layer, mcfg.n_embd, data.tokenizer.vocab_size, mcfg.block_size, batch)
        for E in sizes:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            try:
                engine = groklab_engine(data, mcfg, E, batch, device, compile=args.compile, precision=precision)
                window(engine.step, device, args.steps)
                ms = statistics.median(window(engine.step, device, args.steps) for _ in range(args.repeats))
            except torch.cuda.OutOfMemoryError:
                print(f"| {batch} | {E} | {precision} | out of memory | | | | | | |")
                break
            mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            tflops = E * flops / (ms / 1000) / 1e12
            row = {"batch": batch, "E": E, "precision": precision, "ran": engine.ran,
                   "setup_s": round(engine.setup_s, 2), "ms_per_step": round(ms, 3),
                   "model_steps_per_s": round(1000 * E / ms, 1),
                   "vs_eager": round((1000 * E / ms) / (1000 / eager_ms), 2), "eager_ms": round(eager_ms, 3),
                   "peak_mem_gib": round(mem, 3), "tflops": round(tflops, 2),
                   "pct_peak": None if peak is None else round(100 * tflops / peak, 1), "path": engine.path}
            rows.append(row)
            pct = "" if row["pct_peak"] is None else f"{row['pct_peak']}"
            print(f"| {batch} | {E} | {precision} ({row['ran']}) | {ms:.2f} | {row['model_steps_per_s']:,.0f} | {row['vs_eager']:.1f}× | "
                  f"{mem:.2f} | {tflops:.2f} | {pct} | {engine.path} |", flush=True)
            del engine
        print(f"(eager nanoGPT-style loop, batch {batch}: {eager_ms:.2f} ms/step = {1000 / eager_ms:,.0f} model-steps/s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**info, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
