#!/usr/bin/env bash
# The next device round for issue 20 (written 2026-12-02, not yet run): what launches the eight ATen
# elementwise kernels a step that none of the compiled graphs' code launches (seventh round), for two of seed
# 000's groups. From the repository root:
#     bash benchmarks/device_round18.sh OUT [DEADLINE_S]
NAME=device_round18.sh; DEFAULT_DEADLINE=200; R=/tmp/round18
source "$(dirname "$0")/round_common.sh"
frame round18.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round18-pyc
stamp "start"
for shape in "6 64" "3 512"; do
    set -- $shape
    timeout "$(until_left 3)" python3 benchmarks/profile_group.py --E $1 --batch $2 --compile --precision bf16 \
        --ops --rows 12 > "$R/ops-E$1-b$2.txt" 2>&1
    stamp "E=$1 b=$2 exited $?: $(grep -h 'graph replay' "$R/ops-E$1-b$2.txt")"
    grep -E "aten::(copy_|to|_to_copy|clone|fill_|add_|contiguous|cat|sum)" "$R/ops-E$1-b$2.txt" | head -20
done
