#!/usr/bin/env bash
# The ninth device round for issue 20 (2026-12-02, run on branch issue20-int: main's embedding change plus the
# wave that trained each group as soon as it was open, which main does not have: docs/benchmarks.md, "Fifth
# round"): after round 8's failures (a graph break in the embedding's split gradient), the GPU tests again; and
# do stream priorities shorten a study's makespan? From the repository root:
#     bash benchmarks/device_round9.sh OUT [DEADLINE_S]
#   1. the GPU tests (round 7: 15 passed; round 8: 4 failed)
#   2. bench_overlap, compiled, bf16: in turn, threads, threads on prioritised streams, one thread
NAME=device_round9.sh; DEFAULT_DEADLINE=430; R=/tmp/round9
source "$(dirname "$0")/round_common.sh"
frame round9.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round9-pyc
stamp "start"
gpu_tests 190 180 tests/test_engine.py::test_compiled_step_matches_eager_on_cpu \
    tests/test_engine.py::test_the_compiled_step_is_one_graph_without_breaks
grep -E "^E  |Error" "$R/tests.log" | head -30
timeout "$(until_left 5)" python3 benchmarks/bench_overlap.py --steps 300 --compile --precision bf16 \
    > "$R/overlap.json" 2>"$R/overlap.err"
stamp "overlap exited $?"; cat "$R/overlap.json"; grep -v "^W1" "$R/overlap.err" | tail -5
