"""The registry's upkeep and its audit trail: the sweep of what interrupted writes left, and a model's history."""
from __future__ import annotations

import json
from typing import Any

from ..catalog.keys import CATALOG, log_prefix
from ..errors import ModelNotFound
from . import repair
from .models import Registry

MIN_SWEEP_AGE = 60.0
SWEEP_AGE = 600.0  # seconds: far longer than a request may run (FC's Timeout, the local server's deadline)

_HISTORY_KINDS = {  # a change's kind: the operation of its first appearance, of a later one, of a delete
    "Put": ("CreateModel", "UpdateModel", None), "Delete": (None, None, "DeleteModel"),
    "PutVersion": ("CreateModelVersion", "UpdateModelVersion", None), "DeleteVersion": (None, None, "DeleteModelVersion"),
}


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
