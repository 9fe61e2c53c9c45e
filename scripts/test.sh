#!/usr/bin/env bash
# The test command: set everything up and run the whole suite.
#   bash scripts/test.sh                 # everything (what CI runs)
#   bash scripts/test.sh -m "not slow"   # the fast set only
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev --vllm  # the vLLM backend's tests run too
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "browser tests need Chromium: sudo apt-get install chromium (Debian/Ubuntu)" >&2
    exit 1
  fi
fi
mkdir -p test-output
exec .venv/bin/python -m pytest "$@"
