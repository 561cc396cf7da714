"""The API's OpenAPI 3.1 document, assembled from schemas/ (never a second copy of their rules).

Each schema file becomes a component named after its file (`create-model-request.json` ->
`CreateModelRequest`); the `$defs` of a file become components of their own name
(`common.json#/$defs/Int64` -> `#/components/schemas/Int64`). `$schema` and `$id` are dropped;
`x-` keywords stay (OpenAPI allows extensions; `x-maxUtf8Bytes` is enforced by the function).

    python -m handler.api.openapi > schemas/openapi.json
"""
from __future__ import annotations

import copy
import json
import sys
from functools import lru_cache
from typing import Any

from .. import errors
from ..rules.validation import load_schemas
from .routes import ROUTES
from .routing import Route

OPENAPI_VERSION = "3.1.0"
API_VERSION = "2021-02-04"  # the PAI API version this implements
COMPONENTS = "#/components/schemas/"
_DROPPED = ("$schema", "$id")
_REQUEST_ID_HEADER = "x-acs-request-id"

def component_name(file_name: str) -> str:
    """`create-model-request.json` -> `CreateModelRequest`."""
    stem = file_name.removesuffix(".json")
    return "".join(part[:1].upper() + part[1:] for part in stem.replace("_", "-").split("-"))


def _is_definitions_only(schema: dict[str, Any]) -> bool:
    """A file that only holds `$defs` (like common.json) is a library, not a schema of its own."""
    annotations = {"$schema", "$id", "$defs", "title", "description", "$comment"}
    return "$defs" in schema and set(schema) <= annotations


def _rewrite(node: Any, file_name: str, names: dict[str, str]) -> Any:
    """A copy of a schema with `$ref`s pointing into components and `$schema`/`$id` dropped."""
    if isinstance(node, list):
        return [_rewrite(item, file_name, names) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key == "$defs":
            continue
        out[key] = _ref(value, file_name, names) if key == "$ref" else _rewrite(value, file_name, names)
    return out


def _ref(ref: str, file_name: str, names: dict[str, str]) -> str:
    target, _, pointer = ref.partition("#")
    target = target or file_name
    if target not in names:
        raise ValueError(f"{file_name}: $ref {ref!r} names no file in schemas/")
    if not pointer:
        return COMPONENTS + names[target]
    parts = pointer.strip("/").split("/")
    if len(parts) != 2 or parts[0] != "$defs":
        raise ValueError(f"{file_name}: $ref {ref!r}: only whole files and #/$defs/<Name> are supported")
    return COMPONENTS + parts[1]


def component_schemas() -> dict[str, Any]:
    """components.schemas: every schema file, and every `$defs` entry, with references rewritten."""
    schemas = load_schemas()
    names = {file_name: component_name(file_name) for file_name in schemas}
    components: dict[str, Any] = {}

    def add(name: str, schema: Any, origin: str) -> None:
        if name in components:
            raise ValueError(f"{origin}: component {name} is defined twice")
        components[name] = schema

    for file_name, schema in schemas.items():
        for def_name, definition in schema.get("$defs", {}).items():
            add(def_name, _rewrite(copy.deepcopy(definition), file_name, names), f"{file_name}#/$defs/{def_name}")
        if not _is_definitions_only(schema):
            add(names[file_name], _rewrite(copy.deepcopy(schema), file_name, names), file_name)
    return dict(sorted(components.items()))


def _json_content(component: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": COMPONENTS + component}}}


def _request_id_header() -> dict[str, Any]:
    return {_REQUEST_ID_HEADER: {"$ref": "#/components/headers/RequestId"}}


def _error_responses(route: Route) -> dict[str, Any]:
    by_status: dict[int, list[type[errors.ApiError]]] = {}
    for error in route.all_errors():
        by_status.setdefault(error.status, []).append(error)
    responses: dict[str, Any] = {}
    for status, kinds in sorted(by_status.items()):
        response: dict[str, Any] = {
            "description": " ".join(f"{e.code}: {e.meaning}" for e in kinds),
            "headers": _request_id_header(), "content": _json_content(component_name("error.json")),
        }
        if errors.MethodNotAllowed in kinds:
            response["headers"]["Allow"] = {"description": "The methods this path accepts.", "required": True,
                                            "schema": {"type": "string"}}
        responses[str(status)] = response
    return responses


def _parameters(route: Route, schemas: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"$ref": COMPONENTS + name}} for name in route.parameters
    ]
    if route.query:
        query = schemas[route.query]
        for name, schema in query["properties"].items():
            parameters.append({"name": name, "in": "query", "required": name in query.get("required", []),
                               "description": schema.get("description", ""),
                               "schema": _rewrite(copy.deepcopy(schema), route.query, names)})
    return parameters


def _operation(route: Route, schemas: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.operation, "summary": route.summary}
    if route.body:
        operation["description"] = schemas[route.body].get("description", "")
        operation["requestBody"] = {"required": True, "content": _json_content(component_name(route.body))}
    parameters = _parameters(route, schemas, names)
    if parameters:
        operation["parameters"] = parameters
    operation["responses"] = {
        "200": {"description": "Done.", "headers": _request_id_header(), "content": _json_content(component_name(route.response))},
        **_error_responses(route),
    }
    return operation


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API (a new dict on each call)."""
    schemas = load_schemas()
    names = {file_name: component_name(file_name) for file_name in schemas}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas, names)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "PAI-compatible model registry",
            "version": API_VERSION,
            "description": "PAI's model API (AIWorkSpace 2021-02-04) on Function Compute and OSS. "
                           "Generated from handler/api/routes.py and schemas/ by `python -m handler.api.openapi`; do not edit.",
        },
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "headers": {"RequestId": {"description": "The RequestId of the body, on every answer.", "required": True,
                                      "schema": {"$ref": COMPONENTS + "RequestId"}}},
        },
    }


def render() -> str:
    """The text of schemas/openapi.json."""
    return json.dumps(build_openapi(), indent=2, ensure_ascii=False) + "\n"


@lru_cache(maxsize=1)
def document_bytes() -> bytes:
    """The document as served (built once per process)."""
    return render().encode()


if __name__ == "__main__":
    sys.stdout.write(render())
