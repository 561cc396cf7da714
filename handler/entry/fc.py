"""Function Compute entry points: `handler` (events, API Gateway, HTTP trigger v1), `wsgi_handler`
(FC 2.0 HTTP trigger) and `initializer` (once per instance)."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote

from ..api.app import App
from ..api.http import Caller, Request, Response
from ..config import Settings
from ..errors import MalformedRequest
from ..notify.delivery import Deliverer
from ..stores.base import time_budget
from ..stores.credentials import CredentialSource
from . import events
from .compose import build_app, build_deliverer

ANSWER_MARGIN = 2.0  # seconds of FC's timeout kept for answering after storage gave up

credentials = CredentialSource()
_app: App | None = None
_lock = threading.Lock()
_deliverers: dict[int, Deliverer | None] = {}  # by the id of the App whose store it delivers from


def get_app() -> App:
    """The instance's App, built on first use (FC's initializer builds it before any request)."""
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _app = build_app(Settings.from_env(), credentials)
    return _app


def get_deliverer() -> Deliverer | None:
    """The instance's delivery of change events (None without NOTIFICATIONS), over the App's store."""
    app = get_app()
    with _lock:
        if id(app) not in _deliverers:
            _deliverers.clear()
            _deliverers[id(app)] = build_deliverer(Settings.from_env(), app.registry.store, credentials)
        return _deliverers[id(app)]


def set_app(app: App | None) -> None:
    """Use this App for the following invocations (None: build from the environment again)."""
    global _app
    _app = app


def caller_of(context: Any) -> Caller:
    credentials.offer(context)
    account = getattr(context, "account_id", None)
    return Caller(owner_id=str(account) if account else None, actor=f"fc-account:{account}" if account else "local")


def time_left(context: Any) -> float | None:
    """Seconds an invocation may spend on storage: FC's timeout, less time to answer; None if unknown."""
    timeout = getattr(getattr(context, "function", None), "timeout", None)
    return max(1.0, float(timeout) - ANSWER_MARGIN) if isinstance(timeout, (int, float)) else None


def initializer(context: Any) -> None:
    credentials.offer(context)
    warm = getattr(get_app().registry.store, "warm", None)
    if warm is not None:
        warm()  # e.g. OSS: a connection and a writer thread ready before the first request


def handler(event: bytes | str, context: Any) -> str:
    with time_budget(time_left(context)):  # one budget for the invocation, a whole batch included
        return events.handle_event(get_app(), event, caller_of(context), get_deliverer)


def _raw_path(environ: dict[str, Any]) -> str:
    """The path as sent: RAW_URI/REQUEST_URI where the server keeps it, else PATH_INFO re-encoded
    (WSGI decodes it, which would let an encoded '/' in an ID split it)."""
    for name in ("RAW_URI", "REQUEST_URI"):
        if isinstance(environ.get(name), str) and environ[name].startswith("/"):
            return str(environ[name]).split("?", 1)[0]
    return quote(str(environ.get("PATH_INFO", "")).encode("latin-1", "replace").decode("utf-8", "replace"), safe="/")


def wsgi_handler(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    app = get_app()
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    declared = str(environ.get("CONTENT_LENGTH") or "0").strip()
    length = int(declared) if declared.isascii() and declared.isdigit() else 0
    # A body over the limit is never read (the core answers 413 from its declared size); one that
    # ends before its declared size is refused, never taken for a whole one.
    body = environ["wsgi.input"].read(length) if 0 < length <= app.max_body_bytes else b""
    if len(body) < length <= app.max_body_bytes:
        return _wsgi_answer(start_response, Response.error(MalformedRequest(
            f"the body ended after {len(body)} of the {length} bytes declared")), method)
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    raw_query = str(environ.get("QUERY_STRING") or "")
    try:
        query = parse_qsl(raw_query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        return _wsgi_answer(start_response, Response.error(MalformedRequest(
            "the query string is not valid percent-encoded UTF-8")), method)
    request = Request(method, _raw_path(environ), body, headers=headers,
                      query=query, raw_query=raw_query,
                      declared_size=length if length > app.max_body_bytes else None)
    context = environ.get("fc.context")
    with time_budget(time_left(context)):
        response = app.handle(request, caller_of(context))
    return _wsgi_answer(start_response, response, method)


def _wsgi_answer(start_response: Callable[..., Any], response: Response, method: str = "") -> Iterable[bytes]:
    data = response.payload()
    start_response(f"{response.status} {HTTPStatus(response.status).phrase}",
                   [*response.all_headers().items(), ("Content-Length", str(len(data)))])
    return [b""] if method == "HEAD" else [data]  # HEAD: the headers GET would send, no body
