"""WSGI middleware: chunked request bodies given a length, gzip-encoded ones decompressed, each
with a hard cap."""

import io
import tempfile
import zlib

from gefapi.jsonprovider import holds_nul, loads_body

BODY_ERROR_KEY = "gefapi.body_error"
SPOOL_BYTES = 1024 * 1024  # a chunked body past this waits in a temporary file
READ_BYTES = 64 * 1024


class ChunkedRequestMiddleware:
    """Reads a chunked body (no Content-Length) up front, so that it has a length and meets the
    same limits and checks as any other body.

    Werkzeug would stop reading such a body at MAX_CONTENT_LENGTH and hand on the truncated
    start, which then fails to parse (a 400 instead of the 413). A body past `max_size()` is
    dropped here and the reason left in the environ, as GzipRequestMiddleware does.
    """

    def __init__(self, app, max_size):
        self.app = app
        self.max_size = max_size

    def __call__(self, environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and environ.get("wsgi.input_terminated") and not environ.get("CONTENT_LENGTH"):
            self._buffer(environ, self.max_size())
        return self.app(environ, start_response)

    @staticmethod
    def _buffer(environ, max_size: int) -> None:
        stream = environ["wsgi.input"]
        body = tempfile.SpooledTemporaryFile(SPOOL_BYTES)  # noqa: SIM115 (the request's input)
        size = 0
        while size <= max_size and (chunk := stream.read(min(READ_BYTES, max_size + 1 - size))):
            body.write(chunk)
            size += len(chunk)
        if size > max_size:
            body.close()
            body, size = io.BytesIO(), 0
            environ[BODY_ERROR_KEY] = "body_too_large"
        body.seek(0)
        environ["wsgi.input"] = body
        environ["CONTENT_LENGTH"] = str(size)
        environ.pop("HTTP_TRANSFER_ENCODING")  # no longer chunked: Werkzeug reads the length
        environ.pop("wsgi.input_terminated", None)


class GzipRequestMiddleware:
    """Replaces a `Content-Encoding: gzip` body by its decompressed bytes.

    A body that is not valid gzip or inflates past `max_size` is dropped and the reason left in
    the environ, for a before_request hook to turn into the contract's 400 / 413 error.
    """

    def __init__(self, app, limits):
        """`limits()` gives (largest compressed body, largest decompressed body), per request."""
        self.app = app
        self.limits = limits

    def __call__(self, environ, start_response):
        encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._inflate(environ, *self.limits())
        return self.app(environ, start_response)

    def _inflate(self, environ, max_compressed: int, max_size: int) -> None:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > max_compressed:
            self._replace(environ, b"", "too_large")
            return
        compressed = environ["wsgi.input"].read(length) if length else b""
        try:
            body = self._bounded_decompress(compressed, max_size)
        except zlib.error:
            self._replace(environ, b"", "bad_encoding")
            return
        if body is None:
            self._replace(environ, b"", "too_large")
            return
        self._replace(environ, body, None)

    @staticmethod
    def _bounded_decompress(data: bytes, max_size: int) -> bytes | None:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = inflater.decompress(data, max_size + 1)
        if len(out) > max_size or inflater.unconsumed_tail:
            return None
        if not inflater.eof:
            raise zlib.error("truncated gzip stream")
        return out

    @staticmethod
    def _replace(environ, body: bytes, error: str | None) -> None:
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_CONTENT_ENCODING", None)
        if error:
            environ[BODY_ERROR_KEY] = error


def contains_nul(body: bytes) -> bool:
    """Whether a JSON body holds a NUL character in any string or key."""
    if b"\\u0000" not in body.lower():
        return False
    try:
        document = loads_body(body)
    except ValueError:
        return False  # the parser reports malformed JSON
    return holds_nul(document)
