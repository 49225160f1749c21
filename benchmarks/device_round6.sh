#!/usr/bin/env bash
# The sixth device round for issue 20 (2026-12-01): do seed 000's engine groups overlap on the GPU, and the
# study end to end from the compile cache that stage 2 leaves, from the repository root:
#     bash benchmarks/device_round6.sh OUT [DEADLINE_S]
#   1. bench_overlap, graph path (uncompiled), fp32: in turn, in threads, from one thread
#   2. bench_overlap, compiled, bf16 (a cold compile of the study's seven shapes)
#   3. `groklab reproduce seed-000 --precision bf16`, timed, its log kept
NAME=device_round6.sh; DEFAULT_DEADLINE=570; R=/tmp/round6
source "$(dirname "$0")/round_common.sh"
frame round6.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round6-pyc
stamp "start"
timeout "$(until_left 450)" python3 benchmarks/bench_overlap.py --steps 500 > "$R/overlap_graph.json" 2>"$R/overlap_graph.err"
stamp "overlap graph exited $?"; cat "$R/overlap_graph.json"
timeout "$(until_left 300)" python3 benchmarks/bench_overlap.py --steps 500 --compile --precision bf16 \
    > "$R/overlap_compiled.json" 2>"$R/overlap_compiled.err"
stamp "overlap compiled exited $?"; cat "$R/overlap_compiled.json"
S0=$(date +%s)
timeout "$(until_left 10)" python3 -m groklab reproduce seed-000 --precision bf16 --out /tmp/round6-s000 \
    > "$R/study.log" 2>&1
stamp "study exited $? after $(( $(date +%s) - S0 )) s"; grep -E "^sweep|tables|report" "$R/study.log" | tail -15
cp /tmp/round6-s000/*.md "$R/" 2>/dev/null
