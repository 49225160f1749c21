#!/usr/bin/env bash
# The precision evidence alone on a GPU, then the graph-path timings (no compile) with what time is left:
#     bash benchmarks/run_precision_evidence.sh OUT [DEADLINE_S]
set -u
OUT=${1:?usage: run_precision_evidence.sh OUT [DEADLINE_S]}
DEADLINE=${2:-160}
R=/tmp/precision-results
mkdir -p "$OUT" "$R"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$R/timeline.txt"; }
budget() { local t=$(( DEADLINE - ($(date +%s) - T0) - $1 )); (( t < 5 )) && t=5; echo $t; }
collect() {
    stamp "collecting"
    cp /tmp/prec/precision.md /tmp/prec/precision.json "$OUT/" 2>/dev/null
    tar czf "$OUT/prec-runs.tar.gz" -C /tmp --exclude='*.safetensors' --exclude='data' --exclude='*.png' prec 2>/dev/null
    tar czf "$OUT/results2.tar.gz" -C "$R" . 2>/dev/null
}
trap collect EXIT
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv > "$R/gpu.txt" 2>&1
stamp "evidence"
timeout $(budget 40) python3 benchmarks/bench_precision.py --out /tmp/prec > "$R/precision.log" 2>&1 &
P=$!
timeout 100 python3 -m pytest -q -p no:cacheprovider \
    "tests/test_gpu.py::test_groups_of_different_precision_trained_at_once_match_each_alone" \
    "tests/test_gpu.py::test_tf32_runs_fp32_without_the_graph_and_says_so" > "$R/pytest.log" 2>&1
stamp "pytest exited $?"
wait $P; stamp "evidence exited $?"
tail -2 "$R/pytest.log"
timeout $(budget 30) python3 benchmarks/bench_step.py --batch 64 512 --precision fp32 tf32 bf16 --steps 50 --repeats 5 \
    --json "$R/step_graph.json" > "$R/step_graph.log" 2>&1
stamp "bench_step exited $?"
timeout $(budget 2) python3 benchmarks/bench_group.py --batch 512 64 --E 512 --precision fp32 tf32 bf16 --steps 10 \
    --repeats 3 --json "$R/group_graph.json" > "$R/group_graph.log" 2>&1
stamp "bench_group exited $?"
grep -h "^|" "$R/step_graph.log" "$R/group_graph.log"
cat /tmp/prec/precision.md 2>/dev/null || tail -5 "$R/precision.log"
