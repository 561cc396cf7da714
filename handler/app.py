"""The core: routing, request parsing and validation, and the error contract. Knows no event format and no storage technology."""
from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import logs, names, records
from .auth import Verifier
from .catalog import acting_as
from .errors import (
    ApiError,
    BadRequest,
    Forbidden,
    InternalError,
    InvalidParameter,
    KeysNotConfigured,
    PayloadTooLarge,
    ServiceUnavailable,
    StoreMisconfigured,
    UnsupportedMediaType,
)
from .jsonbody import parse_object
from .registry import Registry
from .routes import MODELS_PATH, ROUTER, Route, is_console
from .stores.base import InvalidKey, Misconfigured, StoreError, Unavailable
from .validation import validate
from .versions import Versions

log = logging.getLogger(__name__)
access_log = logging.getLogger("handler.access")  # one JSON line per request

__all__ = ["MODELS_PATH", "App", "Call", "Caller", "Hook", "Request", "Response", "where"]


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

    def json(self) -> str:
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":"))

    def payload(self) -> bytes:
        return self.json().encode() if self.content is None else self.content

    def all_headers(self) -> dict[str, str]:
        """The headers to send: JSON's Content-Type unless the response names its own, and the request ID."""
        return {"Content-Type": "application/json; charset=utf-8", "x-acs-request-id": self.body["RequestId"], **self.headers}

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later (storage outage or unexpected failure)."""
        return self.status >= 500


@dataclass(frozen=True)
class Caller:
    """What the platform tells about who is calling (FC context)."""

    owner_id: str | None = None
    actor: str = "local"  # who changes are attributed to: an access key, or the FC account for events


@dataclass
class Call:
    """A routed request as an operation sees it."""

    app: App
    request: Request
    caller: Caller
    route: Route
    params: dict[str, str]  # path parameters, decoded
    facts: dict[str, Any]  # added to the request's log line
    parsed: dict[str, Any] | None = None  # the body, if the policy check has parsed it already

    @property
    def registry(self) -> Registry:
        return self.app.registry

    def body(self) -> dict[str, Any]:
        """The request's JSON object, checked against the route's body schema."""
        fields = names.normalized(self.parsed if self.parsed is not None else self.app.parse_body(self.request))
        if self.route.body:
            validate(self.route.body, fields)
        return fields

    def query(self) -> dict[str, str]:
        """The query parameters, each at most once, checked against the route's query schema."""
        params: dict[str, str] = {}
        for name, value in self.request.query:
            if name in params:
                raise InvalidParameter(f"query parameter {name[:64]} is given more than once")
            params[name] = value
        if self.route.query:
            validate(self.route.query, params, root="query")
        return params

    def no_query(self) -> None:
        """Refuse query parameters on an operation that takes none (a typo would otherwise pass unseen)."""
        if self.request.query:
            names_given = ", ".join(sorted({name[:64] for name, _ in self.request.query}))
            raise InvalidParameter(f"{self.route.operation} takes no query parameters; got {names_given[:200]}")


Hook = Callable[[Request], None]  # runs before routing; raises an ApiError to refuse the request


class App:
    """Answers Requests; holds only what is safe to share across requests of one instance."""

    def __init__(self, registry: Registry, *, default_workspace: str, max_body_bytes: int = 1 << 20,
                 hooks: Sequence[Hook] = (), verifier: Verifier | None = None, require_signatures: bool = False) -> None:
        self.registry = registry
        self.verifier = verifier
        self.require_signatures = require_signatures
        self.versions = Versions(registry)
        self.default_workspace = default_workspace
        self.max_body_bytes = max_body_bytes
        self.hooks = list(hooks)

    def sweep(self, **older: float) -> dict[str, Any]:
        """The registry's upkeep (registry.sweep) and the nonces too old to guard anything."""
        return {**self.registry.sweep(**older), "Nonces": self.verifier.sweep() if self.verifier is not None else 0}

    def handle(self, request: Request, caller: Caller = Caller(), route: Route | None = None) -> Response:
        """Answer a request; `route` skips routing (events run operations that no HTTP path has)."""
        request_id = records.new_request_id()
        with logs.request(request_id):
            if route is None and is_console(request.path):
                return self._console(request, request_id)
            return self._handle(request, caller, request_id, route)

    def _console(self, request: Request, request_id: str) -> Response:
        """A file of the web console: public (it holds no data; the API it calls checks every request)."""
        from . import console  # imported on the console's first request only: API cold starts do not pay for it

        started = time.perf_counter()
        try:
            found = console.answer(request.method, request.path, dict(request.headers))
            response = Response(found.status, {"RequestId": request_id}, found.headers, found.content)
        except ApiError as e:
            response = Response(e.status, e.body(request_id), e.headers())
        access_log.info(json.dumps({"RequestId": request_id, "Operation": "Console", "Status": response.status,
                                    "DurationMs": round((time.perf_counter() - started) * 1000, 2)}))
        return response

    def _handle(self, request: Request, caller: Caller, request_id: str, given: Route | None) -> Response:
        started = time.perf_counter()
        facts: dict[str, Any] = {"RequestId": request_id, "Operation": "Unknown"}
        try:
            for hook in self.hooks:
                hook(request)
            route, params = (given, {}) if given is not None else ROUTER.match(request.method, request.path)
            facts["Operation"] = route.operation
            for name in ("ModelId", "VersionName"):
                if name in params:
                    validate(f"common.json#/$defs/{name}", params[name], root=name)
                    facts[name] = params[name]
            parsed = None
            if given is None:  # an HTTP request (events are authorized by the cloud's own permissions)
                caller, parsed = self._authorize(request, route, params, caller, facts)
            call = Call(self, request, caller, route, params, facts, parsed)
            if route.query is None:
                call.no_query()
            with acting_as(caller.actor):  # every change it commits is attributed to the caller
                body = route.call(call)
            response = Response(200, {"RequestId": request_id, **body})
        except ApiError as e:
            response = Response(e.status, e.body(request_id), e.headers())
        except StoreError as e:
            error = _store_error(e)
            response = Response(error.status, error.body(request_id))
        except Exception as e:  # noqa: BLE001 - the one place unknown failures become a generic 500
            log.error("unexpected %s in %s", type(e).__name__, where(e))
            response = Response(500, InternalError("the service failed unexpectedly; retry later").body(request_id))
        facts.update(Status=response.status, DurationMs=round((time.perf_counter() - started) * 1000, 2))
        access_log.info(json.dumps(facts, ensure_ascii=False))
        return response

    def _authorize(self, request: Request, route: Route, params: dict[str, str], caller: Caller,
                   facts: dict[str, Any]) -> tuple[Caller, dict[str, Any] | None]:
        """Verify the signature and the key's policy: the caller, now attributed to the key, and the body
        if reading its workspace parsed it."""
        if self.verifier is None:
            if self.require_signatures:
                raise KeysNotConfigured("no access keys are configured (ACCESS_KEYS): every request is refused")
            return caller, None
        body = self._raw_body(request)
        principal = self.verifier.verify(request.method, request.path, request.query, dict(request.headers), body, route.writes)
        facts["AccessKeyId"] = principal.key.id
        if not principal.key.may(route.operation, None):
            raise Forbidden(f"access key {principal.key.id} may not call {route.operation}")
        parsed = self.parse_body(request) if route.body and "ModelId" not in params and body else None
        workspace = self._workspace_of(request, route, params, parsed)
        if not principal.key.may(route.operation, workspace):
            raise Forbidden(f"access key {principal.key.id} may not call {route.operation} in workspace {workspace}")
        if route.writes:
            self.verifier.spend(principal)  # last: a request refused for its policy leaves no trace
        return Caller(caller.owner_id, principal.key.id), parsed

    def _workspace_of(self, request: Request, route: Route, params: dict[str, str], body: dict[str, Any] | None) -> str:
        """The workspace a request acts in: its model's, the one it names, or the default."""
        if "ModelId" in params:
            return self.registry.workspace_of(params["ModelId"]).id
        named = (body or {}).get("WorkspaceId") if route.body else dict(request.query).get("WorkspaceId")
        return named if isinstance(named, str) and named else self.default_workspace

    def _raw_body(self, request: Request) -> bytes:
        """The body as sent (and signed): decoded from the gateway's base64, within the size limit."""
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
        return body

    def parse_body(self, request: Request) -> dict[str, Any]:
        """The JSON object a request carries, after the media-type and size checks."""
        media_type, *params = request.headers.get("content-type", "").split(";")
        media_type = media_type.strip().lower()
        if media_type and media_type != "application/json" and not media_type.endswith("+json"):
            raise UnsupportedMediaType(f"Content-Type {media_type[:100]} is not supported; send application/json")
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                raise UnsupportedMediaType(f"charset {value.strip()[:40]} is not supported; JSON is sent in UTF-8")
        return parse_object(self._raw_body(request))

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"body is larger than the limit of {self.max_body_bytes} bytes")


def _store_error(error: StoreError) -> ApiError:
    if isinstance(error, InvalidKey):
        return InvalidParameter("an identifier in the request is not valid")
    if isinstance(error, Unavailable):
        log.error("storage unavailable: %s", error.cause)
        return ServiceUnavailable("model storage is unavailable; retry later")
    if isinstance(error, Misconfigured):
        log.error("storage misconfigured: %s", error)
        return StoreMisconfigured(str(error))
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
