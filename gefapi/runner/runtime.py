"""The runtime inside an execution (CONTRACT section 9). Standard library only: it is copied into
the environment image and used by the local backend as it is.

Reads its params with its scoped token, reports RUNNING, calls the script's run(params, logger),
sends logs in batches and progress, then FINISHED with the results or FAILED with the traceback.
"""

import gzip
import importlib
import json
import os
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

RETRY_STATUSES = {429, 500, 502, 503, 504}
RECONNECT_SECONDS = 600
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SCRIPT_DIR = os.environ.get("GEFAPI_SCRIPT_DIR", "/project/script")


class ApiError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


class Api:
    def __init__(self, url: str, execution_id: str, token: str | None):
        self.url, self.execution_id, self.token = url.rstrip("/"), execution_id, token
        self.user, self.password = os.environ.get("API_USER"), os.environ.get("API_PASSWORD")
        if not self.token and self.user:
            self.login()

    def login(self) -> None:
        body = self._send("POST", "/auth", {"email": self.user, "password": self.password}, False)
        self.token = body["access_token"]

    def call(self, method: str, path: str, payload=None, attempts: int = 6, file_path=None):
        """Retries 429 and 5xx `attempts` times and network errors for RECONNECT_SECONDS (the API
        may be restarting), with backoff; logs in again once on a 401. With `file_path`, the
        body is that file's bytes, read again on each attempt."""
        delay, relogged, failures = 1.0, False, 0
        give_up_reconnecting = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                if file_path is not None:
                    return self._send_file(method, path, file_path)
                return self._send(method, path, payload, True)
            except ApiError as exc:
                if exc.status == 401 and self.user and not relogged:
                    self.login()
                    relogged = True
                    continue
                failures += 1
                if exc.status not in RETRY_STATUSES or failures >= attempts:
                    raise
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if time.monotonic() > give_up_reconnecting:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 30)

    def _send(self, method: str, path: str, payload, authenticated: bool):
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            if len(data) > 1000:
                data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
        if authenticated and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode("utf-8", "replace")) from None

    def _send_file(self, method: str, path: str, file_path: str):
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(os.path.getsize(file_path)),
            "Accept-Encoding": "identity",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        with open(file_path, "rb") as body:
            request = urllib.request.Request(
                self.url + path, data=body, method=method, headers=headers
            )
            try:
                with urllib.request.urlopen(request, timeout=600) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as exc:
                raise ApiError(exc.code, exc.read().decode("utf-8", "replace")) from None

    @property
    def execution_path(self) -> str:
        return f"/api/v1/execution/{self.execution_id}"

    def params(self) -> dict:
        return self.call("GET", self.execution_path)["data"].get("params") or {}

    def patch(self, **changes) -> None:
        self.call("PATCH", self.execution_path, changes)

    def post_logs(self, lines: list[dict]) -> None:
        self.call("POST", self.execution_path + "/log", lines)

    def upload(self, file_path: str, name: str, media_type: str | None = None) -> dict:
        path = f"{self.execution_path}/artifacts/{urllib.parse.quote(name, safe='')}"
        if media_type:
            path += "?" + urllib.parse.urlencode({"media_type": media_type})
        return self.call("PUT", path, file_path=file_path)["data"]


class Logger:
    """logger.info(...) and friends, batched; send_progress(n) PATCHes progress."""

    def __init__(self, api: Api, flush_seconds: float = 1.0, batch: int = 200):
        self.api, self.flush_seconds, self.batch = api, flush_seconds, batch
        self.pending: list[dict] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._flush_periodically, daemon=True)
        self.thread.start()

    def _add(self, level: str, message, *args) -> None:
        text = str(message) % args if args else str(message)
        print(f"{level}: {text}", flush=True)
        with self.lock:
            self.pending.append({"text": text[:10_000], "level": level})
            full = len(self.pending) >= self.batch
        if full:
            self.flush()

    def debug(self, message, *args):
        self._add("DEBUG", message, *args)

    def info(self, message, *args):
        self._add("INFO", message, *args)

    def warning(self, message, *args):
        self._add("WARNING", message, *args)

    warn = warning

    def error(self, message, *args):
        self._add("ERROR", message, *args)

    def critical(self, message, *args):
        self._add("CRITICAL", message, *args)

    def exception(self, message, *args):
        self._add("ERROR", f"{message}\n{traceback.format_exc()}", *args)

    def upload(self, path, name: str | None = None, media_type: str | None = None) -> dict:
        """Store a file this run produced as one of its artifacts (the same name replaces).

        Returns the artifact: `url` (a signed link that downloads without a token), `etag`
        (`{"hash": <hex MD5>, "type": "AWS MD5 Etag"}`), `uri` (both, in te_schemas' URI shape,
        to put into a RasterResults or FileResults as it is), `name` (sanitized), `size`,
        `md5`, `sha256`, `expires_at`."""
        path = os.fspath(path)
        return self.api.upload(path, name or os.path.basename(path), media_type)

    def send_progress(self, progress) -> None:
        self.flush()
        self.api.patch(progress=progress)

    def flush(self) -> None:
        with self.lock:
            lines, self.pending = self.pending, []
        if lines:
            self.api.post_logs(lines)

    def _flush_periodically(self) -> None:
        while not self.stopped.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception as exc:  # never kill the script over a log line
                print(f"gefapi runtime: could not send logs: {exc}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.flush()


def load_script():
    sys.path.insert(0, os.path.dirname(SCRIPT_DIR))
    sys.path.insert(1, SCRIPT_DIR)
    package = os.path.basename(SCRIPT_DIR)
    return importlib.import_module(f"{package}.main")


def main() -> int:
    execution_id = os.environ["EXECUTION_ID"]
    api = Api(os.environ["API_URL"], execution_id, os.environ.get("API_TOKEN"))
    params = api.params()
    api.patch(status="RUNNING")
    logger = Logger(api)
    params.update(EXECUTION_ID=execution_id, ENV=os.environ.get("ENV", "prod"))
    try:
        results = load_script().run(params, logger)
        json.dumps(results)  # refuse what the API could not store, as a script error
    except BaseException as exc:
        if isinstance(exc, MemoryError):
            logger.error("The execution ran out of memory (it needed more than its limit).")
        logger.error("Execution failed:\n" + traceback.format_exc())
        logger.close()
        api.patch(status="FAILED")
        return 1
    logger.close()
    api.patch(results=results, status="FINISHED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
