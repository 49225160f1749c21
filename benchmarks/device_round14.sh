#!/usr/bin/env bash
# The next device round for issue 20 (written 2026-12-02, not yet run): the compile workers as reviewed after
# round 13 (markers by compiled step, configs in a file, parent watch), on the GPU. From the repository root:
#     bash benchmarks/device_round14.sh OUT [DEADLINE_S]
#   1. a start of seed 000's study, cold then warm (the warm one should start no worker: every group left a
#      marker), each output line stamped, and the markers listed
#   2. the GPU tests (the sweep's concurrent groups start workers), with what is left
NAME=device_round14.sh; DEFAULT_DEADLINE=560; R=/tmp/round14
source "$(dirname "$0")/round_common.sh"
frame round14.tar.gz
export PYTHONPYCACHEPREFIX=/tmp/round14-pyc
stamp "start"
study_starts 230
gpu_tests 5 170 tests/test_precompile.py tests/test_groups.py
