"""MemoryStore: a dict behind a lock, for tests and benchmarks."""
from __future__ import annotations

import threading

from .base import AlreadyExists, NotFound, Store, check_key, check_prefix


class MemoryStore(Store):
    """Keeps everything in this process; lost when it ends."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def create(self, key: str, data: bytes) -> None:
        check_key(key)
        with self._lock:
            existing = self._objects.setdefault(key, bytes(data))
        if existing != data:
            raise AlreadyExists(key)

    def get(self, key: str) -> bytes:
        check_key(key)
        try:
            return self._objects[key]
        except KeyError:
            raise NotFound(key) from None

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        with self._lock:
            self._objects[key] = bytes(data)

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        check_prefix(prefix)
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix) and k > start_after)
        return keys[:limit]
