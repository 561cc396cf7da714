"""What crosses the API's edge, whatever carried it: a Request in, a Response out, who called, and the
one access-log line each request leaves."""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ApiError
from ..rules.jsontext import compact

access_log = logging.getLogger("handler.access")  # one JSON line per request
JSON_TYPE = "application/json; charset=utf-8"


def new_request_id() -> str:
    """An upper-case UUID, as Alibaba Cloud APIs return."""
    return str(uuid.uuid4()).upper()


@dataclass(frozen=True)
class Request:
    """One API call, whatever carried it. Header names are lower-case; `path` is as sent (percent-encoded)."""

    method: str
    path: str
    body: bytes = b""
    body_base64: bool = False  # the body as the gateway sent it: base64 text to decode
    declared_size: int | None = None  # the size the sender declared for a body left unread (over the limit)
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Sequence[tuple[str, str]] = ()  # decoded (name, value) pairs in order, repeats kept
    raw_query: str | None = None  # the query string as sent, where the transport keeps it


@dataclass(frozen=True)
class Response:
    """One answer: a status and a JSON object that always holds RequestId, or a console file's bytes."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None  # sent instead of the JSON body, with its own Content-Type in headers

    @classmethod
    def error(cls, error: ApiError, request_id: str | None = None) -> Response:
        """The error's answer: its status, its JSON body and its own headers (Allow)."""
        return cls(error.status, error.body(request_id or new_request_id()), error.headers())

    def json(self) -> str:
        return compact(self.body)

    def payload(self) -> bytes:
        return self.json().encode() if self.content is None else self.content

    def all_headers(self) -> dict[str, str]:
        """The headers to send: JSON's Content-Type unless the response names its own, and the request ID."""
        return {"Content-Type": JSON_TYPE, "x-acs-request-id": self.body["RequestId"], **self.headers}

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later (storage outage or unexpected failure)."""
        return self.status >= 500


@dataclass(frozen=True)
class Caller:
    """What the platform tells about who is calling (FC context)."""

    owner_id: str | None = None
    actor: str = "local"  # who changes are attributed to: an access key, or the FC account for events


LOCAL_CALLER = Caller()  # nothing known about the caller: the local server, tests


def log_access(facts: Mapping[str, Any]) -> None:
    """The request's access-log line: RequestId, Operation, Status, DurationMs and what else it found."""
    access_log.info(json.dumps(facts, ensure_ascii=False))  # spaced, as log readers have always seen it


def where(error: BaseException) -> str:
    """`module:line` of the innermost frame: enough to find a bug, without file system paths."""
    tb = error.__traceback__
    while tb and tb.tb_next:
        tb = tb.tb_next
    if tb is None:
        return "unknown"
    return f"{tb.tb_frame.f_globals.get('__name__', '?')}:{tb.tb_lineno}"
