"""A workspace's state as the catalog keeps it in memory: models and their versions, what listing
looks at, the changes commits carry, drafts that plans change, and the checkpoint format."""
from __future__ import annotations

import calendar
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import QuotaExceeded

CREATED_PER_COMMIT = 100_000  # a version's `Created` is its commit's seq times this, plus its place in the commit
MAX_WORKSPACE_BYTES = 64 << 20  # a workspace's records together (10,000 typical models take about 12 MiB)

# A commit's changes, each a post-image (applying one never needs the state before it):
#   {"Put": {"Model": record, "Fingerprint": fp}}            {"Delete": ModelId}  (its versions too)
#   {"PutVersion": {"ModelId": m, "Version": record, "Fingerprint": fp, "Token": t?, "Created": seq?}}
#   {"DeleteVersion": {"ModelId": m, "VersionName": v}}
Change = dict[str, Any]

MODEL_FACTS = ("Domain", "Task", "Origin", "ModelType", "Provider", "OrderNumber", "ParameterSize", "GmtCreateTime",
               "GmtModifiedTime", "ModelName")
VERSION_FACTS = ("ApprovalStatus", "FormatType", "FrameworkType", "SourceId", "SourceType", "VersionName",
                 "GmtCreateTime", "GmtModifiedTime")
_TIMES = ("GmtCreateTime", "GmtModifiedTime")  # kept as epoch seconds, parsed once
_FORGOTTEN_KEPT = 10_000  # commits after which `changed` forgets a deleted model or version


def encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def seconds(text: Any) -> float | None:
    """Epoch seconds of a record's time (`2021-01-21T17:12:35Z`)."""
    if not isinstance(text, str) or len(text) < 20:
        return None
    try:
        return calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                                int(text[17:19])))
    except ValueError:
        return None


def version_key(name: str) -> tuple[int, int, int, str]:
    """`1.10.0_beta` sorts as (1, 10, 0, 'beta'): after 1.9.0, as people read versions."""
    numbers, _, suffix = name.partition("_")
    major, minor, patch = (int(part) for part in numbers.split("."))
    return major, minor, patch, suffix


@dataclass(frozen=True, slots=True)
class Entry:
    """A model or a version as the catalog keeps it: its record as stored (bytes, a third of the memory of
    the parsed object), the fingerprint of the request that created it, and what listing looks at."""

    raw: bytes  # the record exactly as its file holds it
    fingerprint: str
    id: str  # ModelId, or VersionName
    name: str  # ModelName, or VersionName
    facts: tuple[Any, ...]  # MODEL_FACTS or VERSION_FACTS, None where absent; times as epoch seconds
    labels: frozenset[tuple[str, str]]  # (Key, Value) pairs
    search: str  # what ListModels' Query looks in (models only): name, domain, task, labels, lower-cased
    token: str | None = None  # versions: the idempotency token of the event that registered it
    created: int = 0  # versions: the seq of the commit that created it (the newest is the LatestVersion)

    @classmethod
    def model(cls, record: Mapping[str, Any], fingerprint: str, raw: bytes | None = None) -> Entry:
        labels = frozenset((label["Key"], label["Value"]) for label in record["Labels"])
        words = [record["ModelName"], record.get("Domain", ""), record.get("Task", ""), *(w for pair in labels for w in pair)]
        return cls(raw if raw is not None else encode(record), fingerprint, str(record["ModelId"]), str(record["ModelName"]),
                   _facts(record, MODEL_FACTS), labels, "\n".join(words).lower())

    @classmethod
    def version(cls, record: Mapping[str, Any], fingerprint: str, token: str | None, created: int,
                raw: bytes | None = None) -> Entry:
        labels = frozenset((label["Key"], label["Value"]) for label in record.get("Labels", []))
        name = str(record["VersionName"])
        return cls(raw if raw is not None else encode(record), fingerprint, name, name, _facts(record, VERSION_FACTS),
                   labels, "", token, created)

    def fact(self, name: str, facts: tuple[str, ...] = MODEL_FACTS) -> Any:
        return self.facts[facts.index(name)]

    def record(self) -> dict[str, Any]:
        """The record as an object (parsed on each call)."""
        return json.loads(self.raw)  # type: ignore[no-any-return]


def _facts(record: Mapping[str, Any], names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(seconds(record.get(name)) if name in _TIMES else record.get(name) for name in names)


class State:
    """A workspace's state after commit `seq`. Changed in place, one commit at a time, under its
    workspace's lock: a commit costs the same at ten models as at ten thousand."""

    def __init__(self) -> None:
        self.seq = 0
        self.models: dict[str, Entry] = {}  # by ModelId, in commit order
        self.names: dict[str, str] = {}  # ModelName -> ModelId
        self.versions: dict[str, dict[str, Entry]] = {}  # ModelId -> VersionName -> version
        self.changed: dict[str, int] = {}  # ModelId, or ModelId/VersionName -> seq of its last change
        self.bytes = 0  # of the records held: what the workspace's quota counts, and about a third of its memory
        self.gone = 0  # deletes `changed` remembers (so that it can forget them)

    def latest(self, model_id: str) -> Entry | None:
        """The model's most recently created version."""
        versions = self.versions.get(model_id)
        return max(versions.values(), key=lambda v: v.created) if versions else None

    def apply(self, seq: int, changes: Iterable[Change]) -> State:
        for change in changes:
            if "Put" in change:
                self._put(Entry.model(change["Put"]["Model"], change["Put"]["Fingerprint"]), seq)
            elif "Delete" in change:
                self._delete(change["Delete"], seq)
            elif "PutVersion" in change:
                put = change["PutVersion"]
                self._put_version(put["ModelId"], Entry.version(put["Version"], put["Fingerprint"], put.get("Token"),
                                                                put.get("Created") or seq * CREATED_PER_COMMIT), seq)
            else:
                gone = change["DeleteVersion"]
                self._delete_version(gone["ModelId"], gone["VersionName"], seq)
        self.seq = seq
        if self.gone > 2 * _FORGOTTEN_KEPT:
            self._forget()
        return self

    def _forget(self) -> None:
        """Drop what `changed` remembers of deleted models and versions long gone: under churn it would
        grow without bound, and only a write of the last few commits asks about one."""
        horizon, self.gone = self.seq - _FORGOTTEN_KEPT, 0
        for key, seq in list(self.changed.items()):
            model_id, _, name = key.partition("/")
            if model_id in self.models and (not name or name in self.versions.get(model_id, {})):
                continue
            if seq < horizon:
                del self.changed[key]
            else:
                self.gone += 1

    def _put(self, entry: Entry, seq: int) -> None:
        old = self.models.get(entry.id)
        if old is not None:
            self.bytes -= len(old.raw)
            if self.names.get(old.name) == old.id:
                del self.names[old.name]
        self.models[entry.id], self.names[entry.name] = entry, entry.id
        self.bytes += len(entry.raw)
        self.changed[entry.id] = seq

    def _delete(self, model_id: str, seq: int) -> None:
        old = self.models.pop(model_id, None)
        if old is not None:
            self.bytes -= len(old.raw)
            if self.names.get(old.name) == old.id:
                del self.names[old.name]
        for name in list(self.versions.get(model_id, {})):
            self._delete_version(model_id, name, seq)
        self.versions.pop(model_id, None)
        self.changed[model_id] = seq
        self.gone += 1

    def _put_version(self, model_id: str, entry: Entry, seq: int) -> None:
        versions = self.versions.setdefault(model_id, {})
        old = versions.get(entry.name)
        self.bytes += len(entry.raw) - (len(old.raw) if old else 0)
        versions[entry.name] = entry
        self.changed[f"{model_id}/{entry.name}"] = seq

    def _delete_version(self, model_id: str, name: str, seq: int) -> None:
        old = self.versions.get(model_id, {}).pop(name, None)
        if old is not None:
            self.bytes -= len(old.raw)
        self.changed[f"{model_id}/{name}"] = seq
        self.gone += 1

    @classmethod
    def from_checkpoint(cls, data: bytes) -> State:
        header, *lines = data.rstrip(b"\n").split(b"\n")  # JSON text escapes every newline inside a record
        state = cls()
        state.seq = int(json.loads(header)["Seq"])
        for line in lines:
            value = json.loads(line)
            raw = line[line.index(b'"Record":') + 9:-1]  # the record's own bytes, as its file holds them
            if "ModelId" in value:
                entry = Entry.version(value["Record"], value["Fingerprint"], value.get("Token"), value["Created"], raw)
                state._put_version(value["ModelId"], entry, state.seq)
            else:
                state._put(Entry.model(value["Record"], value["Fingerprint"], raw), state.seq)
        return state


def checkpoint_of(seq: int, models: Iterable[Entry], versions: Mapping[str, Mapping[str, Entry]]) -> bytes:
    """A checkpoint: a line {"Seq", "Models"}, then a line per model {"Fingerprint", "Record"} and per
    version {"ModelId", "Created", "Fingerprint", "Token", "Record"} ("Record" last, so that its bytes are
    the line's end), sorted, so that equal states give equal bytes."""
    ordered = sorted(models, key=lambda e: e.id)
    lines = [encode({"Seq": seq, "Models": len(ordered)})]
    for entry in ordered:
        lines.append(b'{"Fingerprint":%s,"Record":%s}' % (encode(entry.fingerprint), entry.raw))
        for version in sorted(versions.get(entry.id, {}).values(), key=lambda v: version_key(v.name)):
            head = encode({"ModelId": entry.id, "Created": version.created, "Fingerprint": version.fingerprint,
                           "Token": version.token})
            lines.append(head[:-1] + b',"Record":%s}' % version.raw)
    return b"\n".join(lines) + b"\n"


class Draft:
    """A state with a batch's uncommitted changes on top: what plans read and change."""

    def __init__(self, base: State, max_bytes: int = MAX_WORKSPACE_BYTES) -> None:
        self.base = base
        self.seq = base.seq  # taken first: if base moves while a plan reads it, the commit at seq + 1 fails
        self.bytes = base.bytes
        self.max_bytes = max_bytes
        self.changes: list[Change] = []
        self.by: dict[str, str] = {}  # who makes the changes the plan now running adds, and when
        self._models: dict[str, Entry | None] = {}
        self._names: dict[str, str | None] = {}
        self._versions: dict[tuple[str, str], Entry | None] = {}

    def model(self, model_id: str) -> Entry | None:
        return self._models[model_id] if model_id in self._models else self.base.models.get(model_id)

    def named(self, name: str) -> str | None:
        return self._names[name] if name in self._names else self.base.names.get(name)

    def version(self, model_id: str, name: str) -> Entry | None:
        if (model_id, name) in self._versions:
            return self._versions[(model_id, name)]
        return self.base.versions.get(model_id, {}).get(name) if self.model(model_id) is not None else None

    def versions(self, model_id: str) -> list[Entry]:
        """Every version the model has in this draft."""
        names = {*self.base.versions.get(model_id, {}), *(n for m, n in self._versions if m == model_id)}
        found = (self.version(model_id, name) for name in names)
        return [v for v in found if v is not None]

    def _grow(self, new: int, old: int) -> None:
        grown = self.bytes + new - old
        if grown > self.max_bytes and grown > self.bytes:
            raise QuotaExceeded(f"the workspace's model records would take {grown} bytes; its limit is {self.max_bytes}")
        self.bytes = grown

    def put(self, record: dict[str, Any], fingerprint: str, raw: bytes | None = None) -> None:
        """Put a model's record; refused (before anything changes) when the workspace's records would outgrow
        their bound, which is what bounds the memory an instance holding the workspace needs."""
        entry = Entry.model(record, fingerprint, raw)
        old = self.model(entry.id)
        self._grow(len(entry.raw), len(old.raw) if old else 0)
        if old is not None and self.named(old.name) == old.id:
            self._names[old.name] = None
        self._models[entry.id], self._names[entry.name] = entry, entry.id
        self.changes.append({"Put": {"Model": record, "Fingerprint": fingerprint}, **self.by})

    def delete(self, model_id: str) -> list[str]:
        """Delete a model and its versions; the names of the versions it had."""
        old = self.model(model_id)
        gone = [v.name for v in self.versions(model_id)]
        if old is not None:
            self.bytes -= len(old.raw)
            if self.named(old.name) == old.id:
                self._names[old.name] = None
        for name in gone:
            version = self.version(model_id, name)
            self.bytes -= len(version.raw) if version else 0
            self._versions[(model_id, name)] = None
        self._models[model_id] = None
        self.changes.append({"Delete": model_id, **self.by})
        return gone

    def put_version(self, model_id: str, record: dict[str, Any], fingerprint: str, token: str | None = None) -> None:
        name = str(record["VersionName"])
        old = self.version(model_id, name)
        # Creation order: the commit, then the place in it (a batch may create several versions of a model).
        created = old.created if old is not None else (self.seq + 1) * CREATED_PER_COMMIT + len(self.changes)
        entry = Entry.version(record, fingerprint, token, created)
        self._grow(len(entry.raw), len(old.raw) if old else 0)
        self._versions[(model_id, name)] = entry
        put: dict[str, Any] = {"ModelId": model_id, "Version": record, "Fingerprint": fingerprint, "Created": created}
        if token is not None:
            put["Token"] = token
        self.changes.append({"PutVersion": put, **self.by})

    def delete_version(self, model_id: str, name: str) -> None:
        old = self.version(model_id, name)
        self.bytes -= len(old.raw) if old else 0
        self._versions[(model_id, name)] = None
        self.changes.append({"DeleteVersion": {"ModelId": model_id, "VersionName": name}, **self.by})
