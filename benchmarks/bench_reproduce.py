"""Wall time of `groklab reproduce STUDY` against the seeds' way of running it (each run alone, an eager
nanoGPT-style loop, one after another).

The seeds' way is not run in full (seed 000's study is 36 runs × 100k steps): its per-step time is measured
for every distinct run shape of the study (depth, batch, data) and extrapolated to the study's step count.
Evaluation is left out of that estimate, which favours the baseline.

    python benchmarks/bench_reproduce.py                      # full study (on a GPU)
    python benchmarks/bench_reproduce.py --max_steps 3000     # a slice, to extrapolate from
    python benchmarks/bench_reproduce.py --groups [--compile] # each engine group alone: setup, ms a step
    python benchmarks/bench_reproduce.py --max_steps 10000 --precision tf32   # a slice in another precision

With a slice, the report splits the wall time into setup (data, groups built, compiled and captured),
training (the longest run's training time, from its metrics) and the rest (tables, report), and extrapolates
the training to the study's own step count: setup + training x (study steps / slice) + rest.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from common import machine, study_groups, window

from groklab.data.dataset import load_run_data
from groklab.model.reference import ReferenceGPT, make_optimizer, reference_step
from groklab.workflows import reproduce, study_spec
from groklab.training.loop import open_group, resolve_device


def eager_ms_per_step(cfg, device: torch.device, steps: int = 100) -> float:
    """One run of this config in a nanoGPT-style eager loop (host-side batches, fused AdamW)."""
    data = load_run_data(cfg.data, cfg.model)
    mcfg = cfg.model.__class__(**{**cfg.model.__dict__, "block_size": data.block_size})
    torch.manual_seed(cfg.train.seed)
    ref = ReferenceGPT(mcfg, data.tokenizer.vocab_size).to(device)
    opt = make_optimizer(ref, cfg.optim, fused=device.type == "cuda")
    X, Y = data.splits["train"].inputs, data.splits["train"].targets

    def step() -> None:
        ix = torch.randint(len(X), (cfg.train.batch_size,))
        x, y = X[ix], Y[ix]
        if device.type == "cuda":
            x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        reference_step(ref, opt, x, y)

    window(step, device, 20)  # warm-up
    return min(window(step, device, steps) for _ in range(3))


def phases(out: Path, total_s: float, train_end_s: float, slice_steps: int, study_steps: int) -> dict:
    """Setup, training and the rest of a reproduce run, and the whole study extrapolated from a slice."""
    import json as _json

    training = max(_json.loads(line)["elapsed_s"] for m in out.glob("runs/*/*/metrics.jsonl")
                   for line in m.read_text().splitlines()[-1:])
    setup = max(train_end_s - training, 0.0)
    rest = total_s - train_end_s
    return {"setup_s": round(setup, 1), "training_s": round(training, 1), "tables_report_s": round(rest, 1),
            "extrapolated_s": round(setup + training * study_steps / slice_steps + rest, 1)}


def group_step_times(runs, device: torch.device, compile: bool, steps: int = 200) -> list[dict]:
    """Each engine group of the study opened as the sweep opens it (data, model, capture: and with
    `compile`, torch.compile's first call), then its captured step timed alone. The sum of ms a step ×
    steps is the GPU work of the study with the groups in turn; running them at once overlaps it."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        configs, datas, groups = study_groups(runs, device, compile, tmp)
        for group in groups:
            c = configs[group[0]]
            t0 = time.perf_counter()
            g = open_group([configs[i] for i in group], datas=[datas[i] for i in group], log=lambda line: None)
            setup = time.perf_counter() - t0
            ms = min(window(g.engine.step, device, steps) for _ in range(3))
            rows.append({"runs": len(group), "op": c.data.operators, "p": c.data.prime, "layers": c.model.n_layer,
                         "batch": c.train.batch_size, "path": g.path, "setup_s": round(setup, 1),
                         "ms_per_step": round(ms, 3), "alone_s": round(ms * c.train.max_steps / 1000, 1)})
            print(json.dumps(rows[-1]), flush=True)
            del g
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="seed-000")
    ap.add_argument("--out", default="out/bench-reproduce")
    ap.add_argument("--max_steps", type=int, default=None, help="train a slice of every run (default: full)")
    ap.add_argument("--concurrent_groups", type=int, default=None)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--groups", action="store_true", help="time each engine group alone instead of the study")
    ap.add_argument("--compile", action="store_true", help="with --groups: torch.compile the step")
    ap.add_argument("--steps", type=int, default=200, help="with --groups: steps a timing window")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    args = ap.parse_args()
    device = resolve_device("auto")
    overrides = ({"max_steps": args.max_steps} if args.max_steps else {}) | {"precision": args.precision}
    study_steps = study_spec(args.study).expand()[0].config.train.max_steps
    runs = study_spec(args.study).expand(overrides)
    report: dict = {"machine": machine(device), "study": args.study, "runs": len(runs),
                    "max_steps": runs[0].config.train.max_steps, "precision": args.precision}
    if args.groups:
        rows = group_step_times(runs, device, args.compile, args.steps)
        report |= {"compile": args.compile, "groups": rows,
                   "groups_in_turn_s": round(sum(r["alone_s"] + r["setup_s"] for r in rows), 1)}
        print(json.dumps(report, indent=2))
        return

    if not args.no_baseline:
        shapes = Counter()
        example = {}
        for r in runs:
            c = r.config
            key = (c.data.operators, c.data.prime, c.model.n_layer, c.train.batch_size)
            shapes[key] += c.train.max_steps
            example[key] = c
        per_shape = {}
        total_s = 0.0
        for key, steps in shapes.items():
            ms = eager_ms_per_step(example[key], device)
            per_shape[f"op {key[0]} p {key[1]} layers {key[2]} batch {key[3]}"] = round(ms, 3)
            total_s += ms * steps / 1000
        report["eager_ms_per_step"] = per_shape
        report["eager_estimate_s"] = round(total_s, 1)

    t0 = time.perf_counter()
    marks: dict[str, float] = {}

    def echo(line: str) -> None:  # the sweep's last line marks the end of training
        if line.startswith(f"sweep {args.study}:") and " done, " in line:
            marks.setdefault("trained", time.perf_counter() - t0)

    counts = reproduce(args.study, args.out, overrides=overrides, concurrent_groups=args.concurrent_groups,
                       echo=echo)
    report["groklab_wall_s"] = round(time.perf_counter() - t0, 1)
    report["status"] = counts
    report |= phases(Path(args.out), report["groklab_wall_s"], marks.get("trained", report["groklab_wall_s"]),
                     report["max_steps"], study_steps)
    if "eager_estimate_s" in report:
        report["speedup"] = round(report["eager_estimate_s"] / report["groklab_wall_s"], 1)
    print(json.dumps(report, indent=2))
    Path(args.out, "bench.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
