#!/usr/bin/env bash
# The seventh device round for issue 20 (2026-12-01), from the repository root:
#     bash benchmarks/device_round7.sh OUT [DEADLINE_S]
#   1. the GPU tests, with the step compiled by default on CUDA
#   2. kernels a step of a small compiled group (seed 000's add/sub and batch-512 shapes), bf16
#   3. bench_overlap, compiled, bf16, with inductor's combo kernels (horizontal fusion), against round 6's
NAME=device_round7.sh; DEFAULT_DEADLINE=540; R=/tmp/round7
source "$(dirname "$0")/round_common.sh"
frame round7.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round7-pyc
stamp "start"
gpu_tests 380 150 tests/test_engine.py::test_compiled_step_matches_eager_on_cpu
for shape in "6 64" "3 512"; do
    set -- $shape
    timeout "$(until_left 260)" python3 benchmarks/profile_group.py --E "$1" --batch "$2" --compile --precision bf16 \
        > "$R/profile_E$1_b$2.txt" 2>&1
    stamp "profile E $1 batch $2 exited $?"; head -30 "$R/profile_E$1_b$2.txt"
done
timeout "$(until_left 5)" python3 benchmarks/bench_overlap.py --steps 500 --compile --precision bf16 \
    --inductor combo_kernels=True > "$R/overlap_combo.json" 2>"$R/overlap_combo.err"
stamp "overlap combo exited $?"; cat "$R/overlap_combo.json"; tail -5 "$R/overlap_combo.err"
