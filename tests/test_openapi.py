"""The OpenAPI document: generated from schemas/, committed up to date, valid OpenAPI 3.1, served by the local server."""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema
import schemathesis

from handler import errors
from handler.api import openapi
from handler.api.routes import ROUTES
from handler.api.routing import MODELS_PATH
from handler.rules.validation import SCHEMA_DIR, Validator, load_schemas, validate
from handler.stores.memory import MemoryStore
from tests.conftest import invoke, local_api

REPO = Path(__file__).resolve().parent.parent
COMMITTED = SCHEMA_DIR / "openapi.json"
REGENERATE = "schemas/openapi.json is out of date: run `python -m handler.api.openapi > schemas/openapi.json` and commit it"


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of every object in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def pointer(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


@pytest.fixture
def served(use_app) -> Iterator[str]:
    use_app(MemoryStore())
    with local_api() as srv:
        yield srv.url


def test_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text("utf-8") == openapi.render(), REGENERATE


def test_generator_command_prints_the_document() -> None:
    out = subprocess.run([sys.executable, "-m", "handler.api.openapi"], cwd=REPO, capture_output=True, check=True, timeout=60)
    assert out.stdout.decode("utf-8") == openapi.render()
    assert out.stderr == b""


def test_schema_loader_ignores_the_openapi_document() -> None:
    # Otherwise the document would become a component of itself and the function would load it as a schema.
    assert "openapi.json" not in load_schemas()
    assert "Openapi" not in openapi.build_openapi()["components"]["schemas"]


def test_document_is_valid_openapi_3_1() -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31  # the official OAS 3.1 meta-schema, as schemathesis ships it

    document = openapi.build_openapi()
    assert document["openapi"].startswith("3.1.")
    jsonschema.Draft202012Validator(OPENAPI_31).validate(document)
    for schema in document["components"]["schemas"].values():  # OAS 3.1 schemas are JSON Schema 2020-12
        jsonschema.Draft202012Validator.check_schema(schema)
    loaded = schemathesis.openapi.from_dict(document)
    found = sorted((op.method.upper(), op.path) for op in (r.ok() for r in loaded.get_all_operations()))
    assert found == sorted((route.method, route.path) for route in ROUTES)


def test_every_reference_resolves_inside_the_document() -> None:
    document = openapi.build_openapi()
    refs = [value for key, value in walk(document) if key == "$ref"]
    assert refs, "the document should reference its components"
    for ref in refs:
        assert ref.startswith("#/components/"), ref
        pointer(document, ref)  # raises KeyError when dangling
    keys = {key for key, _ in walk(document["components"]["schemas"])}
    assert not keys & {"$schema", "$id", "$defs"}
    assert {"x-maxUtf8Bytes", "x-patternMessage"} <= keys  # extensions are kept for readers and tools


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.operation)
def test_every_operation_documents_its_parameters_body_and_every_error_it_may_answer(route) -> None:
    operation = openapi.build_openapi()["paths"][route.path][route.method.lower()]
    assert operation["operationId"] == route.operation
    assert {str(e.status) for e in route.all_errors()} | {"200"} == set(operation["responses"])
    for status, response in operation["responses"].items():
        schema = response["content"]["application/json"]["schema"]["$ref"]
        assert schema == "#/components/schemas/" + (openapi.component_name(route.response) if status == "200" else "Error")
        assert "x-acs-request-id" in response["headers"]
        for error in route.all_errors():
            if str(error.status) == status:
                assert error.code in response["description"]
    if route.body:
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"] == (
            "#/components/schemas/" + openapi.component_name(route.body))
    documented = {p["name"] for p in operation.get("parameters", [])}
    query = load_schemas()[route.query]["properties"] if route.query else {}
    assert documented == set(route.parameters) | set(query)


def test_every_error_of_the_catalogue_is_a_subclass_listed_once() -> None:
    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        return found | {s for c in found for s in subclasses(c)}

    assert set(errors.CATALOGUE) == subclasses(errors.ApiError) and len(errors.CATALOGUE) == len(set(errors.CATALOGUE))
    assert len({e.code for e in errors.CATALOGUE}) == len(errors.CATALOGUE)


SAMPLES = [
    {"ModelName": "x"},
    {"ModelName": "新闻分类", "WorkspaceId": "796", "Accessibility": "PUBLIC", "Tag": [{"Key": "k", "Value": "v"}]},
    {"ModelName": "x" * 127, "OrderNumber": -(2**63), "ParameterSize": 2**63 - 1, "ExtraInfo": {"a": [1.5, None]}},
    {},
    {"ModelName": ""},
    {"ModelName": "x" * 128},
    {"ModelName": "x", "Colour": "red"},
    {"ModelName": "x", "WorkspaceId": "../x"},
    {"ModelName": "x", "Accessibility": "private"},
    {"ModelName": "x", "OrderNumber": 2**63},
    {"ModelName": "x", "ParameterSize": 1.0},
    {"ModelName": "x", "ParameterSize": True},
    {"ModelName": "x", "ExtraInfo": []},
    {"ModelName": "x", "Labels": [{"Key": "a=b", "Value": "v"}]},
    {"ModelName": "x", "Labels": [{"Key": "中" * 43, "Value": "v"}]},  # 43 characters, 129 bytes
    {"ModelName": "x", "Tag": [{"Key": "k"}]},
    {"ModelName": "x", "Tag": [{"Key": "k", "Value": "v", "Extra": 1}]},
]


def _verdict_of_function(body: dict[str, Any]) -> bool:
    try:
        validate("create-model-request.json", body)
    except errors.InvalidParameter:
        return False
    return True


@pytest.mark.parametrize("body", SAMPLES, ids=lambda b: json.dumps(b, ensure_ascii=False)[:40])
def test_document_states_the_rules_the_function_enforces(body: dict[str, Any]) -> None:
    document = openapi.build_openapi()
    resource = referencing.Resource(document, referencing.jsonschema.DRAFT202012)
    registry = referencing.Registry().with_resource("openapi.json", resource)
    request_schema = {"$ref": "openapi.json#/components/schemas/CreateModelRequest"}
    documented = Validator(request_schema, registry=registry).is_valid(body)
    assert documented == _verdict_of_function(body)


def test_document_follows_the_schema_files(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = copy.deepcopy(load_schemas())
    changed["create-model-request.json"]["properties"]["ModelName"]["maxLength"] = 255
    changed["common.json"]["$defs"]["WorkspaceId"]["pattern"] = "^[0-9]+$"
    monkeypatch.setattr(openapi, "load_schemas", lambda: changed)
    components = openapi.build_openapi()["components"]["schemas"]
    assert components["CreateModelRequest"]["properties"]["ModelName"]["maxLength"] == 255
    assert components["WorkspaceId"]["pattern"] == "^[0-9]+$"


def test_a_reference_to_a_missing_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = copy.deepcopy(load_schemas())
    changed["label.json"]["properties"]["Key"] = {"$ref": "nowhere.json"}
    monkeypatch.setattr(openapi, "load_schemas", lambda: changed)
    with pytest.raises(ValueError, match="nowhere.json"):
        openapi.build_openapi()


def test_local_server_serves_the_document(served: str) -> None:
    with urllib.request.urlopen(served + "/openapi.json", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert json.loads(response.read()) == openapi.build_openapi()
    head = urllib.request.Request(served + "/openapi.json", method="HEAD")
    with urllib.request.urlopen(head, timeout=10) as response:
        assert response.status == 200 and response.read() == b""
    # Any other method on that path is refused as the API refuses one: 405 naming the methods.
    post = urllib.request.Request(served + "/openapi.json", data=b"{}", method="POST",
                                  headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(post, timeout=10)
    assert caught.value.code == 405 and caught.value.headers["Allow"] == "GET, HEAD"
    assert json.loads(caught.value.read())["Code"] == "MethodNotAllowed"


def test_schemathesis_loads_the_served_document(served: str) -> None:
    loaded = schemathesis.openapi.from_url(served + "/openapi.json")
    operation = loaded[MODELS_PATH]["POST"]
    assert operation.definition.raw["operationId"] == "CreateModel"


def test_the_function_itself_does_not_answer_the_document(memory_app) -> None:
    result = invoke({"path": "/openapi.json", "httpMethod": "GET", "headers": {}, "body": None, "isBase64Encoded": False})
    assert result["statusCode"] == 404


def test_the_api_docs_list_every_error_of_the_catalogue() -> None:
    api_docs = (REPO / "docs" / "api.md").read_text("utf-8")
    rows = {(int(status), code) for status, code in re.findall(r"^\| (\d{3}) \| `([\w.]+)` \|", api_docs, re.MULTILINE)}
    assert rows == {(e.status, e.code) for e in errors.CATALOGUE}
