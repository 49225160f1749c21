#!/usr/bin/env bash
# Issue 20's GPU measurements in one device call, from the repository root:
#     bash benchmarks/run_precision_device.sh OUT [DEADLINE_S]
# Phase A runs at once what is judged by its numbers, not its times: the precision evidence
# (bench_precision.py), the main-job search sweep (issue 17), the GPU tests, and a first, cold compilation of
# every engine that phase B times (which fills the compile cache). Phase B then has the GPU alone: one run
# (bench_step.py), groups (bench_group.py) and a slice of `groklab reproduce seed-000` (bench_reproduce.py),
# each against the eager nanoGPT-style loop in the same process. Everything lands in OUT (at most 8 files).
set -u
OUT=${1:?usage: run_precision_device.sh OUT [DEADLINE_S]}
DEADLINE=${2:-515}
R=/tmp/precision-results
mkdir -p "$OUT" "$R"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export TORCHINDUCTOR_CACHE_DIR=/tmp/groklab-inductor  # empty at start: phase A compiles cold, phase B warm
export TORCHINDUCTOR_COMPILE_THREADS=4  # five processes compile at once in phase A
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$R/timeline.txt"; }
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
budget() { local t=$(( $(left) - $1 )); (( t < 10 )) && t=10; echo $t; }  # seconds, keeping $1 for what follows
wait_until() {  # wait_until T PID...: wait for these processes, but not past T seconds from the start
    for p in "${@:2}"; do
        while kill -0 "$p" 2>/dev/null && (( $(date +%s) - T0 < $1 )); do sleep 2; done
        if kill -0 "$p" 2>/dev/null; then stamp "pid $p still running at ${1} s: going on"; else wait "$p"; stamp "pid $p exited $?"; fi
    done
}
collect() {
    stamp "collecting"
    cp /tmp/mjs/results/runs.parquet /tmp/mjs/results/evals.parquet "$OUT/" 2>/dev/null
    cp /tmp/prec/precision.md /tmp/prec/precision.json "$OUT/" 2>/dev/null
    tar czf "$OUT/results.tar.gz" -C "$R" . 2>/dev/null
    tar czf "$OUT/runs-meta.tar.gz" -C /tmp prec/results prec/sweep.json rep10k/tables.md rep10k/bench.json \
        mjs/sweep.json 2>/dev/null
}
trap collect EXIT

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv > "$R/gpu.txt" 2>&1
python3 -c "import torch, scipy; print('torch', torch.__version__, 'scipy', scipy.__version__)" >> "$R/gpu.txt" 2>&1
nproc >> "$R/gpu.txt"

stamp "phase A"
python3 -m groklab sweep benchmarks/specs/main-job-search.toml --out /tmp/mjs --no_progress > "$R/mjs.log" 2>&1 &
P_MJS=$!
python3 benchmarks/bench_precision.py --out /tmp/prec > "$R/precision.log" 2>&1 &
P_PREC=$!
python3 benchmarks/bench_step.py --batch 64 512 --precision fp32 tf32 bf16 --compile both --steps 5 --repeats 1 \
    --json "$R/step_cold.json" > "$R/step_cold.log" 2>&1 &
P1=$!
python3 benchmarks/bench_group.py --batch 64 --E 1024 --precision tf32 bf16 --compile --steps 2 --repeats 1 \
    --json "$R/group_cold64.json" > "$R/group_cold64.log" 2>&1 &
P2=$!
python3 benchmarks/bench_group.py --batch 512 --E 512 --precision tf32 bf16 --compile --steps 2 --repeats 1 \
    --json "$R/group_cold512.json" > "$R/group_cold512.log" 2>&1 &
P3=$!
python3 benchmarks/bench_reproduce.py --max_steps 20 --no-baseline --precision tf32 --out /tmp/rep-warm \
    > "$R/rep_warm.log" 2>&1 &
P4=$!
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_precision.py \
    "tests/test_sweep.py::test_groups_trained_concurrently_match_groups_trained_in_turn" > "$R/pytest.log" 2>&1 &
P5=$!
wait_until 250 $P1 $P2 $P3 $P4 $P5
wait_until 280 $P_MJS $P_PREC
tail -3 "$R/mjs.log"

stamp "phase B (GPU alone)"
timeout $(budget 150) python3 benchmarks/bench_step.py --batch 64 512 --precision fp32 tf32 bf16 --compile both \
    --steps 100 --repeats 7 --json "$R/step.json" > "$R/step.log" 2>&1
stamp "bench_step exited $?"
timeout $(budget 110) python3 benchmarks/bench_group.py --batch 64 --E 1024 --precision tf32 bf16 --compile \
    --json "$R/group64.json" > "$R/group64.log" 2>&1
stamp "bench_group 64 exited $?"
timeout $(budget 90) python3 benchmarks/bench_group.py --batch 512 --E 512 --precision tf32 bf16 --compile \
    --json "$R/group512.json" > "$R/group512.log" 2>&1
stamp "bench_group 512 exited $?"
timeout $(budget 5) python3 benchmarks/bench_reproduce.py --max_steps 10000 --precision tf32 --out /tmp/rep10k \
    > "$R/rep10k.log" 2>&1
stamp "bench_reproduce exited $?"
cat "$R/step.log" "$R/group64.log" "$R/group512.log" | grep "^|"
tail -25 "$R/rep10k.log"
cat /tmp/prec/precision.md 2>/dev/null
tail -5 "$R/pytest.log"
wait_until "$DEADLINE" $P_MJS $P_PREC  # anything of phase A still running gets what time is left
