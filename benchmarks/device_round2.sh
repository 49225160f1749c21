#!/usr/bin/env bash
# The second device round for issues 16-20 (2026-12-01), from the repository root, stages in order, each cut
# off so that the next still runs and everything comes back:
#     bash benchmarks/device_round2.sh OUT [DEADLINE_S]
#   1. the test suite on the GPU machine (torch 2.11 there; CUDA tests run, nothing skipped for want of a GPU)
#   2. one run, compiled, against nanoGPT's eager loop (tf32; the graph path beside it): bench_step.py
#   3. a compiled start with a cold and then a warm compile cache: `groklab run --compile` twice
#   4. groups of 512, compiled, tf32 and bf16: bench_group.py
NAME=device_round2.sh; DEFAULT_DEADLINE=570; R=/tmp/round2
source "$(dirname "$0")/round_common.sh"
frame round2.tar.gz  # the compile cache starts empty: the first compile is cold
stamp "start"
timeout "$(until_left 420)" python3 -m pytest -q -p no:cacheprovider -n 12 tests > "$R/tests.log" 2>&1
stamp "tests exited $?"; tail -3 "$R/tests.log"
timeout "$(until_left 300)" python3 benchmarks/bench_step.py --batch 64 512 --precision tf32 --compile both --steps 50 \
    --repeats 5 --json "$R/step_compiled.json" > "$R/step_compiled.log" 2>&1
stamp "bench_step exited $?"; tail -8 "$R/step_compiled.log"
for i in cold warm; do
    s=$(date +%s.%N)
    timeout "$(until_left 200)" python3 -m groklab run --device cuda --compile --max_steps 300 --early_stop_evals 0 \
        --no_plot --progress false --out_dir /tmp/start-$i > "$R/start_$i.log" 2>&1
    echo "$i: exit $? in $(python3 -c "import time; print(round(time.time() - $s, 1))") s" | tee -a "$R/starts.txt"
done
stamp "starts done"
timeout "$(until_left 5)" python3 benchmarks/bench_group.py --batch 64 512 --E 512 --precision tf32 bf16 --compile \
    --steps 10 --repeats 3 --json "$R/group_compiled.json" > "$R/group_compiled.log" 2>&1
stamp "bench_group exited $?"; tail -8 "$R/group_compiled.log"
