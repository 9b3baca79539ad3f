"""The ceiling: a minimal Flask app served by the same gunicorn command as the API
(`gunicorn -w 2 bench.reference:app`). Every API scenario is reported as a ratio of this app's
requests/s on `GET /` (a constant JSON body).

`GET /db/<execution id>` is a second yardstick: the same app doing only what any database-backed
read must do, one primary-key SELECT of an execution over a persistent psycopg2 connection and
its JSON encoding, with no ORM, no authentication and no schema. It shows how much of the
reference's throughput a single PostgreSQL round trip costs on this machine.
"""

import os

from flask import Flask

app = Flask(__name__)

BODY = {"data": {"status": "ok", "service": "reference", "items": [1, 2, 3]}}
_connection = []


def _cursor():
    import psycopg2

    if not _connection:
        url = os.environ["DATABASE_URL"].replace("postgresql+psycopg2://", "postgresql://")
        conn = psycopg2.connect(url)
        conn.autocommit = True
        _connection.append(conn)
    return _connection[0].cursor()


@app.get("/db/<execution_id>")
def one_row(execution_id):
    with _cursor() as cur:
        cur.execute(
            "SELECT id::text, status, progress, params, results, start_date, end_date "
            "FROM executions WHERE id = %s",
            (execution_id,),
        )
        row = cur.fetchone()
    if row is None:
        return {"detail": "not found"}, 404
    keys = ("id", "status", "progress", "params", "results", "start_date", "end_date")
    data = dict(zip(keys, row, strict=True))
    for key in ("start_date", "end_date"):
        if data[key] is not None:
            data[key] = data[key].strftime("%Y-%m-%dT%H:%M:%S.%f")
    return {"data": data}


@app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PATCH"])
@app.route("/<path:path>", methods=["GET", "POST", "PATCH"])
def constant(path):
    return BODY
