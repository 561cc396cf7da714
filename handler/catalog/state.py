"""A workspace's state as the catalog keeps it in memory: models and their versions, what listing
looks at, the changes commits carry, drafts that plans change, and the checkpoint format."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CatalogFormatTooNew
from ..rules.jsontext import compact
from ..rules.times import parse_utc

FORMAT = 1  # of the log entries and checkpoints this code writes; it reads these and older (0: no "Format" field)
CREATED_PER_COMMIT = 100_000  # a version's `Created` is its commit's seq times this, plus its place in the commit
MAX_WORKSPACE_BYTES = 64 << 20  # a workspace's records together (10,000 typical models take about 12 MiB)

# A commit's changes, each a post-image (applying one never needs the state before it):
#   {"Put": {"Model": record, "Fingerprint": fp}}            {"Delete": ModelId}  (its versions too)
#   {"PutVersion": {"ModelId": m, "Version": record, "Fingerprint": fp, "Token": t?, "Created": seq?}}
#   {"DeleteVersion": {"ModelId": m, "VersionName": v}}
# and beside the kind, optionally: "By", "At" (who made it, when) and "Was" (what it replaced, for change events:
# {"Existed", "ModelName"?, "ApprovalStatus"?}); applying a change reads none of them.
Change = dict[str, Any]
CHANGE_KINDS = ("Put", "Delete", "PutVersion", "DeleteVersion")


class CheckpointDamaged(Exception):
    """A checkpoint that does not parse, or whose count or checksum does not match: it is skipped, never trusted."""


def part_of_the_change_before(previous: Mapping[str, Any] | None, change: Mapping[str, Any]) -> bool:
    """Whether a change is a model's record rewritten by the plan of the version change just before it in its
    commit (its last version number, the aliases of a deleted version): part of that change, which history
    and events name, not a change of its own."""
    version = (previous or {}).get("PutVersion") or (previous or {}).get("DeleteVersion")
    return ("Put" in change and version is not None and version.get("ModelId") == change["Put"]["Model"].get("ModelId")
            and (previous or {}).get("By") == change.get("By") and (previous or {}).get("At") == change.get("At"))


def check_format(value: Mapping[str, Any], what: str) -> None:
    """Refuse (before anything of it is applied) an entry or checkpoint of a format newer than this code reads."""
    found = value.get("Format", 0)
    if not isinstance(found, int) or found > FORMAT:
        raise CatalogFormatTooNew(f"the workspace holds a {what} of format {str(found)[:20]}, newer than this registry "
                                  f"reads ({FORMAT}): upgrade it")


def check_entry(entry: Mapping[str, Any], seq: int) -> None:
    """A log entry this code can apply whole: its format, its seq, and every change of a kind it knows."""
    check_format(entry, "commit")
    if entry.get("Seq") != seq or not isinstance(entry.get("Changes"), list):
        raise CatalogFormatTooNew(f"commit {seq} of the workspace is not one this registry can read")
    for change in entry["Changes"]:
        if not isinstance(change, dict) or not any(kind in change for kind in CHANGE_KINDS):
            raise CatalogFormatTooNew(f"commit {seq} holds a change this registry does not know: upgrade it")

MODEL_FACTS = ("Domain", "Task", "Origin", "ModelType", "Provider", "OrderNumber", "ParameterSize", "GmtCreateTime",
               "GmtModifiedTime", "ModelName")
VERSION_FACTS = ("ApprovalStatus", "FormatType", "FrameworkType", "SourceId", "SourceType", "VersionName",
                 "GmtCreateTime", "GmtModifiedTime")
_TIMES = ("GmtCreateTime", "GmtModifiedTime")  # kept as epoch seconds, parsed once
_FORGOTTEN_KEPT = 10_000  # commits after which `changed` forgets a deleted model or version


def encode(value: Any) -> bytes:
    return compact(value).encode()


def version_order(name: str) -> tuple[int, int, int, str]:
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
    return tuple(parse_utc(record.get(name)) if name in _TIMES else record.get(name) for name in names)


class State:
    """A workspace's state after commit `seq`. Changed in place, one commit at a time, under its
    workspace's lock: a commit costs the same at ten models as at ten thousand."""

    def __init__(self) -> None:
        self.seq = 0
        self.models: dict[str, Entry] = {}  # by ModelId, in commit order
        self.names: dict[str, str] = {}  # ModelName -> ModelId
        self.versions: dict[str, dict[str, Entry]] = {}  # ModelId -> VersionName -> version
        self.changed: dict[str, int] = {}  # ModelId, or ModelId/VersionName -> seq of its last change
        self.txn = ""  # the Txn of commit `seq` (the next commit names it as its Prev), "" where unknown
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
        """The state a checkpoint holds; CheckpointDamaged if it is truncated or corrupt, CatalogFormatTooNew if
        a newer registry wrote it."""
        try:
            header_end = data.index(b"\n")
            header = json.loads(data[:header_end])
        except ValueError:
            raise CheckpointDamaged("no header") from None
        if not isinstance(header, dict) or not isinstance(header.get("Seq"), int):
            raise CheckpointDamaged("no header")
        check_format(header, "checkpoint")
        body = data.rstrip(b"\n")
        if header.get("Format", 0) >= 1:
            last = body.rfind(b"\n")
            try:
                end = json.loads(body[last + 1:])["End"]
            except (ValueError, KeyError, TypeError):
                raise CheckpointDamaged("no end line: truncated") from None
            if hashlib.sha256(body[:last + 1]).hexdigest() != end.get("Sha256") or body.count(b"\n", 0, last + 1) != end.get("Lines"):
                raise CheckpointDamaged("checksum or line count does not match")
            body = body[:last]
        state = cls()
        state.seq = header["Seq"]
        state.txn = str(header.get("Txn", ""))
        try:
            for line in body.split(b"\n")[1:]:  # JSON text escapes every newline inside a record
                value = json.loads(line)
                raw = line[line.index(b'"Record":') + 9:-1]  # the record's own bytes, as its file holds them
                if "ModelId" in value:
                    entry = Entry.version(value["Record"], value["Fingerprint"], value.get("Token"), value["Created"], raw)
                    state._put_version(value["ModelId"], entry, state.seq)
                else:
                    state._put(Entry.model(value["Record"], value["Fingerprint"], raw), state.seq)
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointDamaged(f"a line does not parse ({type(e).__name__})") from None
        if len(state.models) != header.get("Models"):
            raise CheckpointDamaged("the count of models does not match: truncated")
        return state


def checkpoint_of(seq: int, models: Iterable[Entry], versions: Mapping[str, Mapping[str, Entry]], txn: str = "") -> bytes:
    """A checkpoint: a line {"Seq", "Models", "Format", "Txn"}, then a line per model {"Fingerprint", "Record"}
    and per version {"ModelId", "Created", "Fingerprint", "Token", "Record"} ("Record" last, so that its bytes
    are the line's end), sorted, so that equal states give equal bytes; and a last line {"End": {"Lines",
    "Sha256"}} that counts and hashes the lines before it, so that a truncated or damaged copy is never trusted."""
    ordered = sorted(models, key=lambda e: e.id)
    lines = [encode({"Seq": seq, "Models": len(ordered), "Format": FORMAT, "Txn": txn})]
    for entry in ordered:
        lines.append(b'{"Fingerprint":%s,"Record":%s}' % (encode(entry.fingerprint), entry.raw))
        for version in sorted(versions.get(entry.id, {}).values(), key=lambda v: version_order(v.name)):
            head = encode({"ModelId": entry.id, "Created": version.created, "Fingerprint": version.fingerprint,
                           "Token": version.token})
            lines.append(head[:-1] + b',"Record":%s}' % version.raw)
    body = b"\n".join(lines) + b"\n"
    return body + encode({"End": {"Lines": len(lines), "Sha256": hashlib.sha256(body).hexdigest()}}) + b"\n"
