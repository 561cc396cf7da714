"""The model registry over a Store: create, read, list, update, delete and label models, safe under
retries, races and crashes. Commits go through the catalog (catalog.py); this module keeps the
per-model records (`models/<ModelId>.json`) current beside it. docs/catalog.md has the invariants.
"""
from __future__ import annotations

import concurrent.futures
import contextvars
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import listing, records
from .catalog import KEPT_CHECKPOINTS, Workspace
from .errors import ApiError, InvalidParameter, ModelNameConflict, ModelNotFound
from .state import MAX_WORKSPACE_BYTES, Change, Draft, Entry
from .stores.base import NotFound, Store, StoreError, check_key

log = logging.getLogger(__name__)

MAX_LABELS = 1000
_RECORD_ROUNDS = 32  # record rewrites while other instances keep changing the same model
_WORKSPACES_KEPT = 256  # workspaces whose state an instance keeps in memory (least recently used dropped)
_HOMES_KEPT = 200_000
_helpers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="registry")  # overlapped reads
MIN_SWEEP_AGE = 60.0
SWEEP_AGE = 600.0  # seconds: far longer than a request may run (FC's Timeout, the local server's deadline)


def record_key(model_id: str) -> str:
    return f"models/{model_id}.json"


def version_key(model_id: str, name: str) -> str:
    return f"models/{model_id}/versions/{name}.json"


@dataclass(frozen=True)
class RecordFile:
    """A record file kept current beside the catalog: where it is, which change marks it, what it holds now."""

    key: str
    changed: str  # its key in the state's `changed` map
    current: Callable[[], tuple[Entry | None, int]]


_HISTORY_KINDS = {  # a change's kind: the operation of its first appearance, of a later one, of a delete
    "Put": ("CreateModel", "UpdateModel", None), "Delete": (None, None, "DeleteModel"),
    "PutVersion": ("CreateModelVersion", "UpdateModelVersion", None), "DeleteVersion": (None, None, "DeleteModelVersion"),
}


class Registry:
    """The model operations; knows keys, records and the catalog, not HTTP or events."""

    def __init__(self, store: Store, max_workspace_bytes: int = MAX_WORKSPACE_BYTES) -> None:
        self.store = store
        self.max_workspace_bytes = max_workspace_bytes
        self._workspaces: OrderedDict[str, Workspace] = OrderedDict()
        self._homes: dict[str, str] = {}  # ModelId -> WorkspaceId: fixed for a model's life
        self._lock = threading.Lock()

    def workspace(self, workspace_id: str) -> Workspace:
        with self._lock:
            found = self._workspaces.get(workspace_id)
            if found is None:
                found = self._workspaces[workspace_id] = Workspace(self.store, workspace_id, legacy_models(self.store),
                                                                   self.max_workspace_bytes)
                # Forget the least recently used workspaces beyond a count, and beyond twice the largest a
                # workspace may grow: what an instance keeps in memory stays bounded (they load again when asked).
                while len(self._workspaces) > 1 and (
                        len(self._workspaces) > _WORKSPACES_KEPT
                        or sum(w.bytes for w in self._workspaces.values()) > 2 * self.max_workspace_bytes):
                    self._workspaces.popitem(last=False)
            else:
                self._workspaces.move_to_end(workspace_id)
            return found

    def settle(self) -> None:
        """Wait for background work (checkpoints being written): before an instance stops, and in tests."""
        for workspace in list(self._workspaces.values()):
            workspace.settle()

    # --- reads ---

    def get(self, model_id: str) -> dict[str, Any] | None:
        """The model's current record, or None (never created, not yet committed, or deleted)."""
        workspace = self._home(model_id)
        if workspace is None:
            return None
        workspace.read()
        entry, _ = workspace.model(model_id)
        return self.answer(workspace, entry) if entry else None

    def list_models(self, workspace_id: str, query: listing.Query) -> tuple[list[dict[str, Any]], int]:
        """One page of a workspace's models matching query, and how many match in all."""
        workspace = self.workspace(workspace_id)
        workspace.read()
        entries, total = listing.page(workspace, query)
        return [self.answer(workspace, entry) for entry in entries], total

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
        if len(normal["Labels"]) > MAX_LABELS:
            raise InvalidParameter(f"a model has at most {MAX_LABELS} labels; Tag and Labels together make {len(normal['Labels'])}")
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

        def plan(draft: Draft) -> tuple[str, bool]:
            holder = draft.named(record["ModelName"])
            if holder is None:
                draft.put(record, fingerprint, raw)
                return model_id, True
            existing = draft.model(holder)
            if adopt or (existing is not None and existing.fingerprint == fingerprint):
                return holder, False
            raise _name_taken(record["ModelName"], workspace.id, holder, ", created by a request with other fields")

        try:
            (answer, created), _ = workspace.commit(plan)
        except ApiError:  # refused (a name taken, a quota): this record will never be committed
            self._discard(key)
            raise
        # On a storage error the commit may have landed (a lost reply): the record stays, as it must.
        if not created:
            self._discard(key)
        self._remember(answer, workspace.id)
        workspace.maybe_checkpoint()
        return answer, created

    def update(self, model_id: str, fields: dict[str, Any]) -> None:
        """Change the given fields (a partial update); renaming keeps names unique in the workspace."""
        def change(draft: Draft, model: dict[str, Any]) -> dict[str, Any]:
            new = records.updated_record(model, fields)
            name = new["ModelName"]
            holder = draft.named(name)
            if holder is not None and holder != model_id:
                raise _name_taken(name, model["WorkspaceId"], holder)
            return new

        self._modify(model_id, change)

    def add_labels(self, model_id: str, labels: list[dict[str, str]]) -> None:
        """Add labels; a given key replaces every label of that key."""
        keys = {label["Key"] for label in labels}

        def change(draft: Draft, model: dict[str, Any]) -> dict[str, Any]:
            kept = [label for label in model["Labels"] if label["Key"] not in keys]
            merged = kept + records.merged_labels({"Labels": labels})
            if len(merged) > MAX_LABELS:
                raise InvalidParameter(f"a model has at most {MAX_LABELS} labels; this would make {len(merged)}")
            return records.with_labels(model, merged)

        self._modify(model_id, change)

    def remove_labels(self, model_id: str, keys: Iterable[str]) -> None:
        """Remove every label whose key is one of keys (absent keys are ignored)."""
        gone = set(keys)

        def change(draft: Draft, model: dict[str, Any]) -> dict[str, Any]:
            return records.with_labels(model, [lb for lb in model["Labels"] if lb["Key"] not in gone])

        self._modify(model_id, change)

    def delete(self, model_id: str) -> None:
        """Delete the model; its name is free at once."""
        workspace = self.workspace_of(model_id)

        def plan(draft: Draft) -> list[str]:
            if draft.model(model_id) is None:
                raise ModelNotFound(f"model {model_id} does not exist")
            return draft.delete(model_id)

        try:
            gone, seq = workspace.commit(plan)
        except ModelNotFound:
            # A delete cut short: finish it (the model's record, and its versions' records).
            self.publish(workspace, self.model_record(workspace, model_id), 0)
            self.store.delete_many(self.store.list(f"models/{model_id}/versions/"))
            raise
        self.publish(workspace, self.model_record(workspace, model_id), seq or 0)
        self.store.delete_many([version_key(model_id, name) for name in gone])

    def _modify(self, model_id: str, change: Callable[[Draft, dict[str, Any]], dict[str, Any]]) -> None:
        """Commit the new record `change(draft, record)` makes of a model, unless it equals the old one."""
        workspace = self.workspace_of(model_id)

        def plan(draft: Draft) -> None:
            entry = draft.model(model_id)
            if entry is None:
                raise ModelNotFound(f"model {model_id} does not exist")
            old = entry.record()
            new = change(draft, old)
            if records.same_content(new, old):
                return  # nothing to change: a retried update is answered without a commit
            draft.put(records.touched(new), entry.fingerprint)

        _, seq = workspace.commit(plan)
        # Even when nothing changed: this may be the retry of a change whose record write was cut short.
        self.publish(workspace, self.model_record(workspace, model_id), seq or 0)
        if seq is not None:
            workspace.maybe_checkpoint()

    @staticmethod
    def model_record(workspace: Workspace, model_id: str) -> RecordFile:
        return RecordFile(record_key(model_id), model_id, lambda: workspace.model(model_id))

    def publish(self, workspace: Workspace, target: RecordFile, seq: int) -> None:
        """Make a record file (a model's, or a version's) show its entry as of commit `seq` or later
        (removed once deleted).

        Another instance's commit may write the file between our commit and our write, and ours
        would then undo it; so after writing, catch up, and write again while a newer commit changed
        that entry."""
        key = target.key
        if not seq:
            workspace.read()
        for _ in range(_RECORD_ROUNDS):
            entry, known = target.current()  # as of commit seq, or newer
            if entry is None:
                # No commit can follow a model's delete; a writer of an earlier one that is still
                # writing the record finds this delete when it catches up, and removes the record.
                self.store.delete(key)
                return
            if not seq and not self._differs(key, entry.raw):
                return  # nothing was committed and the record is current: a retry writes only to repair
            self.store.put(key, entry.raw)
            workspace.read()
            if workspace.changed_at(target.changed) <= known:
                return
        log.warning("the record of a model kept changing under its writer; its next change rewrites it")

    def history(self, model_id: str) -> list[dict[str, Any]]:
        """Every committed change of a model and its versions, oldest first, a deleted model's too: its
        seq, who made it (an access key, or the FC account of an event), when, and which operation."""
        try:
            homes = [self.workspace_of(model_id).id]
        except ModelNotFound:  # deleted (or never created): look through every workspace's log
            homes = sorted({key.split("/")[1] for key in self.store.list("catalog/") if "/log/" in key})
        found: list[dict[str, Any]] = []
        seen: set[tuple[str, str | None]] = set()
        for home in homes:
            for key in self.store.list(f"catalog/{home}/log/"):
                entry = json.loads(self.store.get(key))
                for change in entry["Changes"]:
                    kind = next(k for k in _HISTORY_KINDS if k in change)
                    subject = change[kind]
                    touched = (subject == model_id if kind == "Delete" else
                               subject.get("Model", {}).get("ModelId") == model_id if kind == "Put" else
                               subject.get("ModelId") == model_id)
                    if not touched:
                        continue
                    version = (subject.get("Version", {}).get("VersionName") if kind == "PutVersion"
                               else subject.get("VersionName") if kind == "DeleteVersion" else None)
                    created, updated, deleted = _HISTORY_KINDS[kind]
                    operation = deleted or (updated if (kind, version) in seen else created)
                    seen.add((kind, version))
                    if kind == "DeleteVersion":  # a version of this name created again is a new one
                        seen.discard(("PutVersion", version))
                    found.append({"Seq": entry["Seq"], "By": change.get("By", "unknown"), "Change": operation,
                                  "At": change.get("At", entry.get("Time", "")), **({"VersionName": version} if version else {})})
        return found

    # --- upkeep ---

    def sweep(self, older_than: float = SWEEP_AGE) -> dict[str, Any]:
        """Remove what no committed state points to and is older than `older_than` seconds (longer than any
        request may run): records of creates that never committed (a crash, a lost race whose cleanup
        failed) or of models whose delete was cut short, and a store's interrupted temporary files."""
        if older_than < MIN_SWEEP_AGE:
            raise ValueError(f"the sweep only removes what is older than {MIN_SWEEP_AGE:g} seconds: a request may still be writing it")
        removed: list[str] = []
        checked = 0
        limit = time.time() - older_than
        keys = self.store.list("models/")
        versions = [key for key in keys if key.count("/") == 3 and key.split("/")[2] == "versions"]
        for key in keys:
            model_id = key[len("models/"):-len(".json")] if key.endswith(".json") and key.count("/") == 1 else None
            created = records.created_at(model_id) if model_id else None
            if model_id is None or created is None or created > limit:
                continue  # not a record, or young enough to belong to a create still running
            checked += 1
            if any(w.model(model_id)[0] is not None for w in list(self._workspaces.values())):
                continue  # a workspace read earlier in this sweep (or before) holds it: no need to read its record
            workspace = self._home(model_id)
            if workspace is None:
                continue
            workspace.read()
            if workspace.model(model_id)[0] is None:
                self.store.delete(key)
                removed.append(model_id)
        return {"Checked": checked, "Removed": removed, "Versions": self._sweep_versions(versions, set(keys)),
                "Checkpoints": self._sweep_checkpoints(), "TemporaryFiles": self.store.clean(older_than)}

    def _sweep_versions(self, keys: list[str], listed: set[str]) -> int:
        """Remove version records of versions (or models) that are gone, and write any a crash left
        unwritten, in the workspaces of the models found; how many files changed."""
        from .versions import Versions  # versions.py builds on this module

        changed = 0
        for key in keys:
            _, model_id, _, file = key.split("/")
            workspace = self._home(model_id)
            if workspace is None or workspace.version(model_id, file.removesuffix(".json"))[0] is None:
                if workspace is not None:
                    workspace.read()
                if workspace is None or workspace.version(model_id, file.removesuffix(".json"))[0] is None:
                    self.store.delete(key)
                    changed += 1
        for workspace in list(self._workspaces.values()):
            for model_id, names in workspace.version_names().items():
                for name in names:
                    if version_key(model_id, name) not in listed:
                        self.publish(workspace, Versions.record(workspace, model_id, name), 0)
                        changed += 1
        return changed

    def _sweep_checkpoints(self) -> int:
        """Remove every workspace's checkpoints but its newest KEPT_CHECKPOINTS (older ones are never read)."""
        by_workspace: dict[str, list[str]] = {}
        for key in self.store.list("catalog/"):
            parts = key.split("/")
            if len(parts) == 4 and parts[2] == "checkpoints":
                by_workspace.setdefault(parts[1], []).append(key)
        removed = 0
        for keys in by_workspace.values():
            for key in sorted(keys)[:-KEPT_CHECKPOINTS]:  # 20-digit seqs sort as numbers
                self.store.delete(key)
                removed += 1
        return removed

    # --- helpers ---

    def _home(self, model_id: str) -> Workspace | None:
        """The workspace of a model, from memory or from its record; None if it has no record."""
        workspace_id = self._homes.get(model_id)
        if workspace_id is None:
            try:
                record = json.loads(self.store.get(check_key(record_key(model_id))))
            except NotFound:
                return None
            workspace_id = record["WorkspaceId"]
            self._remember(model_id, workspace_id)
        return self.workspace(workspace_id)

    def workspace_of(self, model_id: str) -> Workspace:
        workspace = self._home(model_id)
        if workspace is None:
            raise ModelNotFound(f"model {model_id} does not exist")
        return workspace

    def _remember(self, model_id: str, workspace_id: str) -> None:
        if len(self._homes) >= _HOMES_KEPT:
            self._homes.clear()
        self._homes[model_id] = workspace_id

    def _differs(self, key: str, data: bytes) -> bool:
        try:
            return self.store.get(key) != data
        except NotFound:
            return True

    def _discard(self, key: str) -> None:
        """Remove the record of a create that did not commit; a leftover is harmless, so failures are only logged."""
        try:
            self.store.delete(key)
        except StoreError as e:
            log.warning("could not remove an uncommitted record: %s", type(e).__name__)


def _name_taken(name: str, workspace_id: str, holder: str, detail: str = "") -> ModelNameConflict:
    return ModelNameConflict(f"a model named {name[:200]!r} already exists in workspace {workspace_id} ({holder}){detail}")


# --- the layout before the catalog: records, per-workspace markers and name claims ---

def legacy_models(store: Store) -> Callable[[str], list[Change]]:
    """A reader of a workspace's models as the layout before the catalog kept them (see docs/catalog.md)."""
    def read(workspace_id: str) -> list[Change]:
        prefix = f"workspaces/{workspace_id}/models/"
        ids = [key[len(prefix):] for key in store.list(prefix)]
        changes: list[Change] = []
        for model_id, data in zip(ids, store.get_many([record_key(i) for i in ids])):
            if data is None:
                continue
            record = json.loads(data)
            digest = hashlib.sha256(record["ModelName"].encode()).hexdigest()
            claim = store.get_many([f"names/{workspace_id}/{digest}.json"])[0]
            if claim is not None and json.loads(claim)["ModelId"] == model_id:
                changes.append({"Put": {"Model": record, "Fingerprint": json.loads(claim)["Fingerprint"]}})
        return changes

    return read
