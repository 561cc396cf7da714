"""The registry's upkeep and its audit trail: the sweep of what interrupted writes left, and a model's history."""
from __future__ import annotations

import json
import time
from typing import Any

from ..catalog.keys import CATALOG, MODELS, checkpoint_key, hint_key, log_prefix, version_record_key
from ..catalog.workspace import KEPT_CHECKPOINTS, hinted_seq
from ..errors import ModelNotFound
from . import changes, records
from .changes import Subject
from .models import Registry

MIN_SWEEP_AGE = 60.0
SWEEP_AGE = 600.0  # seconds: far longer than a request may run (FC's Timeout, the local server's deadline)

_HISTORY_KINDS = {  # a change's kind: the operation of its first appearance, of a later one, of a delete
    "Put": ("CreateModel", "UpdateModel", None), "Delete": (None, None, "DeleteModel"),
    "PutVersion": ("CreateModelVersion", "UpdateModelVersion", None), "DeleteVersion": (None, None, "DeleteModelVersion"),
}


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


def _bookkeeping(previous: dict[str, Any], change: dict[str, Any]) -> bool:
    """A model's record rewritten by the plan of the version change just before it (its last version number,
    or the aliases of a deleted version): part of that change, not an UpdateModel of its own."""
    version = previous.get("PutVersion") or previous.get("DeleteVersion")
    return (version is not None and version.get("ModelId") == change["Put"]["Model"].get("ModelId")
            and (previous.get("By"), previous.get("At")) == (change.get("By"), change.get("At")))


def history(registry: Registry, model_id: str) -> list[dict[str, Any]]:
    """Every committed change of a model and its versions, oldest first, a deleted model's too: its
    seq, who made it (an access key, or the FC account of an event), when, and which operation."""
    store = registry.store
    try:
        homes = [registry.workspace_of(model_id).id]
    except ModelNotFound:  # deleted (or never created): look through every workspace's log
        homes = sorted({key.split("/")[1] for key in store.list(CATALOG) if "/log/" in key})
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str | None]] = set()
    for home in homes:
        for key in store.list(log_prefix(home)):
            entry = json.loads(store.get(key))
            previous: dict[str, Any] = {}
            for change in entry["Changes"]:
                kind = next(k for k in _HISTORY_KINDS if k in change)
                if kind == "Put" and _bookkeeping(previous, change):
                    continue
                previous = change
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
