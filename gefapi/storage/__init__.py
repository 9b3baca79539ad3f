"""Where uploaded archives live: a local folder by default, S3 when STORAGE_URL=s3://bucket/prefix."""

import contextlib
import os
import shutil
from typing import BinaryIO, Protocol


class Storage(Protocol):
    def put(self, key: str, source: BinaryIO) -> None: ...
    def open(self, key: str) -> BinaryIO: ...
    def delete(self, key: str) -> None: ...


class LocalStorage:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def _path(self, key: str) -> str:
        path = os.path.abspath(os.path.join(self.root, key))
        if not path.startswith(self.root + os.sep):
            raise ValueError(f"Storage key escapes the storage folder: {key}")
        return path

    def put(self, key: str, source: BinaryIO) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = path + ".partial"
        with open(partial, "wb") as target:
            shutil.copyfileobj(source, target)
        os.replace(partial, path)

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._path(key))

    def local_path(self, key: str) -> str:
        """The file of `key`, served directly (artifact downloads)."""
        return self._path(key)


def storage_from_config(config) -> Storage:
    url = config.get("STORAGE_URL")
    if url and url.startswith("s3://"):
        from gefapi.storage.s3 import S3Storage

        return S3Storage.from_url(url, endpoint_url=config.get("S3_ENDPOINT_URL"))
    return LocalStorage(url or os.path.join(config["INSTANCE_PATH"], "storage"))


def get_storage() -> Storage:
    from flask import current_app

    return current_app.extensions["storage"]
