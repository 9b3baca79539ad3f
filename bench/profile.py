"""Profile one benchmark scenario in-process: where does a request's time go?

    .venv/bin/python -m bench.profile --database gefapi_bench --scenario plugin_list

Builds the app exactly as bench.run serves it (ENVIRONMENT=production, rate limits off),
drives the scenario's request through Flask's test client (no HTTP, no gunicorn), and prints:

- the mean wall time per request and how much of it the SQL statements took (timed at the
  DB-API cursor), with each distinct statement, its count and mean time;
- a pyinstrument profile of `--requests` requests (text; `--html` also writes an HTML file
  next to the results).

Scenario keys are those of bench.run: plugin_list, plugin_list_all, get_execution, admin_list,
log_single, log_batch, patch_progress, auth, health.
"""

import argparse
import json
import os
import secrets
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--database", default="gefapi_bench")
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--html", help="also write the profile as HTML to this file")
    parser.add_argument("--no-profile", action="store_true", help="timings and SQL only")
    parser.add_argument("--interval", type=float, default=0.0005)
    parser.add_argument("--app", default="main:app", help="module:attribute of the WSGI app")
    args = parser.parse_args(argv)

    # gefapi.config reads the environment at import time.
    os.environ.update(
        {
            "ENVIRONMENT": "production",
            "SECRET_KEY": secrets.token_urlsafe(36),
            "JWT_SECRET_KEY": secrets.token_urlsafe(36),
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{args.database}",
            "REDIS_URL": args.redis_url,
            "RATE_LIMITING_ENABLED": "false",
        }
    )
    import importlib

    from sqlalchemy import event

    from bench.run import PASSWORD, pick_ids, scenario_list
    from bench.seed import ADMIN_EMAIL, HEAVY_EMAIL
    from gefapi.extensions import db

    module, _, attribute = args.app.partition(":")
    app = getattr(importlib.import_module(module), attribute)
    client = app.test_client()

    def login(email):
        response = client.post("/auth", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["access_token"]

    tokens = {"heavy": login(HEAVY_EMAIL), "admin": login(ADMIN_EMAIL)}
    ids = pick_ids(args.database)
    settings = SimpleNamespace(batch=args.batch)
    scenario = next(
        (s for s in scenario_list(settings, tokens, ids) if s["key"] == args.scenario), None
    )
    if scenario is None:
        sys.exit(f"unknown scenario {args.scenario}")

    headers = {"Content-Type": "application/json"}
    if scenario.get("token"):
        headers["Authorization"] = "Bearer " + scenario["token"]
    if scenario.get("client"):
        headers["X-TE-Client"] = scenario["client"]
    counter = [0]

    def body():
        n = counter[0]
        kind = scenario.get("body", "none")
        if kind == "progress":
            return json.dumps({"progress": n % 100})
        if kind == "log_single":
            return json.dumps({"text": f"profile line {n}", "level": "INFO"})
        if kind == "log_batch":
            return json.dumps(
                [
                    {"text": f"profile line {n}.{i} tile export", "level": "INFO"}
                    for i in range(args.batch)
                ]
            )
        if kind == "login":
            return json.dumps({"email": scenario["email"], "password": PASSWORD})
        return None

    def one():
        counter[0] += 1
        path = scenario["paths"][counter[0] % len(scenario["paths"])]
        response = client.open(
            path, method=scenario.get("method", "GET"), headers=headers, data=body()
        )
        assert response.status_code == 200, (response.status_code, response.get_data()[:300])
        return response

    statements: dict[str, list[float]] = defaultdict(list)
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        started = conn.info["bench_t0"].pop()
        statements[" ".join(statement.split())].append(time.perf_counter() - started)

    for _ in range(args.warmup):
        one()
    statements.clear()

    started = time.perf_counter()
    for _ in range(args.requests):
        one()
    wall = (time.perf_counter() - started) / args.requests
    sql_total = sum(sum(times) for times in statements.values()) / args.requests
    count = sum(len(times) for times in statements.values()) / args.requests
    print(f"scenario {scenario['name']} on {args.database}: {args.requests} requests")
    print(
        f"  mean {wall * 1000:.2f} ms per request; SQL {sql_total * 1000:.2f} ms "
        f"({count:.1f} statements) = {sql_total / wall:.0%}; "
        f"Python {(wall - sql_total) * 1000:.2f} ms"
    )
    for statement, times in sorted(statements.items(), key=lambda item: -sum(item[1])):
        print(
            f"  {len(times) / args.requests:5.2f}x {sum(times) / len(times) * 1000:8.3f} ms  "
            f"{statement[:220]}"
        )

    if not args.no_profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=args.interval)
        profiler.start()
        for _ in range(args.requests):
            one()
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        if args.html:
            Path(args.html).write_text(profiler.output_html())
    return 0


if __name__ == "__main__":
    sys.exit(main())
