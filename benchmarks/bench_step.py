"""ms per optimizer step of one run: groklab's training step (built and captured as `groklab train` does)
against a plain eager nanoGPT-style loop (one nn.Module, torch.randint batches, loss.backward(), fused
torch AdamW), same model, data and batch, same machine, in one run, windows alternating.

Model: seed 000's grokking run, 2 layers, d 128, 4 heads, char-level division mod 97, loss after '='.
Each precision (and, with --compile both, with and without torch.compile) is one row; "setup" is building
the engine and capturing (and compiling) its step, so a second run of the same command shows what a warm
compile cache leaves of the compilation.

    python benchmarks/bench_step.py [--device cpu|cuda] [--batch 64 512] [--precision fp32 tf32 bf16]
                                    [--compile off|on|both] [--steps 30] [--repeats 5] [--json F]
                                    [--threads N] [--cpu_clock]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import eager_step_fn, groklab_engine, machine, seed000_data, time_many  # noqa: E402


def bench(device: torch.device, batch: int, precisions: list[str], compiles: list[bool], steps: int,
          repeats: int, clock=time.perf_counter) -> list[dict]:
    data, mcfg = seed000_data()
    engines = {(p, c): groklab_engine(data, mcfg, 1, batch, device, compile=c, precision=p)
               for p in precisions for c in compiles}
    fns = {"eager": eager_step_fn(data, mcfg, batch, device)} | {key: e.step for key, e in engines.items()}
    ms = time_many(fns, device, steps, repeats, clock)
    return [{"batch": batch, "precision": p, "ran": e.ran, "compile": c, "groklab_path": e.path,
             "setup_s": round(e.setup_s, 2), "groklab_ms": round(ms[(p, c)], 3), "eager_ms": round(ms["eager"], 3),
             "speedup": round(ms["eager"] / ms[(p, c)], 3)} for (p, c), e in engines.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--compile", default="off", choices=["off", "on", "both"], help="torch.compile the step")
    ap.add_argument("--steps", type=int, default=30, help="steps per timed window")
    ap.add_argument("--repeats", type=int, default=5, help="timed windows each (median reported)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    ap.add_argument("--cpu_clock", action="store_true",
                    help="time this process's CPU time, not the wall clock (a CPU shared with other work)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = time.process_time if args.cpu_clock else time.perf_counter
    info = {**machine(device), "command": "python benchmarks/bench_step.py " + " ".join(sys.argv[1:])}
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    rows = [r for b in args.batch for r in bench(device, b, args.precision, compiles, args.steps, args.repeats,
                                                 clock)]
    print(json.dumps(info))
    print("| batch | precision (ran) | groklab step | setup s | groklab ms/step | eager nanoGPT-style ms/step | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['precision']} ({r['ran']}) | {r['groklab_path']} | {r['setup_s']:.1f} | "
              f"{r['groklab_ms']:.3f} | {r['eager_ms']:.3f} | {r['speedup']:.2f}× |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**info, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
