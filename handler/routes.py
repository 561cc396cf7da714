"""The API's routes: one table from which dispatch, the OpenAPI document and template.yml's API come."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from . import errors
from .errors import ApiError, InvalidParameter, MethodNotAllowed, NotFoundError

if TYPE_CHECKING:
    from .app import Call

API_PREFIX = "/api/v1"
MODELS_PATH = API_PREFIX + "/models"
CONSOLE_PATH = "/console"  # the web console's files (handler/console), beside the API
_PARAMETER = re.compile(r"\{([A-Za-z]+)\}")

# Errors any route may answer, besides its own (the local server's own limits included).
COMMON_ERRORS: tuple[type[ApiError], ...] = (errors.InternalError, errors.ServiceUnavailable, errors.UriTooLong,
                                             errors.HeadersTooLarge, errors.CrossOrigin, *errors.AUTH_ERRORS)
BODY_ERRORS: tuple[type[ApiError], ...] = (errors.BadRequest, errors.InvalidParameter, errors.PayloadTooLarge,
                                           errors.UnsupportedMediaType)


@dataclass(frozen=True)
class Route:
    """One operation: where it is, what it takes and answers, and the errors it may give."""

    method: str
    path: str  # a template: /api/v1/models/{ModelId}
    operation: str  # PAI's operation name, e.g. GetModel
    call: Callable[[Call], dict[str, Any]]
    summary: str
    response: str  # schema file of the 200 body
    body: str | None = None  # schema file of the request body
    query: str | None = None  # schema file of the query parameters
    errors: tuple[type[ApiError], ...] = ()
    writes: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = _PARAMETER.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", re.escape(self.path).replace(r"\{", "{").replace(r"\}", "}"))
        object.__setattr__(self, "pattern", re.compile(regex))

    @property
    def parameters(self) -> list[str]:
        return _PARAMETER.findall(self.path)

    def all_errors(self) -> tuple[type[ApiError], ...]:
        own = (*(BODY_ERRORS if self.body else ()), *((InvalidParameter,) if self.query or self.parameters else ()),
               *self.errors, *COMMON_ERRORS)
        return tuple(sorted(set(own), key=lambda e: (e.status, e.code)))


class Router:
    """Finds the route of a method and raw path; path parameters are percent-decoded segment by segment."""

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.routes = routes

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route and decoded path parameters; HEAD is answered as GET is (without the body)."""
        allowed: list[str] = []
        wanted = "GET" if method == "HEAD" else method
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            if route.method != wanted:
                allowed.append(route.method)
                continue
            return route, {name: _decode(name, value) for name, value in found.groupdict().items()}
        if allowed:
            raise MethodNotAllowed(f"{method[:20]} is not allowed on {path[:200]}; use {', '.join(allowed)}", tuple(allowed))
        raise NotFoundError(f"no API at {path[:200]}")


def is_console(path: str) -> bool:
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


def _decode(name: str, segment: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise InvalidParameter(f"{name} in the path is not valid percent-encoded UTF-8") from None


def _routes() -> tuple[Route, ...]:
    from . import operations as op

    model = MODELS_PATH + "/{ModelId}"
    versions = model + "/versions"
    version = versions + "/{VersionName}"
    found = (errors.ModelNotFound,)
    no_version = (errors.VersionNotFound,)
    writes = (errors.StoreMisconfigured,)
    grows = (errors.QuotaExceeded, *writes)  # a write that may make a record larger
    return (
        Route("POST", MODELS_PATH, "CreateModel", op.create_model, "Create a model", "create-model-response.json",
              body="create-model-request.json", errors=(errors.ModelNameConflict, *grows), writes=True),
        Route("GET", MODELS_PATH, "ListModels", op.list_models, "List and search a workspace's models",
              "list-models-response.json", query="list-models-query.json"),
        Route("GET", model, "GetModel", op.get_model, "Get a model", "get-model-response.json", errors=found),
        Route("PUT", model, "UpdateModel", op.update_model, "Update a model's fields", "empty-response.json",
              body="update-model-request.json", errors=(*found, errors.ModelNameConflict, *grows), writes=True),
        Route("DELETE", model, "DeleteModel", op.delete_model, "Delete a model", "empty-response.json",
              errors=(*found, *writes), writes=True),
        Route("POST", model + "/labels", "CreateModelLabels", op.create_model_labels, "Add or replace a model's labels",
              "empty-response.json", body="model-labels-request.json", errors=(*found, *grows), writes=True),
        Route("DELETE", model + "/labels", "DeleteModelLabels", op.delete_model_labels, "Remove a model's labels by key",
              "empty-response.json", query="delete-labels-query.json", errors=(*found, *writes), writes=True),
        Route("POST", versions, "CreateModelVersion", op.create_model_version, "Add a version to a model",
              "create-model-version-response.json", body="create-model-version-request.json",
              errors=(*found, errors.VersionNameConflict, *grows), writes=True),
        Route("GET", versions, "ListModelVersions", op.list_model_versions, "List a model's versions",
              "list-model-versions-response.json", query="list-model-versions-query.json", errors=found),
        Route("GET", version, "GetModelVersion", op.get_model_version, "Get a version", "get-model-version-response.json",
              errors=(*found, *no_version)),
        Route("PUT", version, "UpdateModelVersion", op.update_model_version, "Update a version's fields (approve, reject)",
              "empty-response.json", body="update-model-version-request.json", errors=(*found, *no_version, *grows), writes=True),
        Route("DELETE", version, "DeleteModelVersion", op.delete_model_version, "Delete a version", "empty-response.json",
              errors=(*found, *no_version, *writes), writes=True),
        Route("POST", version + "/labels", "CreateModelVersionLabels", op.create_model_version_labels,
              "Add or replace a version's labels", "empty-response.json", body="model-labels-request.json",
              errors=(*found, *no_version, *grows), writes=True),
        Route("DELETE", version + "/labels", "DeleteModelVersionLabels", op.delete_model_version_labels,
              "Remove a version's labels by key", "empty-response.json", query="delete-labels-query.json",
              errors=(*found, *no_version, *writes), writes=True),
    )


ROUTES = _routes()
ROUTER = Router(ROUTES)


def _registration() -> Route:
    from . import operations as op

    return Route("POST", "/registrations", "RegisterModelVersion", op.register_model_version,
                 "Register a model (if new) and a version of it, from an event", "create-model-version-response.json",
                 errors=(errors.ModelNameConflict, errors.VersionNameConflict, errors.QuotaExceeded), writes=True)


REGISTRATION = _registration()  # reached by events only: no HTTP path, so not in the OpenAPI document
CREATE_MODEL = next(route for route in ROUTES if route.operation == "CreateModel")  # what an event without Version runs
