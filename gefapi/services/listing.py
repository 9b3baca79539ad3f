"""Sorting and pagination shared by every list endpoint."""

from dataclasses import dataclass

from sqlalchemy import Select, func, select

from gefapi.errors import ValidationError
from gefapi.extensions import db


@dataclass
class Page:
    items: list
    page: int | None = None
    per_page: int | None = None
    total: int | None = None

    def meta(self) -> dict:
        if self.page is None:
            return {}
        return {"page": self.page, "per_page": self.per_page, "total": self.total}


def parse_sort(value: str | None, allowed: dict) -> list:
    """`field`, `field desc`, `-field`, comma-separated; unknown fields are a 400."""
    clauses = []
    for part in (value or "").split(","):
        words = part.split()
        if not words:
            continue
        name, direction = words[0], (words[1].lower() if len(words) > 1 else "asc")
        if name.startswith("-"):
            name, direction = name[1:], "desc"
        if name not in allowed or direction not in ("asc", "desc") or len(words) > 2:
            raise ValidationError(
                f"Cannot sort by {part.strip()!r}",
                errors={
                    "sort": [
                        f"Allowed fields: {', '.join(sorted(allowed))}; directions: asc, desc."
                    ]
                },
            )
        column = allowed[name]
        clauses.append(column.desc().nulls_last() if direction == "desc" else column.asc())
    return clauses


def paginate(
    query: Select,
    *,
    page: int | None,
    per_page: int | None,
    cap: int | None = None,
    count: Select | None = None,
) -> Page:
    """Without page/per_page: every row (or the first `cap`). With them: one page and a total,
    from `count` when the caller has a cheaper way to the same number."""
    if page is None and per_page is None:
        if cap is not None:
            query = query.limit(cap)
        return Page(items=list(db.session.scalars(query)))
    page, per_page = page or 1, per_page or 20
    if count is None:
        count = select(func.count()).select_from(query.order_by(None).subquery())
    total = db.session.scalar(count)
    items = list(db.session.scalars(query.limit(per_page).offset((page - 1) * per_page)))
    return Page(items=items, page=page, per_page=per_page, total=total)


def part_counts(parts: list[Select]) -> list:
    """count(*) of each of several disjoint queries, as scalar subqueries for one SELECT. Each
    part can use its own index range, where one query with an OR of them filters a wider one."""
    return [
        select(func.count()).select_from(part.order_by(None).subquery()).scalar_subquery()
        for part in parts
    ]


def paginate_parts(
    parts: list[Select], *, page: int | None, per_page: int | None, cap: int | None = None
) -> Page:
    """`paginate` for a list made of disjoint, ordered parts placed one after the other: rows
    are fetched only from the parts that the page covers, each with its own LIMIT."""
    if page is None and per_page is None:
        items: list = []
        for part in parts:
            room = None if cap is None else cap - len(items)
            if room == 0:
                break
            items += db.session.scalars(part if room is None else part.limit(room))
        return Page(items=items)
    page, per_page = page or 1, per_page or 20
    counts = db.session.execute(select(*part_counts(parts))).one()
    skip, items = (page - 1) * per_page, []
    for part, size in zip(parts, counts, strict=True):
        if len(items) == per_page:
            break
        if skip >= size:
            skip -= size
            continue
        items += db.session.scalars(part.limit(per_page - len(items)).offset(skip))
        skip = 0
    return Page(items=items, page=page, per_page=per_page, total=sum(counts))


def poll_logs(model, owner_column, owner_id, *, start=None, last_id=None) -> list:
    """Log lines after `last_id` (an id) or `start` (a time), oldest first, one page at most."""
    from flask import current_app

    query = select(model).where(owner_column == owner_id)
    if last_id is not None:
        query = query.where(model.id > last_id)
    if start is not None:
        query = query.where(model.register_date > start)
    limit = current_app.config["LOG_PAGE_SIZE"]
    return list(db.session.scalars(query.order_by(model.id).limit(limit)))
