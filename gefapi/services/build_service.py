"""Turning an uploaded archive into something runnable, with its output in the script log."""

import logging
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from gefapi.executors import get_backend
from gefapi.executors.base import BackendError, BackendUnavailable, BuildSpec
from gefapi.extensions import db
from gefapi.models import Script, ScriptBuild, ScriptLog, ScriptStatus
from gefapi.models.base import utcnow
from gefapi.queue import send_now
from gefapi.storage import get_storage

log = logging.getLogger(__name__)
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_PATH = "<server>"


def path_redactor() -> Callable[[str], str]:
    """Build logs and errors are read by everyone who sees the script: this server's folders
    (instance, storage, local backend, temporary files, code and Python) become <server>."""
    config = current_app.config
    storage_root = getattr(get_storage(), "root", None)
    named = (
        config["INSTANCE_PATH"],
        config.get("LOCAL_BACKEND_DIR"),
        storage_root,
        tempfile.gettempdir(),
        CODE_ROOT,
        sys.prefix if sys.prefix != sys.base_prefix else None,  # a virtualenv, not /usr
    )
    folders = set()
    for folder in filter(None, named):
        for path in (os.path.abspath(folder), os.path.realpath(folder)):
            if path.rstrip(os.sep):
                folders.add(path.rstrip(os.sep))
    # Longest first, so that a folder inside another is replaced whole.
    alternatives = "|".join(re.escape(path) for path in sorted(folders, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.-])(?:{alternatives})(?![\w.-])")
    return lambda text: pattern.sub(SERVER_PATH, text)


class LogWriter:
    """Build output into script_logs, a commit per line so pollers see it as it comes."""

    def __init__(self, script_id: uuid.UUID, build_id: uuid.UUID, redact: Callable[[str], str]):
        self.script_id, self.build_id, self.redact = script_id, build_id, redact

    def __call__(self, text: str) -> None:
        db.session.add(
            ScriptLog(
                script_id=self.script_id,
                build_id=self.build_id,
                text=self.redact(text)[:10_000],
                register_date=utcnow(),
            )
        )
        db.session.commit()


def image_name(script: Script, build: ScriptBuild) -> str:
    """Immutable per build, so a rebuild never changes a queued or running execution's image."""
    registry = current_app.config["REGISTRY_URL"]
    repository = f"{registry.rstrip('/')}/{script.slug}" if registry else f"gefapi/{script.slug}"
    return f"{repository}:{build.id.hex}"


def environment_image(script: Script) -> str:
    """What the script's image builds FROM: its legacy environment, or gefapi's own."""
    config = current_app.config
    if not script.uses_legacy_environment:
        return config["ENVIRONMENT_IMAGE"]
    return config["LEGACY_ENVIRONMENT_IMAGE"].format(
        environment=script.environment, environment_version=script.environment_version
    )


def build(build_id: str) -> None:
    build = db.session.scalar(
        select(ScriptBuild)
        .where(ScriptBuild.id == uuid.UUID(build_id))
        .with_for_update(skip_locked=True)
    )
    if build is None or build.status in (ScriptStatus.SUCCESS, ScriptStatus.FAIL):
        db.session.rollback()
        return  # built already, or another worker holds it
    if build.status == ScriptStatus.BUILDING and build.started_at > _worker_lost_before():
        db.session.rollback()
        return  # a live worker is building it
    script = db.session.get(Script, build.script_id)
    build.status, build.started_at = ScriptStatus.BUILDING, utcnow()
    if _is_latest(build):
        script.status = ScriptStatus.BUILDING
    db.session.add(ScriptLog(script_id=script.id, build_id=build.id, text="Build started."))
    db.session.commit()
    redact = path_redactor()
    try:
        result = _run_build(build, script, LogWriter(script.id, build.id, redact))
    except BackendUnavailable:
        _reset(build.id)
        raise
    except Exception as exc:
        if not isinstance(exc, BackendError):
            log.exception("Build %s failed unexpectedly", build_id)
        db.session.rollback()
        _finish(build.id, ok=False, error=redact(str(exc) or exc.__class__.__name__))
        return
    _finish(build.id, ok=True, image=result.image, digest=result.digest)


def _run_build(build: ScriptBuild, script: Script, writer: LogWriter):
    workdir = tempfile.mkdtemp(prefix="gefapi-archive-")
    try:
        path = f"{workdir}/archive.tar.gz"
        with get_storage().open(build.archive_key) as source, open(path, "wb") as target:
            shutil.copyfileobj(source, target)
        spec = BuildSpec(
            archive_path=path,
            image=image_name(script, build),
            environment_image=build.base_image or current_app.config["ENVIRONMENT_IMAGE"],
            labels={"gefapi.script": str(script.id), "gefapi.build": str(build.id)},
            legacy=build.legacy,
        )
        backend = get_backend()
        if build.legacy and backend.name == "local":
            raise BackendError("A legacy environment image needs a Docker backend, not local")
        return backend.build(spec, writer)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _is_latest(build: ScriptBuild) -> bool:
    newest = db.session.scalar(
        select(ScriptBuild.id)
        .where(ScriptBuild.script_id == build.script_id)
        .order_by(ScriptBuild.created_at.desc())
        .limit(1)
    )
    return newest == build.id


def _finish(
    build_id: uuid.UUID, *, ok: bool, error: str | None = None, image=None, digest=None
) -> None:
    build = db.session.scalar(
        select(ScriptBuild).where(ScriptBuild.id == build_id).with_for_update()
    )
    script = db.session.scalar(select(Script).where(Script.id == build.script_id).with_for_update())
    build.status = ScriptStatus.SUCCESS if ok else ScriptStatus.FAIL
    build.finished_at, build.error = utcnow(), error
    build.image, build.image_digest = image, digest
    if _is_latest(build):
        script.status = build.status
        script.build_error = error
    if ok and _newer_than_current(build, script):
        script.current_build_id = build.id
    text = "Build successful." if ok else f"Build failed: {error}"
    db.session.add(ScriptLog(script_id=script.id, build_id=build.id, text=text))
    db.session.commit()


def _newer_than_current(build: ScriptBuild, script: Script) -> bool:
    if script.current_build_id is None:
        return True
    return db.session.get(ScriptBuild, script.current_build_id).created_at <= build.created_at


def _reset(build_id: uuid.UUID) -> None:
    """The engine was unreachable: leave the build PENDING for the retry."""
    db.session.rollback()
    db.session.get(ScriptBuild, build_id).status = ScriptStatus.PENDING
    db.session.commit()


def _worker_lost_before():
    """A build still BUILDING that started before this has lost its worker."""
    return utcnow() - timedelta(seconds=current_app.config["BUILD_STALE_SECONDS"])


def recover_stale() -> None:
    """Periodic: builds whose message was lost (PENDING a minute on) or whose worker died
    (BUILDING past BUILD_STALE_SECONDS) are sent again; building is idempotent."""
    stale = db.session.scalars(
        select(ScriptBuild.id)
        .where(
            (
                (ScriptBuild.status == ScriptStatus.PENDING)
                & (ScriptBuild.created_at < utcnow() - timedelta(seconds=60))
            )
            | (
                (ScriptBuild.status == ScriptStatus.BUILDING)
                & (ScriptBuild.started_at < _worker_lost_before())
            )
        )
        .limit(100)
    ).all()
    db.session.rollback()
    for build_id in stale:
        send_now("scripts.build", str(build_id))
