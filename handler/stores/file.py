"""FileStore: records as files under a directory, the embedded default for local use."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
import time
from pathlib import Path

from ..logs import cause
from .base import AlreadyExists, InvalidKey, NotFound, StorageFull, Store, Unavailable, check_key, check_prefix

_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
TEMPORARY_AGE = 60.0  # seconds after which a temporary file can only be a leftover (a write takes far less)
_FULL = (errno.ENOSPC, errno.EDQUOT)


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
        self._cleaned: set[str] = set()  # directories whose old temporary files this process removed
        self._count_lock = threading.Lock()
        # Temporary files removed (on opening, on a directory's first write) that no `clean` has counted yet.
        self._unreported = self._clean_all(TEMPORARY_AGE)

    def verify(self, key: str) -> None:
        self._path(key)

    def clean(self, older_than: float) -> int:
        """Remove temporary files (`.tmp-*`) older than `older_than` seconds: what a process stopped in the
        middle of a write left. Younger ones may belong to a write in progress in another process. How many
        this store removed since the last call: these, and those it removed on opening and on first writes."""
        removed = self._clean_all(older_than)
        with self._count_lock:
            removed, self._unreported = removed + self._unreported, 0
        return removed

    def _clean_all(self, older_than: float) -> int:
        removed = 0
        for directory, _, files in os.walk(self._root):
            removed += self._clean_directory(directory, files, older_than)
        return removed

    def _clean_directory(self, directory: str, files: list[str], older_than: float) -> int:
        removed, limit = 0, time.time() - older_than
        for name in files:
            if name.startswith(".tmp-"):
                try:
                    if os.lstat(os.path.join(directory, name)).st_mtime < limit:
                        os.unlink(os.path.join(directory, name))
                        removed += 1
                except OSError:
                    pass  # gone already, or not ours to remove
        self._cleaned.add(directory)
        return removed

    def _path(self, key: str) -> str:
        path = os.path.join(self._root, check_key(key))
        directory = os.path.dirname(path)
        if directory not in self._inside:
            if not Path(directory).resolve().is_relative_to(self.root):
                raise InvalidKey("key leaves the store")
            if os.path.isdir(directory):  # a directory not made yet is checked again once it exists
                self._inside.add(directory)
        return path

    def _write_temp(self, path: str, data: bytes, durable: bool = True) -> str:
        directory = os.path.dirname(path)
        self._make_directories(directory)
        if directory not in self._cleaned:  # the first write into a directory tidies it
            with contextlib.suppress(OSError):
                removed = self._clean_directory(directory, os.listdir(directory), TEMPORARY_AGE)
                with self._count_lock:
                    self._unreported += removed
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if durable:
                    os.fdatasync(fd)  # the bytes are on disk before any name points at them
            finally:
                os.close(fd)
        except BaseException:
            _remove(temp)  # a failed write (a full disk) leaves no temporary file behind
            raise
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
                _remove(temp)
            self._sync(os.path.dirname(path))
        except FileExistsError:
            if self.get(key) != data:
                raise AlreadyExists(key) from None
        except OSError as e:
            raise _error(e) from None

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
        self._replace(key, data, durable=True)

    def put_derived(self, key: str, data: bytes) -> None:
        # Neither the bytes nor the name are synced: after a power loss the file may be old, empty or missing, which
        # the catalog's reads tolerate and the sweep repairs; the log entry it follows was synced.
        self._replace(key, data, durable=False)

    def _replace(self, key: str, data: bytes, durable: bool) -> None:
        path = self._path(key)
        try:
            temp = self._write_temp(path, data, durable)
            try:
                os.replace(temp, path)
            except BaseException:
                _remove(temp)
                raise
            if durable:
                self._sync(os.path.dirname(path))
        except OSError as e:
            raise _error(e) from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise Unavailable("file store error", cause(e)) from None

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        """Walks the directories in key order, skipping those wholly before start_after and stopping at limit:
        a listing from the middle of a long log reads only what it returns."""
        check_prefix(prefix)
        keys: list[str] = []
        _list_into(self._root, keys, prefix, start_after, limit)
        return keys


def _list_into(root: str, keys: list[str], directory: str, start_after: str, limit: int | None) -> None:
    try:
        entries = list(os.scandir(os.path.join(root, directory) if directory else root))
    except (FileNotFoundError, NotADirectoryError):
        return
    # A key sorts by its bytes: a directory's keys follow its name and a '/', so `a.json` < `a/x` < `a0`.
    named = sorted(e.name + "/" if e.is_dir() else e.name for e in entries
                   if not e.name.startswith(".") and not (e.is_dir() and e.is_symlink()))  # never followed out
    for name in named:
        if limit is not None and len(keys) >= limit:
            return
        key = directory + name
        if name.endswith("/"):
            if key < start_after and not start_after.startswith(key):
                continue  # every key below it comes before start_after
            _list_into(root, keys, key, start_after, limit)
        elif key > start_after:
            keys.append(key)


def _remove(temp: str) -> None:
    """Remove a temporary file of this process's own write (already gone is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)


def _error(error: OSError) -> Unavailable:
    """The store's error for a failed write: StorageFull when the disk (or a quota) has no room."""
    if error.errno in _FULL:
        return StorageFull("the disk of the file store is full", cause(error))
    return Unavailable("file store error", cause(error))
