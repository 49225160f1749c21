#!/usr/bin/env bash
# Device round 15 for issue 20 (2026-12-02): seed 000's study groups on disjoint SM partitions of the GPU
# (green contexts, benchmarks/green.py), and two tests that round 14 failed. From the repository root:
#     bash benchmarks/device_round15.sh OUT [DEADLINE_S]
#   1. a cold start of the study (`--max_steps 200`), which also fills the compile cache for its seven shapes
#   2. bench_partition.py: each group on 8..120 SMs, plans of partitions, threads on them
#   3. the worker-cache test alone, with a long limit (round 14: past 170 s under -n 4), and the CUDA-state test
NAME=device_round15.sh; DEFAULT_DEADLINE=520; R=/tmp/round15
source "$(dirname "$0")/round_common.sh"
frame round15.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round15-pyc
stamp "start"
S0=$(date +%s)
timeout "$(until_left 330)" python3 -m groklab reproduce seed-000 --precision bf16 --max_steps 200 --out "$R-cold" \
    2>&1 | while IFS= read -r line; do echo "[$(( $(date +%s) - S0 )) s] $line"; done > "$R/start-cold.log"
stamp "cold start exited ${PIPESTATUS[0]}"; grep -E "running · 0 failed$|run-steps" "$R/start-cold.log" | head -10
timeout "$(until_left 110)" python3 benchmarks/bench_partition.py --steps 300 --compile --precision bf16 \
    > "$R/partition.json" 2> "$R/partition.err"
stamp "partition exited $?"; grep -v '"trace"' "$R/partition.json" | head -c 6000; tail -3 "$R/partition.err"
timeout "$(until_left 5)" python3 -m pytest -v -p no:cacheprovider -p no:benchmark --durations=5 \
    tests/test_gpu.py::test_cuda_graph_step_equals_eager_step \
    tests/test_groups.py::test_out_of_memory_splits_a_part_in_two_until_each_half_fits \
    tests/test_precompile.py::test_a_worker_fills_the_cache_that_a_process_then_compiles_from \
    > "$R/tests.log" 2>&1
stamp "tests exited $?"; grep -E "PASSED|FAILED|passed|failed|s call" "$R/tests.log" | tail -12
