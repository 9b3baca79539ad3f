"""gunicorn answers a request it cannot parse (a request line or header past its limits,
malformed HTTP) itself, before the app sees it, with an HTML page. The contract wants every
error in its JSON shape (CONTRACT section 1): gunicorn.conf.py makes each worker write these
answers with `write_json_error` instead."""

import json

import gunicorn.util

from gefapi.errors import error_body


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's signature and framing, with the contract's body."""
    if status_int >= 500:
        detail, code = "Internal server error", "internal_error"
    else:
        detail, code = mesg or reason, reason.lower().replace(" ", "_").replace("-", "_")
    body = json.dumps(error_body(status_int, detail, code)).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    gunicorn.util.write_error = write_json_error
