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
        self._make_directories(path.parent)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before any name points at them
        return temp

    @staticmethod
    def _sync(directory: Path) -> None:
        """Make the names in a directory durable, so that a later write (the name claim) never
        survives a power loss that an earlier one (the record) does not."""
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _make_directories(self, directory: Path) -> None:
        """Create a directory and its missing parents, each one made durable in its parent."""
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            try:
                new.mkdir()
            except FileExistsError:
                continue
            if new != self.root:  # the store touches nothing outside its root, not even to sync it
                self._sync(new.parent)

    def create(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            temp = self._write_temp(path, data)
            try:
                os.link(temp, path)
            finally:
                os.unlink(temp)
            self._sync(path.parent)
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
            self._sync(path.parent)
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
