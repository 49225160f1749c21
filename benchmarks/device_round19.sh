#!/usr/bin/env bash
# The nineteenth device round for issue 20 (2026-12-02, main with the bias added after the product in compiled
# GPU code, round 18's finding). From the repository root:
#     bash benchmarks/device_round19.sh OUT [DEADLINE_S]
#   1. the GPU tests (every CUDA test and the sweep's concurrent groups)
#   2. two of seed 000's groups profiled with the model's bias and with the old baddbmm (`--bias gemm`), each in
#      its own process
#   3. one run on the default path against nanoGPT's eager loop (bench_step), with what is left
NAME=device_round19.sh; DEFAULT_DEADLINE=430; R=/tmp/round19
source "$(dirname "$0")/round_common.sh"
frame round19.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round19-pyc
stamp "start"
gpu_tests 260 170
for shape in "3 512" "6 64"; do
    set -- $shape
    for bias in model gemm; do
        timeout "$(until_left 3)" python3 benchmarks/profile_group.py --E $1 --batch $2 --compile --precision bf16 \
            --bias $bias --rows 12 > "$R/E$1-b$2-$bias.txt" 2>&1
        stamp "E=$1 b=$2 bias $bias exited $?: $(grep -h 'graph replay' "$R/E$1-b$2-$bias.txt")"
    done
done
timeout "$(until_left 5)" python3 benchmarks/bench_step.py --batch 64 512 --precision fp32 --compile both \
    --steps 50 --repeats 5 > "$R/step.txt" 2>&1
stamp "bench_step exited $?"; grep -v "^W1\|warn" "$R/step.txt" | tail -12
