"""Steps to 95 % and 99 % validation accuracy per recipe, over seeds: the Grokfast paper's setting
(benchmarks/specs/grokfast.toml, or another spec with one experiment per recipe).

    python benchmarks/bench_grokfast.py --out out/grokfast [--spec SPEC] [--max_steps N]

"Reached" is the first evaluation at or above the threshold (as the Grokfast paper counts); "stays" is the
first from which it never falls below again (groklab's steps_to_grok). Evaluations are log-spaced (40 a
decade by default: a step count is resolved to about 6 %).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import machine

from groklab.metrics import steps_to_stay_above
from groklab.results import collect
from groklab.sweep import run_sweep
from groklab.sweep_spec import load_spec
from groklab.train import resolve_device

HERE = Path(__file__).parent


def first_reach(rows: list[dict], threshold: float) -> int | None:
    return next((r["step"] for r in rows if r["val_acc"] >= threshold), None)


def summary(values: list[int | None]) -> str:
    got = sorted(v for v in values if v is not None)
    if not got:
        return "never"
    text = f"{statistics.median(got):,.0f} ({got[0]:,}–{got[-1]:,})"
    return text if len(got) == len(values) else f"{text}, {len(values) - len(got)} never"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(HERE / "specs" / "grokfast.toml"))
    ap.add_argument("--out", default="out/grokfast")
    ap.add_argument("--max_steps", type=int, default=None)
    ap.add_argument("--eval_points_per_decade", type=int, default=None,
                    help="fewer evaluations for a CPU run (each evaluates the full splits of every run)")
    ap.add_argument("--concurrent_groups", type=int, default=None, help="recipes trained at once (GPU)")
    args = ap.parse_args()
    spec = load_spec(args.spec)
    overrides = {k: v for k, v in (("max_steps", args.max_steps),
                                   ("eval_points_per_decade", args.eval_points_per_decade)) if v}
    t0 = time.perf_counter()
    run_sweep(spec, args.out, overrides, concurrent_groups=args.concurrent_groups, echo=print)
    wall = time.perf_counter() - t0
    runs, evals = collect(args.out)
    table = []
    for exp in spec.experiments:
        ids = [r["run_id"] for r in runs if r["experiment"] == exp.name]
        per = {i: [e for e in evals if e["run_id"] == i] for i in ids}
        row = {"recipe": exp.description or exp.name, "runs": len(ids)}
        for th in (0.95, 0.99):
            row[f"reach_{th}"] = summary([first_reach(per[i], th) for i in ids])
            row[f"stay_{th}"] = summary([steps_to_stay_above([e["step"] for e in per[i]],
                                                             [e["val_acc"] for e in per[i]], th) for i in ids])
        table.append(row)
    print("\n| recipe | seeds | steps to 95 % val (median, range) | to 99 % | stays ≥ 99 % from |")
    print("|---|---|---|---|---|")
    for r in table:
        print(f"| {r['recipe']} | {r['runs']} | {r['reach_0.95']} | {r['reach_0.99']} | {r['stay_0.99']} |")
    report = {"machine": machine(resolve_device("auto")), "wall_s": round(wall, 1), "table": table}
    Path(args.out, "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwall time {wall:.0f} s on {report['machine']['device']}")


if __name__ == "__main__":
    main()
