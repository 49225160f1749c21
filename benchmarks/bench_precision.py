"""Does a faster precision grok the same? Trains benchmarks/specs/precision-evidence.toml (every experiment once
per precision: (a) the main job and (b) the Grokfast paper's task over 20 seeds, (c) one character-level
add/sub cell of seed 000's study at 100k steps) and compares each precision with fp32: steps-to-grok
medians, ranges and a two-sided Mann-Whitney U test for (a) and (b), final accuracies for (c). Writes
OUT/precision.md (the tables) and OUT/precision.json.

    python benchmarks/bench_precision.py --out out/precision                      # the evidence (a GPU)
    python benchmarks/bench_precision.py --out /tmp/p --device cpu --precision fp32 tf32 --seeds 3 --max_steps 30
    python benchmarks/bench_precision.py --out /tmp/p --device cpu --precision fp32 bf16 --experiment main-job \
        --seeds 6 --max_steps 2500 --eval_interval 50 --eval_points_per_decade 8   # bf16 on a CPU, a first look

Evaluation is float32 for every precision (src/groklab/precision.py), so the precisions are compared by
what their float32 weights do. "Never" (no steps-to-grok within the budget) ranks above every step count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, summary  # noqa: E402

from groklab.presets import main_job_config  # noqa: E402
from groklab.workflows import study_spec  # noqa: E402
from groklab.store.sweepdir import collect  # noqa: E402
from groklab.experiments.sweep import run_sweep  # noqa: E402
from groklab.experiments.spec import load_spec  # noqa: E402
from groklab.training.loop import resolve_device  # noqa: E402

HERE = Path(__file__).parent
SPEC = HERE / "specs" / "precision-evidence.toml"
GROK_TASKS = {"main-job": "(a) main job: division mod 97, one token per number, 25 % train, 1 layer, batch 256",
              "grokfast-adamw": "(b) Grokfast paper's task, recipe (ii) AdamW, 2 layers, batch 512"}
CHAR_TASK = "char-add"
# what the spec's experiments change against the configurations they stand for (evaluation and files only)
SAME_BUT = {"main-job": {"eval_interval": 10, "early_stop_evals": 0, "checkpoint_interval": 10000, "plot": False},
            "grokfast-adamw": {"max_steps": 2000, "early_stop_evals": 0,
                               "checkpoint_interval": 2000},
            CHAR_TASK: {"checkpoint_interval": 100000, "plot": False}}


def mann_whitney(a: list, b: list) -> tuple[float, float]:
    """U statistic of a against b and its two-sided p value: normal approximation with the tie correction
    and a continuity correction (n = 20 a side is well inside where it holds). None ranks above all."""
    xs, ys = [math.inf if v is None else v for v in a], [math.inf if v is None else v for v in b]
    pooled = sorted(xs + ys)
    n1, n2, n = len(xs), len(ys), len(xs) + len(ys)
    rank, ties, i = {}, 0.0, 0
    while i < n:
        j = i
        while j < n and pooled[j] == pooled[i]:
            j += 1
        rank[pooled[i]] = (i + 1 + j) / 2  # the mean of ranks i+1..j
        ties += (j - i) ** 3 - (j - i)
        i = j
    u = sum(rank[v] for v in xs) - n1 * (n1 + 1) / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return u, 1.0
    z = max(abs(u - n1 * n2 / 2) - 0.5, 0.0) / math.sqrt(var)
    return u, math.erfc(z / math.sqrt(2))


def scipy_p(a: list, b: list) -> float | None:
    """scipy's own two-sided p (where scipy is installed: a cross-check of the few lines above)."""
    try:
        from scipy.stats import mannwhitneyu
    except ImportError:
        return None
    big = 10**9  # None: above every step count
    return float(mannwhitneyu([big if v is None else v for v in a], [big if v is None else v for v in b],
                              alternative="two-sided").pvalue)


def filtered_spec(precisions: list[str], seeds: int | None, only: list[str] | None = None):
    """The evidence spec with only these precisions (and the first `seeds` seeds of each experiment, and only
    the experiments named in `only`)."""
    spec = load_spec(SPEC)
    experiments = []
    for exp in spec.experiments:
        if only and exp.name not in only:
            continue
        grid = {**exp.grid, "precision": [p for p in exp.grid["precision"] if p in precisions]}
        if seeds:
            grid["seed"] = exp.grid["seed"][:seeds]
        experiments.append(dataclasses.replace(exp, grid=grid))
    note = (f"# run by benchmarks/bench_precision.py with precisions {precisions}, seeds {seeds or 'all'}, "
            f"experiments {only or 'all'}\n")
    return dataclasses.replace(spec, experiments=tuple(experiments), source=note + spec.source)


def check_faithful(spec) -> None:
    """Each experiment is the configuration it stands for, but for evaluation and output settings."""
    def strip(cfg, exp):
        return cfg.replace(out_dir="-", precision="fp32", **SAME_BUT.get(exp, {}))

    for run in spec.expand():
        seed, exp = run.config.train.seed, run.experiment
        if exp == "main-job":
            want = main_job_config().replace(seed=seed)
        elif exp == "grokfast-adamw":
            [want] = [r.config for r in load_spec(HERE / "specs" / "grokfast-paper-code-20.toml").expand()
                      if r.experiment == "adamw" and r.config.train.seed == seed]
        else:
            [want] = [r.config for r in study_spec("seed-000").expand() if r.experiment == "addsub"
                      and r.params == {"operators": "+", "prime": 97, "n_layer": 1, "seed": seed}]
        assert strip(run.config, exp) == strip(want, exp), f"{run.run_id} is not the configuration it stands for"


def compare(runs: list[dict]) -> dict:
    """Per grokking task and precision: steps to grok and to memorise, and each against fp32."""
    out: dict = {}
    for task in GROK_TASKS:
        by_prec: dict[str, list[dict]] = {}
        for r in runs:
            if r["experiment"] == task:
                by_prec.setdefault(r["precision"], []).append(r)
        base = [r["steps_to_grok"] for r in sorted(by_prec.get("fp32", []), key=lambda r: r["seed"])]
        for prec, rs in by_prec.items():
            rs = sorted(rs, key=lambda r: r["seed"])
            grok = [r["steps_to_grok"] for r in rs]
            row = {"seeds": [r["seed"] for r in rs], "steps_to_grok": grok,
                   "steps_to_memorise": [r["steps_to_memorise"] for r in rs], "grokked": sum(g is not None for g in grok),
                   "failed": sum(r["status"] != "done" for r in rs), "ran": sorted({r["ran"] for r in rs})}
            got = [g for g in grok if g is not None]
            row["median"] = statistics.median(got) if got else None
            if prec != "fp32" and base:
                row["u"], row["p"] = mann_whitney(grok, base)
                row["p_scipy"] = scipy_p(grok, base)
                fp32_got = [g for g in base if g is not None]
                row["median_ratio"] = (row["median"] / statistics.median(fp32_got)
                                       if got and fp32_got else None)
            out.setdefault(task, {})[prec] = row
    return out


def char_cells(runs: list[dict]) -> dict:
    cells: dict = {}
    for r in sorted((r for r in runs if r["experiment"] == CHAR_TASK), key=lambda r: r["seed"]):
        cells.setdefault(r["precision"], []).append(
            {"seed": r["seed"], "train_acc": r["final_train_acc"], "test_acc": r["final_test_acc"],
             "val_acc": r["final_val_acc"], "steps": r["last_step"], "ran": r["ran"]})
    return cells


def markdown(info: dict, grok: dict, cells: dict) -> str:
    lines = [f"`{info['command']}` — {info['date']}, {info['device']}, torch {info['torch']}", ""]
    lines += ["| task | precision (ran) | seeds grokked | steps to grok: median (range) | median vs fp32 | "
              "Mann-Whitney U, p vs fp32 | steps to memorise: median (range) |", "|---|---|---|---|---|---|---|"]
    for task, per in grok.items():
        for prec in ("fp32", "tf32", "bf16"):
            if prec not in per:
                continue
            r = per[prec]
            ratio = "" if r.get("median_ratio") is None else f"{r['median_ratio']:.2f}×"
            test = "" if "p" not in r else f"U = {r['u']:.0f}, p = {r['p']:.2f}" + (
                "" if r.get("p_scipy") is None else f" (scipy {r['p_scipy']:.2f})")
            lines.append(f"| {GROK_TASKS[task]} | {prec} ({'/'.join(r['ran'])}) | {r['grokked']}/{len(r['seeds'])} | "
                         f"{summary(r['steps_to_grok'])} | {ratio} | {test} | {summary(r['steps_to_memorise'])} |")
    if cells:
        seeds = [c["seed"] for c in next(iter(cells.values()))]
        lines += ["", "(c) seed 000's cell: add mod 97, character level, 1 layer, batch 64 — final train / test "
                      "accuracy (%) at the last step", "",
                  "| precision (ran) | steps | " + " | ".join(f"seed {s}" for s in seeds) + " | mean test |",
                  "|---|---|" + "---|" * len(seeds) + "---|"]
        for prec in ("fp32", "tf32", "bf16"):
            if prec not in cells:
                continue
            cs = cells[prec]
            tests = [c["test_acc"] for c in cs if c["test_acc"] is not None]
            mean = f"{100 * statistics.mean(tests):.2f}" if tests else "–"
            lines.append(f"| {prec} ({cs[0]['ran']}) | {cs[0]['steps']:,} | " + " | ".join(
                "–" if c["train_acc"] is None else f"{100 * c['train_acc']:.2f} / {100 * c['test_acc']:.2f}"
                for c in cs) + f" | {mean} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="sweep folder (runs, results) and the tables")
    ap.add_argument("--precision", nargs="+", default=["fp32", "tf32", "bf16"], choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--seeds", type=int, default=None, help="only the first N seeds of each experiment (a try)")
    ap.add_argument("--max_steps", type=int, default=None, help="shorten every run (a try; not the evidence)")
    ap.add_argument("--eval_interval", type=int, default=None, help="evaluate every N steps instead (coarser: a try)")
    ap.add_argument("--eval_points_per_decade", type=int, default=None, help="log-spaced evaluations instead")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--experiment", nargs="+", default=None, choices=["main-job", "grokfast-adamw", CHAR_TASK],
                    help="only these experiments of the spec")
    args = ap.parse_args()
    if "fp32" not in args.precision:
        ap.error("--precision must include fp32: every precision is compared with it")
    spec = filtered_spec(args.precision, args.seeds, args.experiment)
    check_faithful(spec)
    device = resolve_device(args.device)
    info = {**machine(device), "command": "python benchmarks/bench_precision.py " + " ".join(sys.argv[1:])}
    overrides = {"device": args.device} | {k: getattr(args, k) for k in ("max_steps", "eval_interval",
                                                                      "eval_points_per_decade") if getattr(args, k)}
    t0 = time.perf_counter()
    groups = sum(len(exp.grid["precision"]) for exp in spec.experiments)  # one engine group a task and precision
    run_sweep(spec, args.out, overrides, concurrent_groups=max(groups, 1) if device.type == "cuda" else None,
              echo=lambda line: print(line, flush=True))
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    runs, _ = collect(args.out)
    for r in runs:  # what each run's step actually computed in (tf32 is fp32 on a CPU)
        meta_path = Path(r["run_dir"]) / "meta.json"
        r["ran"] = json.loads(meta_path.read_text()).get("precision", {}).get("ran", "?") if meta_path.exists() else "?"
    grok, cells = compare(runs), char_cells(runs)
    text = markdown(info, grok, cells)
    Path(args.out, "precision.md").write_text(text)
    Path(args.out, "precision.json").write_text(json.dumps({**info, "grok": grok, "char": cells}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
