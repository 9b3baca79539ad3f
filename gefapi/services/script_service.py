"""Publishing scripts: archive checks, configuration.json, visibility, builds and their logs."""

import math
import re
import tempfile
import uuid
from typing import BinaryIO

import jsonschema
from flask import current_app
from slugify import slugify
from sqlalchemy import Uuid, and_, any_, literal, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from gefapi import archives
from gefapi.errors import (
    Conflict,
    PayloadTooLarge,
    PermissionDenied,
    ScriptNotFound,
    ValidationError,
)
from gefapi.extensions import db
from gefapi.models import Role, Script, ScriptBuild, ScriptLog, ScriptStatus, User
from gefapi.queue import enqueue
from gefapi.services import execution_state
from gefapi.services.listing import Page, paginate, parse_sort, poll_logs
from gefapi.storage import get_storage

SORTABLE = {
    "created_at": Script.created_at,
    "updated_at": Script.updated_at,
    "name": Script.name,
    "slug": Script.slug,
    "status": Script.status,
}
# configuration.json resource fields: Docker NanoCPUs (floats allowed) and bytes.
RESOURCES = {
    "cpu_reservation": (float, 64e9),
    "cpu_limit": (float, 64e9),
    "memory_reservation": (int, 2**40),
    "memory_limit": (int, 2**40),
}
TEXT_FIELDS = {"description": 100_000, "environment": 255, "environment_version": 64}


class SlugTaken(Conflict):
    error_code = "script_slug_taken"


class InvalidConfiguration(ValidationError):
    error_code = "invalid_configuration"


class LegacyEnvironmentUnavailable(Conflict):
    error_code = "legacy_environment_unavailable"


# Docker's repository path component (lower case) and tag grammars.
ENVIRONMENT_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
ENVIRONMENT_VERSION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


# Lookups ---------------------------------------------------------------------------------


def visible_clause(user: User):
    if user.is_admin:
        return true()
    return or_(
        Script.user_id == user.id,
        Script.public,
        and_(
            Script.restricted,
            or_(
                literal(user.role) == any_(Script.allowed_roles),
                literal(user.id, Uuid) == any_(Script.allowed_users),
            ),
        ),
    )


def get_visible(ref: str, *, by: User, for_update: bool = False) -> Script:
    """By UUID or slug; 404 when missing, deleted or not visible to `by`."""
    try:
        condition = Script.id == uuid.UUID(ref)
    except ValueError:
        condition = Script.slug == ref
    query = select(Script).where(condition, ~Script.deleted, visible_clause(by))
    script = db.session.scalar(query.with_for_update(of=Script) if for_update else query)
    if script is None:
        raise ScriptNotFound(f"Script {ref} not found")
    return script


def get_for_change(ref: str, *, by: User) -> Script:
    """Scripts change only by their owner or an administrator."""
    script = get_visible(ref, by=by, for_update=True)
    if not (by.is_admin or script.user_id == by.id):
        raise PermissionDenied("Only the owner or an administrator may change this script")
    return script


def list_scripts(
    *, by: User, page=None, per_page=None, sort=None, status=None, public=None
) -> Page:
    query = select(Script).where(~Script.deleted, visible_clause(by))
    if status in (ScriptStatus.PENDING, ScriptStatus.BUILDING):
        # A queued build is BUILDING (CONTRACT 5); older releases stored it as PENDING.
        query = query.where(Script.status.in_([ScriptStatus.PENDING, ScriptStatus.BUILDING]))
    elif status:
        query = query.where(Script.status == status)
    if public is not None:
        query = query.where(Script.public if public else ~Script.public)
    order = parse_sort(sort, SORTABLE) or [Script.created_at.desc()]
    return paginate(query.order_by(*order, Script.id), page=page, per_page=per_page)


def load_includes(scripts: list[Script], include: set[str], *, by: User) -> None:
    """Fetch what `include` asks for, in one query per kind, never per script."""
    from gefapi.models import Execution

    ids = [script.id for script in scripts]
    if "user" in include and ids:
        db.session.scalars(
            select(Script).where(Script.id.in_(ids)).options(selectinload(Script.user))
        ).all()
        for script in scripts:
            script.owner_as_seen = owner_as_seen(script, by=by)
    if "logs" in include:
        for script in scripts:
            script.recent_logs = poll_logs(ScriptLog, ScriptLog.script_id, script.id)
    if "executions" in include:
        for script in scripts:
            query = select(Execution).where(Execution.script_id == script.id, ~Execution.deleted)
            if not by.is_admin:
                query = query.where(Execution.user_id == by.id)
            script.visible_executions = db.session.scalars(
                query.order_by(Execution.start_date.desc()).limit(100)
            ).all()


class _OwnerWithoutEmail:
    """A script's owner as other users see them: the summary without the email address."""

    email = None

    def __init__(self, owner: User):
        self._owner = owner

    def __getattr__(self, name):
        return getattr(self._owner, name)


def owner_as_seen(script: Script, *, by: User) -> User | _OwnerWithoutEmail | None:
    """Everyone who may see a script sees who owns it; only the owner and admins the email."""
    if script.user is None or by.is_admin or script.user_id == by.id:
        return script.user
    return _OwnerWithoutEmail(script.user)


# Publishing ------------------------------------------------------------------------------


def create(upload: BinaryIO | None, *, by: User) -> Script:
    if not by.has_role(Role.ADMIN):
        raise PermissionDenied("Only administrators publish scripts")
    with _received_archive(upload) as archive:
        fields = configuration_fields(archives.inspect(archive, _limits()).configuration)
        script = Script(user_id=by.id, slug=_slug(fields["name"]), **fields)
        check_runnable(script)
        db.session.add(script)
        _flush_unique_slug(script.slug)
        return _start_build(script, archive)


def update(ref: str, upload: BinaryIO | None, *, by: User) -> Script:
    """A new archive for an existing script: a new build; the slug never changes."""
    script = get_for_change(ref, by=by)
    with _received_archive(upload) as archive:
        fields = configuration_fields(archives.inspect(archive, _limits()).configuration)
        for key, value in fields.items():
            setattr(script, key, value)
        check_runnable(script)
        return _start_build(script, archive)


def _start_build(script: Script, archive: BinaryIO) -> Script:
    from gefapi.services.build_service import environment_image

    build = ScriptBuild(
        id=uuid.uuid4(),
        script_id=script.id,
        status=ScriptStatus.PENDING,
        archive_key=f"scripts/{script.id}/{uuid.uuid4()}.tar.gz",
        base_image=environment_image(script),
        legacy=script.uses_legacy_environment,
    )
    # BUILDING from the moment of publish (CONTRACT 5: te_schemas knows no other status of a
    # build under way); the build itself stays PENDING until a worker takes it.
    script.status = ScriptStatus.BUILDING
    script.build_error = None
    db.session.add(build)
    db.session.flush()
    storage = get_storage()
    storage.put(build.archive_key, archive)
    enqueue("scripts.build", str(build.id))
    try:
        db.session.commit()
    except Exception:
        storage.delete(build.archive_key)
        raise
    return script


def _flush_unique_slug(slug: str) -> None:
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        if "uq_scripts_slug_active" in str(exc.orig):
            raise SlugTaken(f"A script with the slug {slug!r} already exists") from None
        raise


def _slug(name: str) -> str:
    slug = slugify(name, max_length=255)
    if not slug:
        raise InvalidConfiguration(
            "The script name gives an empty slug", errors={"name": ["Use letters or digits."]}
        )
    return slug


def _limits() -> archives.Limits:
    config = current_app.config
    return archives.Limits(
        max_unpacked_bytes=config["SCRIPT_MAX_UNPACKED_BYTES"],
        max_members=config["SCRIPT_MAX_MEMBERS"],
        max_member_bytes=config["SCRIPT_MAX_UNPACKED_BYTES"],
    )


class _received_archive:
    """Copy the upload into a temporary file, refusing it past SCRIPT_MAX_ARCHIVE_BYTES."""

    def __init__(self, upload: BinaryIO | None):
        if upload is None:
            raise ValidationError(
                "Send the archive in the multipart field 'file'",
                errors={"file": ["Missing data for required field."]},
            )
        self.upload = upload
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)

    def __enter__(self) -> BinaryIO:
        limit = current_app.config["SCRIPT_MAX_ARCHIVE_BYTES"]
        copied = 0
        while chunk := self.upload.read(1024 * 1024):
            copied += len(chunk)
            if copied > limit:
                self.file.close()
                raise PayloadTooLarge(f"The archive is larger than {limit} bytes")
            self.file.write(chunk)
        self.file.seek(0)
        return self.file

    def __exit__(self, *exc_info) -> None:
        self.file.close()


def configuration_fields(configuration: dict) -> dict:
    """The Script columns that configuration.json sets, validated."""
    errors: dict[str, list[str]] = {}
    name = configuration.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        errors["name"] = ["Required: a non-empty string of at most 255 characters."]
    fields = {"name": name.strip() if isinstance(name, str) else name}
    for key, (kind, maximum) in RESOURCES.items():
        value = configuration.get(key)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            errors[key] = ["Must be a number."]
        elif not 0 < value <= maximum:
            errors[key] = [f"Must be above 0 and at most {maximum:g}."]
        else:
            fields[key] = kind(value)
    for key, maximum in TEXT_FIELDS.items():
        value = configuration.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > maximum):
            errors[key] = [f"Must be a string of at most {maximum} characters."]
        elif value is not None:
            fields[key] = value
    for low, high in (("cpu_reservation", "cpu_limit"), ("memory_reservation", "memory_limit")):
        if low in fields and high in fields and fields[low] > fields[high]:
            errors[low] = [f"Must not exceed {high}."]
    if "params_schema" in configuration:
        fields["params_schema"] = _params_schema(configuration["params_schema"], errors)
    _check_environment(fields, errors)
    if errors:
        raise InvalidConfiguration("configuration.json is invalid", errors=errors)
    return fields


def _check_environment(fields: dict, errors: dict) -> None:
    """An environment names an image: only allowed names, and nothing that could reach another
    repository, registry or digest through the image template."""
    environment, version = fields.get("environment"), fields.get("environment_version")
    if environment is None and version is None:
        return
    if not environment or not version:
        missing = "environment_version" if environment else "environment"
        errors.setdefault(missing, []).append("Give both environment and environment_version.")
        return
    allowed = {
        name.strip()
        for name in current_app.config["LEGACY_ENVIRONMENTS"].split(",")
        if name.strip()
    }
    if not ENVIRONMENT_NAME.fullmatch(environment) or environment not in allowed:
        errors.setdefault("environment", []).append(
            f"Unknown environment; this server allows: {', '.join(sorted(allowed)) or 'none'}."
        )
    if not ENVIRONMENT_VERSION.fullmatch(version):
        errors.setdefault("environment_version", []).append(
            "Must be an image tag: letters, digits, '_', '.' and '-', at most 128."
        )


def check_runnable(script: Script) -> None:
    """A legacy environment script needs what its container will read: S3 for its params and a
    Docker backend for its image. Refused at publish rather than failing in its container."""
    if not script.uses_legacy_environment:
        return
    config = current_app.config
    if not config.get("PARAMS_S3_BUCKET"):
        raise LegacyEnvironmentUnavailable(
            "Scripts for a legacy environment read their params from S3, and this server has "
            "no S3-compatible store (PARAMS_S3_BUCKET)"
        )
    if config["EXECUTION_BACKEND"] == "local":
        raise LegacyEnvironmentUnavailable(
            "Scripts for a legacy environment run as container images, and this server runs "
            "scripts as local processes (EXECUTION_BACKEND=local)"
        )


def _params_schema(schema, errors: dict) -> dict | None:
    if schema is None:
        return None
    try:
        if not isinstance(schema, dict):
            raise jsonschema.SchemaError("must be a JSON object")
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        errors["params_schema"] = [f"Not a valid JSON Schema: {exc.message}"]
    return schema


# Other changes ---------------------------------------------------------------------------


def set_public(ref: str, public: bool, *, by: User) -> Script:
    script = get_for_change(ref, by=by)
    script.public = public
    db.session.commit()
    return script


def set_access(ref: str, *, by: User, allowed_roles=None, allowed_users=None) -> Script:
    if not by.is_admin:
        raise PermissionDenied("Only administrators change script access")
    script = get_for_change(ref, by=by)
    if allowed_roles is not None:
        script.allowed_roles = sorted(set(allowed_roles))
    if allowed_users is not None:
        script.allowed_users = list(dict.fromkeys(allowed_users))
    script.restricted = bool(script.allowed_roles or script.allowed_users)
    db.session.commit()
    return script


def delete(ref: str, *, by: User) -> Script:
    """Soft delete: executions keep their history, the slug is free again."""
    if not by.is_admin:
        raise PermissionDenied("Only administrators delete scripts")
    script = get_for_change(ref, by=by)
    script.deleted = True
    execution_state.cancel_active(script_id=script.id, reason="Its script was deleted")
    db.session.commit()
    return script


def open_archive(ref: str, *, by: User) -> tuple[Script, BinaryIO]:
    script = get_visible(ref, by=by)
    build = db.session.scalar(
        select(ScriptBuild)
        .where(ScriptBuild.script_id == script.id)
        .order_by(ScriptBuild.created_at.desc())
        .limit(1)
    )
    try:
        if build is None:
            raise FileNotFoundError(script.id)
        return script, get_storage().open(build.archive_key)
    except FileNotFoundError:
        raise ScriptNotFound("This script has no stored archive") from None


def logs(ref: str, *, by: User, start=None, last_id=None) -> list[ScriptLog]:
    script = get_visible(ref, by=by)
    return poll_logs(ScriptLog, ScriptLog.script_id, script.id, start=start, last_id=last_id)
