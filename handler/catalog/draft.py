"""A draft: a workspace's state with a batch's uncommitted changes on top, which plans read and change."""
from __future__ import annotations

from typing import Any, NamedTuple

from ..errors import QuotaExceeded
from .entry import ALIASES, VERSION_FACTS
from .state import CREATED_PER_COMMIT, MAX_WORKSPACE_BYTES, MODEL_MEMORY, VERSION_MEMORY, Change, Entry, State

_ABSENT = object()


class Mark(NamedTuple):
    """Where a draft stood before a plan ran: what Draft.undo goes back to."""

    changes: int
    undo: int
    bytes: int


class Draft:
    """A state with a batch's uncommitted changes on top: what plans read and change."""

    def __init__(self, base: State, max_bytes: int = MAX_WORKSPACE_BYTES) -> None:
        self.base = base
        self.seq = base.seq  # taken first: if base moves while a plan reads it, the commit at seq + 1 fails
        self.bytes = base.memory  # what the quota counts
        self.max_bytes = max_bytes
        self.changes: list[Change] = []
        self.by: dict[str, str] = {}  # who makes the changes the plan now running adds, and when
        self._models: dict[str, Entry | None] = {}
        self._names: dict[str, str | None] = {}
        self._versions: dict[tuple[str, str], Entry | None] = {}
        self._undo: list[tuple[dict[Any, Any], Any, Any]] = []  # (table, key, what it held before) per write

    def mark(self) -> Mark:
        return Mark(len(self.changes), len(self._undo), self.bytes)

    def undo(self, mark: Mark) -> None:
        """Back to where the draft stood at mark: a plan that raised after changing it (a model put, then its
        version refused) leaves nothing that a later plan of its batch could read or commit."""
        while len(self._undo) > mark.undo:
            table, key, before = self._undo.pop()
            if before is _ABSENT:
                del table[key]
            else:
                table[key] = before
        del self.changes[mark.changes:]
        self.bytes = mark.bytes

    def _set(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        self._undo.append((table, key, table.get(key, _ABSENT)))
        table[key] = value

    def model(self, model_id: str) -> Entry | None:
        return self._models[model_id] if model_id in self._models else self.base.models.get(model_id)

    def named(self, name: str) -> str | None:
        return self._names[name] if name in self._names else self.base.names.get(name)

    def version(self, model_id: str, name: str) -> Entry | None:
        if (model_id, name) in self._versions:
            return self._versions[(model_id, name)]
        exists = self._models[model_id] is not None if model_id in self._models else model_id in self.base.models
        return self.base.versions.get(model_id, {}).get(name) if exists else None  # no model entry built to ask

    def versions(self, model_id: str) -> list[Entry]:
        """Every version the model has in this draft."""
        names = {*self.base.versions.get(model_id, {}), *(n for m, n in self._versions if m == model_id)}
        found = (self.version(model_id, name) for name in names)
        return [v for v in found if v is not None]

    def _grow(self, new: int, old: int) -> None:
        grown = self.bytes + new - old
        if grown > self.max_bytes and grown > self.bytes:
            raise QuotaExceeded(f"the workspace's models would take about {grown} bytes of memory; its limit is {self.max_bytes}")
        self.bytes = grown

    def put(self, record: dict[str, Any], fingerprint: str, raw: bytes | None = None) -> None:
        """Put a model's record; refused (before anything changes) when the workspace's records would outgrow
        their bound, which is what bounds the memory an instance holding the workspace needs."""
        entry = Entry.model(record, fingerprint, raw)
        old = self.model(entry.id)
        self._grow(len(entry.raw) + MODEL_MEMORY, len(old.raw) + MODEL_MEMORY if old else 0)
        if old is not None and self.named(old.name) == old.id:
            self._set(self._names, old.name, None)
        self._set(self._models, entry.id, entry)
        self._set(self._names, entry.name, entry.id)
        was: dict[str, Any] = {"Existed": old is not None}
        if old is not None and (before := old.record().get(ALIASES, [])) != record.get(ALIASES, []):
            was[ALIASES] = before  # an alias set, moved or removed: the events say from what
        self.changes.append({"Put": {"Model": record, "Fingerprint": fingerprint}, **self.by, "Was": was})

    def delete(self, model_id: str) -> list[str]:
        """Delete a model and its versions; the names of the versions it had."""
        old = self.model(model_id)
        gone = [v.name for v in self.versions(model_id)]
        if old is not None:
            self.bytes -= len(old.raw) + MODEL_MEMORY
            if self.named(old.name) == old.id:
                self._set(self._names, old.name, None)
        for name in gone:
            version = self.version(model_id, name)
            self.bytes -= len(version.raw) + VERSION_MEMORY if version else 0
            self._set(self._versions, (model_id, name), None)
        self._set(self._models, model_id, None)
        self.changes.append({"Delete": model_id, **self.by, "Was": {"Existed": old is not None, "ModelName": old.name if old else ""}})
        return gone

    def put_version(self, model_id: str, record: dict[str, Any], fingerprint: str, token: str | None = None) -> None:
        name = str(record["VersionName"])
        old = self.version(model_id, name)
        # Creation order: the commit, then the place in it (a batch may create several versions of a model).
        created = old.created if old is not None else (self.seq + 1) * CREATED_PER_COMMIT + len(self.changes)
        entry = Entry.version(record, fingerprint, token, created)
        self._grow(len(entry.raw) + VERSION_MEMORY, len(old.raw) + VERSION_MEMORY if old else 0)
        self._set(self._versions, (model_id, name), entry)
        put: dict[str, Any] = {"ModelId": model_id, "Version": record, "Fingerprint": fingerprint, "Created": created}
        if token is not None:
            put["Token"] = token
        self.changes.append({"PutVersion": put, **self.by, "Was": self._was(model_id, old)})

    def delete_version(self, model_id: str, name: str) -> None:
        old = self.version(model_id, name)
        self.bytes -= len(old.raw) + VERSION_MEMORY if old else 0
        self._set(self._versions, (model_id, name), None)
        self.changes.append({"DeleteVersion": {"ModelId": model_id, "VersionName": name}, **self.by, "Was": self._was(model_id, old)})

    def _was(self, model_id: str, old: Entry | None) -> dict[str, Any]:
        """What a version change replaced, for the change events the log feeds (docs/events.md): whether the
        version existed, its ApprovalStatus then, and its model's name."""
        model = self.model(model_id)
        was: dict[str, Any] = {"Existed": old is not None, "ModelName": model.name if model else ""}
        if old is not None:
            was["ApprovalStatus"] = old.fact("ApprovalStatus", VERSION_FACTS)
        return was
