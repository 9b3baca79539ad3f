"""Hostile archives are refused with the documented status and leave nothing behind."""

import gzip
import io
import os
import tarfile

import pytest

from gefapi import archives
from gefapi.errors import PayloadTooLarge
from gefapi.extensions import db
from gefapi.models import Role, Script, ScriptBuild
from tests.archives import member, script_archive, upload
from tests.helpers import assert_error, data

LIMITS = archives.Limits(max_unpacked_bytes=1_000_000, max_members=50, max_member_bytes=1_000_000)


def stored_files(storage_dir) -> list[str]:
    return [os.path.join(root, name) for root, _, names in os.walk(storage_dir) for name in names]


def publish(client, headers, archive: bytes):
    return client.post(
        "/api/v1/script", data=upload(archive), headers=headers, content_type="multipart/form-data"
    )


def tar_gz(build) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        build(tar)
    return buffer.getvalue()


def hostile(extra):
    return script_archive(extra=extra)


HOSTILE = {
    "absolute path": (hostile(lambda t: member(t, "/etc/cron.d/evil", b"x")), 400),
    "dot-dot path": (hostile(lambda t: member(t, "src/../../evil.py", b"x")), 400),
    "symlink out": (
        hostile(
            lambda t: member(t, "src/data", type=tarfile.SYMTYPE, linkname="../../../etc/passwd")
        ),
        400,
    ),
    "absolute symlink": (
        hostile(lambda t: member(t, "src/data", type=tarfile.SYMTYPE, linkname="/etc/passwd")),
        400,
    ),
    "hardlink out": (
        hostile(lambda t: member(t, "src/data", type=tarfile.LNKTYPE, linkname="../outside")),
        400,
    ),
    "device": (
        hostile(lambda t: member(t, "src/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)),
        400,
    ),
    "fifo": (hostile(lambda t: member(t, "src/fifo", type=tarfile.FIFOTYPE)), 400),
    "not gzip": (b"PK\x03\x04 this is a zip", 400),
    "gzip but not tar": (gzip.compress(b"hello " * 1000), 400),
    "truncated": (script_archive()[:200], 400),
    "no configuration": (script_archive(omit=("configuration.json",)), 400),
    "no main": (script_archive(omit=("src/main.py",)), 400),
    "configuration not json": (
        tar_gz(
            lambda t: [
                member(t, "configuration.json", b"{nope"),
                member(t, "requirements.txt"),
                member(t, "src/main.py", b""),
            ]
        ),
        400,
    ),
    "configuration a list": (script_archive(configuration=[]), 400),
    "nested folder": (
        tar_gz(
            lambda t: [
                member(t, "proj/configuration.json", b'{"name":"x"}'),
                member(t, "proj/requirements.txt"),
                member(t, "proj/src/main.py", b""),
            ]
        ),
        400,
    ),
    "huge member": (hostile(lambda t: member(t, "src/big.bin", b"\0" * 2_000_000)), 413),
    "too many members": (
        hostile(lambda t: [member(t, f"src/f{i}.py", b"") for i in range(60)]),
        413,
    ),
}


@pytest.fixture
def small_limits(monkeypatch, app):
    monkeypatch.setitem(app.config, "SCRIPT_MAX_UNPACKED_BYTES", LIMITS.max_unpacked_bytes)
    monkeypatch.setitem(app.config, "SCRIPT_MAX_MEMBERS", LIMITS.max_members)


@pytest.mark.parametrize(("archive", "status"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_archive_is_refused_and_leaves_nothing(
    client, make_user, auth, app, storage_dir, sent_tasks, small_limits, archive, status
):
    admin = make_user(Role.ADMIN)
    before = stored_files(storage_dir)
    assert_error(publish(client, auth(admin), archive), status)
    assert stored_files(storage_dir) == before
    assert sent_tasks == []
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Script)) == 0
        assert db.session.scalar(db.select(db.func.count()).select_from(ScriptBuild)) == 0


def test_gzip_bomb_stops_at_the_unpacked_cap(
    client, make_user, auth, app, storage_dir, small_limits
):
    """A member declaring a small size cannot hide more data; a huge one is refused unread."""
    bomb = hostile(lambda t: member(t, "src/zeros.bin", b"\0" * 5_000_000))
    assert len(bomb) < 20_000
    assert_error(publish(client, auth(make_user(Role.ADMIN)), bomb), 413)
    assert stored_files(storage_dir) == []


def test_oversized_upload_is_413(client, make_user, auth, monkeypatch, app, storage_dir):
    monkeypatch.setitem(app.config, "SCRIPT_MAX_ARCHIVE_BYTES", 1000)
    archive = script_archive(main="x = '" + os.urandom(4000).hex() + "'\n")
    assert_error(publish(client, auth(make_user(Role.ADMIN)), archive), 413)
    assert stored_files(storage_dir) == []


def test_links_inside_the_archive_are_fine(client, make_user, auth):
    archive = hostile(lambda t: member(t, "src/alias.py", type=tarfile.SYMTYPE, linkname="main.py"))
    assert data(publish(client, auth(make_user(Role.ADMIN)), archive))["status"] == "BUILDING"


def test_extract_stays_inside_a_fresh_folder(tmp_path):
    archive = io.BytesIO(
        hostile(lambda t: member(t, "src/alias.py", type=tarfile.SYMTYPE, linkname="main.py"))
    )
    destination = tmp_path / "build"
    destination.mkdir()
    archives.extract(archive, str(destination), LIMITS)
    assert (destination / "src" / "main.py").read_text().startswith("def run")
    assert sorted(os.listdir(tmp_path)) == ["build"]
    with pytest.raises(ValueError, match="empty"):
        archives.extract(archive, str(destination), LIMITS)


@pytest.mark.parametrize(("archive", "status"), HOSTILE.values(), ids=HOSTILE.keys())
def test_extract_refuses_hostile_archives(tmp_path, archive, status):
    destination = tmp_path / "build"
    destination.mkdir()
    with pytest.raises(archives.InvalidArchive if status == 400 else PayloadTooLarge):
        archives.extract(io.BytesIO(archive), str(destination), LIMITS)
    assert os.listdir(destination) == []
    assert sorted(os.listdir(tmp_path)) == ["build"]
