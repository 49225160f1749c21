#!/usr/bin/env bash
# The fourth device round for issue 20 (2026-12-01): the compiled attention as fused reductions, measured, and
# the test suite on the GPU machine, from the repository root:
#     bash benchmarks/device_round4.sh OUT [DEADLINE_S]
#   1. the two tests that failed on this machine in round 3, with their tracebacks
#   2. groups of 512, compiled, tf32 and bf16 (bench_group.py), and where a batch-512 step's time goes now
#   3. one run, compiled and graph path, against nanoGPT's eager loop (bench_step.py)
#   4. the whole test suite, verbose, one test at most 120 s
NAME=device_round4.sh; DEFAULT_DEADLINE=570; R=/tmp/round4
source "$(dirname "$0")/round_common.sh"
frame round4.tar.gz  # the compile cache starts empty: the first compile is cold
# this machine's site-packages come without bytecode: every process compiled torch's sources again (5 s of a
# 12-s start in round 3); a writable cache prefix pays that once
export PYTHONPYCACHEPREFIX=/tmp/round4-pyc
stamp "start"
timeout "$(until_left 430)" python3 -m pytest -q -p no:cacheprovider -p no:benchmark --tb=long \
    "tests/test_engine.py::test_compiled_step_matches_eager_on_cpu" \
    "tests/test_results.py::test_collect_reads_a_single_run_folder" > "$R/tests_failed_before.log" 2>&1
stamp "two tests exited $?"; tail -3 "$R/tests_failed_before.log"
timeout "$(until_left 330)" python3 benchmarks/bench_group.py --batch 512 64 --E 512 --precision tf32 bf16 --compile \
    --steps 10 --repeats 3 --json "$R/group_compiled.json" > "$R/group_compiled.log" 2>&1
stamp "bench_group exited $?"; tail -8 "$R/group_compiled.log"
timeout "$(until_left 290)" python3 benchmarks/profile_group.py --E 512 --batch 512 --precision tf32 --compile \
    --rows 25 > "$R/profile.txt" 2>&1
stamp "profile exited $?"; grep "graph replay" "$R/profile.txt"
timeout "$(until_left 250)" python3 benchmarks/bench_step.py --batch 64 512 --precision tf32 --compile both --steps 50 \
    --repeats 5 --json "$R/step_compiled.json" > "$R/step_compiled.log" 2>&1
stamp "bench_step exited $?"; tail -6 "$R/step_compiled.log"
timeout "$(until_left 8)" python3 -m pytest -v -p no:cacheprovider -p no:benchmark -n 12 --timeout 120 tests \
    > "$R/tests.log" 2>&1
stamp "tests exited $?"; grep -E "^FAILED|^ERROR|Timeout|[0-9]+ passed|[0-9]+ failed" "$R/tests.log" | tail -25
