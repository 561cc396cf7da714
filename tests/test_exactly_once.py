"""One model per name in a workspace, whatever fails and whoever races: crashes at every write,
lost replies, concurrent callers, and registrations from uploaded OSS objects."""
from __future__ import annotations

import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from handler.catalog.keys import record_key
from handler.entry import events, fc
from handler.errors import ModelNotFound
from handler.registry.models import Registry
from handler.stores.base import Store, Unavailable
from handler.stores.file import FileStore
from testing import fake_oss
from tests.conftest import FakeContext, event_bytes, invoke, local_api, make_oss_store

REQUEST = {"ModelName": "resnet", "WorkspaceId": "42", "Domain": "cv", "Tag": [{"Key": "k", "Value": "v"}]}


def kind_of(key: str) -> str:
    return "record" if key.startswith("models/") else key.split("/")[2] if key.startswith("catalog/") else "other"


class CrashingStore(Store):
    """Wraps a store; once armed, the first write of a given kind fails before or after it reaches the store."""

    def __init__(self, inner: Store, kind: str = "", when: str = "before") -> None:
        self.inner, self.kind, self.when, self.fired = inner, kind, when, False

    def _write(self, key: str, do: Any) -> None:
        if self.fired or kind_of(key) != self.kind:
            return do()
        self.fired = True
        if self.when == "after":
            do()  # committed, but the caller never hears so: a timeout or a lost reply
        raise Unavailable("injected")

    def create(self, key: str, data: bytes) -> None:
        self._write(key, lambda: self.inner.create(key, data))

    def put(self, key: str, data: bytes) -> None:
        self._write(key, lambda: self.inner.put(key, data))

    def delete(self, key: str) -> None:
        self._write(key, lambda: self.inner.delete(key))

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        return self.inner.list(prefix, start_after, limit)


def call(method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    event = {"httpMethod": method, "path": path, "headers": {}, "queryParameters": query or {}}
    if body is not None:
        event["body"] = json.dumps(body)
    result = invoke(event)
    return result["statusCode"], json.loads(result["body"])


def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return call("POST", "/api/v1/models", body)


def listed(workspace: str = "42") -> list[str]:
    status, body = call("GET", "/api/v1/models", query={"WorkspaceId": workspace, "PageSize": "100"})
    assert status == 200
    return [m["ModelId"] for m in body["Models"]]


def assert_records_match_the_catalog(store: Store, workspace: str = "42") -> None:
    """Every model's record file is its current state; no record of a deleted model is left."""
    models = {m["ModelId"]: m for m in call("GET", "/api/v1/models", query={"WorkspaceId": workspace, "PageSize": "100"})[1]["Models"]}
    for model_id, model in models.items():
        assert json.loads(store.get(record_key(model_id))) == model


@pytest.mark.parametrize("kind", ["record", "log"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_at_any_write_of_a_create_then_a_retry_gives_one_model(any_store: Store, use_app, kind: str, when: str) -> None:
    app = use_app(CrashingStore(any_store, kind, when))
    status, first = post(REQUEST)
    assert status == 503 and first["Code"] == "ServiceUnavailable"

    status, retried = post(REQUEST)
    assert status == 200
    assert listed() == [retried["ModelId"]]
    # Whatever the crash left behind is invisible.
    for key in any_store.list("models/"):
        model_id = key[len("models/"):-len(".json")]
        assert _exists(app.registry, model_id) == (model_id == retried["ModelId"])
    assert_records_match_the_catalog(any_store)



def _exists(registry: Registry, model_id: str) -> bool:
    try:
        registry.get(model_id)
    except ModelNotFound:
        return False
    return True


def _update(model_id: str) -> tuple[int, dict[str, Any]]:
    return call("PUT", f"/api/v1/models/{model_id}", {"ModelName": "resnet-2", "ExtraInfo": {"v": 2}})


def _delete(model_id: str) -> tuple[int, dict[str, Any]]:
    return call("DELETE", f"/api/v1/models/{model_id}")


def _add_labels(model_id: str) -> tuple[int, dict[str, Any]]:
    return call("POST", f"/api/v1/models/{model_id}/labels", {"Labels": [{"Key": "k", "Value": "w"}, {"Key": "x", "Value": "y"}]})


def _remove_labels(model_id: str) -> tuple[int, dict[str, Any]]:
    return call("DELETE", f"/api/v1/models/{model_id}/labels", query={"LabelKeys": "k"})


CHANGES = {"update": _update, "delete": _delete, "add_labels": _add_labels, "remove_labels": _remove_labels}


def _expected(change: str, model: dict[str, Any]) -> dict[str, Any] | None:
    if change == "delete":
        return None
    if change == "update":
        return {**model, "ModelName": "resnet-2", "ExtraInfo": {"v": 2}}
    labels = [{"Key": "k", "Value": "w"}, {"Key": "x", "Value": "y"}] if change == "add_labels" else []
    return {**model, "Labels": labels, "Tags": labels}


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("kind", ["log", "record"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_at_any_write_of_a_change_then_a_retry_ends_correct(
    any_store: Store, use_app, change: str, kind: str, when: str
) -> None:
    store = CrashingStore(any_store)
    use_app(store)
    _, created = post(REQUEST)
    model_id = created["ModelId"]
    before = call("GET", f"/api/v1/models/{model_id}")[1]
    store.kind, store.when = kind, when  # armed

    status, body = CHANGES[change](model_id)
    assert (status, body["Code"]) == (503, "ServiceUnavailable")
    status, body = CHANGES[change](model_id)  # the same request, retried
    # A delete that committed before the crash is gone: its retry finds no model (and tidies its record).
    assert status == (404 if change == "delete" and (kind, when) != ("log", "before") else 200)

    expected = _expected(change, {k: v for k, v in before.items() if k != "RequestId"})
    status, got = call("GET", f"/api/v1/models/{model_id}")
    if expected is None:
        assert status == 404 and listed() == []
        assert any_store.list("models/") == []  # the record went with the model
        assert post({**REQUEST, "Domain": "nlp"})[0] == 200  # and the name is free
    else:
        got.pop("RequestId")
        assert {k: v for k, v in got.items() if k != "GmtModifiedTime"} == {k: v for k, v in expected.items() if k != "GmtModifiedTime"}
        assert listed() == [model_id]
    assert_records_match_the_catalog(any_store)


def test_a_crashed_checkpoint_costs_nothing_but_a_longer_cold_start(any_store: Store, use_app) -> None:
    from handler.catalog import workspace as catalog

    store = CrashingStore(any_store, "checkpoints", "before")
    app = use_app(store)
    ids = [post({**REQUEST, "ModelName": f"m{i}"})[1]["ModelId"] for i in range(catalog.CHECKPOINT_EVERY + 1)]
    app.registry.workspace("42").settle()
    assert store.fired and sorted(listed()) == sorted(ids)
    use_app(any_store)  # a cold instance
    assert sorted(listed()) == sorted(ids)


def test_a_leftover_record_never_blocks_the_name(any_store: Store, use_app) -> None:
    use_app(CrashingStore(any_store, "log", "before"))
    assert post(REQUEST)[0] == 503
    status, body = post({**REQUEST, "Domain": "nlp"})  # a different request for the same name
    assert status == 200 and "ModelId" in body


def test_same_name_with_different_fields_is_a_409_naming_the_model(any_store: Store, use_app) -> None:
    use_app(any_store)
    _, first = post(REQUEST)
    status, body = post({**REQUEST, "ModelDescription": "changed"})
    assert (status, body["Code"]) == (409, "ModelAlreadyExists")
    assert "resnet" in body["Message"] and first["ModelId"] in body["Message"]
    assert post({**REQUEST, "WorkspaceId": "43"})[0] == 200  # names are per workspace


def test_a_retry_spelled_differently_is_the_same_request(any_store: Store, use_app) -> None:
    use_app(any_store)
    _, first = post(REQUEST)
    reordered = {"Accessibility": "PRIVATE", "Labels": REQUEST["Tag"], **{k: v for k, v in reversed(REQUEST.items()) if k != "Tag"}}
    status, again = post(reordered)
    assert (status, again["ModelId"]) == (200, first["ModelId"])


@pytest.mark.parametrize("identical", [True, False])
def test_racing_creates_of_one_name(any_store: Store, use_app, identical: bool) -> None:
    use_app(any_store)
    callers = 16
    barrier = threading.Barrier(callers)

    def create(i: int) -> tuple[int, dict[str, Any]]:
        barrier.wait()
        return post(REQUEST if identical else {**REQUEST, "OrderNumber": i})

    with ThreadPoolExecutor(callers) as pool:
        results = list(pool.map(create, range(callers)))
    [model_id] = listed()
    winners = [body for status, body in results if status == 200]
    if identical:
        assert all(body["ModelId"] == model_id for body in winners) and len(winners) == callers
    else:
        assert [body["ModelId"] for body in winners] == [model_id]
        assert all(status == 409 and model_id in body["Message"] for status, body in results if status != 200)
    # The losers cleaned up after themselves: one record.
    assert any_store.list("models/") == [record_key(model_id)]


def test_local_server_under_parallel_clients(use_app, tmp_path: Path) -> None:
    use_app(FileStore(tmp_path))
    data = json.dumps(REQUEST).encode()

    with local_api() as server:
        def call(_: int) -> tuple[int, str]:
            request = urllib.request.Request(server.url + "/api/v1/models", data, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())["ModelId"]

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(call, range(36)))
    assert {status for status, _ in results} == {200}
    assert {model_id for _, model_id in results} == set(listed())
    assert len(listed()) == 1


# --- OSS: the real client against the loopback server, failures injected on the wire -----------

def test_lost_replies_on_every_write_are_absorbed(oss: fake_oss.FakeOss, use_app) -> None:
    use_app(make_oss_store(oss))
    for prefix in ("registry/models/", "registry/catalog/42/log/"):
        oss.inject("PUT", prefix=prefix, action=fake_oss.commit_then_drop())
    status, body = post(REQUEST)
    assert status == 200
    assert listed() == [body["ModelId"]]
    assert sum(1 for r in oss.log if r.fault == "commit_then_drop") == 2


def test_an_outage_that_outlasts_the_retries_is_503_and_a_later_retry_succeeds(oss: fake_oss.FakeOss, use_app) -> None:
    use_app(make_oss_store(oss))
    oss.inject("PUT", prefix="registry/catalog/42/log/", action=fake_oss.error(503, "ServiceUnavailable"), times=100)
    status, body = post(REQUEST)
    assert (status, body["Code"]) == (503, "ServiceUnavailable")
    assert sum(1 for r in oss.log if r.key.startswith("registry/catalog/42/log/")) > 1  # it did retry
    oss.reset()
    status, body = post(REQUEST)
    assert status == 200 and listed() == [body["ModelId"]]


def test_racing_creates_over_oss_open_no_more_connections_than_the_pool(oss: fake_oss.FakeOss, use_app) -> None:
    # Each create has at most one write in flight, and reads overlap at most 8 at a cold start.
    use_app(make_oss_store(oss, pool_size=16))
    barrier = threading.Barrier(8)

    def create(i: int) -> int:
        barrier.wait()
        return post({**REQUEST, "ModelName": f"m{i % 2}"})[0]

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(create, range(8))) == {200}
    assert len(listed()) == 2
    assert oss.connections_opened <= 16


def oss_event(server: fake_oss.FakeOss, key: str) -> dict[str, Any]:
    event = json.loads(event_bytes("oss.json"))
    event["events"][0]["oss"]["bucket"]["name"] = server.bucket
    event["events"][0]["oss"]["object"]["key"] = key
    return event


def test_a_registration_uploaded_to_oss_becomes_one_model_even_when_the_first_attempt_fails(
    oss: fake_oss.FakeOss, use_app
) -> None:
    use_app(make_oss_store(oss))
    oss.seed("registry/registrations/resnet.json", json.dumps(REQUEST).encode())
    oss.inject("PUT", prefix="registry/catalog/42/log/", action=fake_oss.commit_then_drop())
    oss.inject("PUT", prefix="registry/catalog/42/log/", action=fake_oss.error(500, "InternalError"), times=100)
    with pytest.raises(events.RetryLater):
        fc.handler(json.dumps(oss_event(oss, "registry/registrations/resnet.json")).encode(), FakeContext())
    oss.heal()
    [result] = invoke(oss_event(oss, "registry/registrations/resnet.json"))  # FC delivers the event again
    [model_id] = listed()
    assert result["ModelId"] == model_id
    outcome = json.loads(oss.objects["registry/registration-results/resnet.json"])
    assert (outcome["Status"], outcome["ModelId"], outcome["Object"]) == (200, model_id, "registry/registrations/resnet.json")


def test_registration_keys_may_arrive_url_encoded(oss: fake_oss.FakeOss, use_app) -> None:
    use_app(make_oss_store(oss))
    oss.seed("registry/registrations/v1=a.json", json.dumps(REQUEST).encode())
    [result] = invoke(oss_event(oss, "registry/registrations/v1%3Da.json"))
    assert listed() == [result["ModelId"]]


@pytest.mark.parametrize(("key", "content"), [
    ("registry/registrations/bad.json", b'{"ModelName": ""}'),
    ("registry/registrations/bad.json", b"not json"),
    ("registry/registrations/missing.json", None),
    ("registry/elsewhere/x.json", b"{}"),
    ("registry/registrations/../models/x.json", b"{}"),
])
def test_a_registration_that_can_never_succeed_is_answered_not_retried(
    oss: fake_oss.FakeOss, use_app, key: str, content: bytes | None
) -> None:
    app = use_app(make_oss_store(oss))
    if content is not None:
        oss.seed(key, content)
    [result] = invoke(oss_event(oss, key))  # no RetryLater: FC would only fail again
    assert result["Code"] in ("InvalidParameter", "InvalidBody", "InvalidRegistration")
    assert app.registry.store.list("models/") == []


def test_a_registration_from_another_bucket_is_refused(oss: fake_oss.FakeOss, use_app) -> None:
    use_app(make_oss_store(oss))
    oss.seed("registry/registrations/resnet.json", json.dumps(REQUEST).encode())
    event = oss_event(oss, "registry/registrations/resnet.json")
    event["events"][0]["oss"]["bucket"]["name"] = "someone-elses-bucket"
    [result] = invoke(event)
    assert result["Code"] == "InvalidRegistration"


def test_registrations_work_on_the_file_store_too(use_app, tmp_path: Path) -> None:
    use_app(FileStore(tmp_path))
    (tmp_path / "registrations").mkdir()
    (tmp_path / "registrations" / "resnet.json").write_text(json.dumps(REQUEST))
    [result] = invoke(oss_event(fake_oss.FakeOss(), "registrations/resnet.json"))
    assert listed() == [result["ModelId"]]
    assert json.loads((tmp_path / "registration-results" / "resnet.json").read_text())["ModelId"] == result["ModelId"]


def test_an_oversized_registration_is_refused_without_reading_it(oss: fake_oss.FakeOss, use_app) -> None:
    app = use_app(make_oss_store(oss), max_body_bytes=1024)
    oss.seed("registry/registrations/huge.json", b" " * 4096)
    event = oss_event(oss, "registry/registrations/huge.json")
    event["events"][0]["oss"]["object"]["size"] = 4096
    [result] = invoke(event)
    assert result["Code"] == "RequestTooLarge"
    assert not [r for r in oss.log if r.method == "GET" and r.key.endswith("huge.json")]
    assert json.loads(oss.objects["registry/registration-results/huge.json"])["Status"] == 413
    assert app.registry.store.list("models/") == []
