"""ms per optimizer step of one run: groklab's training step (built and captured as `groklab train` does)
against a plain eager nanoGPT-style loop (one nn.Module, torch.randint batches, loss.backward(), fused
torch AdamW), same model, data and batch, same machine, in one run, windows alternating.

Model: seed 000's grokking run, 2 layers, d 128, 4 heads, char-level division mod 97, loss after '='.

    python benchmarks/bench_step.py [--device cpu|cuda] [--batch 64 512] [--steps 30] [--repeats 5] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import eager_step_fn, groklab_engine, machine, seed000_data, time_pair  # noqa: E402


def bench(device: torch.device, batch: int, steps: int, repeats: int) -> dict:
    data, mcfg = seed000_data()
    engine = groklab_engine(data, mcfg, 1, batch, device)
    ours, theirs = time_pair(engine.step, eager_step_fn(data, mcfg, batch, device), device, steps, repeats)
    return {"batch": batch, "groklab_path": engine.path, "groklab_ms": round(ours, 3), "eager_ms": round(theirs, 3),
            "speedup": round(theirs / ours, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--steps", type=int, default=30, help="steps per timed window")
    ap.add_argument("--repeats", type=int, default=5, help="timed windows each (median reported)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    device = torch.device(args.device)
    info = {**machine(device), "command": "python benchmarks/bench_step.py " + " ".join(sys.argv[1:])}
    rows = [bench(device, b, args.steps, args.repeats) for b in args.batch]
    print(json.dumps(info))
    print("| batch | groklab ms/step | groklab step | eager nanoGPT-style ms/step | speed-up |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['groklab_ms']:.2f} | {r['groklab_path']} | {r['eager_ms']:.2f} | "
              f"{r['speedup']:.2f}× |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**info, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
