#!/usr/bin/env bash
# The next device round for issue 20 (written 2026-12-02): the compile workers as reviewed after round 13
# (markers by compiled step, configs in a file, parent watch) on the GPU, and the study's groups on disjoint SM
# partitions (green contexts). From the repository root:
#     bash benchmarks/device_round14.sh OUT [DEADLINE_S]
#   1. a start of seed 000's study, cold then warm (the warm one should start no worker: every group left a
#      marker), each output line stamped, and the markers listed
#   2. bench_partition.py on the same seven shapes (from the cache the starts filled)
#   3. the GPU tests (the sweep's concurrent groups start workers), with what is left
NAME=device_round14.sh; DEFAULT_DEADLINE=560; R=/tmp/round14
source "$(dirname "$0")/round_common.sh"
frame round14.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round14-pyc
stamp "start"
python3 -c "import cuda.bindings" > "$R/cuda-python.txt" 2>&1; echo "cuda-python import rc $?" >> "$R/cuda-python.txt"
study_starts 330
timeout "$(until_left 180)" python3 benchmarks/bench_partition.py --steps 300 --compile --precision bf16 \
    > "$R/partition.json" 2> "$R/partition.err"
stamp "partition exited $?"; tail -c 3000 "$R/partition.json"; tail -5 "$R/partition.err"
gpu_tests 5 170 tests/test_precompile.py tests/test_groups.py
