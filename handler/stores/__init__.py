"""Stores behind one interface, chosen by a URL: oss://BUCKET/PREFIX, file://PATH or memory://."""
from __future__ import annotations

from collections.abc import Callable

from .base import AlreadyExists, InvalidKey, NotFound, Store, StoreError, Unavailable
from .credentials import Credentials

__all__ = ["AlreadyExists", "InvalidKey", "NotFound", "Store", "StoreError", "Unavailable", "open_store"]


def open_store(
    url: str,
    *,
    oss_endpoint: str | None = None,
    oss_region: str | None = None,
    credentials: Callable[[], Credentials] | None = None,
    pool_size: int = 16,
) -> Store:
    """The store a URL names. Only an oss:// URL imports the OSS client library."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("store URL must look like oss://BUCKET/PREFIX, file://PATH or memory://")
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    if scheme == "file":
        from .file import FileStore

        if not rest:
            raise ValueError("file:// store URL needs a path")
        return FileStore(rest)
    if scheme == "oss":
        from .oss import OssStore

        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError("oss:// store URL needs a bucket")
        if not oss_endpoint:
            raise ValueError("OSS_ENDPOINT is required for an oss:// store")
        if credentials is None:
            raise ValueError("an oss:// store needs credentials")
        prefix = prefix.strip("/")
        return OssStore(bucket, prefix + "/" if prefix else "", endpoint=oss_endpoint, region=oss_region,
                        credentials=credentials, pool_size=pool_size)
    raise ValueError(f"unknown store scheme {scheme!r}: use oss://, file:// or memory://")
