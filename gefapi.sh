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

  start          run the API on http://127.0.0.1:${PORT:-5000} with a Celery worker and beat;
                 what is not configured is embedded (PostgreSQL, broker, execution backend);
                 applies migrations, creates the first admin (ADMIN_EMAIL / ADMIN_PASSWORD,
                 else printed once)
  develop [args] the Swarm stack of docker-compose.staging.yml on this engine
                 (docker stack deploy; `develop down` removes it)
  test [args]    run the test suite (pytest args pass through)
  migrate [args] flask db upgrade (or: ./gefapi.sh migrate downgrade base, check, ...)
  worker         run a Celery worker
  beat           run Celery beat
  shell          a Flask shell with the app loaded
  create-admin   create the first SUPERADMIN (--email, --password)
  set-password EMAIL [--password P]
                 a new password for an account (a lost admin password), else printed once
                 These six use the same instance as start (GEFAPI_INSTANCE, ./instance):
                 its embedded database while start runs, else started for the command;
                 DATABASE_URL / REDIS_URL when set.
  lint           ruff check + ruff format --check
USAGE
}

ensure_venv() {
  # Running the service needs requirements.txt; tests and lint need requirements-dev.txt too.
  local file="${1:-requirements-dev.txt}"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.requirements.sha" runtime dev want
  runtime="requirements.txt:$(sha256sum < requirements.txt | cut -d' ' -f1)"
  dev="requirements-dev.txt:$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
  want=$runtime
  [ "$file" = requirements-dev.txt ] && want=$dev
  # The development set includes the runtime one.
  if ! grep -qxF "$want" "$stamp" 2>/dev/null && ! grep -qxF "$dev" "$stamp" 2>/dev/null; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$file"
    { echo "$runtime"; [ "$want" = "$dev" ] && echo "$dev"; } > "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

# migrate, worker, beat, shell and create-admin run against the instance that `start` uses, with
# the same defaults: whatever is not configured (DATABASE_URL, REDIS_URL) is the embedded one,
# shared with a running start or started for the command and stopped after it.
on_instance() {
  ensure_venv requirements.txt
  exec python -m gefapi.launcher run "$@"
}

cmd_start() {
  ensure_venv requirements.txt
  exec python -m gefapi.launcher
}

cmd_develop() {
  ensure_venv
  if [ "${1:-}" = "down" ]; then exec docker stack rm gefapi-dev; fi
  docker build -t "${IMAGE:-gefapi/api:dev}" --build-arg "BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}" .
  IMAGE="${IMAGE:-gefapi/api:dev}" SECRET_KEY="${SECRET_KEY:-$(python -c 'import secrets;print(secrets.token_urlsafe(48))')}" \
    JWT_SECRET_KEY="${JWT_SECRET_KEY:-$(python -c 'import secrets;print(secrets.token_urlsafe(48))')}" \
    docker stack deploy -c docker-compose.staging.yml gefapi-dev
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
  develop) cmd_develop "$@" ;;
  test) cmd_test "$@" ;;
  migrate) if [ $# -eq 0 ]; then on_instance flask db upgrade; else on_instance flask db "$@"; fi ;;
  worker) on_instance celery -A gefapi.celery worker --loglevel=INFO "$@" ;;
  beat) on_instance celery -A gefapi.celery beat --loglevel=INFO "$@" ;;
  shell) on_instance flask shell "$@" ;;
  create-admin) on_instance flask create-admin "$@" ;;
  set-password) on_instance flask set-password "$@" ;;
  lint) ensure_venv; ruff check . && ruff format --check . ;;
  help|-h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac
