"""The sweep repairs: record files that disagree with the catalog are written again and orphans removed, each
counted exactly; it works in bounded slices that resume; temporary files never leak; a model whose record file
is gone is still gettable; a delete on a full disk either works or says the disk is full."""
from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from handler.catalog import workspace as catalog
from handler.catalog.keys import record_key, version_record_key
from handler.errors import ModelNotFound
from handler.registry import records, repair, upkeep
from handler.registry.listing import Query
from handler.registry.models import Registry
from handler.registry.versions import Versions
from handler.stores.base import StorageFull, Store, Unavailable, time_budget
from handler.stores.file import FileStore
from tests.conftest import invoke
from tests.test_catalog import CountingStore

URI = "oss://bucket.oss-cn-hangzhou.aliyuncs.com/models/m/"
K = catalog.CHECKPOINT_EVERY
COLD_READ = 5 + K + catalog.COLD_WINDOW + catalog.LOOKAHEAD  # the most a cold instance reads of one workspace


def normal(name: str, workspace: str = "ws") -> dict[str, Any]:
    return records.normalized_request({"ModelName": name}, workspace)


def old_id() -> str:
    return records.new_model_id(int((time.time() - 3600) * 1000))


def assert_records_match_the_catalog(store: Store, workspaces: Sequence[str]) -> None:
    """Every model and version the catalog holds has its record file, byte for byte, and no other file is left."""
    registry = Registry(store)
    expected: dict[str, bytes] = {}
    for workspace_id in workspaces:
        workspace = registry.workspace(workspace_id)
        workspace.read()
        for entry in workspace.models_after("", 1 << 30):
            expected[record_key(entry.id)] = entry.raw
            for version in workspace.versions_of(entry.id):
                expected[version_record_key(entry.id, version.id)] = version.raw
    assert sorted(store.list("models/")) == sorted(expected)
    assert all(store.get(key) == data for key, data in expected.items())


def sweep_to_the_end(store: Store, **options: Any) -> list[dict[str, Any]]:
    """Sweep (a new instance each time, as the command line is) until a pass ends; every invocation's report."""
    reports: list[dict[str, Any]] = []
    while not reports or not reports[-1]["Done"]:
        reports.append(upkeep.sweep(Registry(store), **options))
        assert len(reports) < 200
    return reports


class RecordWritesFail(CountingStore):
    """A crash between a commit and its record write: every write of a record file fails."""

    def put(self, key: str, data: bytes) -> None:
        if key.startswith("models/"):
            raise Unavailable("record write lost")
        super().put(key, data)


# --- 1, 3: stale, missing and orphan records, counted exactly ----------------------------------------------

def test_the_sweep_rewrites_stale_and_missing_records_removes_orphans_and_counts_each(any_store: Store) -> None:
    registry = Registry(any_store)
    versions = Versions(registry)
    ids = [registry.create(normal(f"m{i}"))[0] for i in range(6)]
    for model_id in ids:
        versions.create(model_id, {"Uri": URI, "VersionName": "1.0.0"})
        versions.create(model_id, {"Uri": URI, "VersionName": "2.0.0"})
    # A late record PUT: an older writer's bytes land after a newer commit's record.
    before = any_store.get(record_key(ids[0]))
    registry.update(ids[0], {"ModelDescription": "newer"})
    any_store.put(record_key(ids[0]), before)
    version_before = any_store.get(version_record_key(ids[1], "1.0.0"))
    versions.update(ids[1], "1.0.0", {"VersionDescription": "newer"})
    any_store.put(version_record_key(ids[1], "1.0.0"), version_before)
    # A crash between a commit and its record write (an update of a model, of a version).
    crashing = Registry(RecordWritesFail(any_store))
    with pytest.raises(Unavailable):
        crashing.update(ids[2], {"ModelDescription": "committed, record lost"})
    with pytest.raises(Unavailable):
        Versions(crashing).update(ids[2], "2.0.0", {"VersionDescription": "committed, record lost"})
    # Deleted by hand: a model's record, two versions' records.
    any_store.delete(record_key(ids[3]))
    any_store.delete(version_record_key(ids[4], "1.0.0"))
    any_store.delete(version_record_key(ids[5], "2.0.0"))
    # Orphans: the record of a create that never committed (old enough), and a record of a version that is gone.
    orphan = old_id()
    any_store.create(record_key(orphan), records.record_json(records.build_record(normal("orphan"), orphan, 0, None)))
    any_store.put(version_record_key(ids[0], "9.9.9"), b"{}")

    summary = upkeep.sweep(Registry(any_store))
    assert summary["Done"] and "Stopped" not in summary
    assert (summary["Rewritten"], summary["Restored"], summary["Removed"]) == (2, 1, [orphan])
    assert (summary["VersionsRewritten"], summary["VersionsRestored"], summary["VersionsRemoved"]) == (2, 2, 1)
    assert_records_match_the_catalog(any_store, ["ws"])
    again = upkeep.sweep(Registry(any_store))  # nothing left to do, and nothing counted
    assert (again["Rewritten"], again["Restored"], again["Removed"], again["VersionsRewritten"],
            again["VersionsRestored"], again["VersionsRemoved"]) == (0, 0, [], 0, 0, 0)


def test_the_sweep_removes_the_records_of_a_model_whose_delete_was_cut_short(any_store: Store, monkeypatch) -> None:
    made_an_hour_ago = old_id()  # older than any request
    monkeypatch.setattr(records, "new_model_id", lambda: made_an_hour_ago)
    registry = Registry(any_store)
    model_id = registry.create(normal("m"))[0]
    Versions(registry).create(model_id, {"Uri": URI, "VersionName": "1.0.0"})
    kept = {key: any_store.get(key) for key in (record_key(model_id), version_record_key(model_id, "1.0.0"))}
    registry.delete(model_id)
    registry.settle()  # the reads that follow earlier answers are done: nothing but the sweep touches the files now
    for key, data in kept.items():  # as if the instance had stopped right after the commit
        any_store.put(key, data)
    summary = upkeep.sweep(Registry(any_store))
    assert (summary["Removed"], summary["VersionsRemoved"]) == ([model_id], 1)
    assert any_store.list("models/") == []


# --- issue: a listed model is always gettable ---------------------------------------------------------------

def test_a_model_whose_record_file_was_deleted_is_still_gettable_and_its_record_comes_back(any_store: Store) -> None:
    registry = Registry(any_store)
    model_id = registry.create(normal("m", "a"))[0]
    registry.create(normal("other", "b"))
    record = any_store.get(record_key(model_id))
    any_store.delete(record_key(model_id))
    assert registry.get(model_id)["ModelId"] == model_id  # the instance that holds the workspace
    any_store.delete(record_key(model_id))
    cold = Registry(any_store)
    models, _ = cold.list_models("a", Query(page_size=10))
    assert [m["ModelId"] for m in models] == [model_id]
    assert cold.get(model_id)["ModelId"] == model_id  # listed, so gettable
    any_store.delete(record_key(model_id))
    assert Registry(any_store).get(model_id)["ModelId"] == model_id  # an instance that holds nothing yet
    assert any_store.get(record_key(model_id)) == record  # written again for every other instance
    for damaged in (b"\x00not json", b"[]", b'{"WorkspaceId": 7}'):  # changed by hand: not a record any more
        any_store.put(record_key(model_id), damaged)
        assert Registry(any_store).get(model_id)["ModelId"] == model_id
        assert any_store.get(record_key(model_id)) == record


def test_an_unknown_model_id_looks_through_the_workspaces_at_most_once_a_minute(any_store: Store) -> None:
    Registry(any_store).create(normal("m"))
    counting = CountingStore(any_store)
    registry = Registry(counting)
    for _ in range(2):
        with pytest.raises(ModelNotFound):
            registry.get(records.new_model_id())
    assert counting.calls["list"] == 2  # the first miss: the first workspace, then none after it
    registry._search_after = 0.0  # a minute later
    with pytest.raises(ModelNotFound):
        registry.get(records.new_model_id())
    assert counting.calls["list"] == 4


# --- 4: bounded slices, resumable, never a listing of a log --------------------------------------------------

class Recording(CountingStore):
    """Counts requests and keeps the listings asked for."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.listed: list[tuple[str, int | None]] = []

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        self.listed.append((prefix, limit))
        return super().list(prefix, start_after, limit)

    def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.delete(key)

    def clean(self, older_than: float) -> int:
        return self.inner.clean(older_than)


def seed_many(store: Store) -> tuple[list[str], list[str]]:
    """Two workspaces, 3K + 5 commits in one: some models with a version."""
    registry = Registry(store)
    big = [registry.create(normal(f"m{i:03d}", "big"))[0] for i in range(3 * K)]
    small = [registry.create(normal(f"s{i}", "small"))[0] for i in range(3)]
    for model_id in big[:5]:
        Versions(registry).create(model_id, {"Uri": URI, "VersionName": "1.0.0"})
    registry.settle()
    return big, small


def test_the_sweep_works_in_bounded_slices_that_together_finish_the_pass(any_store: Store) -> None:
    big, small = seed_many(any_store)
    damaged = [big[0], big[40], big[-1], small[1]]  # spread over the pass: records deleted by hand
    for model_id in damaged:
        any_store.delete(record_key(model_id))
    limit = 20
    reports: list[dict[str, Any]] = []
    while not reports or not reports[-1]["Done"]:
        recording = Recording(any_store)
        reports.append(upkeep.sweep(Registry(recording), limit=limit))
        assert recording.total() <= 2 * limit + 2 * 4 + COLD_READ + 3 * len(damaged), recording.calls
        # Never a listing of a whole catalog or log: workspaces are found one key at a time; only a workspace's
        # checkpoints and their parts are listed whole.
        assert all(limit_ is not None or "/checkpoints/" in prefix or "/checkpoint-parts/" in prefix
                   for prefix, limit_ in recording.listed)
        assert len(reports) < 100
    records_and_workspaces = len(big) + len(small) + 5 + 2
    assert len(reports) >= records_and_workspaces // limit  # several invocations, each bounded
    assert sum(r["Restored"] for r in reports) == len(damaged)
    assert not any_store.list("upkeep/")  # the pass ended: the next one starts from the beginning
    assert_records_match_the_catalog(any_store, ["big", "small"])


class FailingAfter(Recording):
    """Storage that stops answering after `budget` requests (an invocation cut short)."""

    def __init__(self, inner: Store, budget: int) -> None:
        super().__init__(inner)
        self.budget = budget

    def _spend(self) -> None:
        if self.total() >= self.budget:
            raise Unavailable("gone")

    def get(self, key: str) -> bytes:
        self._spend()
        return super().get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._spend()
        return super().get_many(keys)

    def put(self, key: str, data: bytes) -> None:
        self._spend()
        super().put(key, data)


def test_an_interrupted_sweep_resumes_where_it_stopped(any_store: Store) -> None:
    big, small = seed_many(any_store)
    first = upkeep.sweep(Registry(any_store), limit=60)
    assert not first["Done"] and 0 < first["Checked"] < len(big)
    cut = upkeep.sweep(Registry(FailingAfter(any_store, COLD_READ + 30)))  # the storage goes away mid-pass
    assert cut["Stopped"] == "Unavailable" and not cut["Done"]
    any_store.delete(record_key(small[-1]))  # damage beyond where it stopped
    any_store.delete(record_key(big[0]))  # and before: for the next pass
    rest = sweep_to_the_end(any_store)
    # Resumed, not started again: at most the slice whose cursor the storage failure kept from being saved is done twice.
    once = len(big) + len(small) + 2 * 5  # every record file the catalog names; version records again among orphans
    assert 0 <= first["Checked"] + cut["Checked"] + sum(r["Checked"] for r in rest) - once <= repair.SLICE
    assert sum(r["Checked"] for r in rest) < once - first["Checked"]
    assert sum(r["Restored"] for r in rest) == 1 and not any_store.list("upkeep/")
    assert upkeep.sweep(Registry(any_store))["Restored"] == 1
    assert_records_match_the_catalog(any_store, ["big", "small"])


def test_the_sweep_starts_no_slice_when_the_invocation_is_nearly_out_of_time(any_store: Store) -> None:
    seed_many(any_store)
    with time_budget(repair.MARGIN / 2):
        summary = upkeep.sweep(Registry(any_store))
    assert (summary["Checked"], summary["Done"]) == (0, False)
    assert upkeep.sweep(Registry(any_store), seconds=30)["Done"]


def test_an_unreadable_cursor_starts_a_new_pass(any_store: Store) -> None:
    seed_many(any_store)
    any_store.put(repair.CURSOR, b"\x00garbage")
    assert upkeep.sweep(Registry(any_store))["Done"]


# --- 2: temporary files never leak ---------------------------------------------------------------------------

def fill_the_disk(monkeypatch: pytest.MonkeyPatch, root: Path, full: list[bool]) -> None:
    """Writes into files below root fail with ENOSPC while full[0]; removing a file of the store frees room."""
    real_write, real_unlink, inside = os.write, os.unlink, str(root.resolve())

    def write(fd: int, data: Any) -> int:
        if full[0] and os.readlink(f"/proc/self/fd/{fd}").startswith(inside):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        real_unlink(path, *args, **kwargs)
        if str(path).startswith(inside) and not os.path.basename(str(path)).startswith(".tmp-"):
            full[0] = False

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "unlink", unlink)


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*")]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path)
    store.put("models/a.json", b"old")
    fill_the_disk(monkeypatch, tmp_path, [True])
    with pytest.raises(StorageFull):
        store.create("models/b.json", b"x" * 10_000)
    with pytest.raises(StorageFull):
        store.put("models/a.json", b"new")
    assert temporaries(tmp_path) == [] and store.get("models/a.json") == b"old"
    monkeypatch.undo()
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(Unavailable):
        store.put("models/a.json", b"new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert temporaries(tmp_path) == [] and store.get("models/a.json") == b"old"


def test_the_sweep_counts_exactly_the_temporary_files_removed_even_those_removed_on_opening(tmp_path: Path) -> None:
    planted = [tmp_path / "models" / ".tmp-a", tmp_path / "catalog" / "ws" / "log" / ".tmp-b", tmp_path / ".tmp-c"]
    young = tmp_path / "models" / ".tmp-young"
    for path in [*planted, young]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    for path in planted:
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    store = FileStore(tmp_path)  # opening removes what is older than a minute
    assert upkeep.sweep(Registry(store))["TemporaryFiles"] == len(planted)
    assert temporaries(tmp_path) == [young]
    assert upkeep.sweep(Registry(store))["TemporaryFiles"] == 0


# --- 5: DeleteModel on a full disk ---------------------------------------------------------------------------

def api(method: str, path: str) -> tuple[int, dict[str, Any]]:
    result = invoke({"httpMethod": method, "path": path, "headers": {}, "body": None})
    return result["statusCode"], json.loads(result["body"])


def test_a_delete_on_a_full_disk_frees_its_version_records_to_commit(tmp_path: Path, use_app, monkeypatch) -> None:
    store = FileStore(tmp_path)
    app = use_app(store)
    model_id = app.registry.create(normal("m"))[0]
    for name in ("1.0.0", "2.0.0"):
        Versions(app.registry).create(model_id, {"Uri": URI, "VersionName": name})
    full = [True]
    fill_the_disk(monkeypatch, tmp_path, full)
    assert api("DELETE", f"/api/v1/models/{model_id}")[0] == 200
    assert api("GET", f"/api/v1/models/{model_id}")[0] == 404
    assert temporaries(tmp_path) == [] and store.list("models/") == []


def test_a_delete_that_cannot_free_room_says_the_disk_is_full_and_changes_nothing(tmp_path: Path, use_app,
                                                                                monkeypatch) -> None:
    store = FileStore(tmp_path)
    app = use_app(store)
    model_id = app.registry.create(normal("m"))[0]
    before = sorted(store.list(""))
    full = [True]
    fill_the_disk(monkeypatch, tmp_path, full)
    status, answer = api("DELETE", f"/api/v1/models/{model_id}")
    assert (status, answer["Code"]) == (503, "ServiceUnavailable") and "full" in answer["Message"]
    assert sorted(store.list("")) == before and temporaries(tmp_path) == []
    assert api("GET", f"/api/v1/models/{model_id}")[0] == 200  # nothing half-done
    full[0] = False  # room again: the same request works
    assert api("DELETE", f"/api/v1/models/{model_id}")[0] == 200
    assert store.list("models/") == []


class RacedByAnUpdate(CountingStore):
    """The sweep's write of one record lands after another instance committed an update of that model and wrote
    its record: the sweep's bytes are then older than the catalog."""

    def __init__(self, inner: Store, model_id: str) -> None:
        super().__init__(inner)
        self.model_id, self.raced = model_id, False

    def put(self, key: str, data: bytes) -> None:
        if key == record_key(self.model_id) and not self.raced:
            self.raced = True
            Registry(self.inner).update(self.model_id, {"ModelDescription": "committed while the sweep wrote"})
        super().put(key, data)


def test_a_sweep_racing_an_update_never_leaves_the_older_record(any_store: Store) -> None:
    registry = Registry(any_store)
    model_id = registry.create(normal("m"))[0]
    any_store.put(record_key(model_id), b"{}")  # damaged: the sweep will write it again
    racing = RacedByAnUpdate(any_store, model_id)
    summary = upkeep.sweep(Registry(racing))
    assert racing.raced and summary["Rewritten"] == 1
    assert json.loads(any_store.get(record_key(model_id)))["ModelDescription"] == "committed while the sweep wrote"
    assert_records_match_the_catalog(any_store, ["ws"])
