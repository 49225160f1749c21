"""The report's drawing, serial against worker processes: `groklab report DIR` timed in a fresh process per
setting (GROKLAB_REPORT_WORKERS=0, then each N given), the settings interleaved over rounds; wall and CPU time.

    PYTHONPATH=src python benchmarks/bench_report.py SWEEP_FOLDER [--workers 0 2 3] [--rounds 3]

The folder's report is rewritten each time (a copy of a finished sweep folder is the thing to time)."""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time


def timed(folder: str, workers: int) -> tuple[float, float]:
    """(wall, CPU of the command and its workers) of one `groklab report`."""
    env = {**os.environ, "GROKLAB_REPORT_WORKERS": str(workers)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "groklab", "report", folder], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 3])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[int, list[tuple[float, float]]] = {w: [] for w in args.workers}
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {len(os.sched_getaffinity(0))} cores, "
          f"load {os.getloadavg()[0]:.2f}; {' '.join(sys.argv)}")
    for _ in range(args.rounds):
        for w in args.workers:
            times[w].append(timed(args.folder, w))
    for w, runs in times.items():
        walls = ", ".join(f"{wall:.1f}" for wall, _ in runs)
        print(f"workers={w}: wall median {statistics.median(t for t, _ in runs):.1f} s ({walls}), "
              f"CPU median {statistics.median(c for _, c in runs):.1f} s")


if __name__ == "__main__":
    main()
