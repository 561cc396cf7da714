"""The catalog heals what can be healed and fails closed on what cannot be trusted: a failed group commit
acknowledges nobody, damaged or lagging derived files cost a LIST and a few reads, a gap or a newer format in
the log is a clear 503, and versioning switched on later is noticed."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from handler.api.app import App
from handler.api.http import Request
from handler.catalog import keys
from handler.catalog import workspace as catalog
from handler.catalog.workspace import Workspace
from handler.errors import CatalogDamaged, CatalogFormatTooNew
from handler.registry import records, upkeep
from handler.registry.listing import Query
from handler.registry.models import Registry
from handler.stores import oss as oss_store
from handler.stores.base import Misconfigured, Store
from testing.fake_oss import FakeOss
from tests.conftest import make_oss_store
from tests.test_catalog import CountingStore

K = catalog.CHECKPOINT_EVERY


def normal(name: str) -> dict[str, Any]:
    return records.normalized_request({"ModelName": name}, "ws")


def names(registry: Registry) -> list[str]:
    models, _ = registry.list_models("ws", Query(page_size=100_000))
    return sorted(m["ModelName"] for m in models)


def seed(store: Store, count: int) -> Registry:
    """A workspace of `count` models, one commit each, its checkpoints written."""
    writer = Registry(store)
    for i in range(count):
        writer.create(normal(f"m{i:04d}"))
        writer.workspace("ws").settle()
    return writer


def checkpoints(store: Store) -> list[str]:
    return store.list(keys.checkpoints_prefix("ws"))


# --- 1. no acknowledged write is lost ----------------------------------------------------------------

def test_every_caller_of_a_batch_that_failed_with_a_non_storage_error_fails(any_store: Store, monkeypatch) -> None:
    workspace = Workspace(any_store, "ws")
    workspace.read()
    workspace._damaged = True  # the next commit catches up first: that read fails with a bug, not a store error
    monkeypatch.setattr(workspace, "read", lambda: (_ for _ in ()).throw(RuntimeError("a bug")))
    outcomes: list[Any] = []

    def create(name: str) -> None:
        def plan(draft: Any) -> str:
            draft.put(records.build_record(normal(name), f"model-{name}", 0, None), "fp")
            return name
        try:
            outcomes.append(workspace.commit(plan))
        except RuntimeError as e:
            outcomes.append(e)

    with workspace._commit_lock:  # both callers queue up, then one commits the batch of both
        threads = [threading.Thread(target=create, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        while len(workspace._queue) < 2:
            time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert len(outcomes) == 2 and all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    assert any_store.list(keys.log_prefix("ws")) == []


# --- 2. derived files heal ---------------------------------------------------------------------------

def damage_truncated_checkpoint(store: Store, newest: int) -> None:
    key = keys.checkpoint_key("ws", newest)
    store.put(key, store.get(key)[: len(store.get(key)) // 2])


def damage_garbage_hint(store: Store, newest: int) -> None:
    store.put(keys.hint_key("ws"), b"\x00not json")


def damage_dangling_hint(store: Store, newest: int) -> None:
    store.put(keys.hint_key("ws"), json.dumps({"Seq": newest + K * 1000}).encode())


def damage_corrupt_checkpoint(store: Store, newest: int) -> None:
    key = keys.checkpoint_key("ws", newest)
    data = bytearray(store.get(key))
    data[len(data) // 2] ^= 0x01  # one bit inside a record: it still parses, the checksum does not match
    store.put(key, bytes(data))


@pytest.mark.parametrize("damage", [damage_truncated_checkpoint, damage_garbage_hint, damage_dangling_hint,
                                    damage_corrupt_checkpoint])
def test_a_damaged_derived_file_costs_a_cold_instance_a_list_and_a_few_reads(any_store: Store, damage, caplog) -> None:
    seed(any_store, 2 * K + 3)
    newest = max(int(key.rpartition("/")[2][:20]) for key in checkpoints(any_store))
    damage(any_store, newest)
    counting = CountingStore(any_store)
    cold = Registry(counting)
    assert names(cold) == [f"m{i:04d}" for i in range(2 * K + 3)]
    assert counting.calls["list"] <= 1
    assert counting.calls["get"] <= 4 + K + catalog.COLD_WINDOW + catalog.LOOKAHEAD  # never the whole log again


def test_a_lagging_hint_does_not_make_cold_instances_replay_the_log(any_store: Store) -> None:
    writer = seed(any_store, K + 1)
    old = any_store.get(keys.checkpoint_key("ws", K))
    for i in range(catalog.LAGGING * K + K):
        writer.create(normal(f"n{i:04d}"))
    writer.settle()
    any_store.put(keys.checkpoint_key("ws", K), old)  # kept, and named by a hint a slow checkpointer wrote late
    any_store.put(keys.hint_key("ws"), json.dumps({"Seq": K}).encode())
    counting = CountingStore(any_store)
    assert len(names(Registry(counting))) == catalog.LAGGING * K + 2 * K + 1
    assert counting.calls["get"] <= 4 + K + catalog.COLD_WINDOW + catalog.LOOKAHEAD


def test_the_sweep_keeps_the_checkpoint_the_hint_names(any_store: Store) -> None:
    seed(any_store, 4 * K + 1)
    any_store.create(keys.checkpoint_key("ws", 1), any_store.get(keys.checkpoint_key("ws", 4 * K)))  # an old one
    any_store.put(keys.hint_key("ws"), json.dumps({"Seq": 1}).encode())
    upkeep.sweep(Registry(any_store))
    assert keys.checkpoint_key("ws", 1) in checkpoints(any_store)


def test_many_writers_write_one_checkpoint_per_interval(any_store: Store) -> None:
    created: list[str] = []

    class Recording(CountingStore):
        def create(self, key: str, data: bytes) -> None:
            super().create(key, data)
            if "/checkpoints/" in key:
                created.append(key)

    writers = [Registry(Recording(any_store)) for _ in range(4)]
    for i in range(8 * K):
        writers[i % 4].create(normal(f"m{i}"))
    for writer in writers:
        writer.settle()
    assert len(created) <= 8 and len(set(created)) == len(created)


# --- 3. fail closed --------------------------------------------------------------------------------

@pytest.mark.parametrize("missing", [3, 1])  # 1: a cold reader of a log too short for checkpoints asks only its heads
def test_a_gap_in_the_log_is_detected_and_never_committed_into(any_store: Store, missing: int) -> None:
    seed(any_store, 5)
    any_store.delete(keys.log_key("ws", missing))
    app = App(Registry(any_store), default_workspace="ws")
    listed = app.handle(Request("GET", "/api/v1/models"))
    assert (listed.status, listed.body["Code"]) == (503, "CatalogDamaged")
    created = app.handle(Request("POST", "/api/v1/models", json.dumps({"ModelName": "new"}).encode()))
    assert (created.status, created.body["Code"]) == (503, "CatalogDamaged")
    assert keys.log_key("ws", missing) not in any_store.list(keys.log_prefix("ws"))


def test_a_warm_instance_never_acknowledges_a_commit_into_a_gap(any_store: Store) -> None:
    warm = Registry(any_store)
    warm.create(normal("a"))
    warm.create(normal("b"))  # warm holds seq 2
    other = Registry(any_store)
    other.create(normal("c"))
    other.create(normal("d"))  # seqs 3 and 4
    any_store.delete(keys.log_key("ws", 3))
    with pytest.raises(CatalogDamaged):
        warm.create(normal("e"))


@pytest.mark.parametrize("where", ["entry", "change"])
def test_a_commit_of_a_newer_format_is_refused_and_nothing_of_it_applied(any_store: Store, where: str) -> None:
    seed(any_store, 2)
    record = records.build_record(normal("future"), "model-future", 0, None)
    entry: dict[str, Any] = {"Seq": 3, "Txn": "t", "Changes": [{"Put": {"Model": record, "Fingerprint": "f"}}]}
    if where == "entry":
        entry["Format"] = 99
    else:
        entry["Changes"].append({"Rename": {"ModelId": "x"}})
    any_store.create(keys.log_key("ws", 3), json.dumps(entry).encode())
    app = App(Registry(any_store), default_workspace="ws")
    listed = app.handle(Request("GET", "/api/v1/models"))
    assert (listed.status, listed.body["Code"]) == (503, "CatalogFormatUnsupported")
    assert app.registry.workspace("ws").model("model-future")[0] is None
    created = app.handle(Request("POST", "/api/v1/models", json.dumps({"ModelName": "new"}).encode()))
    assert created.status == 503 and keys.log_key("ws", 4) not in any_store.list(keys.log_prefix("ws"))


def test_a_checkpoint_of_a_newer_format_is_refused(any_store: Store) -> None:
    seed(any_store, K + 1)
    newest = keys.checkpoint_key("ws", K)
    data = any_store.get(newest)
    header, _, rest = data.partition(b"\n")
    any_store.put(newest, json.dumps({**json.loads(header), "Format": 99}).encode() + b"\n" + rest)
    with pytest.raises(CatalogFormatTooNew):
        names(Registry(any_store))


def test_versioning_switched_on_later_is_noticed_within_a_minute_and_refuses_writes_from_then_on(
        oss: FakeOss, monkeypatch) -> None:
    store = make_oss_store(oss)
    registry = Registry(store)
    registry.create(normal("before"))
    oss.versioning = "Enabled"
    now = time.monotonic()
    monkeypatch.setattr(oss_store.time, "monotonic", lambda: now + oss_store.VERSIONING_RECHECK + 1)
    with pytest.raises(Misconfigured):
        registry.create(normal("after"))
    oss.versioning = None  # once seen, refused for good: versioning cannot really be turned off
    with pytest.raises(Misconfigured):
        registry.create(normal("later"))
    assert names(Registry(make_oss_store(oss))) == ["before"]
