"""The core: routing, validation, operations and the error contract. Knows no event format and no storage technology."""
from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import records
from .errors import (
    ApiError, BadRequest, InternalError, InvalidParameter, MethodNotAllowed, NotFoundError, PayloadTooLarge,
    ServiceUnavailable, UnsupportedMediaType,
)
from .jsonbody import parse_object
from .registry import Registry
from .stores.base import InvalidKey, StoreError, Unavailable
from .validation import validate

log = logging.getLogger("handler.access")

MODELS_PATH = "/api/v1/models"


@dataclass(frozen=True)
class Request:
    """One API call, whatever carried it. Header names are lower-case."""

    method: str
    path: str
    body: bytes = b""
    body_base64: bool = False  # the body as the gateway sent it: base64 text to decode
    declared_size: int | None = None  # the size the sender declared for a body left unread (over the limit)
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    """One answer: a status and a JSON object that always holds RequestId."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":"))

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later (storage outage or unexpected failure)."""
        return self.status >= 500


@dataclass(frozen=True)
class Caller:
    """What the platform tells about who is calling (FC context)."""

    owner_id: str | None = None


Operation = Callable[["App", Request, Caller, dict[str, Any]], dict[str, Any]]


class App:
    """Answers Requests; holds only what is safe to share across requests of one instance."""

    def __init__(self, registry: Registry, *, default_workspace: str, max_body_bytes: int = 1 << 20) -> None:
        self.registry = registry
        self.default_workspace = default_workspace
        self.max_body_bytes = max_body_bytes

    def handle(self, request: Request, caller: Caller = Caller()) -> Response:
        started = time.perf_counter()
        request_id = records.new_request_id()
        name, facts = "Unknown", {"RequestId": request_id}
        try:
            name, operation = self._route(request)
            body = operation(self, request, caller, facts)
            response = Response(200, {"RequestId": request_id, **body})
        except ApiError as e:
            response = _error(request_id, e)
        except StoreError as e:
            response = _error(request_id, _store_error(e))
        except Exception as e:  # noqa: BLE001 - the one place unknown failures become a generic 500
            log.error("unexpected %s in %s", type(e).__name__, where(e), extra={"RequestId": request_id})
            response = _error(request_id, InternalError("the service failed unexpectedly; retry later"))
        facts.update(Operation=name, Status=response.status, DurationMs=round((time.perf_counter() - started) * 1000, 2))
        log.info(json.dumps(facts, ensure_ascii=False))
        return response

    def _route(self, request: Request) -> tuple[str, Operation]:
        for pattern, methods in ROUTES:
            if pattern.fullmatch(request.path):
                if request.method not in methods:
                    allowed = tuple(methods)
                    raise MethodNotAllowed(f"{request.method[:20]} is not allowed on {request.path[:200]}; use {', '.join(allowed)}", allowed)
                return methods[request.method]
        raise NotFoundError(f"no API at {request.path[:200]}")

    def create_model(self, request: Request, caller: Caller, facts: dict[str, Any]) -> dict[str, Any]:
        fields = self.parse_body(request)
        validate("create-model-request.json", fields)
        normal = records.normalized_request(fields, fields.get("WorkspaceId", self.default_workspace))
        model_id, _ = self.registry.create(normal, caller.owner_id)
        facts["ModelId"] = model_id
        return {"ModelId": model_id}

    def parse_body(self, request: Request) -> dict[str, Any]:
        """The JSON object a request carries, after the media-type and size checks."""
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type and media_type != "application/json" and not media_type.endswith("+json"):
            raise UnsupportedMediaType(f"Content-Type {media_type[:100]} is not supported; send application/json")
        body = request.body
        if request.declared_size is not None and request.declared_size > self.max_body_bytes:
            raise self._too_large()
        if request.body_base64:
            if len(body) > -(-self.max_body_bytes // 3) * 4:  # longer than the base64 of any allowed body
                raise self._too_large()
            try:
                body = base64.b64decode(body, validate=True)
            except ValueError:
                raise BadRequest("body is marked base64 but is not valid base64") from None
        if len(body) > self.max_body_bytes:
            raise self._too_large()
        return parse_object(body)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"body is larger than the limit of {self.max_body_bytes} bytes")


ROUTES: list[tuple[re.Pattern[str], dict[str, tuple[str, Operation]]]] = [
    (re.compile(re.escape(MODELS_PATH)), {"POST": ("CreateModel", App.create_model)}),
]


def _error(request_id: str, error: ApiError) -> Response:
    headers = {"Allow": ", ".join(error.allowed)} if isinstance(error, MethodNotAllowed) else {}
    return Response(error.status, {"RequestId": request_id, "Code": error.code, "Message": error.message}, headers)


def _store_error(error: StoreError) -> ApiError:
    if isinstance(error, InvalidKey):
        return InvalidParameter("an identifier in the request is not valid")
    if isinstance(error, Unavailable):
        return ServiceUnavailable("model storage is unavailable; retry later")
    log.error("unexpected storage error %s", type(error).__name__)
    return InternalError("model storage answered unexpectedly")


def where(error: BaseException) -> str:
    """`module:line` of the innermost frame: enough to find a bug, without file system paths."""
    tb = error.__traceback__
    while tb and tb.tb_next:
        tb = tb.tb_next
    if tb is None:
        return "unknown"
    return f"{tb.tb_frame.f_globals.get('__name__', '?')}:{tb.tb_lineno}"
