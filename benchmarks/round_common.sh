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
