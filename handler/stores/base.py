"""The storage interface every store implements, and its storage-neutral errors."""
from __future__ import annotations

import abc
import contextvars
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeVar

# A key is '/'-separated segments of safe characters: nothing can climb out of a directory,
# hide a NUL, or be read differently by OSS and a file system.
_SEGMENT = re.compile(r"[A-Za-z0-9_=-][A-Za-z0-9._=-]{0,199}")
MAX_KEY_BYTES = 900
T = TypeVar("T")


_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("store_deadline", default=None)


@contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """Every store call made inside (in this context) must be over within `seconds`, or by an outer
    budget's end if that is sooner; None: no bound of its own. A store that retries stops in time."""
    ends = [d for d in (_deadline.get(), None if seconds is None else time.monotonic() + seconds) if d is not None]
    token = _deadline.set(min(ends) if ends else None)
    try:
        yield
    finally:
        _deadline.reset(token)


def deadline() -> float | None:
    """The `time.monotonic()` by which the current invocation's store calls must be over, if bounded."""
    return _deadline.get()


class StoreError(Exception):
    """Base of every error a store raises; never carries credentials or endpoints."""


class AlreadyExists(StoreError):
    """The key exists and holds different bytes."""


class NotFound(StoreError):
    """The key does not exist."""


class Unavailable(StoreError):
    """The storage could not be reached or kept failing after retries (transient).
    `cause` says what failed, for the log: an error class and errno, or a status and code; never a path."""

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause or message


class StorageFull(Unavailable):
    """The storage has no room for a write (a full disk, a quota); nothing of that write was kept."""


class InvalidKey(StoreError):
    """The key is not one this project would ever build (a bug or an injection attempt)."""


class Misconfigured(StoreError):
    """The storage cannot keep the guarantees writes rely on (an OSS bucket with versioning)."""


def check_key(key: str) -> str:
    """Return key if every segment is safe, else raise InvalidKey."""
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidKey("key too long")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidKey("unsafe key segment")
    return key


def check_prefix(prefix: str) -> str:
    """Return prefix if it is empty or a safe key ending in '/', else raise InvalidKey."""
    if prefix and not (prefix.endswith("/") and check_key(prefix[:-1])):
        raise InvalidKey("unsafe prefix")
    return prefix


class Store(abc.ABC):
    """Bytes under keys. Keys are relative to the store's root; every method checks them first.

    `create` is the only primitive uniqueness rests on: it is atomic, and it is idempotent for a
    retry of the same write (same key, same bytes), so a write whose reply was lost can be sent again.
    """

    @abc.abstractmethod
    def create(self, key: str, data: bytes) -> None:
        """Store data under key if the key is absent or already holds exactly data; else AlreadyExists."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under key, or NotFound."""

    def get_head(self, key: str, size: int) -> bytes:
        """At most the first `size` bytes under key, or NotFound; a store reads no more than that."""
        return self.get(key)[:size]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The bytes under each key (None where absent); a store may overlap the reads."""
        found: list[bytes | None] = []
        for key in keys:
            try:
                found.append(self.get(key))
            except NotFound:
                found.append(None)
        return found

    def get_each(self, keys: Sequence[str], then: Callable[[str, bytes], T], heads: Mapping[str, int] | None = None
                 ) -> list[T | None]:
        """then(key, bytes) for each key (None where absent): a store that overlaps its reads runs it where each
        read ends, beside the others still arriving (a checkpoint's parts are hashed and split as they come).
        Of a key in `heads`, at most that many first bytes are read (where knowing it exists is enough)."""
        heads = heads or {}
        whole = [key for key in keys if key not in heads]
        found = dict(zip(whole, self.get_many(whole)))
        for key in keys:
            if key in heads:
                try:
                    found[key] = self.get_head(key, heads[key])
                except NotFound:
                    found[key] = None
        return [then(key, data) if (data := found[key]) is not None else None for key in keys]

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store data under key, replacing what is there (readers see the old or the new bytes)."""

    def put_derived(self, key: str, data: bytes) -> None:
        """As put, for a file the catalog can write again (a record file after its commit): a store may skip making
        it durable against a power loss, which the sweep repairs; a crashed process loses nothing of it."""
        self.put(key, data)

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove key; removing an absent key is not an error."""

    def delete_many(self, keys: Sequence[str]) -> None:
        """`delete` each key; a store may overlap them."""
        for key in keys:
            self.delete(key)

    def verify(self, key: str) -> None:
        """Raise InvalidKey now if writing key would be refused (before any other write happens)."""
        check_key(key)

    def check_writable(self, recheck: bool = False) -> None:
        """Raise Misconfigured if the storage cannot keep the create-only guarantee now; `recheck`: ask the
        storage itself, whatever was seen before. Memory and directories always can."""
        return None

    def clean(self, older_than: float) -> int:
        """Remove what interrupted writes of this store left (older than `older_than` seconds); how many."""
        return 0

    def locate(self, bucket: str, object_key: str) -> str | None:
        """The key of this store that an object of a bucket is, or None if it lies outside the store."""
        return object_key

    @abc.abstractmethod
    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        """Keys below prefix ('' or a key ending in '/'), recursively, in ascending byte order.

        Only keys greater than start_after are returned, at most limit of them.
        """
