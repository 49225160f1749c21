#!/usr/bin/env bash
# The thirteenth device round for issue 20 (2026-12-02, main at the merge of the compile-cache workers and the
# report's worker processes). From the repository root:
#     bash benchmarks/device_round13.sh OUT [DEADLINE_S]
#   1. a start of seed 000's study, cold then warm: `groklab reproduce seed-000 --precision bf16 --max_steps 200`
#      twice, the compile cache empty before the first (each output line stamped; setup is what the workers change)
#   2. one run on the default path against nanoGPT's eager loop (bench_step), with what is left
NAME=device_round13.sh; DEFAULT_DEADLINE=360; R=/tmp/round13
source "$(dirname "$0")/round_common.sh"
frame round13.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round13-pyc
stamp "start"
study_starts 60
timeout "$(until_left 5)" python3 benchmarks/bench_step.py --batch 64 512 --precision fp32 --compile both \
    --steps 50 --repeats 5 > "$R/step.txt" 2>&1
stamp "bench_step exited $?"; grep -v "^W1\|warn" "$R/step.txt" | tail -12
