"""Hostile input from anyone, signed in or not (issue 11, finding 3): JSON nested past the
recursion limit, integers past Python's digit limit, a NUL in configuration.json, requests past
gunicorn's own limits and chunked bodies past MAX_CONTENT_LENGTH. Each is a 4xx in the contract's
error shape (never a 500, never HTML) and leaves no traceback in the log."""

import gzip
import http.client
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from gefapi.models import ExecutionStatus, Role
from tests.conftest import REDIS_URL, free_port
from tests.helpers import assert_error

ROOT = Path(__file__).resolve().parent.parent
NESTED = "[" * 1000 + "]" * 1000  # 2 KB
LONG_INT = "9" * 5000  # past Python's 4300-digit integer-string limit


def assert_no_traceback(caplog) -> None:
    logged = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert logged == [], [r.getMessage() for r in logged]


@pytest.fixture
def callers(make_user, make_script, make_execution, runtime_headers, auth):
    user = make_user(role=Role.USER)
    script = make_script(user)
    execution = make_execution(script, user, status=ExecutionStatus.RUNNING)
    return {
        "anonymous": ({}, {}),
        "user": (auth(user), {"script": script.id}),
        "runtime": (runtime_headers(execution), {"execution": execution.id}),
    }


HOSTILE_BODIES = {
    "nested": NESTED,
    "nested holding a NUL": "[" * 1000 + '"\\u0000"' + "]" * 1000,
    "long integer": '{"email": "a@example.org", "password": ' + LONG_INT + "}",
    "nested long integer": '{"name": [[' + LONG_INT + "]]}",
    # Python reads these; JSON has no such numbers and PostgreSQL's jsonb refuses them.
    "NaN": '{"name": {"a": NaN}}',
    "Infinity": '{"name": [-Infinity]}',
    "float past the range": '{"name": {"a": 1e400}}',
    "long float": '{"name": {"a": ' + "9" * 400 + ".5}}",
}
ENDPOINTS = [
    ("anonymous", "POST", "/auth"),
    ("anonymous", "POST", "/auth/refresh"),
    ("anonymous", "POST", "/api/v1/user"),
    ("user", "PATCH", "/api/v1/user/me"),
    ("user", "POST", "/api/v1/script/{script}/run"),
    ("runtime", "PATCH", "/api/v1/execution/{execution}"),
    ("runtime", "POST", "/api/v1/execution/{execution}/log"),
]


@pytest.mark.parametrize(("caller", "method", "path"), ENDPOINTS)
@pytest.mark.parametrize("hostile", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_hostile_json_is_400(client, callers, caplog, caller, method, path, hostile, compressed):
    headers, ids = callers[caller]
    data = hostile.encode()
    if compressed:
        data = gzip.compress(data)
        headers = {**headers, "Content-Encoding": "gzip"}
    response = client.open(
        path.format(**ids),
        method=method,
        data=data,
        content_type="application/json",
        headers=headers,
    )
    assert_error(response, 400)
    assert_no_traceback(caplog)


NOT_JSON_NUMBERS = {
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "exponent past the range": "1e400",
    "digits past the range": "9" * 400 + ".5",
}
WHERE = [
    ("runtime", "PATCH", "/api/v1/execution/{execution}", '{{"results": {{"area": {}}}}}'),
    ("user", "POST", "/api/v1/script/{script}/run", '{{"threshold": {}}}'),
]
WHERE_IDS = ["results", "run params"]


@pytest.mark.parametrize(("caller", "method", "path", "template"), WHERE, ids=WHERE_IDS)
@pytest.mark.parametrize("number", NOT_JSON_NUMBERS.values(), ids=NOT_JSON_NUMBERS.keys())
def test_numbers_json_does_not_have_are_400(
    client, callers, caplog, caller, method, path, template, number
):
    """Results and params are stored as jsonb, which refuses them (a 500 before)."""
    headers, ids = callers[caller]
    response = client.open(
        path.format(**ids),
        method=method,
        data=template.format(number),
        content_type="application/json",
        headers=headers,
    )
    assert_error(response, 400)
    assert_no_traceback(caplog)


@pytest.mark.parametrize(("caller", "method", "path", "template"), WHERE, ids=WHERE_IDS)
@pytest.mark.parametrize("number", ["1.5e300", "-2.5E-300", "9" * 4000, "0.1"])
def test_large_numbers_json_has_are_stored(client, callers, caller, method, path, template, number):
    """The control: large floats and integers within Python's limits are accepted."""
    headers, ids = callers[caller]
    response = client.open(
        path.format(**ids),
        method=method,
        data=template.format(number),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:300]


# configuration.json ----------------------------------------------------------------------------


def archive(configuration: str) -> dict:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in (
            ("configuration.json", configuration.encode()),
            ("requirements.txt", b""),
            ("src/main.py", b"def run(params, logger):\n    return {}\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return {
        "data": {"file": (io.BytesIO(buffer.getvalue()), "hostile.tar.gz")},
        "content_type": "multipart/form-data",
    }


CONFIGURATIONS = {
    "NUL in name": (json.dumps({"name": "hostile\x00script"}), "name"),
    "NUL in description": (json.dumps({"name": "hostile", "description": "a\x00b"}), "description"),
    "NUL in a params_schema key": (
        json.dumps({"name": "hostile", "params_schema": {"properties": {"a\x00": {}}}}),
        "params_schema",
    ),
    "nested": ('{"name": "hostile", "extra": ' + NESTED + "}", None),
    "long integer": ('{"name": "hostile", "memory_limit": ' + LONG_INT + "}", None),
    "NaN in params_schema": ('{"name": "hostile", "params_schema": {"default": NaN}}', None),
}


@pytest.mark.parametrize(("configuration", "field"), CONFIGURATIONS.values(),
                         ids=CONFIGURATIONS.keys())  # fmt: skip
@pytest.mark.parametrize("method", ["POST", "PATCH"], ids=["publish", "new version"])
def test_hostile_configuration_is_400(
    client, make_user, make_script, auth, storage_root, sent_tasks, caplog, configuration, field,
    method,
):  # fmt: skip
    admin = make_user(role=Role.SUPERADMIN)
    path = "/api/v1/script"
    if method == "PATCH":
        path += f"/{make_script(admin).id}"
    response = client.open(path, method=method, headers=auth(admin), **archive(configuration))
    body = assert_error(response, 400)
    if field:
        assert field in body["errors"], body
    assert sent_tasks == []
    assert not os.path.exists(storage_root) or not os.listdir(storage_root)
    assert_no_traceback(caplog)


# A real gunicorn -------------------------------------------------------------------------------

MAX_CONTENT_LENGTH = 16 * 1024  # above every hostile body above


@pytest.fixture(scope="module")
def gunicorn(app, database_url, tmp_path_factory):
    """`gunicorn main:app` started in the repository, as the image and `gefapi.sh start` do."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_", "GUNICORN_"))
    }
    env.update(
        DATABASE_URL=database_url,
        ENVIRONMENT="testing",
        RATE_LIMITING_ENABLED="false",
        MAX_CONTENT_LENGTH=str(MAX_CONTENT_LENGTH),
        CELERY_BROKER_URL="sqla+" + database_url,
    )
    if REDIS_URL:
        env.update(REDIS_URL=REDIS_URL, CELERY_BROKER_URL=REDIS_URL)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1",
             "main:app"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(port, process, log_path)
        yield port, log_path
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_for(port: int, process, log_path: Path) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        assert process.poll() is None, log_path.read_text()[-3000:]
        try:
            status, _, _ = send(port, b"GET /api-health HTTP/1.1\r\nHost: x\r\n\r\n")
            if status:
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(log_path.read_text()[-3000:])


def send(port: int, raw: bytes) -> tuple[int, str, bytes]:
    """One raw HTTP/1.1 request: (status, content type, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.getheader("Content-Type", ""), response.read()


def chunked(body: bytes) -> bytes:
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def post_chunked(port: int, body: bytes, content_type: str = "application/json", extra: str = ""):
    head = (
        "POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n{extra}\r\n"
    )
    return send(port, head.encode() + chunked(body))


def assert_json_error(answer, status: int) -> dict:
    got, content_type, raw = answer
    assert got == status, (got, raw[:300])
    assert content_type.startswith("application/json"), (content_type, raw[:300])
    body = json.loads(raw)
    assert body["status"] == status and body["error_code"], body
    assert body["detail"] == body["msg"] == body["message"], body
    return body


GUNICORN_REFUSALS = {
    "request line past the limit (414)": (
        b"GET /api/v1/script?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        414,
    ),
    "header past the limit (431)": (
        b"GET /api-health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        431,
    ),
    "too many headers (431)": (
        b"GET /api-health HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % n for n in range(150))
        + b"\r\n",
        431,
    ),
    "malformed request line (400)": (b"NOT HTTP AT ALL\r\n\r\n", 400),
}


@pytest.mark.parametrize(("raw", "status"), GUNICORN_REFUSALS.values(),
                         ids=GUNICORN_REFUSALS.keys())  # fmt: skip
def test_gunicorn_refusals_are_json(gunicorn, raw, status):
    port, _ = gunicorn
    assert_json_error(send(port, raw), status)


def test_chunked_body_past_the_limit_is_413(gunicorn):
    port, _ = gunicorn
    body = json.dumps({"email": "a@example.org", "password": "x" * MAX_CONTENT_LENGTH}).encode()
    assert_json_error(post_chunked(port, body), 413)


def test_chunked_body_within_the_limit_is_read(gunicorn):
    """The control: the same login, chunked and small, reaches the credential check."""
    port, _ = gunicorn
    body = json.dumps({"email": "nobody@example.org", "password": "wrong password"}).encode()
    assert_json_error(post_chunked(port, body), 401)


def test_chunked_gzip_body_is_read(gunicorn):
    """The plugin and the runtime gzip bodies; chunked, they reach the check as well."""
    port, _ = gunicorn
    body = json.dumps({"email": "nobody@example.org", "password": "wrong password"}).encode()
    answer = post_chunked(port, gzip.compress(body), extra="Content-Encoding: gzip\r\n")
    assert_json_error(answer, 401)


def test_chunked_body_meets_the_content_type_check(gunicorn):
    port, _ = gunicorn
    assert_json_error(post_chunked(port, b"email=a", "text/plain"), 415)


def test_hostile_json_through_gunicorn_leaves_no_traceback(gunicorn):
    port, log_path = gunicorn
    for hostile in HOSTILE_BODIES.values():
        head = (
            "POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(hostile)}\r\n\r\n"
        )
        assert_json_error(send(port, (head + hostile).encode()), 400)
    assert "Traceback" not in log_path.read_text()
