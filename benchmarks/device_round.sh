#!/usr/bin/env bash
# One device call for issues 17 and 20, from the repository root, each stage alone on the GPU, in order of
# what matters most, each cut off so that the next still runs and everything comes back:
#     bash benchmarks/device_round.sh OUT [DEADLINE_S]
#   1. the precision evidence (benchmarks/bench_precision.py: main job and Grokfast task x 20 seeds, the
#      character-level add cell at 100k steps, per precision)
#   2. one run's step against nanoGPT's eager loop, per precision, default graph path (benchmarks/bench_step.py)
#   3. Nanda et al.'s study (`groklab reproduce nanda`)
#   4. groups of 512 runs per precision, graph path (benchmarks/bench_group.py)
NAME=device_round.sh; DEFAULT_DEADLINE=560; R=/tmp/round
source "$(dirname "$0")/round_common.sh"
collect() {
    stamp "collecting"
    cp /tmp/prec/precision.md /tmp/prec/precision.json "$OUT/" 2>/dev/null
    tar czf "$OUT/prec-results.tar.gz" -C /tmp prec/results prec/sweep.json 2>/dev/null
    tar czf "$OUT/nanda.tar.gz" -C /tmp --exclude='*.safetensors' --exclude='data' nanda 2>/dev/null
    tar czf "$OUT/round-logs.tar.gz" -C "$R" . 2>/dev/null
}
trap collect EXIT
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv > "$R/gpu.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" >> "$R/gpu.txt" 2>&1
stamp "start"
timeout "$(until_left 230)" python3 benchmarks/bench_precision.py --out /tmp/prec > "$R/precision.log" 2>&1
stamp "bench_precision exited $?"
timeout "$(until_left 190)" python3 benchmarks/bench_step.py --batch 64 512 --precision fp32 tf32 bf16 --steps 50 \
    --repeats 5 --json "$R/step_graph.json" > "$R/step_graph.log" 2>&1
stamp "bench_step exited $?"
timeout "$(until_left 60)" python3 -m groklab reproduce nanda --out /tmp/nanda --max_steps 30000 --compile false > "$R/nanda.log" 2>&1
stamp "reproduce nanda exited $?"
timeout "$(until_left 5)" python3 benchmarks/bench_group.py --batch 512 64 --E 512 --precision fp32 tf32 bf16 \
    --steps 10 --repeats 3 --json "$R/group_graph.json" > "$R/group_graph.log" 2>&1
stamp "bench_group exited $?"
cat /tmp/prec/precision.md 2>/dev/null | head -60
grep -h "^|" "$R"/step_graph.log "$R"/group_graph.log 2>/dev/null
tail -5 "$R/nanda.log"
