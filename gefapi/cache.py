"""Per-process caches of token checks and read-only answers, kept exact by PostgreSQL.

Triggers (migration 5d2e3f4a6b7c) send `NOTIFY gefapi_changes` with a tag when rows the
entries were built from change: `user:<id>` for a user's row or any of their executions,
`token:<jti>` for a revoked access token, `*` for a script. Notifications arrive only after
the writing transaction commits, whoever wrote (a service, a Celery task, an admin's SQL).

Each process listens on a connection of its own. A thread drains it as notifications come (a
listener that stops reading would fill PostgreSQL's notification queue), and every request
drains it again before reading an entry. The listener pings itself through that connection
when it starts and whenever it has been quiet for a while: a connection that stopped working,
or a pooler that drops LISTEN, turns the cache off instead of leaving it stale.

An entry is stored only if no invalidation arrived since the request began, so an answer read
before a commit cannot outlive that commit's notification. Writes committed by this process
invalidate its own entries at commit, so a client reads its own writes even before the
notification is back. Without a working listener (database down, connection lost) nothing is
stored or served and every request goes to the database; a new listener starts empty.
"""

import contextlib
import logging
import os
import select
import threading
import time
from dataclasses import dataclass

import psycopg2
from flask import current_app, g, has_app_context
from sqlalchemy import event, make_url
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "gefapi_changes"
EVERYTHING = "*"
PING = "ping"  # sent by the listener to itself: proof that LISTEN works on this connection
RETRY_SECONDS = 5
PING_SECONDS = 10


@dataclass
class Entry:
    value: object
    tags: tuple[str, ...]
    size: int
    expires_at: float


class ChangeCache:
    def __init__(self, connect, *, max_bytes: int, ttl_seconds: float):
        self._connect = connect  # () -> a new psycopg2 connection
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._lock = threading.RLock()
        self._entries: dict[object, Entry] = {}
        self._by_tag: dict[str, set] = {}
        self._bytes = 0
        self._generation = 0
        self._conn = None
        self._pid = None
        self._retry_at = 0.0
        self._inherited = []  # a forked parent's connection: closing it would end its session

    # Listening ------------------------------------------------------------------------------

    def begin(self) -> int | None:
        """Apply what arrived; the generation to store under, or None when the cache is off."""
        if self._pid != os.getpid():  # a forked child: nothing of the parent's listener is ours
            self._lock = threading.RLock()
            self._inherited.append(self._conn)
            self._conn, self._pid = None, os.getpid()
            self._clear()
        with self._lock:
            if self._conn is None and not self._listen():
                return None
            try:
                self._drain()
            except psycopg2.Error as exc:
                self._lost(exc)
                return None
            return self._generation

    def _listen(self) -> bool:
        if time.monotonic() < self._retry_at:
            return False
        conn = None
        try:
            conn = self._connect()
            conn.autocommit = True
            conn.cursor().execute(f"LISTEN {CHANNEL}; NOTIFY {CHANNEL}, '{PING}'")
            if not _ping_returns(conn):  # e.g. a pooler in transaction mode drops LISTEN
                raise psycopg2.OperationalError("a notification sent to itself never came back")
        except psycopg2.Error as exc:
            if conn is not None:
                conn.close()
            self._retry_at = time.monotonic() + RETRY_SECONDS
            log.warning("change cache off: cannot listen (%s)", str(exc).strip())
            return False
        self._conn = conn
        self._clear()  # whatever changed while nobody listened
        threading.Thread(target=self._follow, args=(conn,), daemon=True).start()
        return True

    def _follow(self, conn) -> None:
        """Keep reading this connection until it is replaced or lost. When nothing comes for a
        while, ping through it: a dead server fails the ping, not a silent wait."""
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        while True:
            quiet = not poller.poll(PING_SECONDS * 1000)
            with self._lock:
                if self._conn is not conn:
                    return
                try:
                    if quiet:
                        conn.cursor().execute(f"NOTIFY {CHANNEL}, '{PING}'")
                    self._drain()
                except psycopg2.Error as exc:
                    self._lost(exc)
                    return

    def _drain(self) -> None:
        self._conn.poll()
        if self._conn.notifies:
            tags = {notify.payload for notify in self._conn.notifies} - {PING}
            self._conn.notifies.clear()
            if tags:
                self.invalidate(tags)

    def _lost(self, exc: Exception) -> None:
        log.warning("change cache off until the database answers: %s", str(exc).strip())
        with contextlib.suppress(psycopg2.Error):
            self._conn.close()
        self._conn = None
        self._retry_at = time.monotonic() + RETRY_SECONDS
        self._clear()

    # Entries --------------------------------------------------------------------------------

    def get(self, key):
        entry = self._entries.get(key)
        if entry is None or entry.expires_at < time.monotonic():
            return None
        return entry.value

    def put(self, key, value, *, tags: tuple[str, ...], generation: int | None, size: int = 256):
        """Store unless an invalidation arrived since `generation` was handed out."""
        with self._lock:
            if generation is None or generation != self._generation or self._conn is None:
                return
            if size > self.max_bytes:
                return
            if self._bytes + size > self.max_bytes:
                self._clear()
            self._drop(key)
            self._entries[key] = Entry(value, tags, size, time.monotonic() + self.ttl_seconds)
            self._bytes += size
            for tag in tags:
                self._by_tag.setdefault(tag, set()).add(key)

    def invalidate(self, tags) -> None:
        with self._lock:
            self._generation += 1
            if EVERYTHING in tags:
                self._clear()
                return
            for tag in tags:
                for key in list(self._by_tag.get(tag, ())):
                    self._drop(key)

    def _drop(self, key) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= entry.size
        for tag in entry.tags:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]

    def _clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._by_tag.clear()
        self._bytes = 0


def _ping_returns(conn, timeout: float = 2.0) -> bool:
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn.poll()
        if any(notify.payload == PING for notify in conn.notifies):
            conn.notifies.clear()
            return True
        poller.poll(max(0, int((deadline - time.monotonic()) * 1000)))
    return False


# This process's own commits -----------------------------------------------------------------

PENDING = "gefapi_change_tags"
WATCHED_TABLES = {"executions", "users", "revoked_access_tokens", "scripts"}


def tags_of(obj) -> tuple[str, ...]:
    """What a changed ORM object invalidates (the triggers say the same for every writer)."""
    from gefapi.models import Execution, RevokedAccessToken, Script, User

    if isinstance(obj, Execution):
        return (f"user:{obj.user_id}",)
    if isinstance(obj, User):
        return (f"user:{obj.id}",)
    if isinstance(obj, RevokedAccessToken):
        return (f"token:{obj.jti}",)
    if isinstance(obj, Script):
        return (EVERYTHING,)
    return ()


def _flushed(session, _context) -> None:
    changed = session.info.setdefault(PENDING, set())
    for obj in (*session.new, *session.dirty, *session.deleted):
        changed.update(tags_of(obj))


def _bulk_statement(state) -> None:
    # UPDATE/DELETE/INSERT statements name no objects: forget everything at commit.
    table = getattr(getattr(state.statement, "table", None), "name", None)
    if (state.is_update or state.is_delete or state.is_insert) and table in WATCHED_TABLES:
        state.session.info.setdefault(PENDING, set()).add(EVERYTHING)


def _committed(session) -> None:
    tags = session.info.pop(PENDING, None)
    if tags and has_app_context():
        cache = current_app.extensions.get("change_cache")
        if cache is not None:
            cache.invalidate(tags)


def _rolled_back(session) -> None:
    session.info.pop(PENDING, None)


def track_own_writes() -> None:
    """Once per process: every session's commit invalidates what it changed, in this process."""
    if not event.contains(Session, "after_commit", _committed):
        event.listen(Session, "after_flush", _flushed)
        event.listen(Session, "do_orm_execute", _bulk_statement)
        event.listen(Session, "after_commit", _committed)
        event.listen(Session, "after_rollback", _rolled_back)


# Flask -------------------------------------------------------------------------------------


def init_app(app) -> None:
    app.extensions["change_cache"] = None
    if not app.config["CACHE_ENABLED"]:
        return
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])

    def connect():
        return psycopg2.connect(
            **url.translate_connect_args(username="user", database="dbname"),
            **url.query,
            application_name="gefapi-changes",
            connect_timeout=5,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
            tcp_user_timeout=30_000,  # ms: a ping that cannot be sent fails, not hangs
        )

    app.extensions["change_cache"] = ChangeCache(
        connect,
        max_bytes=app.config["CACHE_MAX_MB"] * 1024 * 1024,
        ttl_seconds=app.config["CACHE_TTL_SECONDS"],
    )
    track_own_writes()


def request_cache() -> tuple[ChangeCache | None, int | None]:
    """This app's cache and the generation this request may store under (None: do not)."""
    cache = current_app.extensions.get("change_cache")
    if cache is None:
        return None, None
    if "cache_generation" not in g:
        g.cache_generation = cache.begin()
    return cache, g.cache_generation
