"""Turning an uploaded archive into something runnable, with its output in the script log."""

import logging
import shutil
import tempfile
import time
import uuid

from flask import current_app
from sqlalchemy import select

from gefapi.executors import get_backend
from gefapi.executors.base import BackendError, BackendUnavailable, BuildSpec
from gefapi.extensions import db
from gefapi.models import Script, ScriptBuild, ScriptLog, ScriptStatus
from gefapi.models.base import utcnow
from gefapi.storage import get_storage

log = logging.getLogger(__name__)
FLUSH_SECONDS = 0.5


class LogWriter:
    """Build output into script_logs, committed in small batches so pollers see it live."""

    def __init__(self, script_id: uuid.UUID, build_id: uuid.UUID):
        self.script_id, self.build_id = script_id, build_id
        self.pending: list[ScriptLog] = []
        self.flushed_at = time.monotonic()

    def __call__(self, text: str) -> None:
        self.pending.append(
            ScriptLog(
                script_id=self.script_id,
                build_id=self.build_id,
                text=text[:10_000],
                register_date=utcnow(),
            )
        )
        if time.monotonic() - self.flushed_at > FLUSH_SECONDS or len(self.pending) >= 100:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            db.session.add_all(self.pending)
            db.session.commit()
            self.pending = []
        self.flushed_at = time.monotonic()


def image_name(script: Script, build: ScriptBuild) -> str:
    """Immutable per build, so a rebuild never changes a queued or running execution's image."""
    registry = current_app.config["REGISTRY_URL"]
    repository = f"{registry.rstrip('/')}/{script.slug}" if registry else f"gefapi/{script.slug}"
    return f"{repository}:{build.id.hex}"


def build(build_id: str) -> None:
    build = db.session.scalar(
        select(ScriptBuild)
        .where(ScriptBuild.id == uuid.UUID(build_id))
        .with_for_update(skip_locked=True)
    )
    if build is None or build.status in (ScriptStatus.SUCCESS, ScriptStatus.FAIL):
        db.session.rollback()
        return  # built already, or another worker holds it
    script = db.session.get(Script, build.script_id)
    build.status, build.started_at = ScriptStatus.BUILDING, utcnow()
    latest = _is_latest(build)
    if latest:
        script.status = ScriptStatus.BUILDING
    db.session.add(ScriptLog(script_id=script.id, build_id=build.id, text="Build started."))
    db.session.commit()
    writer = LogWriter(script.id, build.id)
    try:
        result = _run_build(build, script, writer)
    except BackendUnavailable:
        _reset(build)
        raise
    except BackendError as exc:
        writer.flush()
        _finish(build, script, ok=False, error=str(exc) or exc.__class__.__name__)
        return
    writer.flush()
    build.image, build.image_digest = result.image, result.digest
    _finish(build, script, ok=True)


def _run_build(build: ScriptBuild, script: Script, writer: LogWriter):
    workdir = tempfile.mkdtemp(prefix="gefapi-archive-")
    try:
        path = f"{workdir}/archive.tar.gz"
        with get_storage().open(build.archive_key) as source, open(path, "wb") as target:
            shutil.copyfileobj(source, target)
        spec = BuildSpec(
            archive_path=path,
            image=image_name(script, build),
            environment_image=current_app.config["ENVIRONMENT_IMAGE"],
            labels={"gefapi.script": str(script.id), "gefapi.build": str(build.id)},
        )
        return get_backend().build(spec, writer)
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


def _finish(build: ScriptBuild, script: Script, *, ok: bool, error: str | None = None) -> None:
    build = db.session.scalar(
        select(ScriptBuild).where(ScriptBuild.id == build.id).with_for_update()
    )
    script = db.session.scalar(select(Script).where(Script.id == script.id).with_for_update())
    build.status = ScriptStatus.SUCCESS if ok else ScriptStatus.FAIL
    build.finished_at, build.error = utcnow(), error
    if _is_latest(build):
        script.status = build.status
        script.build_error = error
    if ok:
        current = (
            db.session.get(ScriptBuild, script.current_build_id)
            if script.current_build_id
            else None
        )
        if current is None or current.created_at <= build.created_at:
            script.current_build_id = build.id
    text = "Build successful." if ok else f"Build failed: {error}"
    db.session.add(ScriptLog(script_id=script.id, build_id=build.id, text=text))
    db.session.commit()


def _reset(build: ScriptBuild) -> None:
    """The engine was unreachable: leave the build PENDING for the retry."""
    db.session.rollback()
    stored = db.session.get(ScriptBuild, build.id)
    stored.status = ScriptStatus.PENDING
    db.session.commit()
