#!/usr/bin/env bash
# The fifth device round for issue 20 (2026-12-01): the step compiled by default on CUDA, and seed 000's study
# measured in parts, from the repository root:
#     bash benchmarks/device_round5.sh OUT [DEADLINE_S]
#   1. each engine group of seed 000's study alone, compiled, bf16: cold setup and ms a step (bench_reproduce --groups)
#   2. the study as a slice of 5,000 steps, bf16, now from a warm compile cache: setup, training, extrapolation
#   3. one run on the default path (now compiled) and uncompiled, fp32 and tf32, against nanoGPT's eager loop
#   4. a default `groklab run` start, cold and warm, in a compile cache of its own (bench_start)
#   5. the GPU tests
# and the compile cache of stages 1-2, packed into OUT/cache.tar.gz for the next round's full study.
NAME=device_round5.sh; DEFAULT_DEADLINE=570; R=/tmp/round5
source "$(dirname "$0")/round_common.sh"
frame round5.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round5-pyc
stamp "start"
timeout "$(until_left 420)" python3 benchmarks/bench_reproduce.py --groups --compile --precision bf16 --steps 200 \
    > "$R/groups.json" 2>"$R/groups.err"
stamp "groups exited $?"; grep '"runs"' "$R/groups.json" | head -8; grep groups_in_turn "$R/groups.json"
timeout "$(until_left 300)" python3 benchmarks/bench_reproduce.py --max_steps 5000 --precision bf16 --no-baseline \
    --out /tmp/round5-slice > "$R/slice.log" 2>&1
stamp "slice exited $?"; grep -E "setup_s|training_s|extrapolated|tables_report" "$R/slice.log" | tail -6
tar czf "$OUT/cache.tar.gz" -C "$XDG_CACHE_HOME" . 2>/dev/null; ls -la "$OUT/cache.tar.gz"
timeout "$(until_left 200)" python3 benchmarks/bench_step.py --batch 64 512 --precision fp32 tf32 --compile both \
    --steps 50 --repeats 5 --json "$R/step.json" > "$R/step.log" 2>&1
stamp "bench_step exited $?"; tail -10 "$R/step.log"
for start in cold warm; do
    XDG_CACHE_HOME=/tmp/round5-start-cache timeout "$(until_left 150)" python3 benchmarks/bench_start.py \
        --device cuda --out_dir "/tmp/round5-start-$start" --json "$R/start_$start.json" > "$R/start_$start.log" 2>&1
    stamp "start $start exited $?"; tail -4 "$R/start_$start.log"
done
timeout "$(until_left 8)" python3 -m pytest -v -p no:cacheprovider -p no:benchmark -n 4 --timeout 200 \
    tests/test_gpu.py "tests/test_sweep.py::test_groups_trained_concurrently_match_groups_trained_in_turn" \
    tests/test_engine.py::test_compiled_step_matches_eager_on_cpu > "$R/tests.log" 2>&1
stamp "tests exited $?"; grep -E "^FAILED|^ERROR|Timeout|[0-9]+ passed|[0-9]+ failed" "$R/tests.log" | tail -25
