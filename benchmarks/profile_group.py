"""Where a group step's GPU time goes: the PyTorch profiler over a few eager steps of E runs (the same
kernels the CUDA graph replays), top kernels by device time.

    python benchmarks/profile_group.py --E 256 --batch 64
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import OPTIM, seed000_data  # noqa: E402

from groklab.engine.step import Engine  # noqa: E402
from groklab.engine.hyper import Hyper
from groklab.data.examples import stack  # noqa: E402
from groklab.model.gpt import GPT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--E", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rows", type=int, default=18)
    args = ap.parse_args()
    device = torch.device("cuda")
    data, mcfg = seed000_data()
    model = GPT(mcfg, data.tokenizer.vocab_size, args.E, device)
    model.init_from_seeds(list(range(args.E)))
    engine = Engine(model, Hyper.build([OPTIM] * args.E, list(range(args.E)), [args.batch] * args.E, device),
                    stack([data.splits["train"]] * args.E), optimizer="tensor")
    for _ in range(3):
        engine.step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            engine.step()
        torch.cuda.synchronize()
    print(f"E={args.E} batch={args.batch}: {args.steps} steps")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=70))


if __name__ == "__main__":
    main()
