"""Property-based fuzzing, bounded for CI: valid CreateModel bodies are accepted and stored exactly as sent on
every invocation path, each broken rule is a 400 naming the field, arbitrary input is never a 5xx; and
schemathesis against the OpenAPI document served by the local server over real HTTP.

The rules are restated here from spec/CreateModel.md on purpose: this file is the independent oracle
for schemas/. A longer campaign:  FUZZ_EXAMPLES=5000 make test ARGS=tests/test_fuzz.py
"""
from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from handler.api.app import App
from handler.api.routes import ROUTES
from handler.api.routing import Route
from handler.catalog.keys import record_key
from handler.entry import fc
from handler.registry.models import Registry
from handler.rules.validation import validator
from handler.stores.memory import MemoryStore
from tests.conftest import FakeContext, local_api
from tests.test_hostile_input import SENDERS, STATUS_OF_CODE, Answer, call_wsgi, wsgi_environ

# --- how much to fuzz -------------------------------------------------------------------------------

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 0)
settings.register_profile(
    "fuzz-ci", max_examples=50, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)
settings.register_profile("fuzz-campaign", parent=settings.get_profile("fuzz-ci"), max_examples=max(FUZZ_EXAMPLES, 1))
FUZZ = settings.get_profile("fuzz-campaign" if FUZZ_EXAMPLES else "fuzz-ci")

# --- the rules, from spec/CreateModel.md -------------------------------------------------------------

NAME_MAX_CHARS = 127
LABEL_MAX_BYTES = 128
INT64 = (-(2**63), 2**63 - 1)
WORKSPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ACCESSIBILITY = ("PRIVATE", "PUBLIC")
STRING_FIELDS = ("ModelDescription", "Origin", "Domain", "Task", "ModelDoc", "ModelType")
INT_FIELDS = ("OrderNumber", "ParameterSize")
FIELDS = {"ModelName", "WorkspaceId", "Accessibility", "Labels", "Tag", "ExtraInfo", *STRING_FIELDS, *INT_FIELDS}
DEFAULT_WORKSPACE = "default"
EVENT_MARKERS = {"httpMethod", "specversion"}

# --- strategies ----------------------------------------------------------------------------------------

CHARS = st.one_of(
    st.characters(codec="utf-8"),  # any code point but surrogates: controls, NUL, RTL marks...
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji (4 bytes in UTF-8)
)
texts = st.text(CHARS, max_size=60)
# Names and labels: no control or invisible characters, at most so many characters once in NFC (handler/rules/names.py).
NAME_CHARS = CHARS.filter(lambda c: unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp"))
model_names = st.one_of(st.text(NAME_CHARS, min_size=1, max_size=NAME_MAX_CHARS),
                        st.text(NAME_CHARS, min_size=NAME_MAX_CHARS, max_size=NAME_MAX_CHARS)
                        ).filter(lambda s: s.strip() and len(nfc(s)) <= NAME_MAX_CHARS)
int64s = st.one_of(st.integers(*INT64), st.sampled_from([INT64[0], INT64[1], 0, -1]))
workspace_ids = st.from_regex(WORKSPACE_ID, fullmatch=True)
LABEL_CHARS = NAME_CHARS.filter(lambda c: c not in "=,")


@st.composite
def label_texts(draw: st.DrawFn) -> str:
    """At most 128 UTF-8 bytes without '=' or ',', often right at the limit."""
    limit = draw(st.one_of(st.just(LABEL_MAX_BYTES), st.integers(0, LABEL_MAX_BYTES)))
    out = ""
    for char in draw(st.lists(LABEL_CHARS, max_size=LABEL_MAX_BYTES)):
        if len(nfc(out + char).encode()) > limit:
            break
        out += char
    return out


labels = st.lists(st.fixed_dictionaries({"Key": label_texts().filter(bool), "Value": label_texts()}), max_size=4)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=False, allow_infinity=False), texts)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(texts, inner, max_size=4)), max_leaves=24)
extra_infos = st.dictionaries(texts, json_values, max_size=6)
non_strings = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                        st.lists(json_scalars, max_size=2),
                        st.dictionaries(texts, json_scalars, max_size=2))


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    optional: dict[str, st.SearchStrategy[Any]] = {
        "WorkspaceId": workspace_ids, "Accessibility": st.sampled_from(ACCESSIBILITY), "ExtraInfo": extra_infos,
        **{name: texts for name in STRING_FIELDS}, **{name: int64s for name in INT_FIELDS},
    }
    body = draw(st.fixed_dictionaries({"ModelName": model_names}, optional=optional))
    if draw(st.booleans()):
        body["Tag"] = draw(labels)
    if draw(st.booleans()):  # the deprecated spelling, often repeating some of Tag
        again = draw(st.lists(st.sampled_from(body["Tag"]), max_size=3)) if body.get("Tag") else []
        body["Labels"] = draw(st.permutations(again + draw(labels)))
    keys = draw(st.permutations(list(body)))
    return {key: body[key] for key in keys}


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def expected_labels(body: dict[str, Any]) -> list[dict[str, str]]:
    merged: list[dict[str, str]] = []
    for sent in body.get("Tag", []) + body.get("Labels", []):
        label = {"Key": nfc(sent["Key"]), "Value": nfc(sent["Value"])}
        if label not in merged:
            merged.append(label)
    return merged


def _too_many_bytes(draw: st.DrawFn) -> str:
    text = draw(label_texts())
    filler = draw(st.sampled_from(["a", "é", "中", "😀"]))
    while len(text.encode()) <= LABEL_MAX_BYTES:
        text += filler
    return text


def _not_a_workspace_id(value: Any) -> bool:
    return not isinstance(value, str) or not WORKSPACE_ID.fullmatch(value)


RULES = ["name-missing", "name-empty", "name-too-long", "name-not-string", "unknown-field", "workspace", "accessibility",
         "int64", "label-forbidden-char", "label-too-many-bytes", "label-shape", "labels-not-array", "extra-info",
         "string-field"]


@st.composite
def invalid_bodies(draw: st.DrawFn, rule: str) -> tuple[dict[str, Any], str]:
    """A valid body with one rule broken, and the field the error must name."""
    body = draw(valid_bodies())
    field = "ModelName"
    if rule == "name-missing":
        del body["ModelName"]
    elif rule == "name-empty":
        body["ModelName"] = ""
    elif rule == "name-too-long":
        body["ModelName"] = draw(st.text(CHARS, min_size=NAME_MAX_CHARS + 1, max_size=300))
    elif rule == "name-not-string":
        body["ModelName"] = draw(non_strings)
    elif rule == "unknown-field":
        # Keys by which a direct invocation is recognised as another event are left to test_hostile_input.py.
        field = draw(st.text(CHARS, min_size=1, max_size=20).filter(lambda name: name not in FIELDS | EVENT_MARKERS))
        body[field] = draw(json_values)
    elif rule == "workspace":
        near_miss = workspace_ids.map(lambda w: w + "\n")  # '$' of a Python regex also matches before a final newline
        field, body["WorkspaceId"] = "WorkspaceId", draw(st.one_of(texts, non_strings, near_miss).filter(_not_a_workspace_id))
    elif rule == "accessibility":
        field = "Accessibility"
        body[field] = draw(st.one_of(texts, non_strings).filter(lambda v: v not in ACCESSIBILITY))
    elif rule == "int64":
        field = draw(st.sampled_from(INT_FIELDS))
        body[field] = draw(st.one_of(st.integers(min_value=INT64[1] + 1), st.integers(max_value=INT64[0] - 1),
                                     st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(), texts))
    elif rule.startswith("label"):
        field = draw(st.sampled_from(["Tag", "Labels"]))
        label = {"Key": draw(label_texts()), "Value": draw(label_texts())}
        part = draw(st.sampled_from(["Key", "Value"]))
        if rule == "label-forbidden-char":
            text = label[part]
            at = draw(st.integers(0, len(text)))
            label[part] = text[:at] + draw(st.sampled_from("=,")) + text[at:]
            assume(len(label[part].encode()) <= LABEL_MAX_BYTES)
        elif rule == "label-too-many-bytes":
            label[part] = _too_many_bytes(draw)
        else:
            broken = draw(st.sampled_from(["missing", "extra", "not-string", "not-object"]))
            if broken == "missing":
                del label[part]
            elif broken == "extra":
                label[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in ("Key", "Value")))] = "x"
            elif broken == "not-string":
                label[part] = draw(non_strings)
            else:
                label = draw(st.one_of(json_scalars, st.lists(json_scalars, max_size=2)))
        items = list(body.get(field, []))
        items.insert(draw(st.integers(0, len(items))), label)
        body[field] = items
    elif rule == "labels-not-array":
        field = draw(st.sampled_from(["Tag", "Labels"]))
        body[field] = draw(st.one_of(json_scalars, st.dictionaries(texts, json_scalars, max_size=2)))
    elif rule == "extra-info":
        field, body["ExtraInfo"] = "ExtraInfo", draw(st.one_of(json_scalars, st.lists(json_values, max_size=3)))
    else:
        field = draw(st.sampled_from(STRING_FIELDS))
        body[field] = draw(non_strings)
    return body, field


PATHS = ["apigw", "apigw-base64", "http-v1", "wsgi", "direct", "eventbridge", "eventbridge-object", "mns-topic"]


def send(path: str, body: dict[str, Any], ensure_ascii: bool) -> Answer:
    data = json.dumps(body, ensure_ascii=ensure_ascii).encode()
    if path == "wsgi":
        return call_wsgi(wsgi_environ(data, "application/json"))
    return SENDERS[path](data, "application/json")


def fresh_app() -> App:
    app = App(Registry(MemoryStore()), default_workspace=DEFAULT_WORKSPACE)
    fc.set_app(app)
    return app


@pytest.fixture(autouse=True)
def _reset_app() -> Iterator[None]:
    yield
    fc.set_app(None)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON text: tells 1 from 1.0 and true, and keeps object key order."""
    return json.dumps(a, ensure_ascii=False) == json.dumps(b, ensure_ascii=False)


# --- properties -----------------------------------------------------------------------------------------

@FUZZ
@given(body=valid_bodies(), path=st.sampled_from(PATHS), ensure_ascii=st.booleans())
def test_every_valid_request_is_stored_exactly_as_sent(body: dict[str, Any], path: str, ensure_ascii: bool) -> None:
    app = fresh_app()
    answer = send(path, body, ensure_ascii)
    assert answer.status == 200, answer.body
    validator("create-model-response.json").validate(answer.body)
    record = json.loads(app.registry.store.get(record_key(answer.body["ModelId"])))
    validator("model.json").validate(record)
    for name in FIELDS - {"Tag", "Labels", "WorkspaceId", "Accessibility"}:
        assert (name in record) == (name in body), name
        if name in body:
            assert same_json(record[name], nfc(body[name]) if name == "ModelName" else body[name]), name
    assert record["ModelId"] == answer.body["ModelId"]
    assert record["WorkspaceId"] == body.get("WorkspaceId", DEFAULT_WORKSPACE)
    assert record["Accessibility"] == body.get("Accessibility", "PRIVATE")
    assert record["Labels"] == record["Tags"] == expected_labels(body)
    assert set(record) - FIELDS <= {"ModelId", "Tags", "GmtCreateTime", "GmtModifiedTime", "OwnerId"}


@pytest.mark.parametrize("rule", RULES)
@FUZZ
@given(data=st.data(), path=st.sampled_from(PATHS), ensure_ascii=st.booleans())
def test_every_broken_rule_is_a_400_naming_the_field(rule: str, data: st.DataObject, path: str, ensure_ascii: bool) -> None:
    body, field = data.draw(invalid_bodies(rule), label="body, field")
    app = fresh_app()
    answer = send(path, body, ensure_ascii)
    assert (answer.status, answer.body.get("Code")) == (400, "InvalidParameter"), answer.body
    validator("error.json").validate(answer.body)
    assert field in answer.body["Message"]
    assert app.registry.store.list("") == []


def answers(path: str, data: bytes) -> list[Answer]:
    if path != "direct":
        return [call_wsgi(wsgi_environ(data, "application/json")) if path == "wsgi" else SENDERS[path](data, "application/json")]
    result = json.loads(fc.handler(data, FakeContext()))  # a JSON array is a batch: one result per item
    return [Answer(STATUS_OF_CODE.get(r.get("Code"), 200), r) for r in (result if isinstance(result, list) else [result])]


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                      st.dictionaries(st.one_of(st.sampled_from(sorted(FIELDS)), texts), json_values, max_size=6)
                      .map(lambda v: json.dumps(v).encode())),
       path=st.sampled_from(["apigw-base64", "http-v1", "wsgi", "direct"]))
def test_arbitrary_input_is_never_a_server_error(data: bytes, path: str) -> None:
    app = fresh_app()
    results = answers(path, data)
    for answer in results:
        assert answer.status in (200, 400, 409), answer.body
        if answer.status != 200:
            validator("error.json").validate(answer.body)
    created = {a.body["ModelId"] for a in results if a.status == 200}
    # Every model answered exists; nothing else was left behind by the rejected ones.
    assert sorted(app.registry.store.list("models/")) == sorted(record_key(m) for m in created)


# --- schemathesis, over real HTTP ------------------------------------------------------------------------

@pytest.fixture
def served() -> Iterator[str]:
    """The local API over real HTTP, on a fresh memory store."""
    fresh_app()
    with local_api() as srv:
        yield srv.url


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]
NEGATIVE_CHECKS = [check for check in CHECKS if check is not negative_data_rejection]


# schemathesis.pytest.from_fixture would load the document lazily, but it fails under pytest 9
# (AttributeError: 'Function' object has no attribute '_nodeid'), so the test draws from the strategy itself.
# Accepted by the document, refused by the function: rules of validation.py and jsonbody.py that JSON
# Schema cannot say (128 bytes in UTF-8, an integer literal, the name rule, numbers a float holds exactly).
# A string holding JSON (Tag, Conditions, Options) is only a string to JSON Schema: its content is only annotated.
UNSAYABLE = (r"bytes in UTF-8|must be an integer|control character|besides spaces|cannot hold exactly|^(Tag|Conditions)\b"
             r"|must be a JSON text|bytes as JSON|^filter_string\b|^page_token\b")  # MLflow's filter grammar, its opaque tokens


def _valid_as_sent(route: Route, request: Any) -> bool:
    """Whether a request schemathesis generated as invalid lost its flaw on the way out (a parameter whose value
    is an empty list is no parameter at all): its query and body, as sent, pass the route's schemas."""
    from urllib.parse import parse_qsl, urlsplit

    pairs = parse_qsl(urlsplit(request.url).query, keep_blank_values=True)
    # A parameter of array type (MLflow's order_by) is sent once per item; any other at most once.
    arrays = {name for name, schema in validator(route.query).schema["properties"].items()
              if schema.get("type") == "array"} if route.query else set()
    single = [name for name, _ in pairs if name not in arrays]
    if len(set(single)) != len(single) or (pairs and route.query is None):
        return False
    try:
        body = json.loads(request.body) if request.body else None
    except ValueError:
        return False
    query: dict[str, Any] = {}
    for name, value in pairs:
        if name in arrays:
            query.setdefault(name, []).append(value)
        else:
            query[name] = value
    checks = [(route.query, query)] if route.query else []
    if route.body:
        checks.append((route.body, body))
    return all(validator(schema).is_valid(value) for schema, value in checks)


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.operation)
def test_schemathesis_against_the_local_server(served: str, mode: schemathesis.GenerationMode, route: Route) -> None:
    document = schemathesis.openapi.from_url(served + "/openapi.json")
    operation = document[route.path][route.method]
    statuses: list[int] = []

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        # Negative data must be refused with a 4xx; the local server's own 414 and 431 count (a URL or
        # header too long), which schemathesis' negative_data_rejection check does not know.
        response = case.call_and_validate(checks=CHECKS if mode.is_positive else NEGATIVE_CHECKS, timeout=20)
        statuses.append(response.status_code)
        if not mode.is_positive:
            assert 400 <= response.status_code < 500 or _valid_as_sent(route, response.request), response.text[:300]
        if mode.is_positive:
            answer = response.json()
            # Valid by the document, so accepted, unless the name is taken (409), the model does not exist
            # (404: a random ModelId), or a rule JSON Schema cannot say refuses it.
            # MLflow's paths answer a taken name as MLflow's server does: 400 RESOURCE_ALREADY_EXISTS.
            assert response.status_code in (200, 404, 409) or answer.get("error_code") == "RESOURCE_ALREADY_EXISTS" or (
                response.status_code == 400 and re.search(UNSAYABLE, answer["Message"])), answer

    check()
    if mode.is_positive and route.operation in ("CreateModel", "ListModels"):
        assert 200 in statuses, "schemathesis sent nothing the API accepted"
    assert statuses
