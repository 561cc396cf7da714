"""What a route is (path template, method, operation, schemas, errors) and how a request finds its own."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .. import errors
from ..errors import ApiError, InvalidParameter, MethodNotAllowed, PathNotFound
from .call import Call

API_PREFIX = "/api/v1"
MODELS_PATH = API_PREFIX + "/models"
CONSOLE_PATH = "/console"  # the web console's files (api/console), beside the API
_PARAMETER = re.compile(r"\{([A-Za-z]+)\}")

# Errors any route may answer, besides its own (the local server's own limits included).
COMMON_ERRORS: tuple[type[ApiError], ...] = (errors.InternalError, errors.ServiceUnavailable, errors.UriTooLong,
                                             errors.HeadersTooLarge, errors.CrossOrigin, errors.CatalogFormatTooNew,
                                             errors.CatalogDamaged, *errors.AUTH_ERRORS)
BODY_ERRORS: tuple[type[ApiError], ...] = (errors.InvalidBody, errors.InvalidParameter, errors.PayloadTooLarge,
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
    action: str | None = None  # the PAI action a key's policy is checked for, if not `operation` (MLflow's routes)
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = _PARAMETER.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", re.escape(self.path).replace(r"\{", "{").replace(r"\}", "}"))
        object.__setattr__(self, "pattern", re.compile(regex))

    @property
    def policy_action(self) -> str:
        return self.action or self.operation

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
        raise PathNotFound(f"no API at {path[:200]}")


def is_console(path: str) -> bool:
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


def _decode(name: str, segment: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise InvalidParameter(f"{name} in the path is not valid percent-encoded UTF-8") from None
