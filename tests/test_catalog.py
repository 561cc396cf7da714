"""The catalog's guarantees: every instance sees every acknowledged change, concurrent changes are never
lost, reads are cheap on a warm instance, cold starts are bounded, and the older layout is read as is."""
from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from handler.api.app import App
from handler.api.http import Request
from handler.catalog import keys
from handler.catalog import workspace as catalog
from handler.catalog.keys import record_key
from handler.errors import ModelNameConflict, ModelNotFound, QuotaExceeded
from handler.registry import records, upkeep
from handler.registry.listing import Query
from handler.registry.models import Registry
from handler.stores.base import Store
from testing.fake_oss import FakeOss
from tests.conftest import make_oss_store


class CountingStore(Store):
    """Passes every call to a store and counts them by method."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.calls = inner, Counter[str]()

    def create(self, key: str, data: bytes) -> None:
        self.calls["create"] += 1
        self.inner.create(key, data)

    def get(self, key: str) -> bytes:
        self.calls["get"] += 1
        return self.inner.get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls["get"] += len(keys)
        return self.inner.get_many(keys)

    def put(self, key: str, data: bytes) -> None:
        self.calls["put"] += 1
        self.inner.put(key, data)

    def delete(self, key: str) -> None:
        self.calls["delete"] += 1
        self.inner.delete(key)

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        self.calls["list"] += 1
        return self.inner.list(prefix, start_after, limit)

    def total(self) -> int:
        return sum(self.calls.values())


def normal(name: str, workspace: str = "ws", **fields: Any) -> dict[str, Any]:
    return records.normalized_request({"ModelName": name, **fields}, workspace)


def names(registry: Registry, workspace: str = "ws", **query: str) -> list[str]:
    models, total = registry.list_models(workspace, Query.parse({"PageSize": "100", **query}))
    assert total == len(models)
    return [m["ModelName"] for m in models]


def test_every_instance_sees_every_acknowledged_change_at_once(any_store: Store) -> None:
    a, b = Registry(any_store), Registry(any_store)
    assert names(b) == []  # b is warm before a changes anything
    model_id, _ = a.create(normal("first", Domain="nlp"))
    assert names(b) == ["first"] and b.get(model_id)["Domain"] == "nlp"
    b.update(model_id, {"Domain": "cv"})
    assert a.get(model_id)["Domain"] == "cv" and names(a, Domain="cv") == ["first"]
    a.add_labels(model_id, [{"Key": "k", "Value": "v"}])
    assert b.get(model_id)["Labels"] == [{"Key": "k", "Value": "v"}]
    b.delete(model_id)
    with pytest.raises(ModelNotFound):
        a.get(model_id)
    assert names(a) == []
    second, created = a.create(normal("first"))
    assert created and second != model_id and b.get(second)["ModelName"] == "first"


def test_concurrent_updates_of_different_fields_from_two_instances_both_apply(any_store: Store) -> None:
    a, b = Registry(any_store), Registry(any_store)
    model_id, _ = a.create(normal("shared"))
    b.get(model_id)  # both warm
    barrier = threading.Barrier(2)

    def update(registry: Registry, fields: dict[str, Any]) -> None:
        barrier.wait()
        registry.update(model_id, fields)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda args: update(*args), [(a, {"Domain": "nlp"}), (b, {"Task": "ner"})]))
    for registry in (a, b, Registry(any_store)):
        model = registry.get(model_id)
        assert (model["Domain"], model["Task"]) == ("nlp", "ner")
    a.settle()  # each writer's read after its answer, which rewrites a record another instance's write overtook
    assert json.loads(any_store.get(record_key(model_id))) == a.get(model_id)


def test_many_writers_on_one_model_leave_its_record_current(any_store: Store) -> None:
    instances = [Registry(any_store) for _ in range(4)]
    model_id, _ = instances[0].create(normal("busy"))

    def work(i: int) -> None:
        registry = instances[i % 4]
        registry.update(model_id, {"OrderNumber": i})
        registry.add_labels(model_id, [{"Key": f"k{i}", "Value": "v"}])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(16)))
    final = Registry(any_store).get(model_id)
    assert {label["Key"] for label in final["Labels"]} == {f"k{i}" for i in range(16)}
    instances[0].settle()  # each writer's read after its answer, which rewrites a record another instance's write overtook
    assert json.loads(any_store.get(record_key(model_id))) == final


def _rename_racing_create(store: Store, attempt: int) -> list[str]:
    a, b = Registry(store), Registry(store)
    model_id, _ = a.create(normal(f"old-{attempt}"))
    names(b)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def rename() -> None:
        barrier.wait()
        try:
            a.update(model_id, {"ModelName": f"new-{attempt}"})
            outcomes.append("renamed")
        except ModelNameConflict:
            outcomes.append("rename refused")

    def create() -> None:
        barrier.wait()
        try:
            b.create(normal(f"new-{attempt}", Domain="x"))
            outcomes.append("created")
        except ModelNameConflict:
            outcomes.append("create refused")

    threads = [threading.Thread(target=rename), threading.Thread(target=create)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def test_a_rename_racing_a_create_of_that_name_leaves_one_winner(any_store: Store) -> None:
    for attempt in range(5):
        assert _rename_racing_create(any_store, attempt) in (["create refused", "renamed"], ["created", "rename refused"])
        assert names(Registry(any_store), ModelName=f'"new-{attempt}"') == [f"new-{attempt}"]


def test_concurrent_creates_on_one_instance_share_commits(any_store: Store) -> None:
    registry = Registry(any_store)
    with ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(lambda i: registry.create(normal(f"m{i}"))[0], range(100)))
    assert len(set(ids)) == 100 and sorted(names(Registry(any_store))) == sorted(f"m{i}" for i in range(100))
    commits = any_store.list("catalog/ws/log/")
    assert len(commits) <= 100  # equal when every create happened to run alone


def test_a_warm_instance_reads_once_and_pays_one_more_request_per_change_made_elsewhere(any_store: Store) -> None:
    writer = Registry(any_store)
    ids = [writer.create(normal(f"m{i}"))[0] for i in range(5)]
    counting = CountingStore(any_store)
    reader = Registry(counting)
    names(reader)
    reader.get(ids[0])
    counting.calls.clear()
    assert names(reader, Query="m") and counting.total() == 1  # is log/<seq + 1> there? no: current
    counting.calls.clear()
    assert reader.get(ids[1]) is not None and counting.total() == 2  # the record (which workspace?) and the probe
    counting.calls.clear()
    reader.get(ids[1])
    assert counting.total() == 1
    for change in range(3):
        writer.update(ids[0], {"OrderNumber": change})
        counting.calls.clear()
        names(reader)
        assert counting.total() == 2  # the new commit, then the probe that finds nothing after it


def test_a_cold_instance_starts_from_a_checkpoint_in_few_requests(any_store: Store) -> None:
    writer = Registry(any_store)
    for i in range(2 * catalog.CHECKPOINT_EVERY + 5):
        writer.create(normal(f"m{i}"))
        writer.workspace("ws").settle()
    assert any_store.list("catalog/ws/checkpoints/")
    counting = CountingStore(any_store)
    cold = Registry(counting)
    assert len(names(cold)) == 2 * catalog.CHECKPOINT_EVERY + 5
    assert counting.total() <= 2 + catalog.CHECKPOINT_EVERY + catalog.COLD_WINDOW
    assert counting.calls["list"] == 0


def test_models_written_by_the_layout_before_the_catalog_are_read_as_they_are(any_store: Store) -> None:
    """The layout of earlier versions: a record, an empty marker per workspace, and a name claim."""
    kept, lost = {}, "model-0000000000lost000000000000"
    for i, name in enumerate(["legacy-a", "legacy-b"]):
        model_id = f"model-00000000{i}abcdefghijklmnop"
        normal_request = normal(name, "42", Domain="nlp")
        record = records.build_record(normal_request, model_id, 1_700_000_000 + i, None)
        any_store.create(record_key(model_id), records.record_json(record))
        any_store.create(f"workspaces/42/models/{model_id}", b"")
        claim = {"ModelId": model_id, "Fingerprint": records.fingerprint(normal_request)}
        any_store.create(f"names/42/{hashlib.sha256(name.encode()).hexdigest()}.json", records.canonical_json(claim))
        kept[model_id] = record
    # A create that crashed before its claim: a record and a marker, never a model.
    any_store.create(record_key(lost), records.record_json(records.build_record(normal("legacy-a", "42"), lost, 0, None)))
    any_store.create(f"workspaces/42/models/{lost}", b"")

    registry = Registry(any_store)
    for model_id, record in kept.items():
        assert registry.get(model_id) == record
    with pytest.raises(ModelNotFound):
        registry.get(lost)
    assert names(registry, "42") == ["legacy-a", "legacy-b"]
    assert registry.create(normal("legacy-a", "42", Domain="nlp")) == ("model-000000000abcdefghijklmnop", False)
    with pytest.raises(ModelNameConflict):
        registry.create(normal("legacy-b", "42", Domain="cv"))
    registry.update("model-000000001abcdefghijklmnop", {"Task": "ner"})
    assert Registry(any_store).get("model-000000001abcdefghijklmnop")["Task"] == "ner"
    registry.delete("model-000000000abcdefghijklmnop")
    assert names(Registry(any_store), "42") == ["legacy-b"]


def test_two_instances_importing_the_older_layout_at_once_agree(any_store: Store) -> None:
    model_id = "model-000000000abcdefghijklmnop"
    normal_request = normal("legacy", "42")
    any_store.create(record_key(model_id), records.record_json(records.build_record(normal_request, model_id, 0, None)))
    any_store.create(f"workspaces/42/models/{model_id}", b"")
    any_store.create(f"names/42/{hashlib.sha256(b'legacy').hexdigest()}.json",
                     records.canonical_json({"ModelId": model_id, "Fingerprint": records.fingerprint(normal_request)}))
    with ThreadPoolExecutor(4) as pool:
        seen = list(pool.map(lambda _: names(Registry(any_store), "42"), range(4)))
    assert seen == [["legacy"]] * 4
    assert len(any_store.list("catalog/42/log/")) == 1


def test_a_deleted_model_is_gone_for_every_operation(any_store: Store) -> None:
    registry = Registry(any_store)
    model_id, _ = registry.create(normal("gone"))
    registry.delete(model_id)
    for operation in (lambda: registry.update(model_id, {"Domain": "x"}), lambda: registry.delete(model_id),
                      lambda: registry.add_labels(model_id, [{"Key": "k", "Value": "v"}]),
                      lambda: registry.remove_labels(model_id, ["k"])):
        with pytest.raises(ModelNotFound):
            operation()


def test_a_versioned_bucket_refuses_writes_with_a_clear_error_and_writes_nothing(oss: FakeOss) -> None:
    oss.versioning = "Enabled"
    app = App(Registry(make_oss_store(oss)), default_workspace="ws")
    answer = app.handle(Request("POST", "/api/v1/models", json.dumps({"ModelName": "m"}).encode()))
    assert (answer.status, answer.body["Code"]) == (503, "StoreMisconfigured")
    assert "versioning" in answer.body["Message"]
    assert oss.objects == {}
    listed = app.handle(Request("GET", "/api/v1/models"))
    assert (listed.status, listed.body["TotalCount"]) == (200, 0)


def test_an_answer_that_writes_nothing_is_given_on_the_newest_state(any_store: Store) -> None:
    """A refusal or a no-op commits nothing, so nothing proves its plan read the newest state: it reads first."""
    a, b = Registry(any_store), Registry(any_store)
    names(b)  # b is warm, and about to fall behind
    model_id, _ = a.create(normal("m", Domain="x"))
    a.update(model_id, {"ModelDescription": "b"})
    b.update(model_id, {"ModelDescription": "b"})  # the same value: a no-op, but only on the newest state
    a.update(model_id, {"ModelDescription": "c"})
    b.update(model_id, {"ModelDescription": "b"})  # not a no-op any more
    assert Registry(any_store).get(model_id)["ModelDescription"] == "b"
    renamed, _ = a.create(normal("old"))
    a.update(renamed, {"ModelName": "new"})
    b.create(normal("old", Domain="free again"))  # the name was freed elsewhere: no 409
    a.delete(model_id)
    again, created = b.create(normal("m", Domain="x"))  # the same request again, after a delete elsewhere
    assert created and again != model_id and Registry(any_store).get(again) is not None
    with pytest.raises(ModelNotFound):
        b.delete(model_id)


def test_a_workspace_holds_records_up_to_its_bound_and_refuses_more_with_nothing_written(any_store: Store) -> None:
    registry = Registry(any_store, max_workspace_bytes=20_000)
    doc = "x" * 4000
    ids = [registry.create(normal(f"m{i}", ModelDoc=doc))[0] for i in range(4)]
    with pytest.raises(QuotaExceeded, match="limit is 20000"):
        registry.create(normal("one-too-many", ModelDoc=doc))
    with pytest.raises(QuotaExceeded):
        registry.update(ids[0], {"ExtraInfo": {"big": doc * 2}})
    registry.update(ids[0], {"ModelDoc": ""})  # what shrinks a workspace is always allowed
    assert sorted(names(Registry(any_store))) == [f"m{i}" for i in range(4)]
    assert len(any_store.list("models/")) == 4


def test_an_instance_forgets_the_least_recently_used_workspaces_beyond_its_memory_bound(any_store: Store) -> None:
    registry = Registry(any_store, max_workspace_bytes=10_000)
    for workspace in ("w1", "w2", "w3"):
        for i in range(4):
            registry.create(normal(f"m{i}", workspace, ModelDoc="x" * 1000))
    assert 2 <= len(registry._workspaces) and sum(w.memory for w in registry._workspaces.values()) <= 20_000
    assert sorted(names(registry, "w1")) == [f"m{i}" for i in range(4)]  # forgotten, then read again


def test_only_the_newest_checkpoints_are_kept(any_store: Store) -> None:
    registry = Registry(any_store)
    for i in range(4 * catalog.CHECKPOINT_EVERY + 1):
        registry.create(normal(f"m{i}"))
        registry.workspace("ws").settle()
    kept = any_store.list("catalog/ws/checkpoints/")
    assert len(kept) == catalog.KEPT_CHECKPOINTS
    hint = json.loads(any_store.get(keys.hint_key("ws")))["Seq"]
    assert keys.checkpoint_key("ws", hint) in kept
    any_store.create(keys.checkpoint_key("ws", 3), b'{"Seq":3,"Models":0}\n')  # left by another instance
    assert upkeep.sweep(Registry(any_store))["Checkpoints"] == 1
    assert any_store.list("catalog/ws/checkpoints/") == kept


def test_a_retry_that_changes_nothing_writes_nothing_when_the_record_is_current(any_store: Store) -> None:
    counting = CountingStore(any_store)
    registry = Registry(counting)
    model_id, _ = registry.create(normal("same"))
    registry.update(model_id, {"Domain": "nlp"})
    counting.calls.clear()
    registry.update(model_id, {"Domain": "nlp"})
    assert counting.calls["put"] == counting.calls["create"] == 0
