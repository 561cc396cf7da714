"""FileStore: records as files under a directory, the embedded default for local use."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .base import AlreadyExists, InvalidKey, NotFound, Store, Unavailable, check_key, check_prefix


class FileStore(Store):
    """Each key is a file below `root`. Writes go to a temporary file first, synced, and appear whole:
    `create` publishes with a hard link (which never replaces a file), `put` with a rename."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = self.root / check_key(key)
        # check_key already forbids '..' and empty segments; this also stops a symlink planted inside.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidKey("key leaves the store")
        return path

    def _write_temp(self, path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before any name points at them
        return temp

    @staticmethod
    def _sync_directory(path: Path) -> None:
        """Make the new name durable, so that a later write (the name claim) never survives a power
        loss that this one (the record) does not."""
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def create(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            temp = self._write_temp(path, data)
            try:
                os.link(temp, path)
            finally:
                os.unlink(temp)
            self._sync_directory(path)
        except FileExistsError:
            if path.read_bytes() != data:
                raise AlreadyExists(key) from None
        except OSError as e:
            raise Unavailable(f"file store error: {e.strerror}") from None

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(key) from None
        except OSError as e:
            raise Unavailable(f"file store error: {e.strerror}") from None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            temp = self._write_temp(path, data)
            os.replace(temp, path)
            self._sync_directory(path)
        except OSError as e:
            raise Unavailable(f"file store error: {e.strerror}") from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise Unavailable(f"file store error: {e.strerror}") from None

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        check_prefix(prefix)
        base = self.root / prefix
        keys: list[str] = []
        for directory, _, files in os.walk(base):
            relative = Path(directory).relative_to(self.root).as_posix()
            keys.extend(name if relative == "." else f"{relative}/{name}" for name in files if not name.startswith("."))
        return sorted(k for k in keys if k > start_after)[:limit]
