#!/usr/bin/env bash
# The twelfth device round for issue 20 (2026-12-02, branch issue20-r12: main, the compile cache filled by
# worker processes while a wave's first group opens, and the report's figures in worker processes). From the
# repository root:
#     bash benchmarks/device_round12.sh OUT [DEADLINE_S]
#   1. bench_report on a copy of a finished seed-000 folder (carried as out/s000): serial against 4, 8, 16 workers
#   2. `groklab reproduce seed-000 --precision bf16` end to end from an empty compile cache, each output line
#      stamped with the seconds since the round began
#   3. the GPU tests, with what is left
NAME=device_round12.sh; DEFAULT_DEADLINE=560; R=/tmp/round12
source "$(dirname "$0")/round_common.sh"
frame round12.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round12-pyc
stamp "start"
if [ -d out/s000 ]; then
    timeout 150 python3 benchmarks/bench_report.py out/s000 --workers 0 4 8 16 --rounds 1 > "$R/report.txt" 2>&1
    stamp "report exited $?"; tail -8 "$R/report.txt"
fi
S0=$(date +%s)
stamp "study starts"
timeout "$(until_left 30)" python3 -m groklab reproduce seed-000 --precision bf16 --out /tmp/r12-s000 2>&1 \
    | while IFS= read -r line; do echo "[$(( $(date +%s) - S0 )) s] $line"; done > "$R/study.log"
stamp "study exited ${PIPESTATUS[0]} after $(( $(date +%s) - S0 )) s"
tail -4 "$R/study.log"
cp /tmp/r12-s000/sweep.log /tmp/r12-s000/tables.md "$R/" 2>/dev/null
gpu_tests 5 170 tests/test_engine.py::test_compiled_step_matches_eager_on_cpu
