"""Profile the real server under load: py-spy on both gunicorn workers while wrk runs.

    .venv/bin/python -m bench.spy --database gefapi_bench --scenario plugin_list

Starts `gunicorn -w 2 main:app` exactly as bench.run does, runs the scenario with wrk
(16 connections) and records both workers with `py-spy record --format raw` for `--seconds`.
Prints the share of worker CPU samples spent inside each function of interest (inclusive)
and the functions with the most samples of their own (self). The raw collapsed stacks are
kept next to the other results (bench/results/spy-<scenario>-<time>.txt) for flame graphs.

Needs py-spy in the venv (`.venv/bin/pip install py-spy`) and root (ptrace).
"""

import argparse
import collections
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.run import (
    ADMIN_EMAIL,
    HEAVY_EMAIL,
    ROOT,
    VENV_BIN,
    Gunicorn,
    app_env,
    login,
    pick_ids,
    preflight,
    run_wrk,
    scenario_list,
)


def fn(name: str, file: str) -> str:
    """A frame of function `name` in a file whose name ends with `file` (py-spy shortens
    paths differently for different modules)."""
    return rf"(?:^|;){re.escape(name)} \((?:[^;()]*/)?{re.escape(file)}:\d+\)"


# (label, regex searched in the ";"-joined stack); inclusive shares.
MARKERS = [
    ("Flask app (everything inside Flask.__call__)", fn("Flask.__call__", "flask/app.py")),
    ("login_required: verify_jwt_in_request", fn("verify_jwt_in_request", "view_decorators.py")),
    ("  JWT decode and claims checks", fn("decode_token", "utils.py")),
    ("  revoked-token lookup (auth._is_revoked)", r"_is_revoked \("),
    ("  user lookup (auth._load_user)", r"_load_user \("),
    ("client_service.record (X-TE-Client)", fn("record", "client_service.py")),
    ("connection checkout incl. pool_pre_ping", r"_ConnectionFairy\._checkout \("),
    ("  pool_pre_ping (SELECT 1 per checkout)", r"do_ping \("),
    (
        "request args / body parsing (webargs, marshmallow load)",
        r"Schema\.load \(|Parser\.parse \(",
    ),
    ("execution_service.list_executions", fn("list_executions", "execution_service.py")),
    (
        "  count(*) query (listing.paginate)",
        fn("paginate", "listing.py") + r";scoped_session\.scalar \(",
    ),
    (
        "  page query and row loading (listing.paginate)",
        fn("paginate", "listing.py") + r";(?:scoped_session\.scalars|chunks) \(",
    ),
    ("execution_service.load_includes", fn("load_includes", "execution_service.py")),
    ("execution_service.get", fn("get", "execution_service.py")),
    ("execution_service.update", fn("update", "execution_service.py")),
    ("execution_service.add_logs", fn("add_logs", "execution_service.py")),
    ("route log_entries (validate lines)", fn("log_entries", "executions.py")),
    ("auth_service.login", fn("login", "auth_service.py")),
    ("  argon2 verify", r"PasswordHasher\.verify \("),
    ("health: _broker_ok", r"_broker_ok \("),
    ("health: _database_ok", r"_database_ok \("),
    ("marshmallow dump (response serialisation)", r"Schema\.dump \("),
    (
        "marshmallow Schema() construction (per request)",
        fn("Schema.__init__", "marshmallow/schema.py"),
    ),
    (
        "  reload of expired rows during dump (one SELECT per row)",
        r"Schema\.dump \(.*(?:load_scalar_attributes|load_on_ident) \(",
    ),
    ("session.commit", r"Session\.commit \("),
    (
        "psycopg2 execute (incl. waiting for PostgreSQL)",
        r"do_execute \(|do_executemany \(|_exec_insertmany_context \(",
    ),
    ("json.loads (jsonb columns via psycopg2, request bodies)", fn("loads", "json/__init__.py")),
    ("response JSON encode (flask json provider)", r"DefaultJSONProvider\.(?:dumps|response) \("),
    ("app context teardown (session.remove, rollback)", r"do_teardown_appcontext \("),
]


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames:
            stacks.append((frames.split(";"), int(count)))
    return stacks


def report(stacks: list[tuple[list[str], int]], top: int = 25) -> str:
    total = sum(count for _, count in stacks) or 1
    lines = [f"{total} samples (both workers, busy only)", "", "inclusive share of worker CPU:"]
    inside = sum(count for frames, count in stacks if any("Flask.__call__" in f for f in frames))
    lines.append(
        f"  {1 - inside / total:6.1%}  gunicorn outside the Flask app (accept, parse, write)"
    )
    for label, pattern in MARKERS:
        regex = re.compile(pattern)
        hits = 0
        for frames, count in stacks:
            joined = ";".join(frames)
            if regex.search(joined):
                hits += count
        if hits:
            lines.append(f"  {hits / total:6.1%}  {label}")
    own = collections.Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
    lines += ["", "self time (top functions):"]
    for frame, count in own.most_common(top):
        lines.append(f"  {count / total:6.1%}  {frame}")
    return "\n".join(lines)


def worker_pids(master_pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(master_pid)], capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in out.split()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spy")
    parser.add_argument("--database", default="gefapi_bench")
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--seconds", type=int, default=10, help="py-spy recording time")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--app", default="main:app", help="WSGI app for gunicorn")
    args = parser.parse_args(argv)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    outdir = ROOT / "bench" / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    storage = outdir / f"spy-storage-{stamp}"
    storage.mkdir()
    env = app_env(args, args.database, storage)
    with Gunicorn(args.app, env, outdir / f"spy-gunicorn-{stamp}.log", "/api-health") as api:
        tokens = {"heavy": login(api.base, HEAVY_EMAIL), "admin": login(api.base, ADMIN_EMAIL)}
        scenario = next(
            (
                s
                for s in scenario_list(args, tokens, pick_ids(args.database))
                if s["key"] == args.scenario
            ),
            None,
        )
        if scenario is None:
            sys.exit(f"unknown scenario {args.scenario}")
        preflight(api.base, scenario)
        run_wrk(api.base, scenario, args, duration=3)  # warm-up
        result = {}
        load = threading.Thread(
            target=lambda: result.update(
                run_wrk(api.base, scenario, args, duration=args.seconds + 4)
            )
        )
        load.start()
        time.sleep(2)
        raw_files = []
        spies = []
        for pid in worker_pids(api.process.pid):
            raw = outdir / f"spy-{args.scenario}-{stamp}-{pid}.txt"
            raw_files.append(raw)
            spies.append(
                subprocess.Popen(
                    [
                        str(VENV_BIN / "py-spy"),
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(args.seconds),
                        "--rate",
                        str(args.rate),
                        "--format",
                        "raw",
                        "--nonblocking",
                        "-o",
                        str(raw),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for spy in spies:
            spy.wait()
        load.join()
    combined = outdir / f"spy-{args.scenario}-{stamp}.txt"
    combined.write_text("".join(path.read_text() for path in raw_files if path.exists()))
    for path in raw_files:
        path.unlink(missing_ok=True)
    storage.rmdir() if not any(storage.iterdir()) else None
    print(
        f"{scenario['name']} on {args.database}: {result.get('rps', 0):.0f} req/s, "
        f"p50 {result.get('p50_us', 0) / 1000:.1f} ms, p99 {result.get('p99_us', 0) / 1000:.1f} ms"
    )
    print(report(parse(combined)))
    print(f"\nraw stacks: {combined}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
