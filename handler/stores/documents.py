"""Configured documents (the access keys, the notification rules): read from file://PATH or oss://BUCKET/KEY."""
from __future__ import annotations

from collections.abc import Callable

from .base import NotFound, Store


def document_reader(url: str, setting: str, open_bucket: Callable[[str], Store] | None = None) -> Callable[[], bytes]:
    """Reads the document `setting` names at `url`: a file, or an OSS object through the store open_bucket(BUCKET)
    gives (the function's own credentials). Missing or unreadable: NotFound; unreachable OSS: Unavailable;
    a URL of another shape: ValueError now."""
    scheme, _, rest = url.partition("://")
    if scheme == "file":
        def from_file() -> bytes:
            try:
                with open(rest, "rb") as f:
                    return f.read()
            except OSError:
                raise NotFound(f"the {setting} document cannot be read") from None
        return from_file
    bucket, _, key = rest.partition("/")
    if scheme != "oss" or not bucket or not key or open_bucket is None:
        raise ValueError(f"{setting} must look like file://PATH or oss://BUCKET/KEY")
    store = open_bucket(bucket)
    return lambda: bytes(store.get(key))
