"""Log lines of a request carry its RequestId: every warning and error of this package begins with it."""
from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
from collections.abc import Iterator
from typing import Any

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_previous_factory = logging.getLogRecordFactory()


def _record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    request_id = _request_id.get()
    record.RequestId = request_id
    if request_id and record.levelno >= logging.WARNING and record.name.startswith("handler"):
        record.msg = f"RequestId={request_id} {record.msg}"
    return record


logging.setLogRecordFactory(_record)


@contextlib.contextmanager
def request(request_id: str) -> Iterator[None]:
    """Within: the RequestId log lines of this thread (and of work it hands over with its context) carry."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def cause(error: OSError) -> str:
    """What an OS error was, for a log line: its class and errno name, never its path."""
    name = errno.errorcode.get(error.errno, str(error.errno)) if error.errno is not None else "no errno"
    return f"{type(error).__name__} {name}"
