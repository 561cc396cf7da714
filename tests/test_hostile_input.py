"""Hostile input on every invocation path: rejected with a 4xx JSON error that names the problem, before storage.

The same hostile body goes through each path the function is reached by: API Gateway (text and base64
bodies), HTTP trigger v1, WSGI, the local server over real HTTP, direct invocation, EventBridge (data as
a JSON string, and MNS queue messages through EventBridge) and MNS topics. Then the identifiers that
become storage keys (WorkspaceId, the OSS registration object key) on every store, and a proof that the
file store touches nothing outside its directory.
"""
from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from handler.api.app import App
from handler.api.routing import MODELS_PATH
from handler.catalog.keys import record_key
from handler.config import Settings
from handler.entry import fc
from handler.entry.compose import build_app
from handler.entry.local import LocalServer
from handler.errors import ApiError
from handler.rules.jsontext import MAX_DEPTH, MAX_VALUES
from handler.rules.validation import validator
from handler.stores.base import Store
from handler.stores.file import FileStore
from handler.stores.memory import MemoryStore
from handler.stores.oss import OssStore
from tests.conftest import FakeContext, local_api, raw_exchange

LIMIT = 1 << 20  # the documented default of MAX_BODY_BYTES
JSON = "application/json"


# --- a store that records every call ---------------------------------------------------------------

class SpyStore(MemoryStore):
    """A MemoryStore that remembers every call made to it: rejected requests must make none."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def create(self, key: str, data: bytes) -> None:
        self.calls.append(("create", key))
        super().create(key, data)

    def get(self, key: str) -> bytes:
        self.calls.append(("get", key))
        return super().get(key)

    def put(self, key: str, data: bytes) -> None:
        self.calls.append(("put", key))
        super().put(key, data)

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))
        super().delete(key)

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        self.calls.append(("list", prefix))
        return super().list(prefix, start_after, limit)


@pytest.fixture
def spy(use_app: Callable[..., App]) -> SpyStore:
    store = SpyStore()
    use_app(store)
    return store


# --- the invocation paths --------------------------------------------------------------------------

def _codes() -> dict[str, int]:
    found: dict[str, int] = {}
    todo = [ApiError]
    while todo:
        cls = todo.pop()
        found[cls.code] = cls.status
        todo.extend(cls.__subclasses__())
    return found


STATUS_OF_CODE = _codes()


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names; empty for events


def _utf8(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _from_gateway(raw: str) -> Answer:
    result = json.loads(raw)
    assert set(result) == {"isBase64Encoded", "statusCode", "headers", "body"}, "API Gateway needs this struct"
    return Answer(result["statusCode"], json.loads(result["body"]), {k.lower(): v for k, v in result["headers"].items()})


def _from_event(raw: str) -> Answer:
    body = json.loads(raw)
    return Answer(STATUS_OF_CODE[body["Code"]] if "Code" in body else 200, body)


def _headers(content_type: str | None) -> dict[str, str]:
    return {"Content-Type": content_type} if content_type is not None else {}


def via_apigw(body: bytes, content_type: str | None, base64_body: bool = False) -> Answer:
    text = base64.b64encode(body).decode() if base64_body else body.decode("utf-8")
    event = {"path": MODELS_PATH, "httpMethod": "POST", "headers": _headers(content_type), "queryParameters": {},
             "pathParameters": {}, "body": text, "isBase64Encoded": base64_body}
    return _from_gateway(fc.handler(json.dumps(event).encode(), FakeContext()))


def via_http_v1(body: bytes, content_type: str | None) -> Answer:
    text = _utf8(body)  # FC sends text bodies as they are and anything else base64-encoded
    event = {"version": "v1", "rawPath": MODELS_PATH, "headers": _headers(content_type), "queryParameters": {},
             "body": text if text is not None else base64.b64encode(body).decode(), "isBase64Encoded": text is None,
             "requestContext": {"accountId": "1", "http": {"method": "POST", "path": MODELS_PATH}, "requestId": "1"}}
    return _from_gateway(fc.handler(json.dumps(event).encode(), FakeContext()))


def wsgi_environ(body: bytes, content_type: str | None, **extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST", "PATH_INFO": MODELS_PATH, "QUERY_STRING": "", "SERVER_NAME": "fc", "SERVER_PORT": "9000",
        "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(body)), "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(), "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False, "fc.context": FakeContext(),
    }
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    environ.update(extra)
    return environ


def call_wsgi(environ: dict[str, Any]) -> Answer:
    started: list[Any] = []
    chunks = fc.wsgi_handler(environ, lambda status, headers, exc_info=None: started.append((status, headers)))
    data = b"".join(chunks)
    (status, headers), = started
    headers = {name.lower(): value for name, value in headers}
    assert int(headers["content-length"]) == len(data)
    return Answer(int(status.split()[0]), json.loads(data), headers)


def via_wsgi(body: bytes, content_type: str | None) -> Answer:
    return call_wsgi(wsgi_environ(body, content_type))


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalServer]:
    """The local API over real HTTP; it serves whatever app the test installed."""
    with local_api(LIMIT) as srv:
        yield srv


def via_local(server: LocalServer, body: bytes, content_type: str | None) -> Answer:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=20)
    try:
        conn.request("POST", MODELS_PATH, body=body, headers=_headers(content_type))
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return Answer(response.status, json.loads(data), {k.lower(): v for k, v in response.getheaders()})


def via_direct(body: bytes, content_type: str | None) -> Answer:
    return _from_event(fc.handler(body, FakeContext()))


def eventbridge(data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "e-1", "source": "pai.model.registry", "type": "pai:Model:CreateModel",
            "datacontenttype": "application/json;charset=utf-8", "aliyunregionid": "cn-hangzhou", "data": data}


def via_eventbridge(body: bytes, content_type: str | None) -> Answer:
    return _from_event(fc.handler(json.dumps(eventbridge(body.decode("utf-8"))).encode(), FakeContext()))


def via_eventbridge_mns(body: bytes, content_type: str | None) -> Answer:
    event = eventbridge({"messageBody": body.decode("utf-8"), "messageId": "m-1"})
    return _from_event(fc.handler(json.dumps(event).encode(), FakeContext()))


def via_eventbridge_object(body: bytes, content_type: str | None) -> Answer:
    return _from_event(fc.handler(json.dumps(eventbridge(json.loads(body))).encode(), FakeContext()))


def via_mns_topic(body: bytes, content_type: str | None) -> Answer:
    event = {"TopicOwner": "1186", "Message": body.decode("utf-8"), "Subscriber": "1186", "PublishTime": 1550216480040,
             "SubscriptionName": "s", "MessageMD5": "BA4B", "TopicName": "t", "MessageId": "2F5B"}
    return _from_event(fc.handler(json.dumps(event).encode(), FakeContext()))


HTTP_PATHS = ["apigw", "apigw-base64", "http-v1", "wsgi", "local"]
EVENT_PATHS = ["direct", "eventbridge", "eventbridge-mns", "mns-topic"]
PATHS = HTTP_PATHS + EVENT_PATHS
TEXT_ONLY = {"apigw", "eventbridge", "eventbridge-mns", "mns-topic"}  # bodies travel inside JSON strings
SENDERS: dict[str, Callable[[bytes, str | None], Answer]] = {
    "apigw": via_apigw,
    "apigw-base64": lambda body, ct: via_apigw(body, ct, base64_body=True),
    "http-v1": via_http_v1,
    "wsgi": via_wsgi,
    "direct": via_direct,
    "eventbridge": via_eventbridge,
    "eventbridge-mns": via_eventbridge_mns,
    "eventbridge-object": via_eventbridge_object,
    "mns-topic": via_mns_topic,
}


@pytest.fixture
def send(request: pytest.FixtureRequest) -> Callable[[str, bytes, str | None], Answer]:
    def sender(path: str, body: bytes, content_type: str | None = JSON) -> Answer:
        if path == "local":
            return via_local(request.getfixturevalue("local_server"), body, content_type)
        return SENDERS[path](body, content_type)
    return sender


def check_error(answer: Answer, status: int, code: str, words: str = "") -> None:
    """A 4xx error in the contract's shape whose Message names the problem."""
    assert (answer.status, answer.body.get("Code")) == (status, code), answer.body
    validator("error.json").validate(answer.body)
    assert re.search(words, answer.body["Message"]), answer.body["Message"]
    if answer.headers:
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.headers["x-acs-request-id"] == answer.body["RequestId"]


# --- hostile bodies --------------------------------------------------------------------------------

def _nested(depth: int) -> bytes:
    """A CreateModel body whose deepest container is at `depth` (body 1, ExtraInfo 2, then arrays); depth > 2."""
    arrays = depth - 2
    return ('{"ModelName":"deep","ExtraInfo":{"x":' + "[" * arrays + "]" * arrays + "}}").encode()


def _sized(size: int, name: str = "sized") -> bytes:
    head = ('{"ModelName":"' + name + '","ModelDescription":"').encode()
    return head + b"a" * (size - len(head) - 2) + b'"}'


@dataclass(frozen=True)
class Hostile:
    id: str
    body: bytes
    code: str
    words: str
    status: int = 400
    not_on: frozenset[str] = frozenset()


NOT_UTF8 = frozenset(TEXT_ONLY)
HOSTILE = [
    Hostile("malformed", b'{"ModelName": "x",}', "InvalidBody", "not valid JSON"),
    Hostile("truncated", b'{"ModelName": "x"', "InvalidBody", "not valid JSON"),
    Hostile("trailing-garbage", b'{"ModelName": "x"} {}', "InvalidBody", "not valid JSON"),
    Hostile("single-quotes", b"{'ModelName': 'x'}", "InvalidBody", "not valid JSON"),
    Hostile("empty", b"", "InvalidBody", "empty"),
    Hostile("blank", b" \r\n\t ", "InvalidBody", "empty"),
    # A direct invocation of a JSON array is a batch by design, so arrays are tested on the other paths.
    Hostile("array", b'[{"ModelName": "x"}]', "InvalidBody", "JSON object, not an array", not_on=frozenset({"direct"})),
    Hostile("number", b"42", "InvalidBody", "JSON object, not a number"),
    Hostile("null", b"null", "InvalidBody", "JSON object, not null"),
    Hostile("boolean", b"true", "InvalidBody", "JSON object, not a boolean"),
    # A direct invocation of a JSON string is read as escaped JSON (as batch items may be), hence two wordings.
    Hostile("string", b'"ModelName"', "InvalidBody", "JSON object, not a string|not valid JSON"),
    Hostile("not-utf8", b'{"ModelName": "\xff\xfe"}', "InvalidBody", "not valid UTF-8", not_on=NOT_UTF8),
    Hostile("latin1", '{"ModelName": "café"}'.encode("latin-1"), "InvalidBody", "not valid UTF-8", not_on=NOT_UTF8),
    Hostile("utf16", '{"ModelName": "x"}'.encode("utf-16"), "InvalidBody", "not valid UTF-8", not_on=NOT_UTF8),
    Hostile("overlong-utf8", b'{"ModelName": "\xc0\xaf"}', "InvalidBody", "not valid UTF-8", not_on=NOT_UTF8),
    Hostile("encoded-surrogate", b'{"ModelName": "\xed\xa0\x80"}', "InvalidBody", "not valid UTF-8", not_on=NOT_UTF8),
    Hostile("bom", b'\xef\xbb\xbf{"ModelName": "x"}', "InvalidBody", "not valid JSON"),
    Hostile("too-deep", _nested(MAX_DEPTH + 1), "InvalidBody", f"nested deeper than {MAX_DEPTH}"),
    Hostile("recursion-bomb", b'{"ModelName":"x","ExtraInfo":{"a":' + b"[" * 40_000 + b"]" * 40_000 + b"}}",
            "InvalidBody", f"nested deeper than {MAX_DEPTH}"),
    # 990 KB that would cost about 47 MiB of memory parsed: refused before it is decoded.
    Hostile("too-many-values", b'{"ModelName":"n","ExtraInfo":{"a":[' + b",".join([b"[]"] * 330_000) + b"]}}",
            "InvalidBody", f"more than {MAX_VALUES} JSON values"),
    Hostile("nan", b'{"ModelName": "x", "ExtraInfo": {"a": NaN}}', "InvalidBody", "NaN"),
    Hostile("infinity", b'{"ModelName": "x", "OrderNumber": Infinity}', "InvalidBody", "Infinity"),
    Hostile("minus-infinity", b'{"ModelName": "x", "ExtraInfo": {"a": [-Infinity]}}', "InvalidBody", "-Infinity"),
    Hostile("float-overflow", b'{"ModelName": "x", "ExtraInfo": {"a": 1e400}}', "InvalidBody", "out of range"),
    Hostile("huge-integer", b'{"ModelName": "x", "OrderNumber": ' + b"9" * 5000 + b"}", "InvalidBody", "too long"),
    Hostile("lone-surrogate", b'{"ModelName": "\\ud800"}', "InvalidBody", "lone surrogate"),
    Hostile("lone-low-surrogate-key", b'{"ModelName": "x", "ExtraInfo": {"\\udc00": 1}}', "InvalidBody", "lone surrogate"),
    Hostile("duplicate-key", b'{"ModelName": "a", "ModelName": "b"}', "InvalidBody", "duplicate key: 'ModelName'"),
    Hostile("duplicate-nested-key", b'{"ModelName": "a", "ExtraInfo": {"k": 1, "k": 1}}', "InvalidBody", "duplicate key: 'k'"),
    Hostile("too-large", _sized(LIMIT + 1), "RequestTooLarge", f"limit of {LIMIT} bytes", status=413),
    Hostile("far-too-large", _sized(LIMIT + 100_000), "RequestTooLarge", f"limit of {LIMIT} bytes", status=413),
]


@pytest.mark.parametrize(("case", "path"), [
    pytest.param(case, path, id=f"{case.id}-{path}") for case in HOSTILE for path in PATHS if path not in case.not_on
])
def test_hostile_body_is_rejected_before_storage(spy: SpyStore, send, case: Hostile, path: str) -> None:
    check_error(send(path, case.body), case.status, case.code, case.words)
    assert spy.calls == []


@pytest.mark.parametrize("path", PATHS)
def test_valid_body_is_accepted_on_every_path(spy: SpyStore, send, path: str) -> None:
    """The control for the test above: the same paths do reach storage with a good body."""
    answer = send(path, '{"ModelName": "好-模型 🚀", "ExtraInfo": {"a": [1.5, null]}}'.encode())
    assert answer.status == 200, answer.body
    assert json.loads(spy.get(record_key(answer.body["ModelId"])))["ModelName"] == "好-模型 🚀"


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/xml", "application/octet-stream", "application/jsonx", "json",
])
@pytest.mark.parametrize("path", HTTP_PATHS)
def test_declared_non_json_content_type_is_415(spy: SpyStore, send, path: str, content_type: str) -> None:
    answer = send(path, b'{"ModelName": "x"}', content_type)
    check_error(answer, 415, "UnsupportedMediaType", "application/json")
    assert spy.calls == []


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"])
@pytest.mark.parametrize("path", HTTP_PATHS)
def test_json_media_types_and_none_are_accepted(spy: SpyStore, send, path: str, content_type: str | None) -> None:
    assert send(path, b'{"ModelName": "x"}', content_type).status == 200


@pytest.mark.parametrize("text", ["not base64!!", "eyJNb2RlbE5hbWUiOiJ4In0", "eyJNb2RlbE5hbWUiOiJ4In0=\x00", "====", "e\u00e9"])
@pytest.mark.parametrize("shape", ["apigw", "http-v1"])
def test_body_marked_base64_that_is_not_base64_is_400(spy: SpyStore, shape: str, text: str) -> None:
    if shape == "apigw":
        event: dict[str, Any] = {"path": MODELS_PATH, "httpMethod": "POST", "headers": {"Content-Type": JSON},
                                 "body": text, "isBase64Encoded": True}
    else:
        event = {"version": "v1", "rawPath": MODELS_PATH, "headers": {}, "body": text, "isBase64Encoded": "true",
                 "requestContext": {"http": {"method": "POST"}}}
    check_error(_from_gateway(fc.handler(json.dumps(event).encode(), FakeContext())), 400, "InvalidBody", "not valid base64")
    assert spy.calls == []


def test_oversized_base64_body_is_413_without_decoding(spy: SpyStore, mocker) -> None:
    decode = mocker.spy(base64, "b64decode")
    check_error(via_apigw(_sized(LIMIT + 10), JSON, base64_body=True), 413, "RequestTooLarge")
    assert decode.call_count == 0 and spy.calls == []


# --- limits: the same on every path --------------------------------------------------------------------

@pytest.mark.parametrize("path", [*PATHS, "eventbridge-object"])
def test_body_of_exactly_the_limit_is_accepted(spy: SpyStore, send, path: str) -> None:
    body = _sized(LIMIT)
    assert len(body) == LIMIT
    answer = send(path, body)
    assert answer.status == 200, answer.body


@pytest.mark.parametrize("path", [*PATHS, "eventbridge-object"])
def test_one_byte_over_the_limit_is_413(spy: SpyStore, send, path: str) -> None:
    check_error(send(path, _sized(LIMIT + 1)), 413, "RequestTooLarge")
    assert spy.calls == []


@pytest.mark.parametrize("path", [*PATHS, "eventbridge-object"])
def test_body_at_the_nesting_limit_is_accepted(spy: SpyStore, send, path: str) -> None:
    answer = send(path, _nested(MAX_DEPTH))
    assert answer.status == 200, answer.body


def test_limit_is_read_from_MAX_BODY_BYTES(use_app) -> None:
    app = build_app(Settings.from_env({"MODEL_STORE": "memory://", "MAX_BODY_BYTES": "2048"}))
    fc.set_app(app)  # use_app's teardown resets it
    assert via_apigw(_sized(2048), JSON).status == 200
    check_error(via_apigw(_sized(2049, "other"), JSON), 413, "RequestTooLarge", "limit of 2048 bytes")
    assert app.registry.store.list("catalog/") and len(app.registry.store.list("models/")) == 1


# --- adapter specifics -------------------------------------------------------------------------------

def test_wsgi_never_reads_a_body_declared_over_the_limit(spy: SpyStore) -> None:
    stream = io.BytesIO(_sized(8 * LIMIT))
    answer = call_wsgi(wsgi_environ(b"", JSON, CONTENT_LENGTH=str(8 * LIMIT), **{"wsgi.input": stream}))
    check_error(answer, 413, "RequestTooLarge")
    assert stream.tell() == 0 and spy.calls == []


@pytest.mark.parametrize("length", ["abc", "-1", "", "0", "1e3", None])
def test_wsgi_without_a_usable_content_length_reads_no_body(spy: SpyStore, length: str | None) -> None:
    environ = wsgi_environ(b'{"ModelName": "x"}', JSON)
    if length is None:
        del environ["CONTENT_LENGTH"]
    else:
        environ["CONTENT_LENGTH"] = length
    check_error(call_wsgi(environ), 400, "InvalidBody", "empty")
    assert spy.calls == []


@pytest.mark.parametrize("declared", ["100", "999999999999"])
def test_wsgi_body_shorter_than_declared_is_refused_and_writes_nothing(spy: SpyStore, declared: str) -> None:
    environ = wsgi_environ(b'{"ModelName": "x"}', JSON, CONTENT_LENGTH=declared)
    answer = call_wsgi(environ)
    if int(declared) > LIMIT:
        check_error(answer, 413, "RequestTooLarge")
    else:
        check_error(answer, 400, "BadRequest", "ended after 18 of the 100 bytes")
    assert spy.calls == []


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n")


def _responses(raw: bytes) -> list[tuple[int | None, bytes]]:
    """(status, body) of each response in a byte stream; anything that is not an HTTP response is (None, rest)."""
    found: list[tuple[int | None, bytes]] = []
    while raw:
        match = _STATUS_LINE.match(raw)
        if not match:
            return [*found, (None, raw)]
        length = re.search(rb"(?i)content-length: *(\d+)", match.group(2))
        end = match.end() + int(length.group(1)) if length else len(raw)
        found.append((int(match.group(1)), raw[match.end():end]))
        raw = raw[end:]
    return found


def test_local_server_answers_an_oversized_body_with_413_and_closes(spy: SpyStore, local_server: LocalServer) -> None:
    body = _sized(LIMIT + 50_000)
    head = f"POST {MODELS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
    raw = raw_exchange(local_server, head.encode() + body)
    (status, payload), = _responses(raw)
    assert status == 413 and json.loads(payload)["Code"] == "RequestTooLarge"
    assert b"\r\nConnection: close\r\n" in raw
    assert spy.calls == []


SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


def test_local_server_unusable_content_length_never_becomes_a_second_request(spy: SpyStore, local_server: LocalServer) -> None:
    head = f"POST {MODELS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {JSON}\r\nContent-Length: +{len(SMUGGLE)}\r\n\r\n"
    (status, payload), = _responses(raw_exchange(local_server, head.encode() + SMUGGLE))
    assert status == 400 and "RequestId" in json.loads(payload)


def test_local_server_chunked_body_is_read_or_refused_as_one_request(spy: SpyStore, local_server: LocalServer) -> None:
    body = b'{"ModelName": "chunked"}'
    raw = (f"POST {MODELS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {JSON}\r\nTransfer-Encoding: chunked\r\n\r\n"
           f"{len(body):x}\r\n").encode() + body + b"\r\n0\r\n\r\n"
    (status, payload), = _responses(raw_exchange(local_server, raw))
    assert status in (200, 400, 411, 501) and "RequestId" in json.loads(payload)


@pytest.mark.parametrize("raw", [b"GARBAGE\r\n\r\n", b"POST /api/v1/models HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n"],
                         ids=["bad-request-line", "huge-header"])
def test_local_server_protocol_errors_are_json(local_server: LocalServer, raw: bytes) -> None:
    (status, payload), = _responses(raw_exchange(local_server, raw))
    assert status is not None and 400 <= status < 500 and "Code" in json.loads(payload)


@pytest.mark.parametrize(("raw", "code", "words"), [
    (rb'{"path": "/api/v1/models", "httpMethod": "POST", "headers": {}, "body": "{\"ModelName\": \"\ud800\"}"}',
     "InvalidBody", "not valid UTF-8|lone surrogate"),
    (rb'{"path": "/api/v1/models", "httpMethod": "POST", "headers": {"X": "\udc00"}, "body": "{\"ModelName\": 1}"}',
     "InvalidParameter", "ModelName must be a string"),
    (rb'{"path": "/api/v1/models", "httpMethod": "POST", "headers": {}, "body": "{\"ModelName\": 1}", "body": "x"}',
     "InvalidBody", "not valid JSON"),
    (rb'{"path": "/api/v1/models", "httpMethod": "POST", "headers": {}, "body": "{}", "x": ' + b"[" * 50 + b"]" * 50 + b"}",
     "InvalidParameter", "ModelName is required"),
], ids=["surrogate-in-body", "surrogate-in-header", "duplicate-envelope-key", "deep-envelope"])
def test_gateway_event_with_an_odd_envelope_is_answered_in_the_gateway_shape(spy: SpyStore, raw: bytes, code: str,
                                                                            words: str) -> None:
    """The envelope is the gateway's, read only to find the request; the body inside is what is checked strictly."""
    check_error(_from_gateway(fc.handler(raw, FakeContext())), 400, code, words)
    assert spy.calls == []


@pytest.mark.parametrize("marker", ["httpMethod", "specversion"])
def test_direct_body_with_an_event_key_is_refused_naming_the_field(spy: SpyStore, marker: str) -> None:
    check_error(via_direct(json.dumps({"ModelName": "x", marker: None}).encode(), None), 400, "InvalidParameter", marker)
    assert spy.calls == []


# --- identifiers that become storage keys ---------------------------------------------------------

HOSTILE_WORKSPACE_IDS = [
    "..", ".", "../x", "a/../../b", "/abs", "a/b", "a%2Fb", "%2e%2e", "..%2F..%2Fetc", "a\x00b", "\x00", "a" * 65,
    "a" * 5000, "", "-a", "_a", ".hidden", "a b", "a\\b", "C:\\x", "a\tb", "a\r\n", "\na", "ａｂ", "é", "a:b", "a?b",
    "a#b", "a*", "~root", "$HOME", "a\u202eb", "abc\n", "0\n", "a\n\n", 1, None, ["a"], {"a": 1}, True,
]


@pytest.fixture
def writes(request: pytest.FixtureRequest) -> Callable[[Store], list[str]]:
    """Everything a store holds, or for OSS every write request the bucket received."""
    def snapshot(store: Store) -> list[str]:
        if isinstance(store, FileStore):
            return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*")) if store.root.exists() else []
        if isinstance(store, OssStore):
            oss = request.getfixturevalue("oss")
            return [f"{r.method} {r.key}" for r in oss.log if r.method not in ("GET", "HEAD")] + sorted(oss.objects)
        return store.list("")
    return snapshot


def _apigw_event(body: dict[str, Any]) -> bytes:
    return json.dumps({"path": MODELS_PATH, "httpMethod": "POST", "headers": {"Content-Type": JSON},
                       "body": json.dumps(body), "isBase64Encoded": False}).encode()


@pytest.mark.parametrize("workspace_id", HOSTILE_WORKSPACE_IDS, ids=lambda v: repr(v)[:24])
def test_hostile_workspace_id_is_refused_on_every_store(any_store: Store, use_app, writes, workspace_id: Any) -> None:
    use_app(any_store)
    answer = _from_gateway(fc.handler(_apigw_event({"ModelName": "m", "WorkspaceId": workspace_id}), FakeContext()))
    check_error(answer, 400, "InvalidParameter", "WorkspaceId")
    assert writes(any_store) == []


@pytest.mark.parametrize("workspace_id", ["../evil", "abc\n", "a" * 65, "a/b", "%2F"], ids=repr)
def test_hostile_default_workspace_from_the_environment_stops_the_start(workspace_id: str) -> None:
    with pytest.raises(ValueError, match="DEFAULT_WORKSPACE_ID"):
        build_app(Settings.from_env({"MODEL_STORE": "memory://", "DEFAULT_WORKSPACE_ID": workspace_id}))


REGISTRATION = b'{"ModelName": "from-upload"}'
HOSTILE_REGISTRATION_KEYS = [
    "registrations/../models/x.json", "registrations/./ok.json", "registrations//ok.json", "registrations/sub/../ok.json",
    "registrations/%2e%2e/registrations/ok.json", "registrations%2F..%2Fok.json", "registrations/%252e%252e/ok.json",
    "registrations/ok.json\x00.txt", "registrations/ok.json%00", "registrations/ok.json/", "/registrations/ok.json",
    "registrations\\ok.json", "registrations/.ok.json", "registrations/" + "a" * 1000 + ".json",
    "registrations/ok.json\n", "../registrations/ok.json", "models/ok.json", "registrations/ok.txt", "", "/",
]


def _oss_event(store: Store, key: str, bucket: str = "pai-model-registry-demo") -> bytes:
    if isinstance(store, OssStore):  # the conftest OSS store lives under the prefix registry/ of its bucket
        bucket, key = store._bucket_name, "registry/" + key
    record = {"eventName": "ObjectCreated:PutObject", "eventSource": "acs:oss", "region": "cn-hangzhou",
              "oss": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}}}
    return json.dumps({"events": [record]}).encode()


def test_registration_object_is_registered_on_every_store(any_store: Store, use_app) -> None:
    """The control for the test below: a well-named upload is registered and its outcome recorded."""
    use_app(any_store)
    any_store.put("registrations/ok.json", REGISTRATION)
    outcome, = json.loads(fc.handler(_oss_event(any_store, "registrations/ok.json"), FakeContext()))
    assert outcome["Status"] == 200 and "ModelId" in outcome
    assert json.loads(any_store.get("registration-results/ok.json"))["ModelId"] == outcome["ModelId"]


@pytest.mark.parametrize("key", HOSTILE_REGISTRATION_KEYS, ids=lambda k: repr(k)[:40])
def test_hostile_registration_key_is_refused_on_every_store(any_store: Store, use_app, writes, key: str) -> None:
    use_app(any_store)
    any_store.put("registrations/ok.json", REGISTRATION)
    before = writes(any_store)
    outcome, = json.loads(fc.handler(_oss_event(any_store, key), FakeContext()))
    assert outcome["Code"] == "InvalidRegistration" and "registrations/" in outcome["Message"]
    validator("error.json").validate({k: outcome[k] for k in ("RequestId", "Code", "Message")})
    assert writes(any_store) == before


# --- the file store stays inside its directory ------------------------------------------------------

_FS_EVENTS = {"open", "os.link", "os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.symlink", "os.truncate",
              "os.chmod", "os.chown", "os.utime", "os.listdir", "os.scandir", "os.chdir", "shutil.rmtree", "shutil.move"}
_READS = {"os.listdir", "os.scandir"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_audit: dict[str, Any] = {"events": None, "thread": None, "installed": False}


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    events = _audit["events"]
    if events is not None and event in _FS_EVENTS and threading.get_ident() == _audit["thread"]:
        events.append((event, args))


@contextlib.contextmanager
def file_events() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Every file-system operation of this thread meanwhile, as Python's audit hooks report them (open, link, rename, ...)."""
    if not _audit["installed"]:
        sys.addaudithook(_on_audit)  # hooks cannot be removed; this one records only while a test asks
        _audit["installed"] = True
    events: list[tuple[str, tuple[Any, ...]]] = []
    _audit.update(events=events, thread=threading.get_ident())
    try:
        yield events
    finally:
        _audit.update(events=None, thread=None)


def _touched(event: str, args: tuple[Any, ...]) -> list[tuple[str, bool]]:
    """(path, writes) for each path an audited operation touches."""
    if event == "open":
        path, mode, flags = args
        writes = bool(flags & _WRITE_FLAGS) or (isinstance(mode, str) and any(c in mode for c in "wax+"))
        return [(os.fsdecode(path), writes)] if isinstance(path, (str, bytes, os.PathLike)) else []
    paths = args[1:2] if event == "os.symlink" else args  # a symlink's target is not touched by creating it
    return [(os.fsdecode(p), event not in _READS) for p in paths if isinstance(p, (str, bytes, os.PathLike))]


def _tree(base: Path, skip: Path) -> dict[str, str]:
    """Every path below base but outside skip, with what it is or holds."""
    found = {}
    for directory, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if Path(directory) / d != skip]
        for name in dirs + files:
            p = Path(directory) / name
            if p == skip:
                continue
            found[str(p.relative_to(base))] = ("link:" + os.readlink(p) if p.is_symlink() else
                                               "dir" if p.is_dir() else p.read_bytes().hex())
    return found


def test_file_store_never_touches_a_path_outside_its_root(use_app, tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "planted.json").write_bytes(REGISTRATION)
    (outside / "models").mkdir()
    store = FileStore(root)
    use_app(store)
    before = _tree(tmp_path, skip=root)

    with file_events() as events:
        for workspace_id in [*HOSTILE_WORKSPACE_IDS, "../outside", "../../" + str(outside)]:
            fc.handler(_apigw_event({"ModelName": "m", "WorkspaceId": workspace_id}), FakeContext())
        for name in ["../../outside/x", str(outside / "y"), "..", "C:\\Windows", "%2e%2e%2f", "names/../../x"]:
            assert _from_gateway(fc.handler(_apigw_event({"ModelName": name}), FakeContext())).status == 200
        for key in [*HOSTILE_REGISTRATION_KEYS, "../outside/planted.json", "registrations/../../outside/planted.json",
                    str(outside / "planted.json"), "registrations/" + str(outside / "planted.json")]:
            fc.handler(_oss_event(store, key), FakeContext())
    # Links planted inside the store (by anyone with access to its directory) lead nowhere either.
    os.symlink(outside, root / "registrations")
    os.symlink(outside / "models", root / "catalog" / "evil")
    with file_events() as more:
        outcome, = json.loads(fc.handler(_oss_event(store, "registrations/planted.json"), FakeContext()))
        answer = _from_gateway(fc.handler(_apigw_event({"ModelName": "m2", "WorkspaceId": "evil"}), FakeContext()))

    assert _tree(tmp_path, skip=root) == before
    root_real, tmp_real = os.path.realpath(root), os.path.realpath(tmp_path)
    touched = [(event, path, w) for event, args in events + more for path, w in _touched(event, args)]
    assert any(w for _, _, w in touched), "the audit hook saw no writes: it is not recording"
    for event, path, writes in touched:
        real = os.path.realpath(path)
        inside = os.path.commonpath([real, root_real]) == root_real
        assert inside or (not writes and os.path.commonpath([real, tmp_real]) != tmp_real), (event, path)
    assert outcome["Code"] == "InvalidRegistration" and answer.status == 400


@pytest.mark.parametrize("framing", [
    b"Transfer-Encoding: chunked\r\n\r\n-1\r\nxx\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
    b"Content-Length: \xb2\r\n\r\n{}",
    b"Content-Length: 1_0\r\n\r\n{}",
    b"Content-Length: 2\r\nContent-Length: 9\r\n\r\n{}",
    b"Transfer-Encoding: gzip\r\n\r\n{}",
    b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n",
], ids=["negative-chunk", "signed-chunk", "superscript-length", "underscore-length", "two-lengths", "gzip-coding",
        "chunked-and-length"])
def test_local_server_refuses_framing_it_cannot_trust(spy: SpyStore, local_server: LocalServer, framing: bytes) -> None:
    head = f"POST {MODELS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {JSON}\r\n".encode()
    (status, payload), = _responses(raw_exchange(local_server, head + framing))
    body = json.loads(payload)
    assert status == 400 and set(body) == {"RequestId", "Code", "Message"}
    assert spy.calls == []


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe", "/secret/path"), KeyError("/secret/path")])
def test_local_server_logs_a_failed_connection_in_one_line(local_server: LocalServer, caplog, capsys, error) -> None:
    try:
        raise error
    except (OSError, KeyError):
        local_server.handle_error(None, ("127.0.0.1", 1))
    assert type(error).__name__ in caplog.text and "/secret" not in caplog.text
    assert "Traceback" not in capsys.readouterr().err
    if isinstance(error, KeyError):  # a bug, not a client gone: logged as an error, with its place
        assert caplog.records[-1].levelname == "ERROR" and "test_hostile_input:" in caplog.text
