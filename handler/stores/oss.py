"""A Store on Alibaba Cloud OSS through oss2: create-only writes, bounded retries, no leaked secrets."""
from __future__ import annotations

import base64
import concurrent.futures
import contextvars
import functools
import hashlib
import logging
import mimetypes
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import oss2
import requests

from .base import (
    AlreadyExists,
    Misconfigured,
    NotFound,
    Store,
    StoreError,
    Unavailable,
    check_key,
    check_prefix,
    deadline,
    time_budget,
)
from .credentials import Credentials

# At DEBUG oss2 logs signed headers (x-oss-security-token); at INFO every 404/409.
logging.getLogger("oss2").setLevel(logging.WARNING)
logging.getLogger("urllib3").setLevel(logging.WARNING)  # logs the endpoint, bucket and keys at DEBUG
log = logging.getLogger(__name__)

T = TypeVar("T")

_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 1.0
_CREATE_ROUNDS = 3  # put, find the key deleted before it could be read back, put again...
VERSIONING_RECHECK = 60.0  # seconds after which a write asks again whether the bucket has versioning
_SHORTEST_TRY = 0.2  # seconds: less than this left, and no try is started
_AUTH_CODES = frozenset({"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId",
                         "SecurityTokenExpired", "InvalidSecurityToken", "NoSuchBucket"})

_lock = threading.Lock()
_sessions: dict[int, oss2.Session] = {}
_executors: dict[int, concurrent.futures.ThreadPoolExecutor] = {}


def _session(pool_size: int) -> oss2.Session:
    """One connection pool per process (and pool size), without requests' per-call proxy scan."""
    with _lock:
        if pool_size not in _sessions:
            session = oss2.Session(pool_size=pool_size)
            session.session.trust_env = False
            _sessions[pool_size] = session
        return _sessions[pool_size]


def _pool(size: int) -> concurrent.futures.ThreadPoolExecutor:
    """Threads for overlapped reads and deletes, one set per process (and pool size), like the connections."""
    with _lock:
        if size not in _executors:
            _executors[size] = concurrent.futures.ThreadPoolExecutor(size, thread_name_prefix="oss-write")
        return _executors[size]


def _list_page(bucket: oss2.Bucket, **options: object) -> oss2.models.ListObjectsV2Result:
    return bucket.list_objects_v2(**options)


def _content_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _transient(status: int, code: str) -> bool:
    return status < 0 or status >= 500 or status == 429


class OssStore(Store):
    """Keys live at prefix+key in one bucket; every call retries transient failures within a deadline."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str,
                 credentials: Callable[[], Credentials], region: str | None = None,
                 connect_timeout: float = 2.0, read_timeout: float = 6.0,
                 attempts: int = 4, deadline: float = 20.0, pool_size: int = 16) -> None:
        if not oss2.utils.is_valid_bucket_name(bucket):
            raise ValueError("invalid OSS bucket name")
        if not oss2.utils.is_valid_endpoint(endpoint):
            raise ValueError("invalid OSS endpoint")
        if attempts < 1 or pool_size < 1 or min(connect_timeout, read_timeout) <= 0:
            raise ValueError("attempts, pool_size and timeouts must be positive")
        if deadline < connect_timeout + read_timeout:
            raise ValueError("deadline must leave room for one try (connect_timeout + read_timeout)")
        self._bucket_name = bucket
        self._prefix = check_prefix(prefix)
        self._endpoint = endpoint
        self._credentials = credentials
        self._region = region
        self._timeouts = (connect_timeout, read_timeout)
        self._attempts = attempts
        self._deadline = deadline
        self._session = _session(pool_size)
        self._pool_size = pool_size
        self._cached: tuple[Credentials, oss2.Bucket] | None = None
        self._unversioned_at: float | None = None  # when the bucket was last seen without versioning (monotonic)
        self._versioned: str | None = None  # its versioning status once seen on: writes are refused from then on
        self._cache_lock = threading.Lock()

    def _bucket(self, timeouts: tuple[float, float] | None = None) -> oss2.Bucket:
        """The Bucket for the current credentials; rebuilt (cheaply, same pool) when they rotate.
        A try that must end sooner than the configured timeouts allow gets a Bucket of its own."""
        creds = self._credentials()
        if timeouts is not None and timeouts != self._timeouts:
            return self._new_bucket(creds, timeouts)
        cached = self._cached
        if cached is not None and cached[0] == creds:
            return cached[1]
        with self._cache_lock:
            if self._cached is None or self._cached[0] != creds:
                self._cached = (creds, self._new_bucket(creds, self._timeouts))
            return self._cached[1]

    def _new_bucket(self, creds: Credentials, timeouts: tuple[float, float]) -> oss2.Bucket:
        ak, sk, token = creds
        if self._region:
            auth = (oss2.StsAuth(ak, sk, token, auth_version=oss2.AUTH_VERSION_4) if token
                    else oss2.AuthV4(ak, sk))
        else:
            auth = oss2.StsAuth(ak, sk, token) if token else oss2.Auth(ak, sk)
        return oss2.Bucket(auth, self._endpoint, self._bucket_name, session=self._session,
                           connect_timeout=timeouts, enable_crc=False, region=self._region)

    def _call(self, op: str, fn: Callable[[oss2.Bucket], T]) -> T:
        """Run fn, retrying transient failures with full-jitter backoff, within `attempts`, the
        store's `deadline` and the request's time budget (base.deadline()): a try never runs past them.

        Errors are raised outside any `except` block, so no oss2 exception (with its headers and
        request details) is chained to what callers see.
        """
        limit = time.monotonic() + self._deadline
        budget = deadline()
        if budget is not None:
            limit = min(limit, budget)
        status, code = -2, "NoTimeLeft"
        for attempt in range(1, self._attempts + 1):
            timeouts = self._timeouts_within(limit - time.monotonic())
            if timeouts is None:
                break
            try:
                return fn(self._bucket(timeouts))
            except oss2.exceptions.RequestError as e:  # refused, reset or timed out: outcome unknown
                status, code = e.status, type(e.exception).__name__
            except oss2.exceptions.OssError as e:
                status, code = e.status, e.code
            except requests.RequestException as e:  # a body read failing after the reply started
                status, code = -2, type(e).__name__
            if not _transient(status, code) or attempt == self._attempts:
                break
            delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1)))
            if time.monotonic() + delay + _SHORTEST_TRY > limit:
                break
            log.warning("oss %s: attempt %d failed (%s %s), retrying", op, attempt, status, code)
            time.sleep(delay)
        raise self._error(op, status, code)

    def _timeouts_within(self, remaining: float) -> tuple[float, float] | None:
        """A try's (connect, read) timeouts: the configured ones, shrunk to end within `remaining`."""
        if remaining < _SHORTEST_TRY:
            return None
        total = sum(self._timeouts)
        if total <= remaining:
            return self._timeouts
        return (self._timeouts[0] * remaining / total, self._timeouts[1] * remaining / total)

    @staticmethod
    def _error(op: str, status: int, code: str) -> StoreError:
        if status == 404 and code in ("NoSuchKey", ""):
            return NotFound("key not found")
        if (status, code) == (409, "FileAlreadyExists"):
            return AlreadyExists("key exists")
        if _transient(status, code) or status in (401, 403) or code in _AUTH_CODES:
            return Unavailable("object storage unavailable", f"oss {op} failed: {status} {code}")
        return StoreError(f"unexpected object storage reply ({status} {code})")

    def warm(self) -> None:
        """Pay now, once per instance (FC's initializer), what the first request would otherwise pay:
        oss2's Content-Type tables, the Bucket, a writer thread and one pooled connection.
        Best effort and a single try: a failure here is left to the first request to meet and retry."""
        if not mimetypes.inited:
            mimetypes.init()  # oss2 guesses every object's Content-Type; the tables load on first use (~10 ms)
        self._writers().submit(lambda: None).result()  # starts a writer thread
        try:  # one request, which also leaves a connection in the pool
            if self._unversioned_at is None and not self._bucket().get_bucket_versioning().status:
                self._unversioned_at = time.monotonic()
        except (oss2.exceptions.OssError, requests.RequestException):
            pass  # the first write asks again, with retries

    def check_writable(self, recheck: bool = False) -> None:
        """Refuse writes on a bucket with versioning (Enabled or Suspended): there, OSS ignores
        x-oss-forbid-overwrite, the only guard the catalog's commits rest on. Asked again at most
        VERSIONING_RECHECK seconds after it was last seen off (it can be switched on at any time), and for
        `recheck`; once seen on, every later write is refused."""
        if self._versioned is None and not recheck and self._unversioned_at is not None \
                and time.monotonic() - self._unversioned_at < VERSIONING_RECHECK:
            return
        status = self._versioned or self._call("versioning", lambda bucket: bucket.get_bucket_versioning().status)
        if status:
            self._versioned = status
            raise Misconfigured(f"bucket versioning is {status}: OSS then ignores the create-only writes this registry "
                                "relies on, and versioning cannot be turned off; use a bucket that never had it")
        self._unversioned_at = time.monotonic()

    def _writers(self) -> concurrent.futures.ThreadPoolExecutor:
        return _pool(self._pool_size)

    def locate(self, bucket: str, object_key: str) -> str | None:
        if bucket != self._bucket_name or not object_key.startswith(self._prefix):
            return None
        return object_key[len(self._prefix):]

    def _full(self, key: str) -> str:
        return self._prefix + check_key(key)

    def create(self, key: str, data: bytes) -> None:
        full = self._full(key)
        self.check_writable()
        headers = {"x-oss-forbid-overwrite": "true", "Content-MD5": _content_md5(data)}
        with time_budget(self._deadline):  # the put, its read-back and their retries: one deadline
            self._create(key, full, data, headers)

    def _create(self, key: str, full: str, data: bytes, headers: dict[str, str]) -> None:
        for _ in range(_CREATE_ROUNDS):
            try:
                self._call("create", lambda bucket: bucket.put_object(full, data, headers=headers))
                return
            except AlreadyExists:
                pass
            # Our own earlier write whose reply was lost, an identical retry, or someone else's bytes:
            # read it back (a call of its own, so it too ends within the time left).
            try:
                existing = self.get(key)
            except NotFound:
                continue  # deleted in between: put again
            if existing != data:
                raise AlreadyExists("key exists with different content")
            return
        raise Unavailable("object storage unavailable")

    def get(self, key: str) -> bytes:
        full = self._full(key)
        return bytes(self._call("get", lambda bucket: bucket.get_object(full).read()))

    def get_head(self, key: str, size: int) -> bytes:
        full = self._full(key)

        def head(bucket: oss2.Bucket) -> bytes:
            try:
                return bytes(bucket.get_object(full, byte_range=(0, size - 1)).read(size))
            except oss2.exceptions.OssError as e:
                if (e.status, e.code) == (416, "InvalidRange"):  # the object is empty: no first byte to range over
                    return b""
                raise
        return self._call("get", head)

    def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            check_key(key)  # every key checked before any request is sent
        if len(keys) <= 1:
            return super().delete_many(keys)
        self._overlapped(self.delete, keys)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        for key in keys:
            check_key(key)
        if len(keys) <= 1:
            return super().get_many(keys)
        def get_or_none(key: str) -> bytes | None:
            try:
                return self.get(key)
            except NotFound:
                return None
        return self._overlapped(get_or_none, keys)

    def get_each(self, keys: Sequence[str], then: Callable[[str, bytes], T], heads: Mapping[str, int] | None = None
                 ) -> list[T | None]:
        for key in keys:
            check_key(key)
        heads = heads or {}

        def get_then(key: str) -> T | None:
            try:
                return then(key, self.get_head(key, heads[key]) if key in heads else self.get(key))
            except NotFound:
                return None
        return self._overlapped(get_then, keys)

    def _overlapped(self, call: Callable[[str], T], keys: Sequence[str]) -> list[T]:
        """call(key) for each key on the writer threads, in this request's context (its time budget);
        every call is over before this returns or raises the first error."""
        futures = [self._writers().submit(contextvars.copy_context().run, call, key) for key in keys]
        concurrent.futures.wait(futures)
        return [future.result() for future in futures]

    def put(self, key: str, data: bytes) -> None:
        full = self._full(key)
        self.check_writable()
        headers = {"Content-MD5": _content_md5(data)}
        self._call("put", lambda bucket: bucket.put_object(full, data, headers=headers))

    def delete(self, key: str) -> None:
        full = self._full(key)
        self.check_writable()

        def attempt(bucket: oss2.Bucket) -> None:
            try:
                bucket.delete_object(full)
            except oss2.exceptions.NoSuchKey:
                pass  # OSS answers 204 for an absent key; be lenient if a proxy says 404

        self._call("delete", attempt)

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        full_prefix = self._prefix + check_prefix(prefix)
        if start_after.endswith("/"):
            check_prefix(start_after)
        elif start_after:
            check_key(start_after)
        after = self._prefix + start_after if start_after else ""
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        keys: list[str] = []
        token = ""
        while limit is None or len(keys) < limit:
            max_keys = 1000 if limit is None else min(1000, limit - len(keys))
            page = self._call("list", functools.partial(_list_page, prefix=full_prefix, start_after=after,
                                                        max_keys=max_keys, continuation_token=token))
            keys.extend(obj.key[len(self._prefix):] for obj in page.object_list)
            if not page.is_truncated:
                break
            token = page.next_continuation_token
        return keys if limit is None else keys[:limit]
