#!/usr/bin/env bash
# The twentieth device round for issue 20 (2026-12-02, main with the bias added after the product in compiled
# GPU code, its sum left in float32: round 18 measured that faster than round 19's sum rounded to bf16).
# From the repository root:
#     bash benchmarks/device_round20.sh OUT [DEADLINE_S]
#   1. the GPU tests (every CUDA test and the sweep's concurrent groups)
#   2. seed 000's study end to end from an empty compile cache of its own, every output line stamped
#   3. with what is left: 3 runs at batch 512 profiled with the model's bias, the sum rounded, and baddbmm
NAME=device_round20.sh; DEFAULT_DEADLINE=560; R=/tmp/round20
source "$(dirname "$0")/round_common.sh"
frame round20.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round20-pyc
stamp "start"
gpu_tests 370 150
S0=$(date +%s)
stamp "study starts"
XDG_CACHE_HOME="$R-study-cache" timeout "$(until_left 10)" python3 -m groklab reproduce seed-000 --precision bf16 \
    --out /tmp/r20-s000 2>&1 | while IFS= read -r line; do echo "[$(( $(date +%s) - S0 )) s] $line"; done > "$R/study.log"
stamp "study exited ${PIPESTATUS[0]} after $(( $(date +%s) - S0 )) s"
grep -E "running · 0 failed$|report written" "$R/study.log" | head -3; tail -3 "$R/study.log"
cp /tmp/r20-s000/sweep.log /tmp/r20-s000/tables.md "$R/" 2>/dev/null
for bias in model rounded gemm; do
    timeout "$(until_left 3)" python3 benchmarks/profile_group.py --E 3 --batch 512 --compile --precision bf16 \
        --bias $bias --rows 12 > "$R/E3-b512-$bias.txt" 2>&1
    stamp "E=3 b=512 bias $bias exited $?: $(grep -h 'graph replay' "$R/E3-b512-$bias.txt")"
done
