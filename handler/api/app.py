"""The App: authentication, routing and the error contract around the operations. Knows no event format
and no storage technology."""
from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..catalog.workspace import acting_as, gated
from ..errors import ApiError, Forbidden, InternalError, InvalidParameter, KeysNotConfigured, ServiceUnavailable, StoreMisconfigured
from ..logs import request as logging_request
from ..registry import upkeep
from ..registry.models import Registry
from ..registry.versions import Versions
from ..rules.validation import validate
from ..stores.base import InvalidKey, Misconfigured, StorageFull, StoreError, Unavailable
from .auth import Verifier
from .body import parse_body, raw_body
from .call import Call
from .http import LOCAL_CALLER, Caller, Request, Response, log_access, new_request_id, where
from .mlflow.wire import error_response as mlflow_error
from .mlflow.wire import is_mlflow
from .routes import ROUTER
from .routing import Route, is_console

log = logging.getLogger(__name__)

Hook = Callable[[Request], None]  # runs before routing; raises an ApiError to refuse the request
_spending = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="nonces")  # nonce writes beside the request's work


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

    def sweep(self, **options: Any) -> dict[str, Any]:
        """The registry's upkeep (registry/upkeep.py) and the nonces too old to guard anything."""
        return {**upkeep.sweep(self.registry, **options), "Nonces": self.verifier.sweep() if self.verifier is not None else 0}

    def handle(self, request: Request, caller: Caller = LOCAL_CALLER, route: Route | None = None) -> Response:
        """Answer a request; `route` skips routing (events run operations that no HTTP path has)."""
        request_id = new_request_id()
        with logging_request(request_id):
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
            response = Response.error(e, request_id)
        log_access({"RequestId": request_id, "Operation": "Console", "Status": response.status,
                    "DurationMs": round((time.perf_counter() - started) * 1000, 2)})
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
            parsed, spent = None, None
            if given is None:  # an HTTP request (events are authorized by the cloud's own permissions)
                caller, parsed, spent = self._authorize(request, route, params, caller, facts)
            call = Call(request=request, caller=caller, operation=route.operation, body_schema=route.body,
                        query_schema=route.query, params=params, facts=facts, registry=self.registry,
                        versions=self.versions, default_workspace=self.default_workspace,
                        max_body_bytes=self.max_body_bytes, parsed=parsed)
            if route.query is None:
                call.no_query()
            try:
                with acting_as(caller.actor), gated(spent):  # every change it commits is attributed to the caller
                    body = route.call(call)
            finally:
                if spent is not None:
                    spent.result()  # a replay is answered as one, whatever else the request met
            response = Response(200, {"RequestId": request_id, **body})
        except ApiError as e:
            response = self._error(request, e, request_id)
        except StoreError as e:
            response = self._error(request, _store_error(e), request_id)
        except Exception as e:  # noqa: BLE001 - the one place unknown failures become a generic 500
            log.error("unexpected %s in %s", type(e).__name__, where(e))
            response = self._error(request, InternalError("the service failed unexpectedly; retry later"), request_id)
        facts.update(Status=response.status, DurationMs=round((time.perf_counter() - started) * 1000, 2))
        log_access(facts)
        return response

    @staticmethod
    def _error(request: Request, error: ApiError, request_id: str) -> Response:
        """An error's answer; on MLflow's paths as MLflow's server gives it (its clients read error_code)."""
        return mlflow_error(error, request_id) if is_mlflow(request.path) else Response.error(error, request_id)

    def _authorize(self, request: Request, route: Route, params: dict[str, str], caller: Caller, facts: dict[str, Any]
                   ) -> tuple[Caller, dict[str, Any] | None, concurrent.futures.Future[None] | None]:
        """Verify the signature and the key's policy: the caller, now attributed to the key, the body if
        reading its workspace parsed it, and a changing request's nonce write, under way."""
        if self.verifier is None:
            if self.require_signatures:
                raise KeysNotConfigured("no access keys are configured (ACCESS_KEYS): every request is refused")
            return caller, None, None
        body = raw_body(request, self.max_body_bytes)
        mlflow = is_mlflow(request.path)  # MLflow's clients authenticate with HTTP Basic: no signature, no nonce
        try:
            principal = (self.verifier.verify_basic(dict(request.headers)) if mlflow else
                         self.verifier.verify(request.method, request.path, request.query, dict(request.headers), body, route.writes))
        except ApiError as e:
            if e.access_key_id is not None:
                facts["AccessKeyId"] = e.access_key_id
            raise
        facts["AccessKeyId"] = principal.key.id
        action = route.policy_action
        if not principal.key.may(action, None):
            raise Forbidden(f"access key {principal.key.id} may not call {action}")
        parsed = parse_body(request, self.max_body_bytes) if route.body and "ModelId" not in params and body else None
        workspace = self._workspace_of(request, route, params, parsed)
        if not principal.key.may(action, workspace):
            raise Forbidden(f"access key {principal.key.id} may not call {action} in workspace {workspace}")
        spent = None
        if route.writes and not mlflow:  # last: a request refused for its policy leaves no trace
            # Written beside the request's own work, which commits only once it succeeded (Workspace.commit).
            spent = _spending.submit(contextvars.copy_context().run, self.verifier.spend, principal)
        return Caller(caller.owner_id, principal.key.id), parsed, spent

    def _workspace_of(self, request: Request, route: Route, params: dict[str, str], body: dict[str, Any] | None) -> str:
        """The workspace a request acts in: its model's, the one it names, or the default."""
        if "ModelId" in params:
            return self.registry.workspace_of(params["ModelId"]).id
        if "WorkspaceId" in params:  # MLflow's paths under /workspaces/<WorkspaceId>
            return params["WorkspaceId"]
        named = (body or {}).get("WorkspaceId") if route.body else dict(request.query).get("WorkspaceId")
        return named if isinstance(named, str) and named else self.default_workspace


def _store_error(error: StoreError) -> ApiError:
    if isinstance(error, InvalidKey):
        return InvalidParameter("an identifier in the request is not valid")
    if isinstance(error, StorageFull):  # an operator's problem, said plainly: retrying alone will not help
        log.error("storage full: %s", error.cause)
        return ServiceUnavailable("model storage is full (no space left for a write); free space, then retry")
    if isinstance(error, Unavailable):
        log.error("storage unavailable: %s", error.cause)
        return ServiceUnavailable("model storage is unavailable; retry later")
    if isinstance(error, Misconfigured):
        log.error("storage misconfigured: %s", error)
        return StoreMisconfigured(str(error))
    log.error("unexpected storage error %s", type(error).__name__)
    return InternalError("model storage answered unexpectedly")
