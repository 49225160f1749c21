"""How the three grokking measures of groklab.metrics differ on measured curves (issue 17, "measures that
survive a dip"): first crossing, stays-above and held, for memorising (train accuracy) and grokking (val
accuracy), computed with groklab's own functions.

    python benchmarks/grok_measures.py SOURCE ...   # a results store's evals.parquet, a sweep or run folder

Per curve it compares held with the first crossing, and stays-above with both; it prints the counts, each curve
where held and the first crossing part, and where stays-above lands in the run (its step over the run's last).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from groklab.metrics import first_step_at_or_above, steps_to_hold, steps_to_stay_above

THRESHOLD = 0.99
CURVES = (("memorise", "train_acc"), ("grok", "val_acc"))


def _histories(source: Path) -> dict[str, list[dict]]:
    """run id -> its evaluations in step order, from an evals.parquet, a sweep folder or a run folder."""
    if source.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(source)
        return {f"{source.parent.parent.name}:{rid}": g.sort_values("step").to_dict("records")
                for rid, g in frame.groupby("run_id")}
    files = [source / "metrics.jsonl"] if (source / "metrics.jsonl").is_file() else sorted(source.rglob("metrics.jsonl"))
    out = {}
    for f in files:
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        out[f"{source.name}:{f.parent.relative_to(source)}"] = sorted(rows, key=lambda r: r["step"])
    return out


def main(sources: list[str]) -> int:
    runs: dict[str, list[dict]] = {}
    for s in sources:
        runs.update(_histories(Path(s)))
    same = parted = reached = 0
    late: list[float] = []  # stays-above's step over the run's last step, where it is later than held
    for rid, rows in sorted(runs.items()):
        steps = [int(r["step"]) for r in rows]
        for name, key in CURVES:
            values = [float(r[key]) for r in rows]
            first = first_step_at_or_above(steps, values, THRESHOLD)
            held = steps_to_hold(steps, values, THRESHOLD)
            stays = steps_to_stay_above(steps, values, THRESHOLD)
            if first is None:
                continue
            reached += 1
            if held == first:
                same += 1
            else:
                parted += 1
                print(f"  {rid} {name}: first {first:,}, held {held}, stays-above {stays}, last step {steps[-1]:,}")
            if stays is not None and held is not None and stays > held:
                late.append(stays / steps[-1])
    print(f"{len(runs)} runs, {2 * len(runs)} curves, {reached} reach {THRESHOLD}: held = first crossing in {same}, "
          f"not in {parted}")
    if late:
        print(f"stays-above later than held in {len(late)} curves; there it lands at a median "
              f"{statistics.median(late):.0%} of the run's last step (quartiles "
              f"{statistics.quantiles(late, n=4)[0]:.0%}-{statistics.quantiles(late, n=4)[2]:.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
