"""Model versions over the catalog: create (named or the next name), read, list, update, delete and
label them, with the guarantees models have. A version's record is `models/<ModelId>/versions/<VersionName>.json`."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from . import listing, records
from .catalog import Workspace
from .errors import InvalidParameter, ModelNotFound, VersionNameConflict, VersionNotFound
from .registry import MAX_LABELS, RecordFile, Registry, version_key
from .state import Draft, Entry
from .validation import validator


class Versions:
    """The seven version operations; a model's versions live in its workspace's catalog."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def create(self, model_id: str, fields: dict[str, Any], owner_id: str | None = None,
               token: str | None = None) -> tuple[str, bool]:
        """Add a version: (its name, created). A named version that exists answers its name when the
        request is the same (a retry), else 409; an unnamed one takes the next name after the model's
        highest. A token (an event's identity) makes the create idempotent: redelivered, it finds its version."""
        workspace = self.registry.workspace_of(model_id)
        normal = records.normalized_version(fields)
        if len(normal["Labels"]) > MAX_LABELS:
            raise InvalidParameter(f"a version has at most {MAX_LABELS} labels")
        fingerprint = records.fingerprint(normal)
        requested = fields.get("VersionName")
        now = time.time()

        def plan(draft: Draft) -> tuple[str, bool]:
            if draft.model(model_id) is None:
                raise ModelNotFound(f"model {model_id} does not exist")
            versions = draft.versions(model_id)
            if token is not None:
                for version in versions:
                    if version.token == token:
                        return version.name, False
            if requested is not None:
                existing = draft.version(model_id, requested)
                if existing is not None:
                    if existing.fingerprint == fingerprint:
                        return requested, False
                    raise VersionNameConflict(f"model {model_id} has a version {requested} with other fields")
                name = requested
            else:
                name = records.next_version_name([v.name for v in versions])
                if not validator("common.json#/$defs/VersionName").is_valid(name):
                    raise InvalidParameter(f"model {model_id} has no next version name after its highest; give a VersionName")
            draft.put_version(model_id, records.build_version(normal, name, now, owner_id), fingerprint, token)
            return name, True

        (name, created), seq = workspace.commit(plan)
        # Written, then checked: a delete committed meanwhile would otherwise find no file to remove
        # and leave ours behind. A retry that found its version repairs the file only if needed.
        self.registry.publish(workspace, self.record(workspace, model_id, name), seq or 0)
        if created:
            workspace.maybe_checkpoint()
        return name, created

    def list_versions(self, model_id: str, query: listing.VersionQuery) -> tuple[list[dict[str, Any]], int]:
        workspace = self.registry.workspace_of(model_id)
        workspace.read()
        if workspace.model(model_id)[0] is None:
            raise ModelNotFound(f"model {model_id} does not exist")
        entries, total = listing.version_page(workspace, model_id, query)
        return [entry.record() for entry in entries], total

    def get(self, model_id: str, name: str) -> dict[str, Any]:
        workspace = self.registry.workspace_of(model_id)
        workspace.read()
        return self._entry(workspace, model_id, name).record()

    def update(self, model_id: str, name: str, fields: dict[str, Any]) -> None:
        self._modify(model_id, name, lambda record: records.updated_version(record, fields))

    def add_labels(self, model_id: str, name: str, labels: list[dict[str, str]]) -> None:
        keys = {label["Key"] for label in labels}

        def change(record: dict[str, Any]) -> dict[str, Any]:
            merged = [lb for lb in record["Labels"] if lb["Key"] not in keys] + records.merged_labels({"Labels": labels})
            if len(merged) > MAX_LABELS:
                raise InvalidParameter(f"a version has at most {MAX_LABELS} labels; this would make {len(merged)}")
            return {**record, "Labels": merged}

        self._modify(model_id, name, change)

    def remove_labels(self, model_id: str, name: str, keys: Iterable[str]) -> None:
        gone = set(keys)
        self._modify(model_id, name, lambda record: {**record, "Labels": [lb for lb in record["Labels"] if lb["Key"] not in gone]})

    def delete(self, model_id: str, name: str) -> None:
        workspace = self.registry.workspace_of(model_id)

        def plan(draft: Draft) -> None:
            self._draft_entry(draft, model_id, name)
            draft.delete_version(model_id, name)

        try:
            _, seq = workspace.commit(plan)
        except (ModelNotFound, VersionNotFound):
            self.registry.publish(workspace, self.record(workspace, model_id, name), 0)  # a delete cut short
            raise
        self.registry.publish(workspace, self.record(workspace, model_id, name), seq or 0)

    def _modify(self, model_id: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        workspace = self.registry.workspace_of(model_id)

        def plan(draft: Draft) -> None:
            entry = self._draft_entry(draft, model_id, name)
            old = entry.record()
            new = change(old)
            if records.same_content(new, old):
                return
            draft.put_version(model_id, records.touched(new), entry.fingerprint, entry.token)

        _, seq = workspace.commit(plan)
        self.registry.publish(workspace, self.record(workspace, model_id, name), seq or 0)
        if seq is not None:
            workspace.maybe_checkpoint()

    @staticmethod
    def record(workspace: Workspace, model_id: str, name: str) -> RecordFile:
        return RecordFile(version_key(model_id, name), f"{model_id}/{name}", lambda: workspace.version(model_id, name))

    @staticmethod
    def _entry(workspace: Workspace, model_id: str, name: str) -> Entry:
        if workspace.model(model_id)[0] is None:
            raise ModelNotFound(f"model {model_id} does not exist")
        entry, _ = workspace.version(model_id, name)
        if entry is None:
            raise VersionNotFound(f"model {model_id} has no version {name}")
        return entry

    @staticmethod
    def _draft_entry(draft: Draft, model_id: str, name: str) -> Entry:
        if draft.model(model_id) is None:
            raise ModelNotFound(f"model {model_id} does not exist")
        entry = draft.version(model_id, name)
        if entry is None:
            raise VersionNotFound(f"model {model_id} has no version {name}")
        return entry
