#!/usr/bin/env bash
# Issue 20's GPU measurements, one stage a device call, from the repository root:
#     bash benchmarks/run_precision_device.sh OUT evidence|speed|reproduce [DEADLINE_S]
# Each stage has the GPU to itself and runs its commands one after another: on 2026-12-01 (H200) a first
# version ran the evidence, the issue-17 sweep, the GPU tests and cold compilations at once, and the five
# processes starved each other (the evidence had not finished a single group after 500 s).
#   evidence  (~4-5 min, estimated): benchmarks/bench_precision.py (129 runs: about 40 s of data building,
#             then 9 engine groups at once, the char cell's 100k steps the longest), then one run and groups
#             on the default graph path (no compile) in each precision
#   speed     (~7-8 min, estimated): one run with and without torch.compile in each precision (cold compile
#             cache: about 25-50 s an engine), the same fp32 compiled run again in a new process (warm cache:
#             what a second start costs), groups of 1,024 (batch 64) and 512 (batch 512) compiled in tf32 and bf16
#   reproduce (~5 min, estimated): a 10,000-step slice of `groklab reproduce seed-000` in tf32 (cold compile),
#             extrapolated to 100,000 steps (bench_reproduce.py says how)
set -u
OUT=${1:?usage: run_precision_device.sh OUT evidence|speed|reproduce [DEADLINE_S]}
STAGE=${2:?usage: run_precision_device.sh OUT evidence|speed|reproduce [DEADLINE_S]}
DEADLINE=${3:-530}
R=/tmp/precision-$STAGE
mkdir -p "$OUT" "$R"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export TORCHINDUCTOR_CACHE_DIR=/tmp/groklab-inductor  # empty on a fresh machine: the first compile is cold
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$R/timeline.txt"; }
budget() { local t=$(( DEADLINE - ($(date +%s) - T0) - $1 )); (( t < 5 )) && t=5; echo $t; }  # keep $1 s for later
collect() {
    stamp "collecting"
    [ -d /tmp/prec ] && cp /tmp/prec/precision.md /tmp/prec/precision.json "$OUT/" 2>/dev/null
    [ -d /tmp/prec ] && tar czf "$OUT/prec-runs.tar.gz" -C /tmp --exclude='*.safetensors' --exclude='*.png' \
        --exclude='*.txt' prec 2>/dev/null
    [ -d /tmp/rep10k ] && cp /tmp/rep10k/tables.md /tmp/rep10k/bench.json "$OUT/" 2>/dev/null
    tar czf "$OUT/$STAGE-results.tar.gz" -C "$R" . 2>/dev/null
}
trap collect EXIT
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv > "$R/gpu.txt" 2>&1
stamp "stage $STAGE"

case "$STAGE" in
evidence)
    timeout $(budget 100) python3 benchmarks/bench_precision.py --out /tmp/prec > "$R/precision.log" 2>&1
    stamp "bench_precision exited $?"
    timeout $(budget 70) python3 benchmarks/bench_step.py --batch 64 512 --precision fp32 tf32 bf16 --steps 50 \
        --repeats 5 --json "$R/step_graph.json" > "$R/step_graph.log" 2>&1
    stamp "bench_step exited $?"
    timeout $(budget 2) python3 benchmarks/bench_group.py --batch 512 64 --E 512 --precision fp32 tf32 bf16 \
        --steps 10 --repeats 3 --json "$R/group_graph.json" > "$R/group_graph.log" 2>&1
    stamp "bench_group exited $?"
    cat /tmp/prec/precision.md 2>/dev/null
    ;;
speed)
    timeout $(budget 280) python3 benchmarks/bench_step.py --batch 64 512 --precision fp32 tf32 bf16 --compile both \
        --steps 100 --repeats 7 --json "$R/step.json" > "$R/step.log" 2>&1
    stamp "bench_step (cold compile cache) exited $?"
    timeout $(budget 240) python3 benchmarks/bench_step.py --batch 64 512 --precision fp32 --compile on --steps 100 \
        --repeats 7 --json "$R/step_warm.json" > "$R/step_warm.log" 2>&1
    stamp "bench_step (warm compile cache) exited $?"
    timeout $(budget 110) python3 benchmarks/bench_group.py --batch 64 --E 1024 --precision tf32 bf16 --compile \
        --json "$R/group64.json" > "$R/group64.log" 2>&1
    stamp "bench_group 64 exited $?"
    timeout $(budget 2) python3 benchmarks/bench_group.py --batch 512 --E 512 --precision tf32 bf16 --compile \
        --json "$R/group512.json" > "$R/group512.log" 2>&1
    stamp "bench_group 512 exited $?"
    ;;
reproduce)
    timeout $(budget 2) python3 benchmarks/bench_reproduce.py --max_steps 10000 --precision tf32 --out /tmp/rep10k \
        > "$R/rep10k.log" 2>&1
    stamp "bench_reproduce exited $?"
    tail -30 "$R/rep10k.log"
    ;;
*)
    echo "unknown stage $STAGE"; exit 2 ;;
esac
grep -h "^|" "$R"/*.log 2>/dev/null
