"""NOT part of the application: the fixes that docs/performance.md proposes, applied to the
real app by monkeypatching, so that they can be measured under exactly the same load:

    .venv/bin/python -m bench.run --app bench.prototype:app --skip-status --only plugin_list,...
    BENCH_PROTOTYPE=log_insert .venv/bin/python -m bench.run --app bench.prototype:app ...

BENCH_PROTOTYPE selects the patches (comma-separated, default all):

- `no_pre_ping`    SQLALCHEMY_ENGINE_OPTIONS without pool_pre_ping (pool_recycle instead):
                   no `SELECT 1` round trip on every connection checkout;
- `auth_one_query` the JWT blocklist check and the user lookup in one SELECT (user row plus
                   EXISTS(revoked jti)) instead of two;
- `schema_cache`   one marshmallow schema instance per (class, include, exclude, many) instead of
                   a new instance per request;
- `list_count`     a list count whose WHERE holds one OR of disjoint branches (the `updated_at`
                   filter: end_date >= t, or end_date IS NULL and start_date >= t) is counted
                   as a UNION ALL of the branches, each a range of ix_executions_user_order
                   (index-only scans), instead of one index scan that filters every row of the
                   user;
- `log_lean`       POST /log also: the permission check loads the execution without its
                   params/results, lines are validated by a plain function (same rules as
                   LogEntrySchema, falling back to it for the error message) and dumped by a plain
                   function (same output as ExecutionLogSchema);
- `log_insert`     POST /log inserts with one INSERT ... RETURNING id and answers from the
                   values it inserted, instead of ORM objects that commit() expires and the
                   response then reloads with one SELECT per line.

(The application itself now defers excluded params/results and loads include=script with the
page, since commit 18a8e27; this file used to carry that fix as `list_columns`.)
"""

import contextvars
import os
import uuid
from datetime import UTC
from types import SimpleNamespace

from flask import g
from sqlalchemy import func, insert, select, union_all
from sqlalchemy.orm import defer
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BooleanClauseList, Grouping

from gefapi import create_app

PATCHES = {
    name.strip()
    for name in os.environ.get(
        "BENCH_PROTOTYPE",
        "no_pre_ping,auth_one_query,schema_cache,list_count,log_insert,log_lean",
    ).split(",")
    if name.strip()
}

overrides = {}
if "no_pre_ping" in PATCHES:
    overrides["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": False, "pool_recycle": 1800}
app = create_app(overrides)

from gefapi.errors import PermissionDenied  # noqa: E402
from gefapi.extensions import db, jwt  # noqa: E402
from gefapi.models import Execution, ExecutionLog, RevokedAccessToken, User  # noqa: E402
from gefapi.models.base import utcnow  # noqa: E402
from gefapi.schemas.common import ResourceSchema  # noqa: E402
from gefapi.services import execution_service, listing  # noqa: E402

# auth_one_query ----------------------------------------------------------------------------

if "auth_one_query" in PATCHES:

    @jwt.token_in_blocklist_loader
    def _is_revoked(_header, claims):
        """One round trip: the user row and whether this token was logged out."""
        revoked = (
            select(RevokedAccessToken.jti).where(RevokedAccessToken.jti == claims["jti"]).exists()
        )
        try:
            user_id = uuid.UUID(claims["sub"])
        except (KeyError, ValueError):
            return db.session.scalar(select(revoked))
        row = db.session.execute(select(User, revoked).where(User.id == user_id)).first()
        if row is None:
            g.bench_user = None
            return db.session.scalar(select(revoked))
        g.bench_user = row[0]
        return bool(row[1])

    @jwt.user_lookup_loader
    def _load_user(_header, claims):
        user = g.pop("bench_user", None)
        if user is None or user.deleted:
            return None
        if (
            user.tokens_valid_after
            and claims.get("auth_at", 0) <= user.tokens_valid_after.replace(tzinfo=UTC).timestamp()
        ):
            return None
        return user


# schema_cache ------------------------------------------------------------------------------

if "schema_cache" in PATCHES:
    _original_for_request = ResourceSchema.for_request.__func__
    _schemas: dict = {}

    def _cached_for_request(cls, include=None, exclude=None, **kwargs):
        key = (cls, include, exclude, tuple(sorted(kwargs.items())))
        schema = _schemas.get(key)
        if schema is None:
            schema = _schemas[key] = _original_for_request(cls, include, exclude, **kwargs)
        return schema

    ResourceSchema.for_request = classmethod(_cached_for_request)


# list_count --------------------------------------------------------------------------------

_in_execution_list = contextvars.ContextVar("bench_in_execution_list", default=False)


def _split_count(query):
    """count(*) of `query` as a UNION ALL of its OR branches, or None if it has no single OR.
    Only valid when the branches are disjoint, as the updated_at filter's are."""
    where = query.whereclause
    if where is None:
        return None
    clauses = (
        list(where.clauses)
        if isinstance(where, BooleanClauseList) and where.operator is operators.and_
        else [where]
    )

    def bare(clause):  # an OR inside an AND comes wrapped in a Grouping
        return clause.element if isinstance(clause, Grouping) else clause

    ors = [
        c
        for c in clauses
        if isinstance(bare(c), BooleanClauseList) and bare(c).operator is operators.or_
    ]
    if len(ors) != 1:
        return None
    rest = [c for c in clauses if c is not ors[0]]
    branches = [select(Execution.id).where(*rest, branch) for branch in bare(ors[0]).clauses]
    return select(func.count()).select_from(union_all(*branches).subquery())


if "list_count" in PATCHES:
    _original_list_executions = execution_service.list_executions

    def list_executions(**kwargs):
        token = _in_execution_list.set(kwargs.get("updated_at") is not None)
        try:
            return _original_list_executions(**kwargs)
        finally:
            _in_execution_list.reset(token)

    def paginate(query, *, page, per_page, cap=None):
        count = _split_count(query) if _in_execution_list.get() else None
        if count is None or (page is None and per_page is None):
            return listing.paginate(query, page=page, per_page=per_page, cap=cap)
        page, per_page = page or 1, per_page or 20
        total = db.session.scalar(count)
        items = list(db.session.scalars(query.limit(per_page).offset((page - 1) * per_page)))
        return listing.Page(items=items, page=page, per_page=per_page, total=total)

    execution_service.list_executions = list_executions
    execution_service.paginate = paginate


# log_insert --------------------------------------------------------------------------------

if "log_insert" in PATCHES:

    def add_logs(execution_id, entries, *, caller):
        options = (
            [defer(Execution.params), defer(Execution.results)] if "log_lean" in PATCHES else ()
        )
        execution = execution_service.get(execution_id, caller=caller, options=options)
        if not caller.may_report(execution):
            raise PermissionDenied("Only the execution's runtime or an administrator may post logs")
        now = utcnow()
        values = [
            {
                "execution_id": execution.id,
                "text": entry["text"],
                "level": entry["level"],
                "register_date": now,
            }
            for entry in entries
        ]
        ids = db.session.scalars(
            insert(ExecutionLog).returning(ExecutionLog.id, sort_by_parameter_order=True),
            values,
        ).all()
        db.session.commit()
        return [SimpleNamespace(id=id_, **value) for id_, value in zip(ids, values, strict=True)]

    execution_service.add_logs = add_logs


# log_lean ----------------------------------------------------------------------------------

if "log_lean" in PATCHES:
    from gefapi.routes import executions as routes
    from gefapi.schemas.common import DATE_FORMAT

    _original_log_entries = routes.log_entries

    def log_entries(body):
        """The same rules as LogEntrySchema; anything unusual goes the original way (and gets
        its error message from there)."""
        lines = [body] if isinstance(body, dict) else body
        if not isinstance(lines, list) or not lines or len(lines) > app.config["MAX_LOG_BATCH"]:
            return _original_log_entries(body)
        entries = []
        for line in lines:
            if (
                not isinstance(line, dict)
                or not line.keys() <= {"text", "level"}
                or not isinstance(line.get("text"), str)
                or len(line["text"]) > 10_000
                or not isinstance(line.get("level", "INFO"), str)
            ):
                return _original_log_entries(body)
            level = execution_service.normalise_level(line.get("level", "INFO"))
            entries.append({"text": line["text"], "level": level})
        return entries

    class LeanLogSchema:
        def __init__(self, many=False):
            self.many = many

        @staticmethod
        def _one(row):
            return {
                "execution_id": str(row.execution_id),
                "id": row.id,
                "level": row.level,
                "register_date": row.register_date.strftime(DATE_FORMAT),
                "text": row.text,
            }

        def dump(self, rows):
            return [self._one(row) for row in rows] if self.many else self._one(rows)

    routes.log_entries = log_entries
    routes.ExecutionLogSchema = LeanLogSchema
