#!/usr/bin/env bash
# The next device round for issue 20 (written 2026-12-02), for two of seed 000's groups (3 runs at batch 512,
# 6 at batch 64; 2 layers, bf16, compiled), each variant in its own process with a cold compile cache:
#   1. what launches the eight ATen elementwise kernels a step that none of the compiled graphs' code launches
#      (seventh round): `profile_group.py --ops`. The suspect: each of the 8 linear layers' baddbmm first copies
#      its broadcast bias into the (E, rows, out) output, a CUDA-only step (on the CPU no such copy runs)
#   2. the same groups with the bias added after a plain bmm (`--bias after`), fused by inductor into what follows
#   3. inductor's GEMM autotuning (`max_autotune`: Triton templates beside cuBLAS, with the pointwise ops after a
#      product fused into its epilogue) and its coordinate-descent tuning of the Triton kernels' launch settings
# From the repository root:
#     bash benchmarks/device_round18.sh OUT [DEADLINE_S]
NAME=device_round18.sh; DEFAULT_DEADLINE=520; R=/tmp/round18
source "$(dirname "$0")/round_common.sh"
frame round18.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round18-pyc
stamp "start"
# one variant: a label, then profile_group's arguments; its output in $R/LABEL.txt, its summary line stamped
variant() {
    local label=$1; shift
    timeout "$(until_left 3)" python3 benchmarks/profile_group.py --compile --precision bf16 --rows 12 "$@" \
        > "$R/$label.txt" 2>&1
    stamp "$label exited $?: $(grep -h 'graph replay' "$R/$label.txt")"
}
variant E3b512-gemm-ops --E 3 --batch 512 --bias gemm --ops
grep -E "aten::(baddbmm|copy_|bmm|add)" "$R/E3b512-gemm-ops.txt" | head -8
variant E3b512-after --E 3 --batch 512 --bias after
variant E3b512-autotune --E 3 --batch 512 --bias gemm --inductor max_autotune=True
variant E3b512-autotune-after --E 3 --batch 512 --bias after --inductor max_autotune=True
variant E6b64-gemm --E 6 --batch 64 --bias gemm
variant E6b64-after --E 6 --batch 64 --bias after
variant E6b64-autotune-after --E 6 --batch 64 --bias after --inductor max_autotune=True
variant E3b512-coord-after --E 3 --batch 512 --bias after --inductor coordinate_descent_tuning=True
