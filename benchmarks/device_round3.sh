#!/usr/bin/env bash
# The third device round for issue 20 (2026-12-01), from the repository root, stages in order, each cut off so
# that the next still runs and everything comes back:
#     bash benchmarks/device_round3.sh OUT [DEADLINE_S]
#   1. where a step's GPU time goes: profile_group.py for one run (graph path) and a compiled group of 512
#   2. where a compiled start's seconds go: bench_start.py cold, then warm (with a cProfile)
#   3. the test suite on the GPU machine, verbose, one test at most 150 s
NAME=device_round3.sh; DEFAULT_DEADLINE=560; R=/tmp/round3
source "$(dirname "$0")/round_common.sh"
frame round3.tar.gz  # the compile cache starts empty: the first compile is cold
stamp "start"
for a in "--E 1 --batch 64 --precision tf32" "--E 1 --batch 512 --precision tf32" \
         "--E 512 --batch 512 --precision tf32 --compile" "--E 512 --batch 64 --precision tf32 --compile"; do
    timeout "$(until_left 400)" python3 benchmarks/profile_group.py $a --rows 25 >> "$R/profile.txt" 2>&1
    stamp "profile $a exited $?"
done
for i in cold warm; do
    p=""; [ $i = warm ] && p="--profile $R/start_warm.prof"
    timeout "$(until_left 330)" python3 benchmarks/bench_start.py --device cuda --out_dir /tmp/start-$i $p \
        --json "$R/start_$i.json" > "$R/start_$i.log" 2>&1
    stamp "start $i exited $?"
done
timeout "$(until_left 10)" python3 -m pytest -v -p no:cacheprovider -p no:benchmark -n 8 --timeout 150 tests \
    > "$R/tests.log" 2>&1
stamp "tests exited $?"; grep -E "FAILED|ERROR|Timeout|passed|failed" "$R/tests.log" | tail -25
