"""The contract every store keeps: memory, file, and OSS (real oss2 against the loopback server)."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from handler.stores import open_store
from handler.stores.base import AlreadyExists, InvalidKey, NotFound, Store
from handler.stores.file import FileStore
from handler.stores.memory import MemoryStore


def test_create_then_get(any_store: Store) -> None:
    any_store.create("models/a.json", b'{"x":1}')
    assert any_store.get("models/a.json") == b'{"x":1}'


def test_create_is_idempotent_for_the_same_bytes(any_store: Store) -> None:
    any_store.create("k/v", b"same")
    any_store.create("k/v", b"same")
    assert any_store.get("k/v") == b"same"


def test_create_never_replaces_different_bytes(any_store: Store) -> None:
    any_store.create("k/v", b"first")
    with pytest.raises(AlreadyExists):
        any_store.create("k/v", b"second")
    assert any_store.get("k/v") == b"first"


def test_get_missing_is_not_found(any_store: Store) -> None:
    with pytest.raises(NotFound):
        any_store.get("models/none.json")


def test_get_each_applies_then_to_each_object_found_where_it_is_read(any_store: Store) -> None:
    for n in range(5):
        any_store.put(f"each/{n}", b"x" * n)
    seen: list[str] = []

    def then(key: str, data: bytes) -> tuple[str, int]:
        seen.append(key)
        return key, len(data)

    keys = ["each/3", "each/missing", "each/0", "each/4"]
    assert any_store.get_each(keys, then) == [("each/3", 3), None, ("each/0", 0), ("each/4", 4)]
    assert sorted(seen) == ["each/0", "each/3", "each/4"]  # never for what is absent
    heads = {"each/4": 2, "each/missing": 1}
    assert any_store.get_each(["each/4", "each/3", "each/missing"], lambda key, data: data, heads) == [b"xx", b"xxx", None]
    # An empty object exists: its head is empty (OSS refuses a range on it, 416, or answers it whole).
    assert any_store.get_each(["each/0", "each/missing"], lambda key, data: data, {"each/0": 1, "each/missing": 1}) == [b"", None]
    assert any_store.get_head("each/0", 1) == b""
    with pytest.raises(InvalidKey):
        any_store.get_each(["each/../x"], then)


def test_put_replaces_and_delete_removes(any_store: Store) -> None:
    any_store.put("k/v", b"one")
    any_store.put("k/v", b"two")
    assert any_store.get("k/v") == b"two"
    any_store.delete("k/v")
    any_store.delete("k/v")  # absent: not an error
    with pytest.raises(NotFound):
        any_store.get("k/v")


def test_list_is_ordered_recursive_and_bounded(any_store: Store) -> None:
    for key in ["w/1/models/c", "w/1/models/a", "w/1/models/b", "w/1/other/z", "w/10/models/x", "w/1/models/sub/d"]:
        any_store.create(key, b"")
    assert any_store.list("w/1/models/") == ["w/1/models/a", "w/1/models/b", "w/1/models/c", "w/1/models/sub/d"]
    assert any_store.list("w/1/models/", start_after="w/1/models/a", limit=2) == ["w/1/models/b", "w/1/models/c"]
    assert any_store.list("w/2/") == []
    assert len(any_store.list("")) == 6


def test_list_pages_past_a_thousand_keys(any_store: Store) -> None:
    keys = [f"many/{i:05d}" for i in range(1100)]
    for key in keys:
        any_store.create(key, b"")
    assert any_store.list("many/") == keys


def test_list_orders_by_bytes_across_directories_and_skips_what_comes_before_start_after(any_store: Store) -> None:
    keys = ["m/a.json", "m/a/v/1.json", "m/a-b.json", "m/a0.json", "m/b/x"]  # '-' < '.' < '/' < '0'
    for key in keys:
        any_store.create(key, b"")
    assert any_store.list("m/") == sorted(keys)
    assert any_store.list("m/", start_after="m/a/" + "z" * 200) == ["m/a0.json", "m/b/x"]  # past a directory
    assert any_store.list("m/", start_after="m/a.json", limit=1) == ["m/a/v/1.json"]
    assert any_store.list("", start_after="m/a0.json") == ["m/b/x"]


@pytest.mark.parametrize("key", [
    "../escape", "a/../../b", "/abs", "a//b", "a/", "", ".hidden", "a/./b", "a\x00b", "a/%2F..", "a b", "k/" + "x" * 1000,
    "a\\b", "names/é",
])
def test_unsafe_keys_are_refused_before_any_io(any_store: Store, key: str) -> None:
    for attempt in (lambda: any_store.create(key, b"x"), lambda: any_store.get(key), lambda: any_store.put(key, b"x"),
                    lambda: any_store.delete(key)):
        with pytest.raises(InvalidKey):
            attempt()


@pytest.mark.parametrize("prefix", ["../", "a", "/", "a//", "a/../", "x\x00/"])
def test_unsafe_list_prefixes_are_refused(any_store: Store, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        any_store.list(prefix)


def test_racing_creates_have_exactly_one_winner(any_store: Store) -> None:
    barrier = threading.Barrier(16)

    def attempt(i: int) -> bool:
        barrier.wait()
        try:
            any_store.create("names/w/claim.json", f"writer-{i}".encode())
            return True
        except AlreadyExists:
            return False

    with ThreadPoolExecutor(16) as pool:
        wins = list(pool.map(attempt, range(16)))
    assert wins.count(True) == 1
    assert any_store.get("names/w/claim.json") == f"writer-{wins.index(True)}".encode()


def test_file_store_writes_appear_whole(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    versions = [bytes([65 + i]) * 200_000 for i in range(4)]
    store.put("big/v", versions[0])
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(store.get("big/v"))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(200):
        store.put("big/v", versions[i % 4])
    stop.set()
    reader.join()
    assert seen <= set(versions)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_file_store_never_follows_a_planted_symlink_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "models").mkdir(parents=True)
    os.symlink(outside, root / "models" / "evil")
    store = FileStore(root)
    with pytest.raises(InvalidKey):
        store.create("models/evil/x.json", b"x")
    assert list(outside.iterdir()) == []
    (outside / "secret.json").write_bytes(b"{}")
    os.symlink(outside / "secret.json", root / "models" / "planted.json")  # a link in a file's place
    with pytest.raises(InvalidKey):
        store.get("models/planted.json")


def test_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    store = open_store(f"file://{tmp_path}/s")
    assert isinstance(store, FileStore) and store.root == (tmp_path / "s").resolve()
    for bad in ["nothing", "s3://b/p", "file://", "oss://"]:
        with pytest.raises(ValueError):
            open_store(bad)
    with pytest.raises(ValueError, match="OSS_ENDPOINT"):
        open_store("oss://bucket/prefix")


def test_file_store_makes_new_names_durable(tmp_path: Path, mocker) -> None:
    synced: list[str] = []
    real_fsync = os.fsync
    real_fdatasync = os.fdatasync
    mocker.patch("os.fsync", side_effect=lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    mocker.patch("os.fdatasync", side_effect=lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fdatasync(fd)))
    store = FileStore(tmp_path / "root")
    store.create("names/w/claim.json", b"{}")
    root = str((tmp_path / "root").resolve())
    # The bytes, the new name, and each new directory in its parent: a power loss keeps all or none.
    assert any(p.startswith(root + "/names/w/.tmp-") for p in synced)
    assert {root + "/names/w", root + "/names", root} <= set(synced)
    assert not [p for p in synced if not p.startswith(root)]


def test_file_store_syncs_what_the_log_cannot_rebuild_and_not_a_record_written_after_its_commit(tmp_path: Path, mocker) -> None:
    store = FileStore(tmp_path / "root")
    store.put("models/m/versions/0.1.0.json", b"old")  # its directories exist: only the put's own syncs are counted
    syncs = mocker.patch("os.fdatasync", side_effect=os.fdatasync)
    dir_syncs = mocker.patch("os.fsync", side_effect=os.fsync)
    store.put("models/m/versions/0.1.0.json", b"new")
    assert (syncs.call_count, dir_syncs.call_count) == (1, 1)  # the bytes, then the name
    syncs.reset_mock()
    dir_syncs.reset_mock()
    store.put_derived("models/m/versions/0.1.0.json", b"newer")
    assert (syncs.call_count, dir_syncs.call_count) == (0, 0)
    assert store.get("models/m/versions/0.1.0.json") == b"newer"  # replaced whole, as put does
    assert [p.name for p in (tmp_path / "root/models/m/versions").iterdir()] == ["0.1.0.json"]  # no temporary file left
