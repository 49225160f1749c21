# Sourced by the device rounds (device_round*.sh) after they set NAME, DEFAULT_DEADLINE and R: the output folder,
# the deadline, the environment and the two helpers every stage uses.
set -u
OUT=${1:?usage: $NAME OUT [DEADLINE_S]}
DEADLINE=${2:-$DEFAULT_DEADLINE}
mkdir -p "$OUT" "$R"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$R/timeline.txt"; }
until_left() { local t=$(( DEADLINE - ($(date +%s) - T0) - $1 )); (( t < 5 )) && t=5; echo $t; }  # keep $1 s
# the frame most rounds share: an empty compile cache of their own (the first compile is cold), what GPU ran
# them, and everything under $R packed into $OUT/$1 however the round ends
frame() {
    export XDG_CACHE_HOME="$R-cache"
    trap "stamp collecting; tar czf '$OUT/$1' -C '$R' . 2>/dev/null" EXIT
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv > "$R/gpu.txt" 2>&1
    python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" >> "$R/gpu.txt" 2>&1
}
# the GPU tests (every CUDA test, the sweep's concurrent groups, and any tests given), 4 at a time, leaving
# $1 s of the deadline to the stages after them, $2 s a test at most; their log in $R/tests.log
gpu_tests() {
    local keep=$1 per_test=$2
    shift 2
    timeout "$(until_left "$keep")" python3 -m pytest -v -p no:cacheprovider -p no:benchmark -n 4 --timeout "$per_test" \
        tests/test_gpu.py "tests/test_sweep.py::test_groups_trained_concurrently_match_groups_trained_in_turn" \
        "$@" > "$R/tests.log" 2>&1
    stamp "tests exited $?"; grep -E "^FAILED|^ERROR|Timeout|[0-9]+ passed|[0-9]+ failed" "$R/tests.log" | tail -25
}
# seed 000's study started twice, cold then warm (`--max_steps 200`: the full study's seven shapes), leaving
# $1 s of the deadline after each; each output line stamped with its second, in $R/start-{cold,warm}.log
study_starts() {
    local keep=$1 start S0
    for start in cold warm; do
        S0=$(date +%s)
        timeout "$(until_left "$keep")" python3 -m groklab reproduce seed-000 --precision bf16 --max_steps 200 \
            --out "$R-$start" 2>&1 | while IFS= read -r line; do echo "[$(( $(date +%s) - S0 )) s] $line"; done \
            > "$R/start-$start.log"
        stamp "$start start exited ${PIPESTATUS[0]} after $(( $(date +%s) - S0 )) s"
        grep -E "running · 0 failed$|run-steps|report written" "$R/start-$start.log" | head -12
        ls "$XDG_CACHE_HOME/groklab/torchinductor/groklab-groups" 2>/dev/null | wc -l
    done
}
