#!/usr/bin/env bash
# gefapi: one entry point for running, testing and operating the service.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="${GEFAPI_VENV:-$ROOT/.venv}"
export FLASK_APP=main

usage() {
  cat <<'USAGE'
Usage: ./gefapi.sh <command> [args]

  start          run the API on http://127.0.0.1:${PORT:-5000} with a Celery worker and beat
                 (needs DATABASE_URL and REDIS_URL for now); applies migrations and creates
                 the first admin (ADMIN_EMAIL / ADMIN_PASSWORD, else printed once)
  test [args]    run the test suite (pytest args pass through)
  migrate [args] flask db upgrade (or: ./gefapi.sh migrate downgrade base, check, ...)
  worker         run a Celery worker
  beat           run Celery beat
  shell          a Flask shell with the app loaded
  create-admin   create the first SUPERADMIN
  lint           ruff check + ruff format --check
USAGE
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.requirements.sha"
  local want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt
    echo "$want" > "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

require_services() {
  local missing=""
  [ -n "${DATABASE_URL:-}" ] || missing="$missing DATABASE_URL"
  [ -n "${REDIS_URL:-}" ] || missing="$missing REDIS_URL"
  if [ -n "$missing" ]; then
    echo "gefapi: set$missing first, e.g." >&2
    echo "  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/gefapi REDIS_URL=redis://127.0.0.1:6379/0 ./gefapi.sh start" >&2
    exit 2
  fi
}

cmd_start() {
  ensure_venv
  require_services
  flask db upgrade
  flask create-admin
  local pids=()
  trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
  celery -A gefapi.celery worker --loglevel=INFO --concurrency=2 & pids+=($!)
  celery -A gefapi.celery beat --loglevel=INFO --schedule "${TMPDIR:-/tmp}/gefapi-beat-schedule" & pids+=($!)
  gunicorn --bind "127.0.0.1:${PORT:-5000}" --workers "${WEB_CONCURRENCY:-2}" \
    --access-logfile - main:app & pids+=($!)
  echo "gefapi: serving on http://127.0.0.1:${PORT:-5000} (Ctrl-C stops everything)"
  wait -n "${pids[@]}"
}

cmd_test() {
  ensure_venv
  set +e
  python -m pytest "$@"
  local status=$?
  set -e
  # pytest's "no tests ran" (5) is a failure, never a green run.
  [ "$status" -eq 5 ] && echo "gefapi: no tests ran" >&2 && exit 1
  exit "$status"
}

command="${1:-help}"
shift || true
case "$command" in
  start) cmd_start "$@" ;;
  test) cmd_test "$@" ;;
  migrate) ensure_venv; require_services; if [ $# -eq 0 ]; then flask db upgrade; else flask db "$@"; fi ;;
  worker) ensure_venv; require_services; exec celery -A gefapi.celery worker --loglevel=INFO "$@" ;;
  beat) ensure_venv; require_services; exec celery -A gefapi.celery beat --loglevel=INFO "$@" ;;
  shell) ensure_venv; require_services; exec flask shell ;;
  create-admin) ensure_venv; require_services; exec flask create-admin "$@" ;;
  lint) ensure_venv; ruff check . && ruff format --check . ;;
  help|-h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac
