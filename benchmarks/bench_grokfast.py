"""Steps to 95 % and 99 % validation accuracy per recipe, over seeds: the Grokfast paper's setting
(benchmarks/specs/grokfast.toml, or another spec with one experiment per recipe).

    python benchmarks/bench_grokfast.py --out out/grokfast [--spec SPEC] [--max_steps N]
    python benchmarks/bench_grokfast.py --out out/grokfast --search benchmarks/specs/grokfast-search.toml

"Reached" is the first evaluation at or above the threshold (as the Grokfast paper counts); "stays" is the
first from which it never falls below again (groklab's steps_to_grok). Evaluations are log-spaced (40 a
decade by default: a step count is resolved to about 6 %).

--search: first the search spec (its own seeds), ranked by seeds that reach 95 % and then their median steps
to it; the winner is then trained on the main spec's seeds and base and reported as the last row, "(v)".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from common import machine, summary

from groklab.metrics import steps_to_stay_above
from groklab.store.sweepdir import collect
from groklab.experiments.sweep import run_sweep
from groklab.experiments.spec import load_spec, parse_spec
from groklab.training.loop import resolve_device

HERE = Path(__file__).parent


def first_reach(rows: list[dict], threshold: float) -> int | None:
    return next((r["step"] for r in rows if r["val_acc"] >= threshold), None)


def recipe_rows(spec, out: str) -> list[dict]:
    """One row a (experiment, recipe): its runs' steps to 95 / 99 % reached and stayed."""
    runs, evals = collect(out)
    by_id = {r["run_id"]: r for r in runs}
    per: dict[str, list[dict]] = {}
    for e in evals:
        per.setdefault(e["run_id"], []).append(e)
    groups: dict[tuple, list[str]] = {}
    for planned in spec.expand():
        if planned.run_id in by_id:
            recipe = tuple(sorted((k, v) for k, v in planned.params.items() if k != "seed"))
            groups.setdefault((planned.experiment, recipe), []).append(planned.run_id)
    rows = []
    for (exp, recipe), ids in groups.items():
        row = {"experiment": exp, "recipe": dict(recipe), "runs": len(ids)}
        for th in (0.95, 0.99):
            row[f"reach_{th}"] = [first_reach(per.get(i, []), th) for i in ids]
            row[f"stay_{th}"] = [steps_to_stay_above([e["step"] for e in per.get(i, [])],
                                                     [e["val_acc"] for e in per.get(i, [])], th) for i in ids]
        rows.append(row)
    return rows


def rank_key(row: dict) -> tuple:
    got = [v for v in row["reach_0.95"] if v is not None]
    return (-len(got) / len(row["reach_0.95"]), statistics.median(got) if got else float("inf"))


def _toml(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else json.dumps(value)


def winner_spec(search, best: dict, main_spec_path: str, seeds: list[int]):
    """The main spec's base with the search winner's settings, on the main spec's seeds."""
    exp = next(e for e in search.experiments if e.name == best["experiment"])
    base = {**load_spec(main_spec_path).base, **exp.base, **best["recipe"]}
    lines = ['name = "grokfast-best"', "", "[base]", *(f"{k} = {_toml(v)}" for k, v in base.items()), "",
             "[[experiment]]", 'name = "best"',
             f"description = {json.dumps('(v) search winner: ' + best['experiment'] + ' ' + json.dumps(best['recipe']))}",
             "[experiment.grid]", f"seed = {seeds}", ""]
    return parse_spec("\n".join(lines), "grokfast-best (generated)", root=HERE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(HERE / "specs" / "grokfast.toml"))
    ap.add_argument("--out", default="out/grokfast")
    ap.add_argument("--search", default=None, help="also search this spec for a recipe (v), then measure it")
    ap.add_argument("--max_steps", type=int, default=None)
    ap.add_argument("--eval_points_per_decade", type=int, default=None,
                    help="fewer evaluations for a CPU run (each evaluates the full splits of every run)")
    ap.add_argument("--concurrent_groups", type=int, default=None, help="groups trained at once (GPU)")
    ap.add_argument("--only", default=None,
                    help="comma-separated experiments of --spec to run (e.g. adamw,grokfast-ema,grokfast-ma)")
    args = ap.parse_args()
    spec = load_spec(args.spec)
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {e.name for e in spec.experiments})
        if unknown:
            raise SystemExit(f"--only: no experiment {unknown[0]!r} in {args.spec}")
        spec = dataclasses.replace(spec, experiments=tuple(e for e in spec.experiments if e.name in names))
    overrides = {k: v for k, v in (("max_steps", args.max_steps),
                                   ("eval_points_per_decade", args.eval_points_per_decade)) if v}
    t0 = time.perf_counter()
    run_sweep(spec, args.out, overrides, concurrent_groups=args.concurrent_groups, echo=print)
    table = recipe_rows(spec, args.out)
    report = {"machine": machine(resolve_device("auto"))}
    descriptions = {e.name: e.description or e.name for e in spec.experiments}
    if args.search:
        search = load_spec(args.search)
        search_out = str(Path(args.out) / "search")
        run_sweep(search, search_out, overrides, concurrent_groups=args.concurrent_groups, echo=print)
        ranked = sorted(recipe_rows(search, search_out), key=rank_key)
        report["search_top10"] = ranked[:10]
        print("\nsearch, best 10 (seeds reaching 95 %, median steps to it):")
        for r in ranked[:10]:
            print(f"  {r['experiment']} {json.dumps(r['recipe'])}: {r['reach_0.95']}")
        seeds = sorted({p.params["seed"] for p in spec.expand() if "seed" in p.params})
        best = winner_spec(search, ranked[0], args.spec, seeds)
        best_out = str(Path(args.out) / "best")
        run_sweep(best, best_out, overrides, concurrent_groups=args.concurrent_groups, echo=print)
        table += recipe_rows(best, best_out)
        descriptions["best"] = best.experiments[0].description
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    print("\n| recipe | seeds | steps to 95 % val (median, range) | to 99 % | stays ≥ 99 % from |")
    print("|---|---|---|---|---|")
    for r in table:
        name = descriptions.get(r["experiment"], r["experiment"] + " " + json.dumps(r["recipe"]))
        print(f"| {name} | {r['runs']} | {summary(r['reach_0.95'])} | {summary(r['reach_0.99'])} | "
              f"{summary(r['stay_0.99'])} |")
    report["table"] = table
    Path(args.out, "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwall time {report['wall_s']:.0f} s on {report['machine']['device']}")


if __name__ == "__main__":
    main()
