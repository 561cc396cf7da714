"""A routed request as an operation sees it: everything it needs, and nothing of the App."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameter
from ..registry.models import Registry
from ..registry.versions import Versions
from ..rules import names
from ..rules.validation import validate
from .body import parse_body
from .http import Caller, Request


@dataclass
class Call:
    """One request routed to its operation, with the registry it acts on."""

    request: Request
    caller: Caller
    operation: str  # PAI's operation name, e.g. GetModel
    body_schema: str | None  # schema file of the body, if the operation takes one
    query_schema: str | None  # schema file of the query parameters, if it takes any
    params: dict[str, str]  # path parameters, decoded
    facts: dict[str, Any]  # added to the request's log line
    registry: Registry
    versions: Versions
    default_workspace: str
    max_body_bytes: int
    parsed: dict[str, Any] | None = None  # the body, if the policy check has parsed it already

    def body(self) -> dict[str, Any]:
        """The request's JSON object, checked against the route's body schema."""
        fields = names.normalized(self.parsed if self.parsed is not None else parse_body(self.request, self.max_body_bytes))
        if self.body_schema:
            validate(self.body_schema, fields)
        return fields

    def query(self) -> dict[str, str]:
        """The query parameters, each at most once, checked against the route's query schema."""
        params: dict[str, str] = {}
        for name, value in self.named_query():
            if name in params:
                raise InvalidParameter(f"query parameter {name[:64]} is given more than once")
            params[name] = value
        if self.query_schema:
            validate(self.query_schema, params, root="query")
        return params

    def named_query(self) -> list[tuple[str, str]]:
        """The query's (name, value) pairs; a parameter without a name (`?=x`, `&&=`) is refused as such."""
        if any(not name for name, _ in self.request.query):
            raise InvalidParameter("a query parameter has no name (is there an '=' or '&' too many?)")
        return list(self.request.query)

    def no_query(self) -> None:
        """Refuse query parameters on an operation that takes none (a typo would otherwise pass unseen)."""
        if self.request.query:
            names_given = ", ".join(sorted({name[:64] for name, _ in self.request.query}))
            raise InvalidParameter(f"{self.operation} takes no query parameters; got {names_given[:200]}")

    def workspace_id(self, named: str | None) -> str:
        """The workspace a request names, or the default."""
        return named or self.default_workspace
