"""Artifacts: files an execution uploads, their signed download links, retention and quotas.

An upload is streamed to a temporary file while its size, MD5 and SHA-256 are computed, then
stored under a key made of ids only (never the given name); the row is written last, under a
lock of the execution (per-execution caps) and of the owner (quota). A link is
`/api/v1/artifact/<id>/<name>?expires=<unix time>&signature=<HMAC>`, signed with a key derived
from SECRET_KEY, so it works without a token, only for that artifact, until it expires, and not
after the artifact is deleted.
"""

import base64
import hashlib
import hmac
import logging
import mimetypes
import os
import re
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import BinaryIO
from urllib.parse import quote, urlencode

from flask import current_app
from sqlalchemy import delete, func, or_, select

from gefapi.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ValidationError,
)
from gefapi.extensions import db
from gefapi.models import Execution, User
from gefapi.models.artifact import Artifact, ArtifactPolicy
from gefapi.models.base import utcnow
from gefapi.services import execution_service, script_service
from gefapi.services.execution_service import Caller
from gefapi.storage import get_storage

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
MAX_NAME = 200
ETAG_TYPE = "AWS MD5 Etag"  # te_schemas' EtagType the plugin checks as a hex MD5
SIGNING_CONTEXT = b"gefapi artifact download link v1"
MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[\w.+-]+( *; *[\w.+-]+=[\w.+\-\"]+)*$")
EXTRA_TYPES = {
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".geojson": "application/geo+json",
    ".csv": "text/csv",
    ".json": "application/json",
    ".vrt": "application/xml",
    ".gpkg": "application/geopackage+sqlite3",
}


def clock() -> datetime:
    """Naive UTC now; the tests replace it to move time."""
    return utcnow()


class ArtifactNotFound(NotFound):
    error_code = "artifact_not_found"
    message = "Artifact not found"


class InvalidSignature(PermissionDenied):
    error_code = "invalid_signature"
    message = "This download link is not valid"


class LinkExpired(PermissionDenied):
    error_code = "link_expired"
    message = "This download link has expired; list the execution's artifacts for a new one"


class ArtifactTooLarge(PayloadTooLarge):
    error_code = "artifact_too_large"


class QuotaExceeded(Conflict):
    error_code = "storage_quota_exceeded"


class EmptyArtifact(ValidationError):
    error_code = "empty_artifact"
    message = "The file is empty: an artifact needs at least one byte"


class InvalidName(ValidationError):
    error_code = "invalid_artifact_name"


# Names and media types ---------------------------------------------------------------------


def sanitize_name(raw: str) -> str:
    """A flat, printable file name: path parts joined with "_", no control characters, no
    leading dot, at most MAX_NAME characters with the extension kept."""
    text = unicodedata.normalize("NFKC", raw or "")
    parts = [p for p in re.split(r"[/\\]+", text) if p not in ("", ".", "..")]
    name = "_".join(parts)
    name = "".join(ch if (ch.isalnum() or ch in "._-") else "_" for ch in name)
    name = re.sub(r"_{2,}", "_", name).lstrip("._-")
    if len(name) > MAX_NAME:
        stem, ext = os.path.splitext(name)
        ext = ext[:20]
        name = stem[: MAX_NAME - len(ext)] + ext
    if not name or not any(ch.isalnum() for ch in name):
        raise InvalidName(f"Not a usable file name: {raw[:100]!r}")
    return name


def media_type_for(name: str, given: str | None) -> str:
    if given:
        given = given.strip()
        if len(given) > 255 or not MEDIA_TYPE_RE.match(given):
            raise ValidationError(
                "Not a media type", errors={"media_type": [f"{given[:100]!r} is not type/subtype"]}
            )
        return given.lower()
    ext = os.path.splitext(name)[1].lower()
    return EXTRA_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


# Upload ------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    size: int
    md5: str
    sha256: str


def upload(
    execution_id,
    *,
    name: str,
    stream: BinaryIO,
    length: int | None,
    media_type: str | None,
    caller: Caller,
) -> Artifact:
    """Store the body as the execution's artifact `name` (replacing one of that name)."""
    config = current_app.config
    execution = execution_service.get(execution_id, caller=caller)
    if not caller.may_report(execution):
        raise PermissionDenied("Only the execution's runtime or an administrator may upload")
    name = sanitize_name(name)
    media_type = media_type_for(name, media_type)
    max_bytes = config["ARTIFACT_MAX_BYTES"]
    if length is not None and length > max_bytes:
        raise ArtifactTooLarge(f"The file is {length} bytes; at most {max_bytes} are allowed")
    if length == 0:
        raise EmptyArtifact()
    execution_id, owner_id, script_id = execution.id, execution.user_id, execution.script_id
    _check_limits(execution_id, owner_id, name, length or 0)
    db.session.commit()  # no transaction stays open while the body arrives

    received = _receive(stream, max_bytes)
    artifact_id = uuid.uuid4()
    key = f"artifacts/{execution_id}/{artifact_id}"
    storage = get_storage()
    try:
        if received.size == 0:
            raise EmptyArtifact()
        with open(received.path, "rb") as source:
            storage.put(key, source)
        try:
            artifact, replaced = _record(
                execution_id=execution_id,
                owner_id=owner_id,
                script_id=script_id,
                artifact_id=artifact_id,
                name=name,
                media_type=media_type,
                received=received,
                key=key,
            )
        except BaseException:
            _delete_file(key)
            raise
    finally:
        os.unlink(received.path)
    if replaced is not None:
        _delete_file(replaced)
    attach_links([artifact])
    return artifact


def _receive(stream: BinaryIO, max_bytes: int) -> Received:
    md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
    fd, path = tempfile.mkstemp(prefix="gefapi-artifact-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ArtifactTooLarge(f"The file is over the {max_bytes} bytes allowed")
                md5.update(chunk)
                sha256.update(chunk)
                out.write(chunk)
    except BaseException:
        os.unlink(path)
        raise
    return Received(path, size, md5.hexdigest(), sha256.hexdigest())


def _check_limits(execution_id, owner_id, name: str, size: int) -> None:
    """The caps, counting what the execution and the owner store (without `name`, which the
    upload replaces)."""
    config = current_app.config
    count, total = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Artifact.size), 0)).where(
            Artifact.execution_id == execution_id, Artifact.name != name
        )
    ).one()
    if count + 1 > config["ARTIFACT_MAX_PER_EXECUTION"]:
        raise ArtifactTooLarge(
            f"An execution may store at most {config['ARTIFACT_MAX_PER_EXECUTION']} artifacts",
            error_code="too_many_artifacts",
        )
    cap = config["ARTIFACT_MAX_EXECUTION_BYTES"]
    if total + size > cap:
        raise ArtifactTooLarge(
            f"This execution's artifacts would take {total + size} bytes; at most {cap} are "
            "allowed per execution",
            error_code="execution_artifacts_too_large",
        )
    quota = config["ARTIFACT_USER_QUOTA_BYTES"]
    if quota:
        used = _stored_by(owner_id, excluding=(execution_id, name))
        if used + size > quota:
            raise QuotaExceeded(
                f"Storage quota exceeded: the owner's artifacts take {used} bytes, this file "
                f"{size} more, and the quota is {quota} bytes. Delete old executions or "
                "artifacts, or ask an administrator.",
                used_bytes=used,
                quota_bytes=quota,
            )


def _stored_by(user_id, *, excluding=None) -> int:
    query = select(func.coalesce(func.sum(Artifact.size), 0)).where(
        Artifact.user_id == user_id, _live(clock())
    )
    if excluding:
        execution_id, name = excluding
        query = query.where(~((Artifact.execution_id == execution_id) & (Artifact.name == name)))
    return int(db.session.scalar(query))


def _live(now: datetime):
    return or_(Artifact.expires_at.is_(None), Artifact.expires_at > now)


def _record(
    *, execution_id, owner_id, script_id, artifact_id, name, media_type, received, key
) -> tuple[Artifact, str | None]:
    """The row, under the execution's lock and the owner's, with the caps checked again."""
    execution = db.session.scalar(
        select(Execution).where(Execution.id == execution_id).with_for_update()
    )
    if execution is None or execution.deleted:
        raise ArtifactNotFound(f"Execution {execution_id} not found")
    db.session.execute(select(func.pg_advisory_xact_lock(_lock_key(owner_id))))
    _check_limits(execution_id, owner_id, name, received.size)
    previous = db.session.scalar(
        select(Artifact).where(Artifact.execution_id == execution_id, Artifact.name == name)
    )
    replaced = None
    if previous is not None:
        replaced = previous.storage_key
        db.session.delete(previous)
        db.session.flush()
    now = clock()
    artifact = Artifact(
        id=artifact_id,
        execution_id=execution_id,
        user_id=owner_id,
        name=name,
        media_type=media_type,
        size=received.size,
        md5=received.md5,
        sha256=received.sha256,
        storage_key=key,
        created_at=now,
        expires_at=_expiry(script_id, now),
    )
    db.session.add(artifact)
    db.session.commit()
    return artifact, replaced


def _lock_key(user_id: uuid.UUID) -> int:
    return (user_id.int >> 65) ^ 0x4172746966616374  # a signed 64-bit key per user


def retention_days(script_id) -> int:
    """The script's own retention, capped by the server's maximum, else the default."""
    config = current_app.config
    own = db.session.scalar(
        select(ArtifactPolicy.retention_days).where(ArtifactPolicy.script_id == script_id)
    )
    days = config["ARTIFACT_RETENTION_DAYS"] if own is None else own
    cap = config["ARTIFACT_MAX_RETENTION_DAYS"]
    if cap and (days == 0 or days > cap):
        days = cap
    return days


def _expiry(script_id, now: datetime) -> datetime | None:
    days = retention_days(script_id)
    return now + timedelta(days=days) if days else None


def _delete_file(key: str) -> None:
    try:
        get_storage().delete(key)
    except Exception:  # a leftover file is garbage, never a reason to fail
        log.exception("Could not delete stored artifact %s", key)


# Reading -----------------------------------------------------------------------------------


def list_for(execution_id, *, caller: Caller) -> list[Artifact]:
    execution = execution_service.get(execution_id, caller=caller)
    artifacts = db.session.scalars(
        select(Artifact)
        .where(Artifact.execution_id == execution.id, _live(clock()))
        .order_by(Artifact.created_at, Artifact.name)
    ).all()
    attach_links(artifacts)
    return list(artifacts)


def get(execution_id, name: str, *, caller: Caller) -> Artifact:
    execution = execution_service.get(execution_id, caller=caller)
    artifact = db.session.scalar(
        select(Artifact).where(
            Artifact.execution_id == execution.id, Artifact.name == name, _live(clock())
        )
    )
    if artifact is None:
        raise ArtifactNotFound(f"Execution {execution.id} has no artifact {name[:200]!r}")
    attach_links([artifact])
    return artifact


def remove(execution_id, name: str, *, caller: Caller) -> Artifact:
    """Delete one artifact (owner or administrator): the row now, the file after commit."""
    execution = execution_service.get(execution_id, caller=caller)
    if not caller.may_manage(execution):
        raise PermissionDenied("Only the owner or an administrator may delete artifacts")
    artifact = db.session.scalar(
        select(Artifact).where(Artifact.execution_id == execution.id, Artifact.name == name)
    )
    if artifact is None:
        raise ArtifactNotFound(f"Execution {execution.id} has no artifact {name[:200]!r}")
    attach_links([artifact])
    db.session.delete(artifact)
    db.session.commit()
    _delete_file(artifact.storage_key)
    return artifact


# Signed links ------------------------------------------------------------------------------


def _signing_key() -> bytes:
    """Derived from SECRET_KEY for this one purpose (never the JWT key itself)."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, SIGNING_CONTEXT, hashlib.sha256).digest()


def _signature(artifact_id, expires: int) -> str:
    message = f"{artifact_id}:{expires}".encode()
    digest = hmac.new(_signing_key(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _unix(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp())


def link_expiry(artifact: Artifact, now: datetime) -> int:
    """A link lasts ARTIFACT_URL_SECONDS, never past the artifact's own expiry."""
    expires = now + timedelta(seconds=current_app.config["ARTIFACT_URL_SECONDS"])
    if artifact.expires_at is not None:
        expires = min(expires, artifact.expires_at)
    return _unix(expires)


def download_path(artifact: Artifact, expires: int) -> str:
    query = urlencode({"expires": expires, "signature": _signature(artifact.id, expires)})
    return f"/api/v1/artifact/{artifact.id}/{quote(artifact.name)}?{query}"


def attach_links(artifacts) -> None:
    """Each artifact's signed URL and its te_schemas URI object."""
    base = current_app.config["API_PUBLIC_URL"].rstrip("/")
    now = clock()
    for artifact in artifacts:
        expires = link_expiry(artifact, now)
        artifact.url = base + download_path(artifact, expires)
        artifact.url_expires_at = datetime.fromtimestamp(expires, UTC).replace(tzinfo=None)
        artifact.etag = {"hash": artifact.md5, "type": ETAG_TYPE}
        artifact.uri = {"uri": artifact.url, "type": "cloud", "etag": artifact.etag}


def resolve_link(artifact_id, name: str, expires: str | None, signature: str | None) -> Artifact:
    """The artifact a signed link names: 403 for a bad or expired signature, 404 when the
    artifact, its execution or its name is gone."""
    try:
        expires_at = int(expires or "")
    except ValueError:
        raise InvalidSignature() from None
    expected = _signature(artifact_id, expires_at)
    if not signature or not hmac.compare_digest(expected, signature):
        raise InvalidSignature()
    now = clock()
    if expires_at <= _unix(now):
        raise LinkExpired()
    row = db.session.execute(
        select(Artifact, Execution.deleted)
        .join(Execution, Execution.id == Artifact.execution_id)
        .where(Artifact.id == artifact_id)
    ).first()
    if row is None or row[1] or row[0].name != name or row[0].is_expired(now):
        raise ArtifactNotFound()
    artifact = row[0]
    db.session.commit()  # nothing held while the file is sent
    return artifact


def open_local(artifact: Artifact) -> str | None:
    """The file's path when the storage is a local folder, else None."""
    storage = get_storage()
    path_of = getattr(storage, "local_path", None)
    return path_of(artifact.storage_key) if path_of else None


def redirect_url(artifact: Artifact, expires: int) -> str:
    """A presigned S3 URL, valid at most ARTIFACT_S3_REDIRECT_SECONDS and never past the
    link's own expiry."""
    remaining = expires - _unix(clock())
    seconds = max(1, min(current_app.config["ARTIFACT_S3_REDIRECT_SECONDS"], remaining))
    return get_storage().presigned_url(
        artifact.storage_key,
        expires_in=seconds,
        filename=artifact.name,
        media_type=artifact.media_type,
    )


# Retention, usage, policies ----------------------------------------------------------------


def purge(now: datetime | None = None) -> int:
    """Delete expired artifacts and those of deleted executions, in batches: the files first,
    then the rows. A failure between the two leaves rows that downloads already refuse and the
    next pass deletes again."""
    now = now or clock()
    batch = current_app.config["ARTIFACT_PURGE_BATCH"]
    removed = 0
    while True:
        rows = db.session.execute(
            select(Artifact.id, Artifact.storage_key)
            .join(Execution, Execution.id == Artifact.execution_id)
            .where(or_(Artifact.expires_at <= now, Execution.deleted))
            .order_by(Artifact.id)
            .limit(batch)
        ).all()
        db.session.commit()
        if not rows:
            return removed
        storage = get_storage()
        done = []
        for artifact_id, key in rows:
            try:
                storage.delete(key)
                done.append(artifact_id)
            except Exception:
                log.exception("Could not delete stored artifact %s; retried next pass", key)
        if done:
            db.session.execute(delete(Artifact).where(Artifact.id.in_(done)))
            db.session.commit()
        removed += len(done)
        if len(done) < len(rows) or len(rows) < batch:
            return removed


@dataclass(frozen=True)
class Usage:
    user_id: uuid.UUID
    email: str
    artifacts: int
    bytes: int
    quota_bytes: int | None


def usage(*, by: User, user_id=None) -> list[Usage]:
    """Storage used per user, largest first (ADMIN+)."""
    if not by.is_admin:
        raise PermissionDenied("Only administrators see storage usage")
    query = (
        select(User.id, User.email, func.count(Artifact.id), func.sum(Artifact.size))
        .join(Artifact, Artifact.user_id == User.id)
        .where(_live(clock()))
        .group_by(User.id, User.email)
        .order_by(func.sum(Artifact.size).desc(), User.id)
    )
    if user_id is not None:
        query = query.where(User.id == user_id)
    quota = current_app.config["ARTIFACT_USER_QUOTA_BYTES"] or None
    return [
        Usage(uid, email, count, int(size), quota)
        for uid, email, count, size in db.session.execute(query).all()
    ]


def get_policy(script_ref: str, *, by: User) -> dict:
    script = script_service.get_visible(script_ref, by=by)
    return _policy_view(script.id)


def set_policy(script_ref: str, *, retention_days: int | None, by: User) -> dict:
    script = script_service.get_for_change(script_ref, by=by)
    cap = current_app.config["ARTIFACT_MAX_RETENTION_DAYS"]
    if retention_days is not None and cap and (retention_days == 0 or retention_days > cap):
        raise ValidationError(
            f"This server keeps artifacts at most {cap} days",
            errors={"retention_days": [f"Between 1 and {cap}, or null for the default"]},
        )
    policy = db.session.get(ArtifactPolicy, script.id) or ArtifactPolicy(script_id=script.id)
    policy.retention_days = retention_days
    db.session.add(policy)
    db.session.commit()
    return _policy_view(script.id)


def _policy_view(script_id) -> dict:
    own = db.session.scalar(
        select(ArtifactPolicy.retention_days).where(ArtifactPolicy.script_id == script_id)
    )
    return {
        "script_id": script_id,
        "retention_days": own,
        "effective_retention_days": retention_days(script_id) or None,
    }
