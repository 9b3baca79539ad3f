"""WSGI middleware: gzip-encoded request bodies, decompressed with a hard cap."""

import io
import json
import zlib

BODY_ERROR_KEY = "gefapi.body_error"


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
        document = json.loads(body)
    except ValueError:
        return False  # the parser reports malformed JSON
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
