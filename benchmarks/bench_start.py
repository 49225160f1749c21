"""Where a start's seconds go: `groklab run` in this process (compiled by default on CUDA), timed, with
torch.compile's own counters (cache hits and misses of inductor's FX-graph cache and of AOTAutograd's cache) and its
per-phase compile times; `--profile FILE` also writes the top of a cProfile of the whole command.

    python benchmarks/bench_start.py --device cuda --out_dir /tmp/start [--profile start.txt]

Run it twice with the same XDG_CACHE_HOME: the first start compiles cold, the second finds the cache.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time

T0 = time.perf_counter()
import torch  # noqa: E402

IMPORT_S = time.perf_counter() - T0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out_dir", required=True)
    ap.add_argument("--max_steps", type=int, default=300)
    ap.add_argument("--no_compile", action="store_true", help="uncompiled (--compile false), for comparison")
    ap.add_argument("--profile", help="write cProfile's top functions (cumulative time) here")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    from groklab.cli import main as groklab_main

    argv = ["run", "--device", args.device, "--max_steps", str(args.max_steps), "--early_stop_evals", "0",
            "--no_plot", "--progress", "false", "--out_dir", args.out_dir]
    if args.no_compile:
        argv += ["--compile", "false"]
    prof = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    rc = groklab_main(argv)
    if prof:
        prof.disable()
    run_s = time.perf_counter() - t0
    counters = {}
    phases = ""
    if not args.no_compile:
        from torch._dynamo.utils import compile_times, counters as dyn_counters

        counters = {group: dict(c) for group, c in dyn_counters.items()
                    if group in ("inductor", "aot_autograd", "stats", "frames")}
        phases = compile_times(repr="str", aggregate=True)
    out = {"rc": rc, "import_torch_s": round(IMPORT_S, 2), "command_s": round(run_s, 2), "torch": torch.__version__,
           "counters": counters}
    print(json.dumps(out, indent=1, default=str))
    print(phases)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out | {"phases": phases}, f, indent=1, default=str)
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(60)
        with open(args.profile, "w") as f:
            f.write(s.getvalue())


if __name__ == "__main__":
    main()
