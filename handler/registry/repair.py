"""The sweep's pass over the store in bounded, resumable slices: record files made to agree with the catalog."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..catalog.keys import MODELS, all_checkpoint_parts_prefix, checkpoints_prefix, hint_key
from ..catalog.state import Entry
from ..catalog.workspace import KEPT_CHECKPOINTS, Workspace, checkpoint_seq, delete_checkpoint, hinted_seq
from ..stores.base import NotFound, Store, StoreError, deadline
from . import changes, records
from .changes import Subject
from .models import Registry

CURSOR = "upkeep/sweep-cursor.json"  # where a pass stopped: the next invocation continues from there
SLICE = 256  # record files read at once (overlapped), after which the cursor is saved
MARGIN = 5.0  # seconds: no slice starts with less time than this left
_DONE = "~"  # a cursor's `After` once every model of its workspace was checked (sorts after every ModelId)


@dataclass
class Cursor:
    """Where a pass is: in `catalog`, `workspace` and the last ModelId of it checked; in `records`, the last key."""

    phase: str = "catalog"
    workspace: str | None = None
    after: str = ""

    @classmethod
    def load(cls, store: Store) -> Cursor:
        try:
            saved = json.loads(store.get(CURSOR))
            cursor = cls(saved["Phase"], saved["Workspace"], saved["After"])
        except NotFound:
            return cls()
        except (ValueError, KeyError, TypeError):
            return cls()  # unreadable: a new pass (the sweep's work is safe to repeat)
        valid = cursor.phase in ("catalog", "records") and isinstance(cursor.after, str) and (
            cursor.workspace is None or isinstance(cursor.workspace, str))
        return cursor if valid else cls()

    def save(self, store: Store) -> None:
        store.put(CURSOR, json.dumps({"Phase": self.phase, "Workspace": self.workspace, "After": self.after}).encode())


@dataclass
class Report:
    """What one invocation did, each count exactly what it wrote or removed."""

    checked: int = 0  # record files compared with the catalog
    rewritten: int = 0  # model records that disagreed with the catalog, written again
    restored: int = 0  # model records that were missing, written
    removed: list[str] = field(default_factory=list)  # ModelIds whose record no commit names, removed
    versions_rewritten: int = 0
    versions_restored: int = 0
    versions_removed: int = 0
    checkpoints: int = 0
    temporary_files: int = 0
    workspaces: int = 0  # workspaces whose checkpoints were pruned and whose models were all checked
    done: bool = False  # this invocation finished a pass (the next one starts another)
    stopped: str | None = None  # the store error that cut this invocation short (the next one resumes)

    def summary(self) -> dict[str, Any]:
        return {"Checked": self.checked, "Rewritten": self.rewritten, "Restored": self.restored, "Removed": self.removed,
                "VersionsRewritten": self.versions_rewritten, "VersionsRestored": self.versions_restored,
                "VersionsRemoved": self.versions_removed, "Checkpoints": self.checkpoints,
                "TemporaryFiles": self.temporary_files, "Workspaces": self.workspaces, "Done": self.done,
                **({"Stopped": self.stopped} if self.stopped else {})}


class Clock:
    """When an invocation must stop starting work: after its own `seconds`, or MARGIN before the store's budget ends."""

    def __init__(self, seconds: float | None) -> None:
        budget = deadline()
        ends = [e for e in (None if seconds is None else time.monotonic() + seconds,
                            None if budget is None else budget - MARGIN) if e is not None]
        self.ends = min(ends) if ends else None

    def out(self) -> bool:
        return self.ends is not None and time.monotonic() >= self.ends


def run(registry: Registry, older_than: float, seconds: float | None, limit: int | None) -> Report:
    """Continue the pass the cursor names, slice by slice, until it ends, time is out (Clock), or `limit` record
    files and workspaces were looked at; the cursor is saved after each slice."""
    store = registry.store
    clock = Clock(seconds)
    report = Report(temporary_files=store.clean(older_than))
    spent = 0
    cursor = Cursor.load(store)
    try:
        while (limit is None or spent < limit) and not clock.out():
            size = SLICE if limit is None else min(SLICE, limit - spent)
            following: Cursor | None
            if cursor.phase == "catalog":
                following, used = _catalog_slice(registry, cursor, size, clock, report)
            else:
                following, used = _records_slice(registry, cursor, size, older_than, report)
            spent += used
            if following is None:
                store.delete(CURSOR)
                report.done = True
                break
            following.save(store)
            cursor = following
    except StoreError as e:
        report.stopped = type(e).__name__  # what was done is counted; the cursor names the last whole slice
    return report


def _catalog_slice(registry: Registry, cursor: Cursor, size: int, clock: Clock, report: Report) -> tuple[Cursor, int]:
    """Start the next workspace (prune its checkpoints), or compare up to `size` record files of the current one's
    models and versions with the catalog, writing those that differ or are missing."""
    store = registry.store
    if cursor.workspace is None or cursor.after == _DONE:
        if cursor.after == _DONE:
            report.workspaces += 1
        following = registry.next_workspace(cursor.workspace)
        if following is None:
            return Cursor("records"), 1
        report.checkpoints += _prune_checkpoints(store, following)
        return Cursor("catalog", following), 1
    workspace = registry.workspace(cursor.workspace)
    workspace.read()
    targets: list[tuple[Subject, Entry]] = []
    for model in workspace.models_after(cursor.after, size):
        if targets and len(targets) + 1 > size:
            break
        targets.append((Subject(model.id), model))  # a model's versions go with it, however many
        targets.extend((Subject(model.id, version.id), version) for version in workspace.versions_of(model.id))
    if not targets:
        return Cursor("catalog", cursor.workspace, _DONE), 1
    found = store.get_many([subject.record_file(workspace).key for subject, _ in targets])
    last = cursor.after
    for (subject, entry), data in zip(targets, found):
        if subject.version is None:
            if clock.out():
                break  # out of time between two models (repairs cost requests): the next slice starts here
            last = subject.model_id
        report.checked += 1
        if data != entry.raw and changes.publish(store, workspace, subject.record_file(workspace), 0):
            _count_write(report, subject, missing=data is None)
    return Cursor("catalog", cursor.workspace, last), len(targets)


def _count_write(report: Report, subject: Subject, missing: bool) -> None:
    if subject.version is None:
        if missing:
            report.restored += 1
        else:
            report.rewritten += 1
    elif missing:
        report.versions_restored += 1
    else:
        report.versions_rewritten += 1


def _records_slice(registry: Registry, cursor: Cursor, size: int, older_than: float,
                   report: Report) -> tuple[Cursor | None, int]:
    """Remove, of up to `size` keys below `models/`, the records no committed state names: a model's once it is
    older than any request (a create writes its record before its commit), a version's at once (written after)."""
    store = registry.store
    keys = store.list(MODELS, start_after=cursor.after, limit=size)
    if not keys:
        return None, 1
    oldest = time.time() - older_than
    for key in keys:
        parts = key[len(MODELS):].split("/")
        if len(parts) == 1 and parts[0].endswith(".json"):
            model_id = parts[0].removesuffix(".json")
            created = records.created_at(model_id)
            if created is None or created > oldest:
                continue  # not one of ours, or young enough to belong to a create still running
            report.checked += 1
            if _gone(registry, model_id, None):
                store.delete(key)
                report.removed.append(model_id)
        elif len(parts) == 3 and parts[1] == "versions" and parts[2].endswith(".json"):
            report.checked += 1
            if _gone(registry, parts[0], parts[2].removesuffix(".json")):
                store.delete(key)
                report.versions_removed += 1
    return Cursor("records", None, keys[-1]), len(keys)


def _gone(registry: Registry, model_id: str, version: str | None) -> bool:
    """Whether the newest committed state lacks a model (or one of its versions). Held workspaces answer a
    present one without a request; an absent one is read again first (it may have just been committed)."""
    def holds(workspace: Workspace) -> bool:
        found = workspace.model(model_id)[0] if version is None else workspace.version(model_id, version)[0]
        return found is not None

    if any(holds(workspace) for workspace in registry.held()):
        return False
    workspace = registry.home(model_id)
    if workspace is None:
        return version is not None  # a model's record that vanished meanwhile; a version's of a model gone
    workspace.read()
    return not holds(workspace)


def _prune_checkpoints(store: Store, workspace_id: str) -> int:
    """Remove a workspace's checkpoints (with their parts) but its newest KEPT_CHECKPOINTS and the one its hint
    names (a cold instance reads that one first), and the parts of checkpoints a crash left without their first
    object (below the newest checkpoint: a writer may be writing a newer one now); how many checkpoints. A LIST
    of its checkpoints and one of their parts, never of its log."""
    seqs = sorted(seq for seq in map(checkpoint_seq, store.list(checkpoints_prefix(workspace_id))) if seq is not None)
    hinted = hinted_seq(store.get_many([hint_key(workspace_id)])[0])
    kept = {*seqs[-KEPT_CHECKPOINTS:], *([hinted] if hinted else [])}
    removed = [seq for seq in seqs if seq not in kept]
    for seq in removed:
        delete_checkpoint(store, workspace_id, seq)
    parts = store.list(all_checkpoint_parts_prefix(workspace_id))
    orphans = [key for key in parts if _part_seq(key) not in seqs and seqs and (_part_seq(key) or 0) < seqs[-1]]
    store.delete_many(orphans)
    return len(removed) + len({_part_seq(key) for key in orphans})


def _part_seq(key: str) -> int | None:
    """The seq of the checkpoint a part belongs to (its directory's name), or None."""
    name = key.rpartition("/")[0].rpartition("/")[2]
    return int(name) if len(name) == 20 and name.isdigit() else None
