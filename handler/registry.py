"""Model registration over a Store: one model per name in a workspace, safe under retries, races and crashes.

Keys below the store's root:

    models/<ModelId>.json                         the record (the SDK's Model shape)
    workspaces/<WorkspaceId>/models/<ModelId>     an empty marker: a workspace's models in creation order
    names/<WorkspaceId>/<sha256(ModelName)>.json  the name claim {ModelId, Fingerprint}: the commit point

A create writes the record and the marker (overlapped where the store can), then creates the claim
with the store's atomic create. A model exists once its claim does; a record or marker that no
claim points to (left by a crash, or by the loser of a race) is never shown and never blocks a name.
So every interruption leaves a state from which the same request, sent again, ends with one model:
before the claim, the retry's own claim wins; after it, the retry finds the claim, recognises its
own request by the fingerprint, and answers the ModelId the first attempt committed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from . import records
from .errors import ModelNameConflict
from .stores.base import AlreadyExists, NotFound, Store, StoreError, Unavailable, check_key

log = logging.getLogger(__name__)

_CLAIM_TRIES = 3  # a claim can vanish between our failed create and our read only if it is deleted


def record_key(model_id: str) -> str:
    return f"models/{model_id}.json"


def marker_prefix(workspace_id: str) -> str:
    return f"workspaces/{workspace_id}/models/"


def claim_key(workspace_id: str, model_name: str) -> str:
    return f"names/{workspace_id}/{hashlib.sha256(model_name.encode()).hexdigest()}.json"


class Registry:
    """CreateModel's storage logic; knows keys and records, not HTTP or events."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, normal: dict[str, Any], owner_id: str | None = None) -> tuple[str, bool]:
        """Register the model a normalized request asks for: (ModelId, created).

        created is False when the same request had already registered it (a retry).
        Raises ModelNameConflict when the name is taken by a different request.
        """
        model_id = records.new_model_id()
        workspace_id, name = normal["WorkspaceId"], normal["ModelName"]
        # Every key is checked before the first write, so a refused one leaves nothing behind.
        record_at, marker_at, key = (check_key(k) for k in (
            record_key(model_id), marker_prefix(workspace_id) + model_id, claim_key(workspace_id, name)))
        record = records.build_record(normal, model_id, time.time(), owner_id)
        self.store.create_all([(record_at, records.record_json(record)), (marker_at, b"")])
        mine = {"ModelId": model_id, "Fingerprint": records.fingerprint(normal)}
        for _ in range(_CLAIM_TRIES):
            try:
                self.store.create(key, records.canonical_json(mine))
                return model_id, True
            except AlreadyExists:
                pass
            try:
                theirs = json.loads(self.store.get(key))
            except NotFound:
                continue
            self._discard(model_id, workspace_id)
            if theirs["Fingerprint"] == mine["Fingerprint"]:
                return theirs["ModelId"], False
            raise ModelNameConflict(
                f"a model named {name!r} already exists in workspace {workspace_id} "
                f"({theirs['ModelId']}) with different fields"
            )
        raise Unavailable("name claim kept changing")

    def get(self, model_id: str) -> dict[str, Any] | None:
        """The record of a confirmed model, or None (absent, or never confirmed by its claim)."""
        try:
            record = json.loads(self.store.get(record_key(model_id)))
            claim = json.loads(self.store.get(claim_key(record["WorkspaceId"], record["ModelName"])))
        except NotFound:
            return None
        return record if claim["ModelId"] == model_id else None

    def list_ids(self, workspace_id: str) -> list[str]:
        """ModelIds of a workspace's confirmed models, oldest first."""
        prefix = marker_prefix(workspace_id)
        ids = [key[len(prefix):] for key in self.store.list(prefix)]
        return [model_id for model_id in ids if self.get(model_id) is not None]

    def _discard(self, model_id: str, workspace_id: str) -> None:
        """Remove an unconfirmed attempt's record and marker; a leftover is harmless, so failures are only logged."""
        for key in (marker_prefix(workspace_id) + model_id, record_key(model_id)):
            try:
                self.store.delete(key)
            except StoreError as e:
                log.warning("could not remove unconfirmed %s: %s", key, type(e).__name__)
