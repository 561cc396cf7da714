"""The registry's upkeep and its audit trail: the sweep of what interrupted writes left, and a model's history."""
from __future__ import annotations

import json
from typing import Any

from ..catalog.keys import CATALOG, log_key, log_prefix
from ..catalog.state import CREATED_PER_COMMIT, part_of_the_change_before
from ..errors import ModelNotFound
from ..stores.base import InvalidKey
from . import repair
from .models import Registry

MIN_SWEEP_AGE = 60.0
SWEEP_AGE = 600.0  # seconds: far longer than a request may run (FC's Timeout, the local server's deadline)

def sweep(registry: Registry, older_than: float = SWEEP_AGE, *, seconds: float | None = None,
          limit: int | None = None) -> dict[str, Any]:
    """Continue the sweep's pass (repair.py) for at most `seconds` (and never past the invocation's time budget) or
    `limit` record files and workspaces: rewrite record files that disagree with the catalog or are missing, remove
    those no committed state names once older than `older_than` seconds (longer than any request may run), old
    checkpoints, and the store's interrupted temporary files. What it did, counted exactly, and whether the pass ended."""
    if older_than < MIN_SWEEP_AGE:
        raise ValueError(f"the sweep only removes what is older than {MIN_SWEEP_AGE:g} seconds: a request may still be writing it")
    if limit is not None and limit < 1 or seconds is not None and seconds <= 0:
        raise ValueError("the sweep's limit and seconds must be positive")
    return repair.run(registry, older_than, seconds, limit).summary()



_HISTORY_READS = 32  # log entries read at once by `history` (each may hold whole records: this bounds its memory)
_NOT_COMPARED = ("Labels", "Tags", "GmtModifiedTime")  # what a label change alters in a record


def history(registry: Registry, model_id: str, since: int = 0, until: int | None = None) -> list[dict[str, Any]]:
    """Every committed change of a model and its versions after commit `since` (0: all) up to `until` (None: the
    newest), oldest first, a deleted model's too: its seq, who made it (an access key, or the FC account of an
    event), when, and which operation (its PAI name; a label change as CreateModelLabels or DeleteModelLabels).

    It reads the model's record, lists its workspace's log after `since` (at most until - since keys) and reads
    each of those commits (a deleted model: every workspace's log). ModelNotFound when the store holds no trace of
    the model."""
    store = registry.store
    try:
        home = registry.home(model_id)
    except InvalidKey:
        raise ModelNotFound(f"{model_id[:80]!r} is not a ModelId") from None
    homes = [home.id] if home is not None else sorted({key.split("/")[1] for key in store.list(CATALOG) if "/log/" in key})
    found: list[dict[str, Any]] = []
    for workspace_id in homes:
        if until is not None and until <= since:
            continue
        keys = store.list(log_prefix(workspace_id), start_after=log_key(workspace_id, since) if since else "",
                          limit=None if until is None else until - since)
        last: dict[str | None, dict[str, Any]] = {}  # by version name (None: the model): its record as last seen
        for at in range(0, len(keys), _HISTORY_READS):
            for data in store.get_many(keys[at:at + _HISTORY_READS]):
                if data is None:
                    continue  # a gap: no change was committed there
                entry = json.loads(data)
                found.extend(_model_changes(entry, model_id, last, first_seen_is_create=not since))
    if not found and (home is None or not since):
        after = f" after commit {since}" if since else ""
        raise ModelNotFound(f"model {model_id} has no committed change in this store{after}")
    return found


def _model_changes(entry: dict[str, Any], model_id: str, last: dict[str | None, dict[str, Any]],
                   first_seen_is_create: bool) -> list[dict[str, Any]]:
    """The changes of one log entry that touch the model, named; `last` holds each subject's record as last seen."""
    named = []
    previous: dict[str, Any] = {}
    for change in entry["Changes"]:
        version: str | None = None
        bookkeeping = part_of_the_change_before(previous, change)
        previous = change
        if bookkeeping:  # part of the version change just before it
            if change["Put"]["Model"].get("ModelId") == model_id:
                last[None] = change["Put"]["Model"]
            continue
        if "Put" in change and change["Put"]["Model"].get("ModelId") == model_id:
            record = change["Put"]["Model"]
            operation = _put_operation("Model", last.get(None), record, first_seen_is_create)
            last[None] = record
        elif "PutVersion" in change and change["PutVersion"]["ModelId"] == model_id:
            put = change["PutVersion"]
            record, version = put["Version"], str(put["Version"]["VersionName"])
            created_here = put.get("Created", 0) // CREATED_PER_COMMIT == entry["Seq"]
            operation = _put_operation("ModelVersion", last.get(version), record, first_seen_is_create or created_here)
            last[version] = record
        elif change.get("Delete") == model_id:
            operation = "DeleteModel"
        elif "DeleteVersion" in change and change["DeleteVersion"]["ModelId"] == model_id:
            version = str(change["DeleteVersion"]["VersionName"])
            operation = "DeleteModelVersion"
            last.pop(version, None)  # a version of this name created again is a new one
        else:
            continue
        named.append({"Seq": entry["Seq"], "By": change.get("By", "unknown"), "Operation": operation,
                      "At": change.get("At", entry.get("Time", "")), **({"VersionName": version} if version else {})})
    return named


def _put_operation(kind: str, before: dict[str, Any] | None, after: dict[str, Any], first_is_create: bool) -> str:
    """CreateModel, UpdateModel, CreateModelLabels or DeleteModelLabels (or the ModelVersion ones) for a record
    put over `before` (None: not seen, when the history starts at a later commit than the subject's create)."""
    if before is None:
        created = first_is_create or (kind == "Model" and after.get("GmtCreateTime") == after.get("GmtModifiedTime"))
        return f"Create{kind}" if created else f"Update{kind}"
    unlabelled = [{k: v for k, v in record.items() if k not in _NOT_COMPARED} for record in (before, after)]
    if unlabelled[0] != unlabelled[1]:
        return f"Update{kind}"
    labels = [{(label["Key"], label["Value"]) for label in record.get("Labels", [])} for record in (before, after)]
    return f"Delete{kind}Labels" if labels[1] < labels[0] else f"Create{kind}Labels" if labels[1] != labels[0] else f"Update{kind}"
