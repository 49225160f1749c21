#!/usr/bin/env bash
# The next device round for issue 20 (written 2026-12-02, not yet run), for two of seed 000's groups:
#   1. what launches the eight ATen elementwise kernels a step that none of the compiled graphs' code launches
#      (seventh round): `profile_group.py --ops`. The suspect: each of the 8 linear layers' baddbmm first copies
#      its broadcast bias into the (E, rows, out) output, a CUDA-only step (on the CPU no such copy runs)
#   2. the same groups with the bias added after a plain bmm (`--bias after`), fused by inductor into what follows
# From the repository root:
#     bash benchmarks/device_round18.sh OUT [DEADLINE_S]
NAME=device_round18.sh; DEFAULT_DEADLINE=260; R=/tmp/round18
source "$(dirname "$0")/round_common.sh"
frame round18.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round18-pyc
stamp "start"
for shape in "6 64" "3 512"; do
    set -- $shape
    for bias in gemm after; do
        timeout "$(until_left 3)" python3 benchmarks/profile_group.py --E $1 --batch $2 --compile --precision bf16 \
            --bias $bias --ops --rows 12 > "$R/ops-E$1-b$2-$bias.txt" 2>&1
        stamp "E=$1 b=$2 bias $bias exited $?: $(grep -h 'graph replay' "$R/ops-E$1-b$2-$bias.txt")"
        grep -E "aten::(baddbmm|copy_|bmm|add)" "$R/ops-E$1-b$2-$bias.txt" | head -8
    done
done
