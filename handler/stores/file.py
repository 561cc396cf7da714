"""FileStore: records as files under a directory, the embedded default for local use."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..logs import cause
from .base import AlreadyExists, InvalidKey, NotFound, Store, Unavailable, check_key, check_prefix

_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)


class FileStore(Store):
    """Each key is a file below `root`. Writes go to a temporary file first, synced, and appear whole:
    `create` publishes with a hard link (which never replaces a file), `put` with a rename.

    Nothing is ever read or written outside `root`: keys are checked segment by segment, each
    directory a key lives in is checked (once) to resolve inside `root`, and files are opened
    without following a symbolic link planted in their place."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self._root = str(self.root)
        self._inside: set[str] = set()  # directories seen to resolve inside root

    def _path(self, key: str) -> str:
        path = os.path.join(self._root, check_key(key))
        directory = os.path.dirname(path)
        if directory not in self._inside:
            if not Path(directory).resolve().is_relative_to(self.root):
                raise InvalidKey("key leaves the store")
            if os.path.isdir(directory):  # a directory not made yet is checked again once it exists
                self._inside.add(directory)
        return path

    def _write_temp(self, path: str, data: bytes) -> str:
        directory = os.path.dirname(path)
        self._make_directories(directory)
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fdatasync(fd)  # the bytes are on disk before any name points at them
        finally:
            os.close(fd)
        return temp

    @staticmethod
    def _sync(directory: str) -> None:
        """Make the names in a directory durable, so that a later write (the commit) never survives a
        power loss that an earlier one (the record) does not."""
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _make_directories(self, directory: str) -> None:
        """Create a directory and its missing parents, each one made durable in its parent."""
        missing = []
        while not os.path.isdir(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
        for new in reversed(missing):
            try:
                os.mkdir(new)
            except FileExistsError:
                continue
            if new != self._root:  # the store touches nothing outside its root, not even to sync it
                self._sync(os.path.dirname(new))

    def create(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            temp = self._write_temp(path, data)
            try:
                os.link(temp, path)
            finally:
                os.unlink(temp)
            self._sync(os.path.dirname(path))
        except FileExistsError:
            if self.get(key) != data:
                raise AlreadyExists(key) from None
        except OSError as e:
            raise Unavailable("file store error", cause(e)) from None

    def get(self, key: str, limit: int | None = None) -> bytes:
        path = self._path(key)
        try:
            fd = os.open(path, _READ)
        except FileNotFoundError:
            raise NotFound(key) from None
        except OSError as e:
            if os.path.islink(path):
                raise InvalidKey("key leaves the store") from None
            raise Unavailable("file store error", cause(e)) from None
        try:
            with os.fdopen(fd, "rb") as f:
                return f.read() if limit is None else f.read(limit)
        except OSError as e:
            raise Unavailable("file store error", cause(e)) from None

    def get_head(self, key: str, size: int) -> bytes:
        return self.get(key, size)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            temp = self._write_temp(path, data)
            os.replace(temp, path)
            self._sync(os.path.dirname(path))
        except OSError as e:
            raise Unavailable("file store error", cause(e)) from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise Unavailable("file store error", cause(e)) from None

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        check_prefix(prefix)
        base = self.root / prefix
        keys: list[str] = []
        for directory, _, files in os.walk(base):
            relative = Path(directory).relative_to(self.root).as_posix()
            keys.extend(name if relative == "." else f"{relative}/{name}" for name in files if not name.startswith("."))
        return sorted(k for k in keys if k > start_after)[:limit]
