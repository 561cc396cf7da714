"""End to end: real event JSON files (tests/events/) through the FC entry point `handler`."""
from __future__ import annotations

import json
import logging
import re

import pytest

from handler.api.app import App
from handler.catalog.keys import record_key
from handler.entry import events, fc
from handler.rules.validation import validator
from handler.stores.base import Unavailable
from handler.stores.memory import MemoryStore
from tests.conftest import FakeContext, event_bytes, invoke

REQUEST_ID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")
MODEL_ID = re.compile(r"model-[a-z0-9]+")
ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def stored(app: App, model_id: str) -> dict:
    return json.loads(app.registry.store.get(record_key(model_id)))


def gateway_body(result: dict) -> dict:
    assert set(result) == {"isBase64Encoded", "statusCode", "headers", "body"}
    assert result["headers"]["Content-Type"].startswith("application/json")
    body = json.loads(result["body"])
    assert result["headers"]["x-acs-request-id"] == body["RequestId"]
    return body


def test_api_gateway_event_creates_the_record(memory_app: App) -> None:
    result = invoke(event_bytes("apigw.json"))
    assert result["statusCode"] == 200
    body = gateway_body(result)
    assert set(body) == {"RequestId", "ModelId"}
    assert REQUEST_ID.fullmatch(body["RequestId"]) and MODEL_ID.fullmatch(body["ModelId"])
    validator("create-model-response.json").validate(body)
    record = stored(memory_app, body["ModelId"])
    validator("model.json").validate(record)
    assert record["ModelId"] == body["ModelId"]
    assert (record["ModelName"], record["ModelDescription"], record["WorkspaceId"]) == ("my-model", "demo", "12345")
    assert record["Accessibility"] == "PRIVATE" and record["Labels"] == record["Tags"] == []
    assert ISO_Z.fullmatch(record["GmtCreateTime"]) and record["GmtModifiedTime"] == record["GmtCreateTime"]
    assert record["OwnerId"] == "1234567890"


def test_base64_body_with_every_field_is_stored_exactly(memory_app: App) -> None:
    event = json.loads(event_bytes("apigw-base64-full.json"))
    import base64

    sent = json.loads(base64.b64decode(event["body"]))
    body = gateway_body(invoke(event))
    record = stored(memory_app, body["ModelId"])
    for name, value in sent.items():
        if name != "Tag":
            assert record[name] == value, name
    assert record["Tags"] == record["Labels"] == sent["Tag"]
    assert record["ExtraInfo"] == {"Rating": 4.94, "CoverUris": ["https://example.com/a.png"], "Nested": {"a": [1, None, True]}}


def test_base64_flag_as_a_string_is_understood(memory_app: App) -> None:
    assert invoke(event_bytes("apigw-base64-string-flag.json"))["statusCode"] == 200


def test_http_trigger_v1_event(memory_app: App) -> None:
    result = invoke(event_bytes("http-v1.json"))
    assert result["statusCode"] == 200
    assert stored(memory_app, gateway_body(result)["ModelId"])["WorkspaceId"] == "default"


@pytest.mark.parametrize(("name", "status", "code", "words"), [
    ("apigw-unknown-field.json", 400, "InvalidParameter", "Colour"),
    ("apigw-wrong-method.json", 405, "MethodNotAllowed", "PATCH"),
    ("apigw-unknown-path.json", 404, "NotFound", "/api/v2/models"),
])
def test_gateway_errors_are_json_and_write_nothing(memory_app: App, name: str, status: int, code: str, words: str) -> None:
    result = invoke(event_bytes(name))
    body = gateway_body(result)
    assert (result["statusCode"], body["Code"]) == (status, code)
    assert words in body["Message"]
    validator("error.json").validate(body)
    assert memory_app.registry.store.list("") == []
    if status == 405:
        assert result["headers"]["Allow"] == "POST, GET"


@pytest.mark.parametrize(("name", "model_name"), [
    ("eventbridge.json", "from-eventbridge"),
    ("eventbridge-mns-queue.json", "from-mns-queue"),
    ("mns-topic-json.json", "from-mns-topic"),
    ("mns-topic-stream-attrs.json", "from-stream"),
    ("direct.json", "direct-model"),
])
def test_message_sources_register_the_model_they_carry(memory_app: App, name: str, model_name: str) -> None:
    body = invoke(event_bytes(name))
    assert set(body) == {"RequestId", "ModelId"}
    assert stored(memory_app, body["ModelId"])["ModelName"] == model_name


def test_batch_reports_each_item_and_one_bad_item_sinks_nothing(memory_app: App) -> None:
    results = invoke(event_bytes("eventbridge-batch.json"))
    assert [("ModelId" in r, r.get("Code")) for r in results] == [(True, None), (True, None), (False, "InvalidParameter")]
    assert "ModelName" in results[2]["Message"]
    assert stored(memory_app, results[1]["ModelId"])["ModelName"] == "from-string-data"


def test_direct_invocation_that_is_not_json_is_answered_not_raised(memory_app: App) -> None:
    body = invoke(b"\xffnot json")
    assert body["Code"] == "InvalidBody" and "UTF-8" in body["Message"]


class FailingStore(MemoryStore):
    def create(self, key: str, data: bytes) -> None:
        raise Unavailable("object storage unavailable")


def test_storage_outage_is_503_over_http_and_raises_for_events(use_app) -> None:
    use_app(FailingStore())
    result = invoke(event_bytes("apigw.json"))
    assert result["statusCode"] == 503 and json.loads(result["body"])["Code"] == "ServiceUnavailable"
    with pytest.raises(events.RetryLater):
        invoke(event_bytes("eventbridge.json"))


class BrokenStore(MemoryStore):
    def create(self, key: str, data: bytes) -> None:
        raise KeyError("/secret/path/in/a/bug")


def test_unexpected_failure_is_a_bare_500(use_app, caplog: pytest.LogCaptureFixture) -> None:
    use_app(BrokenStore())
    with caplog.at_level(logging.INFO):
        result = invoke(event_bytes("apigw.json"))
    body = json.loads(result["body"])
    assert result["statusCode"] == 500 and body["Code"] == "InternalError"
    assert "/secret" not in result["body"] and "KeyError" not in result["body"]
    assert "/secret" not in caplog.text and "Traceback" not in caplog.text
    assert "KeyError" in caplog.text  # the operator still learns what failed


def test_each_response_is_one_structured_log_line(memory_app: App, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="handler.access"):
        body = gateway_body(invoke(event_bytes("apigw.json")))
        invoke(event_bytes("apigw-unknown-field.json"))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "handler.access"]
    assert len(lines) == 2
    assert lines[0]["RequestId"] == body["RequestId"] and lines[0]["ModelId"] == body["ModelId"]
    assert (lines[0]["Operation"], lines[0]["Status"], lines[1]["Status"]) == ("CreateModel", 200, 400)
    assert all(isinstance(line["DurationMs"], float) for line in lines)
    assert "test-secret" not in caplog.text and "test-token" not in caplog.text


def test_retry_of_the_same_request_returns_the_same_model(memory_app: App) -> None:
    first = invoke(event_bytes("direct.json"))
    again = invoke(event_bytes("direct.json"))
    assert again["ModelId"] == first["ModelId"] and again["RequestId"] != first["RequestId"]


def test_app_is_built_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("MODEL_STORE", f"file://{tmp_path}")
    monkeypatch.setenv("DEFAULT_WORKSPACE_ID", "4242")
    fc.set_app(None)
    try:
        fc.initializer(FakeContext())
        body = invoke({"ModelName": "env-model"})
    finally:
        fc.set_app(None)
    record = json.loads((tmp_path / "models" / f"{body['ModelId']}.json").read_text())
    assert record["WorkspaceId"] == "4242"


def test_wsgi_entry_serves_fc2_http_triggers(memory_app: App) -> None:
    import io

    body = json.dumps({"ModelName": "wsgi-model", "WorkspaceId": "7"}).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/models", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "fc.context": FakeContext(account_id="99")}
    seen: dict = {}
    chunks = fc.wsgi_handler(environ, lambda status, headers: seen.update(status=status, headers=dict(headers)))
    answer = json.loads(b"".join(chunks))
    assert seen["status"].startswith("200") and seen["headers"]["Content-Type"].startswith("application/json")
    assert seen["headers"]["Content-Length"] == str(len(b"".join(chunks)))
    record = stored(memory_app, answer["ModelId"])
    assert (record["ModelName"], record["WorkspaceId"], record["OwnerId"]) == ("wsgi-model", "7", "99")

    environ.update(REQUEST_METHOD="DELETE", **{"wsgi.input": io.BytesIO(b"")}, CONTENT_LENGTH="0")
    fc.wsgi_handler(environ, lambda status, headers: seen.update(status=status, headers=dict(headers)))
    assert seen["status"].startswith("405") and seen["headers"]["Allow"] == "POST, GET"


def test_storage_calls_are_bounded_by_the_functions_timeout(use_app) -> None:
    import time
    from types import SimpleNamespace

    from handler.stores.base import deadline

    seen: list[float | None] = []

    class DeadlineSpy(MemoryStore):
        def create(self, key: str, data: bytes) -> None:
            seen.append(deadline())
            super().create(key, data)

    use_app(DeadlineSpy())
    context = FakeContext()
    context.function = SimpleNamespace(timeout=30)
    started = time.monotonic()
    invoke({"ModelName": "bounded"}, context)
    assert len(seen) == 2 and all(d is not None and started + 27 <= d <= time.monotonic() + 28 for d in seen)
    seen.clear()
    invoke([{"ModelName": "batch-1"}, {"ModelName": "batch-2"}], context)
    assert len(seen) == 4 and len(set(seen)) == 1  # one budget for the whole invocation, not per item
    seen.clear()
    invoke({"ModelName": "unbounded"}, FakeContext())  # no timeout known: only the store's own bounds
    assert seen == [None, None]


@pytest.mark.parametrize("http", ["POST", None, 3, ["POST"]])
def test_a_malformed_http_trigger_event_is_answered_not_raised(memory_app: App, http) -> None:
    event = {"version": "v1", "rawPath": "/api/v1/models", "body": "{}", "requestContext": {"http": http}}
    result = invoke(event)
    assert result["statusCode"] == 405 and json.loads(result["body"])["Code"] == "MethodNotAllowed"
