"""ms per optimizer step: groklab's training step (Engine.step, exactly what `groklab train` runs) against a
plain eager nanoGPT-style loop (one nn.Module, torch.randint batches, loss.backward(), torch AdamW fused
where the device supports it), same model, same data, same batch, same machine, in one run.

Model: seed 000's grokking run, 2 layers, d 128, 4 heads, char-level division mod 97, loss after '='.

    python benchmarks/bench_step.py [--device cpu|cuda] [--batch 64 512] [--steps 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone

import torch

from groklab.config import DataConfig, ModelConfig, OptimConfig
from groklab.dataset import load_run_data
from groklab.engine import Engine, Hyper
from groklab.examples import stack
from groklab.model import GPT
from groklab.reference import ReferenceGPT, make_optimizer, reference_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()  # host sync: the timer must see finished work


def _window(fn, device: torch.device, steps: int) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1000 / steps


def _time_pair(ours, theirs, device: torch.device, steps: int, repeats: int) -> tuple[float, float]:
    """Median ms per step of each, after an untimed warm-up window each. Windows alternate (ours, theirs,
    ours, ...) so that drift in the machine's speed hits both alike."""
    _window(ours, device, steps)
    _window(theirs, device, steps)
    a, b = [], []
    for _ in range(repeats):
        a.append(_window(ours, device, steps))
        b.append(_window(theirs, device, steps))
    return statistics.median(a), statistics.median(b)


def bench(device: torch.device, batch: int, steps: int, repeats: int) -> dict:
    data = load_run_data(DataConfig(operators="/", prime=97, tokenizer="char"), ModelConfig())
    mcfg = ModelConfig(n_layer=2, n_head=4, n_embd=128, block_size=data.block_size)
    ocfg = OptimConfig(learning_rate=1e-3, weight_decay=1.0, beta1=0.9, beta2=0.98, grad_clip=0.0)
    train = data.splits["train"]
    V = data.tokenizer.vocab_size

    model = GPT(mcfg, V, 1, device)
    model.init_from_seeds([42])
    engine = Engine(model, Hyper.build([ocfg], [42], [batch], device), stack([train]))

    ref = ReferenceGPT(mcfg, V).to(device)
    fused = True  # torch has fused AdamW on CPU and CUDA: the strongest plain baseline
    opt = make_optimizer(ref, ocfg, fused=fused)
    X, Y = train.inputs, train.targets  # nanoGPT keeps data on the host and moves each batch

    def ref_step() -> None:
        ix = torch.randint(len(X), (batch,))
        x, y = X[ix], Y[ix]
        if device.type == "cuda":
            x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        reference_step(ref, opt, x, y)

    ours, theirs = _time_pair(engine.step, ref_step, device, steps, repeats)
    return {"batch": batch, "groklab_ms": round(ours, 3), "eager_ms": round(theirs, 3),
            "speedup": round(theirs / ours, 3), "fused_adamw_in_baseline": fused}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--steps", type=int, default=30, help="steps per timed window")
    ap.add_argument("--repeats", type=int, default=5, help="timed windows (median reported)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}"
    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": name,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "command": "python benchmarks/bench_step.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()
                                                                  if v is not None)}
    rows = [bench(device, b, args.steps, args.repeats) for b in args.batch]
    print(json.dumps(info))
    print("| batch | groklab ms/step | eager nanoGPT-style ms/step | speed-up |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['groklab_ms']:.2f} | {r['eager_ms']:.2f} | {r['speedup']:.2f}× |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**info, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
