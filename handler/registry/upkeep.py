"""The registry's upkeep and its audit trail: the sweep of what interrupted writes left, and a model's history."""
from __future__ import annotations

import json
import time
from typing import Any

from ..catalog.keys import CATALOG, MODELS, checkpoint_key, hint_key, log_key, log_prefix, version_record_key
from ..catalog.state import CREATED_PER_COMMIT
from ..catalog.workspace import KEPT_CHECKPOINTS, hinted_seq
from ..errors import ModelNotFound
from ..stores.base import InvalidKey
from . import changes, records
from .changes import Subject
from .models import Registry

MIN_SWEEP_AGE = 60.0
SWEEP_AGE = 600.0  # seconds: far longer than a request may run (FC's Timeout, the local server's deadline)


def sweep(registry: Registry, older_than: float = SWEEP_AGE) -> dict[str, Any]:
    """Remove what no committed state points to and is older than `older_than` seconds (longer than any
    request may run): records of creates that never committed (a crash, a lost race whose cleanup
    failed) or of models whose delete was cut short, and a store's interrupted temporary files."""
    if older_than < MIN_SWEEP_AGE:
        raise ValueError(f"the sweep only removes what is older than {MIN_SWEEP_AGE:g} seconds: a request may still be writing it")
    store = registry.store
    removed: list[str] = []
    checked = 0
    limit = time.time() - older_than
    keys = store.list(MODELS)
    versions = [key for key in keys if key.count("/") == 3 and key.split("/")[2] == "versions"]
    for key in keys:
        model_id = key[len(MODELS):-len(".json")] if key.endswith(".json") and key.count("/") == 1 else None
        created = records.created_at(model_id) if model_id else None
        if model_id is None or created is None or created > limit:
            continue  # not a record, or young enough to belong to a create still running
        checked += 1
        if any(w.model(model_id)[0] is not None for w in registry.held()):
            continue  # a workspace read earlier in this sweep (or before) holds it: no need to read its record
        workspace = registry.home(model_id)
        if workspace is None:
            continue
        workspace.read()
        if workspace.model(model_id)[0] is None:
            store.delete(key)
            removed.append(model_id)
    return {"Checked": checked, "Removed": removed, "Versions": _sweep_versions(registry, versions, set(keys)),
            "Checkpoints": _sweep_checkpoints(registry), "TemporaryFiles": store.clean(older_than)}


def _sweep_versions(registry: Registry, keys: list[str], listed: set[str]) -> int:
    """Remove version records of versions (or models) that are gone, and write any a crash left
    unwritten, in the workspaces of the models found; how many files changed."""
    changed = 0
    for key in keys:
        _, model_id, _, file = key.split("/")
        name = file.removesuffix(".json")
        workspace = registry.home(model_id)
        if workspace is None or workspace.version(model_id, name)[0] is None:
            if workspace is not None:
                workspace.read()
            if workspace is None or workspace.version(model_id, name)[0] is None:
                registry.store.delete(key)
                changed += 1
    for workspace in registry.held():
        for model_id, names in workspace.version_names().items():
            for name in names:
                if version_record_key(model_id, name) not in listed:
                    changes.publish(registry.store, workspace, Subject(model_id, name).record_file(workspace), 0)
                    changed += 1
    return changed


def _sweep_checkpoints(registry: Registry) -> int:
    """Remove every workspace's checkpoints but its newest KEPT_CHECKPOINTS and the one its hint names (a cold
    instance reads that one first)."""
    by_workspace: dict[str, list[str]] = {}
    for key in registry.store.list(CATALOG):
        parts = key.split("/")
        if len(parts) == 4 and parts[2] == "checkpoints":
            by_workspace.setdefault(parts[1], []).append(key)
    removed = 0
    for workspace_id, keys in by_workspace.items():
        hinted = hinted_seq(registry.store.get_many([hint_key(workspace_id)])[0])
        kept = {*sorted(keys)[-KEPT_CHECKPOINTS:], *([checkpoint_key(workspace_id, hinted)] if hinted else [])}
        for key in keys:  # 20-digit seqs sort as numbers
            if key not in kept:
                registry.store.delete(key)
                removed += 1
    return removed


_HISTORY_READS = 32  # log entries read at once by `history` (each may hold whole records: this bounds its memory)
_NOT_COMPARED = ("Labels", "Tags", "GmtModifiedTime")  # what a label change alters in a record


def history(registry: Registry, model_id: str, since: int = 0) -> list[dict[str, Any]]:
    """Every committed change of a model and its versions after commit `since` (0: all), oldest first, a
    deleted model's too: its seq, who made it (an access key, or the FC account of an event), when, and which
    operation (its PAI name; a label change as CreateModelLabels or DeleteModelLabels, not an update).

    It reads the model's record, lists its workspace's log after `since` and reads each of those commits (a
    deleted model: every workspace's log). ModelNotFound when the store holds no trace of the model."""
    store = registry.store
    try:
        home = registry.home(model_id)
    except InvalidKey:
        raise ModelNotFound(f"{model_id[:80]!r} is not a ModelId") from None
    homes = [home.id] if home is not None else sorted({key.split("/")[1] for key in store.list(CATALOG) if "/log/" in key})
    found: list[dict[str, Any]] = []
    for workspace_id in homes:
        keys = store.list(log_prefix(workspace_id), start_after=log_key(workspace_id, since) if since else "")
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
    for change in entry["Changes"]:
        version: str | None = None
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
