"""The catalog at scale: segments let a cold reader far behind a checkpoint read many commits a request, the
checkpoint interval grows with the state so that a commit's share of checkpoint bytes stays bounded, and a
checkpoint of the format before columns still loads."""
from __future__ import annotations

import hashlib
import json
import logging

import pytest

from handler.catalog import keys
from handler.catalog import state as state_module
from handler.catalog import workspace as catalog
from handler.catalog.state import State, checkpoint_of, encode, version_order
from handler.registry import records, upkeep
from handler.registry.listing import Query
from handler.registry.models import Registry
from handler.stores.base import Store
from tests.test_catalog import CountingStore
from tests.test_catalog_heals import names, normal, seed

K = catalog.CHECKPOINT_EVERY


def without_checkpoints(monkeypatch) -> None:
    """Checkpoints as far apart as they go: a cold reader starts from the log's beginning."""
    monkeypatch.setattr(catalog, "CHECKPOINT_BYTES_PER_COMMIT", 1)


def test_a_cold_reader_far_behind_reads_segments_rather_than_each_commit(any_store: Store, monkeypatch) -> None:
    without_checkpoints(monkeypatch)
    seed(any_store, 5 * K + 3)
    assert any_store.list(keys.checkpoints_prefix("ws")) == []
    assert len(any_store.list(f"{keys.CATALOG}ws/segments/")) == 5
    counting = CountingStore(any_store)
    assert names(Registry(counting)) == [f"m{i:04d}" for i in range(5 * K + 3)]
    # the hint and two log keys; a window of the log; segments, 16 a request; the log's tail and a look past it
    assert counting.calls["get"] <= 3 + catalog.COLD_WINDOW + catalog.SEGMENTS_AT_ONCE + catalog.COLD_WINDOW + catalog.LOOKAHEAD


def test_a_damaged_missing_or_unchained_segment_is_read_from_the_log_instead(any_store: Store, monkeypatch, caplog) -> None:
    without_checkpoints(monkeypatch)
    seed(any_store, 6 * K)
    any_store.put(keys.segment_key("ws", 2 * K), b'{"Seq": 3')  # truncated
    any_store.delete(keys.segment_key("ws", 3 * K))
    lines = any_store.get(keys.segment_key("ws", 5 * K)).splitlines()
    entry = json.loads(lines[4])
    entry["Prev"] = "0" * 32  # parses, but does not follow the commit before it
    any_store.put(keys.segment_key("ws", 5 * K), b"\n".join([*lines[:4], encode(entry), *lines[5:]]) + b"\n")
    with caplog.at_level(logging.WARNING):
        cold = Registry(any_store)
        assert names(cold) == [f"m{i:04d}" for i in range(6 * K)]
    assert "skipped the segment" in caplog.text
    cold.create(normal("after"))  # the state is the log's: the next commit lands
    assert "after" in names(Registry(any_store))


def test_the_checkpoint_interval_grows_with_the_state_so_a_commit_pays_a_bounded_share() -> None:
    state = State()
    interval = catalog.checkpoint_interval(state)
    assert interval == K
    extra = {"text": "x" * 900}
    for i in range(3000):
        record = records.build_record(records.normalized_request({"ModelName": f"m{i}", "ExtraInfo": extra}, "ws"),
                                      f"model-{i:05d}", 1_700_000_000 + i, None)
        state.apply(i + 1, [{"Put": {"Model": record, "Fingerprint": "f" * 64}}])
        grown = catalog.checkpoint_interval(state)
        assert grown >= interval  # it never shrinks while the state grows
        interval = grown
    assert interval > K
    assert len(checkpoint_of(state)) / interval <= 16 << 10


def checkpoint_of_format_1(state: State) -> bytes:
    """A checkpoint as the registry wrote it before columns: a line per model and per version, then the end line."""
    lines = [encode({"Seq": state.seq, "Models": len(state.models), "Format": 1, "Txn": state.txn})]
    for entry in sorted(state.models.values(), key=lambda e: e.id):
        lines.append(b'{"Fingerprint":%s,"Record":%s}' % (encode(entry.fingerprint), entry.raw))
        for version in sorted(state.versions.get(entry.id, {}).values(), key=lambda v: version_order(v.name)):
            head = encode({"ModelId": entry.id, "Created": version.created, "Fingerprint": version.fingerprint, "Token": version.token})
            lines.append(head[:-1] + b',"Record":%s}' % version.raw)
    body = b"\n".join(lines) + b"\n"
    return body + encode({"End": {"Lines": len(lines), "Sha256": hashlib.sha256(body).hexdigest()}}) + b"\n"


def test_a_workspace_whose_checkpoint_has_the_format_before_columns_loads_and_writes_on(any_store: Store) -> None:
    writer = seed(any_store, K + 2)
    writer.create(records.normalized_request({"ModelName": "labelled", "Tag": [{"Key": "team", "Value": "cv"}]}, "ws"))
    state = State.from_checkpoint(any_store.get(keys.checkpoint_key("ws", K)))
    any_store.delete(keys.checkpoint_key("ws", K))
    any_store.create(keys.checkpoint_key("ws", K), checkpoint_of_format_1(state))
    cold = Registry(any_store)
    assert names(cold) == sorted([f"m{i:04d}" for i in range(K + 2)] + ["labelled"])
    tagged, total = cold.list_models("ws", Query(tags=(("team", "cv"),)))
    assert total == 1 and tagged[0]["Labels"] == [{"Key": "team", "Value": "cv"}]
    for i in range(2 * K):
        cold.create(normal(f"n{i:04d}"))
    cold.settle()
    data = any_store.get(keys.checkpoint_key("ws", 2 * K))
    assert json.loads(data.split(b"\n", 1)[0])["Format"] == 2 and len(State.from_checkpoint(data).models) == 2 * K


class RacingStore(CountingStore):
    """A store whose first side-by-side read misses commit `late`, as reads do that go out just before it lands."""

    def __init__(self, inner: Store, late: str) -> None:
        super().__init__(inner)
        self.late, self.missed = late, False

    def get_many(self, keys_: list[str]) -> list[bytes | None]:  # type: ignore[override]
        found = super().get_many(keys_)
        if not self.missed and self.late in keys_ and len(keys_) > 1:
            self.missed = True
            found[keys_.index(self.late)] = None
        return found


def test_a_commit_that_lands_between_side_by_side_reads_is_not_a_gap(any_store: Store) -> None:
    seed(any_store, 6)
    racing = RacingStore(any_store, keys.log_key("ws", 4))
    cold = Registry(racing)
    assert names(cold) == [f"m{i:04d}" for i in range(6)] and racing.missed
    cold.create(normal("after"))
    assert "after" in names(Registry(any_store))


def parts_of(store: Store, seq: int) -> list[str]:
    return store.list(keys.checkpoint_parts_prefix("ws", seq))


def test_a_large_checkpoint_is_written_in_parts_and_read_in_the_round_trip_of_its_first_object(any_store: Store,
                                                                                                monkeypatch) -> None:
    monkeypatch.setattr(state_module, "PART_BYTES", 4096)  # a dozen models a part
    seed(any_store, 3 * K + 3)
    newest = parts_of(any_store, 3 * K)
    assert len(newest) > 3 and json.loads(any_store.get(keys.hint_key("ws")))["Parts"] == len(newest)
    counting = CountingStore(any_store)
    assert names(Registry(counting)) == [f"m{i:04d}" for i in range(3 * K + 3)]
    # the hint, two log keys; the checkpoint, its parts and a log key past it, side by side; the log's tail
    assert counting.calls["get"] <= 3 + 2 + len(newest) + catalog.COLD_WINDOW + catalog.LOOKAHEAD
    # the oldest of three went, its parts with it
    assert keys.checkpoint_key("ws", K) not in any_store.list(keys.checkpoints_prefix("ws")) and not parts_of(any_store, K)
    assert parts_of(any_store, 2 * K)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_checkpoint_with_a_missing_or_corrupt_part_is_skipped(any_store: Store, monkeypatch, caplog, damage: str) -> None:
    monkeypatch.setattr(state_module, "PART_BYTES", 4096)
    seed(any_store, 2 * K + 3)
    part = parts_of(any_store, 2 * K)[1]
    if damage == "missing":
        any_store.delete(part)
    else:
        data = bytearray(any_store.get(part))
        data[len(data) // 2] ^= 0x01
        any_store.put(part, bytes(data))
    with caplog.at_level(logging.WARNING):
        assert names(Registry(any_store)) == [f"m{i:04d}" for i in range(2 * K + 3)]
    assert f"skipped checkpoint {2 * K}" in caplog.text


def test_the_sweep_removes_the_parts_a_crash_left_without_their_checkpoint(any_store: Store, monkeypatch) -> None:
    monkeypatch.setattr(state_module, "PART_BYTES", 4096)
    seed(any_store, 3 * K + 3)
    orphan = keys.checkpoint_part_key("ws", K + 5, 1)  # a writer stopped after its parts, before the first object
    any_store.create(orphan, b"{}")
    any_store.create(keys.checkpoints_prefix("ws") + "notes.txt", b"not a checkpoint")  # left alone, not a crash
    kept_parts = parts_of(any_store, 3 * K)
    report = upkeep.sweep(Registry(any_store))
    assert orphan not in any_store.list(keys.all_checkpoint_parts_prefix("ws"))
    assert parts_of(any_store, 3 * K) == kept_parts and parts_of(any_store, 2 * K)  # the two newest, whole
    assert report["Checkpoints"] >= 1
    assert names(Registry(any_store)) == [f"m{i:04d}" for i in range(3 * K + 3)]


def test_a_checkpoint_s_parts_are_hashed_and_split_where_they_are_read_and_nothing_else_is() -> None:
    from handler.catalog.keys import checkpoint_key, checkpoint_part_key, hint_key, is_checkpoint_part, log_key, segment_key

    assert is_checkpoint_part(checkpoint_part_key("ws", 8192, 3))
    assert not any(is_checkpoint_part(key) for key in (checkpoint_key("ws", 8192), log_key("ws", 1), hint_key("ws"),
                                                         segment_key("ws", 32), "models/checkpoint-parts/x.jsonl"))


class ReadsStore(CountingStore):
    """Records which keys are read whole and which only in part."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.whole: list[str] = []
        self.heads: list[str] = []

    def get(self, key: str) -> bytes:
        self.whole.append(key)
        return super().get(key)

    def get_many(self, keys_: list[str]) -> list[bytes | None]:  # type: ignore[override]
        self.whole += keys_
        return super().get_many(keys_)

    def get_head(self, key: str, size: int) -> bytes:
        self.heads.append(key)
        return self.inner.get_head(key, size)


def test_a_cold_reader_asks_only_whether_the_first_commit_exists_never_for_all_of_it(any_store: Store) -> None:
    # A store moved from the layout before the catalog holds every model in its first commit: large, and read
    # by no one once a checkpoint follows it.
    seed(any_store, 40)  # commit 1, a checkpoint at 32, commits 33..40
    reads = ReadsStore(any_store)
    assert len(names(Registry(reads))) == 40
    first = keys.log_key("ws", 1)
    assert first in reads.heads and first not in reads.whole
    assert keys.log_key("ws", 33) in reads.whole  # the commits after the checkpoint are read whole


def test_an_empty_first_commit_is_there_for_a_cold_reader_on_every_store(any_store: Store) -> None:
    # Its head is empty (OSS answers a range over an empty object 416): it exists, and the checkpoint after it decides.
    seed(any_store, 40)
    any_store.put(keys.log_key("ws", 1), b"")
    assert len(names(Registry(any_store))) == 40
