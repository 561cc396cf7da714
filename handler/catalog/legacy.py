"""The layout before the catalog: per-workspace markers and name claims beside the records, read once
into a workspace's first commit (docs/catalog.md, "The layout before the catalog")."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from ..stores.base import Store
from .keys import record_key
from .state import Change


def legacy_models(store: Store) -> Callable[[str], list[Change]]:
    """A reader of a workspace's models as the layout before the catalog kept them."""
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
