"""Which clients (QGIS plugin, CLI, admin UI) each user uses, from the X-TE-Client header."""

import time

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert

from gefapi.extensions import db
from gefapi.models import User, UserClient
from gefapi.models.base import utcnow

CLIENT_TYPES = {"qgis_plugin", "cli", "api_ui"}
FIELDS = {"version": 64, "os": 64, "qgis_version": 64, "lang": 16}
# Per process: skip the write when the same user sent the same header recently.
_RECENT: dict[tuple, float] = {}
RECORD_EVERY_SECONDS = 600


def parse_header(value: str | None) -> dict | None:
    """`type=qgis_plugin; version=2.2.4; qgis_version=3.34.0; os=Windows; lang=en`."""
    if not value:
        return None
    pairs = {}
    for part in value.split(";"):
        key, sep, val = part.partition("=")
        if sep:
            pairs[key.strip().lower()] = val.strip()
    if pairs.get("type") not in CLIENT_TYPES:
        return None
    client = {"client_type": pairs["type"]}
    client.update({key: pairs[key][:size] for key, size in FIELDS.items() if pairs.get(key)})
    return client


def record(user: User, header: str | None) -> None:
    """Upsert the user's client row (and flag plugin users). Commits its own small change."""
    client = parse_header(header)
    if client is None:
        return
    key = (user.id, header)
    now = time.monotonic()
    if now - _RECENT.get(key, -RECORD_EVERY_SECONDS) < RECORD_EVERY_SECONDS:
        return
    values = {"user_id": user.id, "last_seen_at": utcnow(), **client}
    statement = insert(UserClient).values(**values)
    db.session.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id", "client_type"],
            set_={k: statement.excluded[k] for k in values if k not in ("user_id", "client_type")},
        )
    )
    if client["client_type"] == "qgis_plugin" and not user.is_plugin_user:
        mark_plugin_user(user)
    db.session.commit()
    if len(_RECENT) > 10_000:
        _RECENT.clear()
    _RECENT[key] = now


def mark_plugin_user(user: User) -> None:
    db.session.execute(update(User).where(User.id == user.id).values(is_plugin_user=True))
    user.is_plugin_user = True
