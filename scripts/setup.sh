#!/usr/bin/env bash
# Create .venv and install groklab into it. Torch is chosen so that a CPU-only machine never downloads a
# several-GB CUDA build:
#   1. a torch already in .venv is kept (bring your own: GPU users can install theirs first);
#   2. GROKLAB_TORCH="torch==X ..." installs exactly that spec;
#   3. a CPU wheel that pip finds locally (find-links, no index; e.g. this project's CI image) is used;
#   4. with an NVIDIA driver (nvidia-smi), PyPI's default (CUDA) build;
#   5. otherwise the CPU build from PyTorch's CPU index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${1:-}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ -n "${GROKLAB_TORCH:-}" ]; then
    "${pip[@]}" install $GROKLAB_TORCH
  elif "${pip[@]}" install --no-index --no-deps "torch==2.13.0" 2>/dev/null; then
    "${pip[@]}" install "torch==2.13.0"  # its dependencies, from the index
  elif command -v nvidia-smi >/dev/null 2>&1; then
    "${pip[@]}" install "torch>=2.10"
  else
    "${pip[@]}" install "torch>=2.10" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
"${pip[@]}" install -e ".${EXTRAS:+[$EXTRAS]}"
.venv/bin/python -c "import torch, groklab; print(f'groklab {groklab.__version__} · torch {torch.__version__} · CUDA {torch.cuda.is_available()}')"
