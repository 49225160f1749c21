"""Seed 000's study groups on disjoint SM partitions (CUDA green contexts) instead of sharing every SM: does
a study step get shorter? bench_overlap found seven groups on seven streams overlapping only 1.6x; if the
reason is that each group's kernels spread over all SMs and so queue behind each other's, groups that each
own a slice of the GPU would run side by side.

Stages, each reported (or its error) in the JSON:
  base      each group alone and all in threads, on ordinary streams (bench_overlap's figures)
  governs   a graph captured on an ordinary stream replayed on an 8-SM partition: does the partition bind it?
  scaling   the largest group alone on 8..120 SMs (captured on each partition)
  scaling_all  every group alone on 16..120 SMs, and a fit of its step as a + b / SMs
  plan P    each group captured on its own partition of plan P, alone there and all in threads
  bits      one group, 50 steps from one state, captured on the whole GPU and on a partition: same weights?

    python benchmarks/bench_partition.py --steps 300 --compile --precision bf16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback

import torch

from bench_overlap import threaded
from common import machine, open_study, study_args, window
from green import partition

from groklab.training.loop import resolve_device
from groklab.workflows import study_spec


def capture_on(group, stream) -> str:
    """Capture the group's step again with `stream` as the engine's own capture stream."""
    real = torch.cuda.Stream
    torch.cuda.Stream = lambda *a, **k: stream  # the engine asks torch for a fresh stream to capture on
    try:
        return group.engine.capture_cuda_graph()
    finally:
        torch.cuda.Stream = real


def alone_on(group, stream, device, steps: int) -> float:
    with torch.cuda.stream(stream):
        window(group.engine.step, device, 20)
        return min(window(group.engine.step, device, steps) for _ in range(2))


def stage(report: dict, name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        report[name] = fn()
    except Exception as exc:  # noqa: BLE001 - a failed stage is a result; the next ones still run
        report[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
    report[name + "_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({name: report[name]}), flush=True)


def shares(alone: list[float], total: int, grain: int) -> list[int]:
    """SM counts proportional to each group's time alone, in multiples of `grain`, summing to <= total."""
    raw = [a / sum(alone) * total for a in alone]
    out = [max(grain, int(r // grain) * grain) for r in raw]
    while sum(out) + grain <= total:  # hand what is left to the group most short of its share
        k = max(range(len(out)), key=lambda i: raw[i] - out[i])
        out[k] += grain
    while sum(out) > total:
        k = max(range(len(out)), key=lambda i: out[i] - raw[i])
        out[k] -= grain
    return out


def balanced(fit: list[tuple[float, float]], total: int, grain: int) -> list[int]:
    """SM counts (multiples of `grain`, summing to <= total) that minimise the slowest group's modelled step
    a + b / n: each grain goes to the group that is slowest at the time."""
    out = [grain] * len(fit)
    while sum(out) + grain <= total:
        k = max(range(len(fit)), key=lambda i: fit[i][0] + fit[i][1] / out[i])
        out[k] += grain
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study_args(ap, steps=300)
    ap.add_argument("--grain", type=int, default=8, help="SMs a partition is a multiple of")
    ap.add_argument("--total", type=int, default=120, help="SMs the plans share out")
    args = ap.parse_args()
    device = resolve_device("auto")
    runs = study_spec(args.study).expand({"precision": args.precision})
    sm_total = torch.cuda.get_device_properties(device).multi_processor_count
    report: dict = {"machine": machine(device), "study": args.study, "compile": args.compile,
                    "precision": args.precision, "steps": args.steps, "sms": sm_total}
    with tempfile.TemporaryDirectory() as tmp:
        planned, groups, open_s = open_study(runs, device, args.compile, tmp)
        report["open_s"] = round(open_s, 1)
        report["groups"] = [len(g) for g in planned]
        streams = [torch.cuda.Stream(device) for _ in groups]
        alone: list[float] = []

        def base():
            alone.extend(alone_on(g, s, device, args.steps) for g, s in zip(groups, streams))
            wall = min(threaded(groups, streams, args.steps)[0] for _ in range(2))
            return {"alone_ms": [round(a, 3) for a in alone], "in_turn_ms": round(sum(alone), 3),
                    "threads_ms": round(wall, 3)}

        stage(report, "base", base)
        big = max(range(len(groups)), key=lambda k: alone[k]) if alone else len(groups) - 1

        def governs():
            (part,) = partition(device, [8], args.grain)
            return {"sms": part.sms, "full_ms": round(alone_on(groups[big], streams[big], device, args.steps), 3),
                    "replayed_on_part_ms": round(alone_on(groups[big], part.stream, device, args.steps), 3)}

        stage(report, "governs", governs)

        def scaling():
            out = {}
            for n in (8, 16, 32, 64, 96, 120):
                (part,) = partition(device, [n], args.grain)
                path = capture_on(groups[big], part.stream)
                out[f"{part.sms}"] = {"path": path, "ms": round(alone_on(groups[big], part.stream, device,
                                                                          args.steps), 3)}
            return out

        stage(report, "scaling", scaling)
        fit: list[tuple[float, float]] = []  # each group's step as a + b / SMs, from its 2nd and last counts

        def scaling_all():
            out = []
            for g in groups:
                ms = {}
                for n in (16, 32, 64, 120):
                    (part,) = partition(device, [n], args.grain)
                    capture_on(g, part.stream)
                    ms[part.sms] = round(alone_on(g, part.stream, device, args.steps), 3)
                (n_lo, lo), (n_hi, hi) = sorted(ms.items())[1], sorted(ms.items())[-1]
                b = (lo - hi) / (1 / n_lo - 1 / n_hi)
                fit.append((hi - b / n_hi, b))
                out.append(ms)
            return {"ms_by_sms": out, "fit_a_ms_b_sm_ms": [[round(a, 3), round(b, 2)] for a, b in fit]}

        stage(report, "scaling_all", scaling_all)

        def plan(counts: list[int]):
            def run():
                parts = partition(device, counts, args.grain)
                paths = [capture_on(g, p.stream) for g, p in zip(groups, parts)]
                each = [alone_on(g, p.stream, device, args.steps) for g, p in zip(groups, parts)]
                pstreams = [p.stream for p in parts]
                walls = [threaded(groups, pstreams, args.steps) for _ in range(2)]
                best = min(walls, key=lambda w: w[0])
                return {"sms": [p.sms for p in parts], "paths": sorted(set(paths)),
                        "alone_ms": [round(a, 3) for a in each], "threads_ms": round(best[0], 3),
                        "finish_ms": [round(x, 3) for x in best[2]]}
            return run

        if alone:
            plans = [("plan_time", shares(alone, args.total, args.grain))]
            if fit:
                plans.append(("plan_fit", balanced(fit, args.total, args.grain)))
            for name, counts in plans + [
                                 ("plan_even", [args.total // len(groups) // args.grain * args.grain or args.grain]
                                  * len(groups))]:
                report[name + "_asked"] = counts
                stage(report, name, plan(counts))

        def bits():
            g = groups[0]
            snap = g.engine._snapshot()
            got = {}
            for label, stream in (("whole", torch.cuda.Stream(device)), ("part", partition(device, [16], args.grain)[0].stream)):
                g.engine._restore(snap)
                capture_on(g, stream)
                with torch.cuda.stream(stream):
                    for _ in range(50):
                        g.engine.step()
                torch.cuda.synchronize()
                got[label] = g.model.flat.detach().clone()
            return {"max_abs_diff": float((got["whole"] - got["part"]).abs().max()),
                    "equal": bool(torch.equal(got["whole"], got["part"]))}

        stage(report, "bits", bits)
        for g in groups:
            g.close()
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()
