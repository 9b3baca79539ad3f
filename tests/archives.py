"""Build script archives in memory, the way tecli packs them (members at the root)."""

import io
import json
import tarfile


def member(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def script_archive(
    configuration: dict | None = None,
    *,
    main: str | None = None,
    requirements: str = "",
    extra=None,
    omit=(),
) -> bytes:
    """A .tar.gz like `tecli publish` makes; `extra(tar)` adds hostile members."""
    configuration = {"name": "test script 1_0_0"} if configuration is None else configuration
    main = main or "def run(params, logger):\n    logger.info('hello')\n    return {'ok': params}\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        files = {
            "configuration.json": json.dumps(configuration).encode(),
            "requirements.txt": requirements.encode(),
            "src/__init__.py": b"",
            "src/main.py": main.encode(),
        }
        member(tar, "src", type=tarfile.DIRTYPE, mode=0o755)
        for name, data in files.items():
            if name not in omit:
                member(tar, name, data)
        if extra:
            extra(tar)
    return buffer.getvalue()


def upload(archive: bytes, filename: str = "test script 1_0_0.tar.gz") -> dict:
    return {"file": (io.BytesIO(archive), filename)}
