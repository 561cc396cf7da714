"""The models over a Store: create, read, list, update, delete and label them, safe under retries, races
and crashes; and which workspace holds each model. Commits go through the catalog; the per-model records
(`models/<ModelId>.json`) are kept current beside it (changes.py). docs/catalog.md has the invariants.
"""
from __future__ import annotations

import concurrent.futures
import contextvars
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..catalog.draft import Draft
from ..catalog.keys import CATALOG, record_key, version_record_key, versions_prefix
from ..catalog.legacy import legacy_models
from ..catalog.state import MAX_WORKSPACE_BYTES, Entry
from ..catalog.workspace import Workspace
from ..errors import ApiError, ModelNameConflict, ModelNotFound
from ..stores.base import InvalidKey, NotFound, StorageFull, Store, StoreError, check_key, check_prefix
from . import changes, listing, records
from .changes import Subject

log = logging.getLogger(__name__)
T = TypeVar("T")

_WORKSPACES_KEPT = 256  # workspaces whose state an instance keeps in memory (least recently used dropped)
_HOMES_KEPT = 200_000
SEARCH_INTERVAL = 60.0  # seconds: how often an instance may look through every workspace for a model without a record
_PAST_A_WORKSPACE = "z" * 200  # sorts after every key segment (at most 200 characters, 'z' the greatest of them)
_helpers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="registry")  # overlapped reads


class Registry:
    """The model operations; knows keys, records and the catalog, not HTTP or events."""

    def __init__(self, store: Store, max_workspace_bytes: int = MAX_WORKSPACE_BYTES) -> None:
        self.store = store
        self.max_workspace_bytes = max_workspace_bytes
        self._workspaces: OrderedDict[str, Workspace] = OrderedDict()
        self._homes: dict[str, str] = {}  # ModelId -> WorkspaceId: fixed for a model's life
        self._lock = threading.Lock()
        self._search_after = 0.0  # time.monotonic() before which no search through every workspace starts again
        self._unrecorded: set[str] = set()  # ModelIds found without their record file, not yet written again

    def workspace(self, workspace_id: str) -> Workspace:
        with self._lock:
            found = self._workspaces.get(workspace_id)
            if found is None:
                found = self._workspaces[workspace_id] = Workspace(self.store, workspace_id, legacy_models(self.store),
                                                                   self.max_workspace_bytes)
            else:
                self._workspaces.move_to_end(workspace_id)
            # Forget the least recently used workspaces beyond a count, and while the others than the one in use
            # take more than the most one workspace may: with the one in use (at most that by its quota), what an
            # instance keeps stays within twice the quota. A forgotten workspace loads again when asked.
            while len(self._workspaces) > 1 and (
                    len(self._workspaces) > _WORKSPACES_KEPT
                    or sum(w.memory for w in self._workspaces.values()) - found.memory > self.max_workspace_bytes):
                self._workspaces.popitem(last=False)
            return found

    def settle(self) -> None:
        """Wait for background work (checkpoints being written, record files confirmed): before an instance
        stops, and in tests."""
        changes.settle()
        for workspace in self.held():
            workspace.settle()

    # --- reads ---

    def get(self, model_id: str) -> dict[str, Any]:
        """The model's current record; ModelNotFound if it was never created, not yet committed, or deleted."""
        workspace = self.workspace_of(model_id)
        workspace.read()
        entry, _ = workspace.model(model_id)
        if entry is None:
            raise ModelNotFound(f"model {model_id} does not exist")
        self.restore(model_id, workspace)
        return self.answer(workspace, entry)

    def list_models(self, workspace_id: str, query: listing.Query) -> tuple[list[dict[str, Any]], int]:
        """One page of a workspace's models matching query (fewer than its PageSize when their records would
        pass listing.PAGE_BYTES: Query.cut_short), and how many match in all."""
        workspace = self.workspace(workspace_id)
        workspace.read()
        entries, total = listing.page(workspace, query)

        def size(entry: Entry) -> int:
            latest = workspace.latest(entry.id)
            return len(entry.raw) + (len(latest.raw) if latest is not None else 0)

        return [self.answer(workspace, entry) for entry in listing.within_budget(entries, size)], total

    @staticmethod
    def answer(workspace: Workspace, entry: Entry) -> dict[str, Any]:
        """A model as Get and List answer it: its record, and its LatestVersion when it has versions."""
        model = entry.record()
        latest = workspace.latest(entry.id)
        if latest is not None:
            model["LatestVersion"] = latest.record()
            model["GmtLatestVersionModifiedTime"] = model["LatestVersion"]["GmtModifiedTime"]
        return model

    # --- writes ---

    def create(self, normal: dict[str, Any], owner_id: str | None = None, adopt: bool = False) -> tuple[str, bool]:
        """Register the model a normalized CreateModel request asks for: (ModelId, created).

        created is False when the same request had registered it before (a retry), or, with adopt,
        when any model holds the name (a registration adds versions to the model of that name).
        Else raises ModelNameConflict when the name is taken in the workspace by a model created otherwise.
        """
        model_id, created, _, _ = self.create_then(normal, owner_id, adopt, None)
        return model_id, created

    def create_then(self, normal: dict[str, Any], owner_id: str | None, adopt: bool, then: Callable[[Draft, str], T] | None
                    ) -> tuple[str, bool, T | None, int | None]:
        """create, and then(draft, ModelId) planned in the same commit on the model created or adopted:
        (ModelId, created, what then answered, the commit's seq). Where `then` changes the model's record, the
        caller writes its file again after the commit, as an update does."""
        records.check_label_count(len(normal["Labels"]), "model")
        workspace = self.workspace(normal["WorkspaceId"])
        model_id = records.new_model_id()
        key = check_key(record_key(model_id))
        record = records.build_record(normal, model_id, time.time(), owner_id)
        raw = records.record_json(record)
        fingerprint = records.fingerprint(normal)
        # The record first: it leads a ModelId to its workspace before any reader can learn the id.
        # Until the commit it is invisible (the catalog decides), and it is never rewritten by this create.
        # A workspace this instance has not read yet is read meanwhile (its first create, a cold start).
        loading = None if workspace.loaded else _helpers.submit(contextvars.copy_context().run, workspace.read)
        try:
            self.store.create(key, raw)
        finally:
            if loading is not None:
                loading.result()

        def plan(draft: Draft) -> tuple[str, bool, T | None]:
            holder = draft.named(record["ModelName"])
            if holder is None:
                draft.put(record, fingerprint, raw)
                return model_id, True, then(draft, model_id) if then is not None else None
            existing = draft.model(holder)
            if adopt or (existing is not None and existing.fingerprint == fingerprint):
                return holder, False, then(draft, holder) if then is not None else None
            raise _name_taken(record["ModelName"], workspace.id, holder, ", created by a request with other fields")

        try:
            (answer, created, planned), seq = workspace.commit(plan)
        except ApiError:  # refused (a name taken, a quota): this record will never be committed
            self._discard(key)
            raise
        # On a storage error the commit may have landed (a lost reply): the record stays, as it must.
        if not created:
            self._discard(key)
        self._remember(answer, workspace.id)
        return answer, created, planned, seq

    def update(self, model_id: str, fields: dict[str, Any]) -> None:
        """Change the given fields (a partial update); renaming keeps names unique in the workspace."""
        def change(draft: Draft, model: dict[str, Any]) -> dict[str, Any]:
            new = records.updated_record(model, fields)
            name = new["ModelName"]
            holder = draft.named(name)
            if holder is not None and holder != model_id:
                raise _name_taken(name, model["WorkspaceId"], holder)
            return new

        changes.modify(self.store, self.workspace_of(model_id), Subject(model_id), change)

    def add_labels(self, model_id: str, labels: list[dict[str, str]]) -> None:
        """Add labels; a given key replaces every label of that key."""
        changes.add_labels(self.store, self.workspace_of(model_id), Subject(model_id), labels)

    def remove_labels(self, model_id: str, keys: Iterable[str]) -> None:
        """Remove every label whose key is one of keys (absent keys are ignored)."""
        changes.remove_labels(self.store, self.workspace_of(model_id), Subject(model_id), keys)

    def delete(self, model_id: str) -> None:
        """Delete the model; its name is free at once."""
        workspace = self.workspace_of(model_id)

        def plan(draft: Draft) -> list[str]:
            if draft.model(model_id) is None:
                raise ModelNotFound(f"model {model_id} does not exist")
            return draft.delete(model_id)

        record = Subject(model_id).record_file(workspace)
        try:
            try:
                gone, seq = workspace.commit(plan)
            except StorageFull:
                # The disk is full and the commit needs a log entry: the model's version records are derived
                # files (the sweep writes them again, should the delete still not commit), and removing them
                # frees room for it. Tried once; still full, the caller is told so (503, "storage is full").
                log.warning("storage full: removing the version records of a model being deleted, to commit its delete")
                self.store.delete_many(self.store.list(versions_prefix(model_id)))
                gone, seq = workspace.commit(plan)
        except ModelNotFound:
            # A delete cut short: finish it (its versions' records, then the model's, which leads to its workspace).
            self.store.delete_many(self.store.list(versions_prefix(model_id)))
            changes.publish(self.store, workspace, record, 0)
            raise
        self.store.delete_many([version_record_key(model_id, name) for name in gone])
        changes.publish(self.store, workspace, record, seq or 0)

    # --- where models live ---

    def held(self) -> list[Workspace]:
        """The workspaces this instance holds in memory."""
        with self._lock:
            return list(self._workspaces.values())

    def home(self, model_id: str) -> Workspace | None:
        """The workspace of a model, from memory or from its record, else looked for (_find); None if not found."""
        workspace_id = self._homes.get(model_id)
        if workspace_id is None:
            try:
                workspace_id = _workspace_in(self.store.get(check_key(record_key(model_id))))
            except NotFound:
                return self._find(model_id)
            if workspace_id is None:
                log.warning("a model's record file names no workspace (damaged); looking for the model")
                return self._find(model_id)
            self._remember(model_id, workspace_id)
        return self.workspace(workspace_id)

    def _find(self, model_id: str) -> Workspace | None:
        """The workspace of a model whose record file is missing or damaged (by hand; the sweep writes it
        again): those in memory, else (at most once per SEARCH_INTERVAL, so that unknown ModelIds cost
        little) every workspace of the store. A Get of it writes the record again (restore)."""
        found = next((w for w in self.held() if w.model(model_id)[0] is not None), None)
        if found is None and records.created_at(model_id) is not None and time.monotonic() >= self._search_after:
            self._search_after = time.monotonic() + SEARCH_INTERVAL
            workspace_id = self.next_workspace(None)
            while found is None and workspace_id is not None:
                workspace = self.workspace(workspace_id)
                workspace.read()
                found = workspace if workspace.model(model_id)[0] is not None else None
                workspace_id = self.next_workspace(workspace_id)
        if found is not None:
            self._remember(model_id, found.id)
            with self._lock:
                if len(self._unrecorded) >= _HOMES_KEPT:
                    self._unrecorded.clear()
                self._unrecorded.add(model_id)
        return found

    def restore(self, model_id: str, workspace: Workspace) -> None:
        """Write again the record file of a model found without one, so that other instances find it with one
        GET; best effort (the answer comes from the catalog, and the sweep writes it too)."""
        with self._lock:
            if model_id not in self._unrecorded:
                return
            self._unrecorded.discard(model_id)
        try:
            changes.publish(self.store, workspace, Subject(model_id).record_file(workspace), 0)
        except StoreError as e:
            log.warning("could not write a missing model record again: %s", type(e).__name__)

    def next_workspace(self, after: str | None) -> str | None:
        """The workspace whose catalog follows workspace `after`'s in key order (None: the first); one LIST
        of one key, however long the workspaces' logs are."""
        start = "" if after is None else f"{CATALOG}{after}/{_PAST_A_WORKSPACE}"
        found = self.store.list(CATALOG, start_after=start, limit=1)
        return found[0].split("/")[1] if found else None

    def workspace_of(self, model_id: str) -> Workspace:
        workspace = self.home(model_id)
        if workspace is None:
            raise ModelNotFound(f"model {model_id} does not exist")
        return workspace

    def _remember(self, model_id: str, workspace_id: str) -> None:
        if len(self._homes) >= _HOMES_KEPT:
            self._homes.clear()
        self._homes[model_id] = workspace_id

    def _discard(self, key: str) -> None:
        """Remove the record of a create that did not commit; a leftover is harmless, so failures are only logged."""
        try:
            self.store.delete(key)
        except StoreError as e:
            log.warning("could not remove an uncommitted record: %s", type(e).__name__)


def _workspace_in(record: bytes) -> str | None:
    """The WorkspaceId a record file names, or None if it names none or one no workspace can have (a file
    damaged by hand)."""
    try:
        workspace_id = json.loads(record).get("WorkspaceId")
    except (ValueError, AttributeError):
        return None
    if not isinstance(workspace_id, str) or not workspace_id or "/" in workspace_id:
        return None
    try:
        check_prefix(f"{CATALOG}{workspace_id}/")  # one no workspace can have ("../x"): damaged too, not the request
    except InvalidKey:
        return None
    return workspace_id


def _name_taken(name: str, workspace_id: str, holder: str, detail: str = "") -> ModelNameConflict:
    return ModelNameConflict(f"a model named {name[:200]!r} already exists in workspace {workspace_id} ({holder}){detail}")
