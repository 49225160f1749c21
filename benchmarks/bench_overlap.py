"""Do a study's engine groups overlap on one GPU? Each group of the study opened as a sweep opens it, then
their captured steps timed three ways, with no evaluation:

- in turn: each group alone (the sum is the GPU work with nothing overlapped);
- threads: each group in its own thread and CUDA stream, as a sweep's wave trains them;
- one thread: every group's step replayed round-robin from one thread, each on its own stream;
- threads, prioritised: as threads, on streams whose priority follows each group's time alone (the slowest
  highest), so that the group that bounds the study is not slowed by the ones that would finish early anyway.

If threads take as long as in turn while one thread is faster, the host side (the GIL) serialises them; if
both take as long, the GPU does.

    python benchmarks/bench_overlap.py --steps 500 [--compile] [--precision bf16] [--inductor combo_kernels=1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time

import torch

from common import apply_inductor, inductor_args, machine, open_study, study_args, window

from groklab.training.loop import resolve_device
from groklab.workflows import study_spec


def threaded(groups, streams, steps: int) -> tuple[float, list[float], list[float]]:
    """Wall ms a step with each group in its own thread; each thread's own launch time (ms a step); and when
    each group finished (ms a step, from the common start)."""
    start = threading.Barrier(len(groups) + 1)
    launch = [0.0] * len(groups)
    finish = [0.0] * len(groups)

    def work(k: int) -> None:
        with torch.cuda.stream(streams[k]):
            start.wait()
            t0 = time.perf_counter()
            for _ in range(steps):
                groups[k].engine.step()
            launch[k] = (time.perf_counter() - t0) * 1000 / steps
            streams[k].synchronize()
            finish[k] = (time.perf_counter() - t0) * 1000 / steps

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(groups))]
    for t in threads:
        t.start()
    torch.cuda.synchronize()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000 / steps, launch, finish


def prioritised_streams(alone: list[float], device) -> tuple[list, list[int]]:
    """A stream a group whose priority rises with its time alone: the slowest asks for -(n - 1), the fastest
    for 0 (lower numbers run first; torch maps what the device lacks to its nearest level: the streams'
    own .priority says what they got)."""
    order = sorted(range(len(alone)), key=lambda k: -alone[k])
    levels = [0] * len(alone)
    for rank, k in enumerate(order):
        levels[k] = rank - (len(alone) - 1)
    return [torch.cuda.Stream(device, priority=p) for p in levels], levels


def round_robin(groups, streams, steps: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        for g, s in zip(groups, streams):
            with torch.cuda.stream(s):
                g.engine.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000 / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study_args(ap, steps=500)
    inductor_args(ap)
    args = ap.parse_args()
    apply_inductor(args.inductor)
    device = resolve_device("auto")
    runs = study_spec(args.study).expand({"precision": args.precision})
    report: dict = {"machine": machine(device), "study": args.study, "compile": args.compile,
                    "precision": args.precision, "steps": args.steps,
                    "inductor": args.inductor}
    with tempfile.TemporaryDirectory() as tmp:
        planned, groups, open_s = open_study(runs, device, args.compile, tmp)
        report["open_s"] = round(open_s, 1)
        report["paths"] = sorted({g.path for g in groups})
        streams = [torch.cuda.Stream(device) for _ in groups]
        for g, s in zip(groups, streams):  # warm: every graph replayed on the stream it will use
            with torch.cuda.stream(s):
                window(g.engine.step, device, 20)
        alone = [min(window(g.engine.step, device, args.steps) for _ in range(2)) for g in groups]
        report["alone_ms"] = [round(a, 3) for a in alone]
        report["in_turn_ms"] = round(sum(alone), 3)
        walls = [threaded(groups, streams, args.steps) for _ in range(2)]
        best = min(walls, key=lambda w: w[0])
        report["threads_ms"] = round(best[0], 3)
        report["threads_launch_ms"] = [round(x, 3) for x in best[1]]
        report["threads_finish_ms"] = [round(x, 3) for x in best[2]]
        ranked, levels = prioritised_streams(alone, device)
        for g, s in zip(groups, ranked):
            with torch.cuda.stream(s):
                window(g.engine.step, device, 20)
        walls = [threaded(groups, ranked, args.steps) for _ in range(2)]
        best = min(walls, key=lambda w: w[0])
        report["priorities"] = [s.priority for s in ranked]
        report["priority_levels_asked"] = levels
        report["threads_prioritised_ms"] = round(best[0], 3)
        report["threads_prioritised_finish_ms"] = [round(x, 3) for x in best[2]]
        report["one_thread_ms"] = round(min(round_robin(groups, streams, args.steps) for _ in range(2)), 3)
        report["max_alone_ms"] = round(max(alone), 3)
        for g in groups:
            g.close()
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()
