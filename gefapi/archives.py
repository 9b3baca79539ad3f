"""Script archives: a gzip tar with configuration.json, requirements.txt and src/main.py at its
root. Every member is checked before anything is read or extracted (CONTRACT section 5)."""

import gzip
import json
import os
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from gefapi.errors import PayloadTooLarge, ValidationError
from gefapi.jsonprovider import holds_nul, loads_body

REQUIRED_FILES = ("configuration.json", "requirements.txt", "src/main.py")
MAX_CONFIGURATION_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_unpacked_bytes: int
    max_members: int
    max_member_bytes: int


@dataclass
class ArchiveContents:
    configuration: dict
    requirements: str
    members: list[str]


class InvalidArchive(ValidationError):
    error_code = "invalid_archive"


class _Bounded:
    """A reader that refuses to return more than `limit` bytes (a gzip bomb stops here)."""

    def __init__(self, raw: BinaryIO, limit: int):
        self.raw, self.limit, self.count = raw, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise PayloadTooLarge("The archive unpacks to more than the allowed size")
        return data


def _member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _check_member(member: tarfile.TarInfo, limits: Limits) -> str:
    name = _member_name(member)
    if member.name.startswith("/") or os.path.isabs(member.name) or "\\" in member.name:
        raise InvalidArchive(f"Absolute path in archive: {member.name}")
    if ".." in name.split("/"):
        raise InvalidArchive(f"Path leaving the archive: {member.name}")
    if member.issym() or member.islnk():
        target = member.linkname
        resolved = posixpath.normpath(
            posixpath.join(posixpath.dirname(name), target) if member.issym() else target
        )
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise InvalidArchive(f"Link leading out of the archive: {member.name} -> {target}")
    elif not (member.isfile() or member.isdir()):
        raise InvalidArchive(f"Device, fifo or special file in archive: {member.name}")
    if member.size > limits.max_member_bytes:
        raise PayloadTooLarge(f"Archive member too large: {member.name}")
    return name


def _open_tar(source: BinaryIO, limits: Limits) -> tarfile.TarFile:
    head = source.read(2)
    source.seek(0)
    if head != b"\x1f\x8b":
        raise InvalidArchive("The file is not a gzip-compressed tar archive (.tar.gz)")
    stream = _Bounded(gzip.GzipFile(fileobj=source, mode="rb"), limits.max_unpacked_bytes)
    return tarfile.open(fileobj=stream, mode="r|")


def inspect(source: BinaryIO, limits: Limits) -> ArchiveContents:
    """Check every member and read configuration.json and requirements.txt."""
    files: dict[str, bytes] = {}
    names: list[str] = []
    try:
        with _open_tar(source, limits) as tar:
            for member in tar:
                if len(names) >= limits.max_members:
                    raise PayloadTooLarge(f"The archive has more than {limits.max_members} members")
                name = _check_member(member, limits)
                names.append(name)
                if name in ("configuration.json", "requirements.txt") and member.isfile():
                    if member.size > MAX_CONFIGURATION_BYTES:
                        raise PayloadTooLarge(f"{name} is too large")
                    files[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise InvalidArchive(f"The archive cannot be read: {exc}") from None
    finally:
        source.seek(0)
    missing = [name for name in REQUIRED_FILES if name not in names]
    if missing:
        raise InvalidArchive(
            "The archive must hold configuration.json, requirements.txt and src/main.py at its "
            f"root; missing: {', '.join(missing)}"
        )
    return ArchiveContents(
        configuration=_parse_configuration(files.get("configuration.json", b"")),
        requirements=files.get("requirements.txt", b"").decode("utf-8", "replace"),
        members=names,
    )


def _parse_configuration(raw: bytes) -> dict:
    try:
        configuration = loads_body(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidArchive("configuration.json is not valid JSON") from None
    if not isinstance(configuration, dict):
        raise InvalidArchive("configuration.json must hold a JSON object")
    holding_nul = [key for key, value in configuration.items() if holds_nul([key, value])]
    if holding_nul:
        raise InvalidArchive(
            "configuration.json must not hold NUL characters",
            errors={key: ["Must not hold NUL characters."] for key in holding_nul},
        )
    return configuration


def extract(source: BinaryIO, destination: str, limits: Limits) -> None:
    """Extract into `destination`, a fresh empty folder, after checking every member again."""
    if os.listdir(destination):
        raise ValueError("extract() needs an empty destination folder")
    inspect(source, limits)
    with _open_tar(source, limits) as tar:
        tar.extractall(destination, filter="data")
    source.seek(0)
