"""A workspace's state as the catalog keeps it in memory: models and their versions, what listing
looks at, the changes commits carry, drafts that plans change, and the checkpoint format."""
from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CatalogFormatTooNew
from .entry import Entry as Entry
from .entry import encode as encode
from .entry import version_order
from .table import ModelTable

FORMAT = 1  # of the log entries this code writes; it reads these and older (0: no "Format" field)
CHECKPOINT_FORMAT = 2  # of the checkpoints it writes (2: columns and bare records); it reads these and older
CREATED_PER_COMMIT = 100_000  # a version's `Created` is its commit's seq times this, plus its place in the commit
_COLUMN_BYTES = 200  # what a model's columns take in a checkpoint, about
PART_BYTES = 8 << 20  # records beyond this go in checkpoint parts of about this size, written and read one by one
MAX_WORKSPACE_BYTES = 128 << 20  # the memory a workspace may take in an instance (100,000 typical models take about 100 MiB)
MODEL_MEMORY = 512  # what a model takes in memory beyond its record's bytes (measured: the bench's catalog.memory)
VERSION_MEMORY = 448  # what a version takes beyond its record's bytes

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


def check_format(value: Mapping[str, Any], what: str, newest: int) -> None:
    """Refuse (before anything of it is applied) an entry or checkpoint of a format newer than this code reads."""
    found = value.get("Format", 0)
    if not isinstance(found, int) or found > newest:
        raise CatalogFormatTooNew(f"the workspace holds a {what} of format {str(found)[:20]}, newer than this registry "
                                  f"reads ({newest}): upgrade it")


def check_entry(entry: Mapping[str, Any], seq: int) -> None:
    """A log entry this code can apply whole: its format, its seq, and every change of a kind it knows."""
    check_format(entry, "commit", FORMAT)
    if entry.get("Seq") != seq or not isinstance(entry.get("Changes"), list):
        raise CatalogFormatTooNew(f"commit {seq} of the workspace is not one this registry can read")
    for change in entry["Changes"]:
        if not isinstance(change, dict) or not any(kind in change for kind in CHANGE_KINDS):
            raise CatalogFormatTooNew(f"commit {seq} holds a change this registry does not know: upgrade it")

_FORGOTTEN_KEPT = 10_000  # commits after which `changed` forgets a deleted model or version


class State:
    """A workspace's state after commit `seq`. Changed in place, one commit at a time, under its
    workspace's lock: a commit costs the same at ten models as at ten thousand."""

    def __init__(self, models: ModelTable | None = None) -> None:
        self.seq = 0
        self.models = models if models is not None else ModelTable()  # by ModelId
        self.versions: dict[str, dict[str, Entry]] = {}  # ModelId -> VersionName -> version
        self.changed: dict[str, int] = {}  # ModelId/VersionName, or a deleted ModelId -> seq of its last change
        self.txn = ""  # the Txn of commit `seq` (the next commit names it as its Prev), "" where unknown
        self.version_bytes = 0
        self.version_count = 0
        self.gone = 0  # deletes `changed` remembers (so that it can forget them)

    @property
    def names(self) -> dict[str, str]:
        """ModelName -> ModelId."""
        return self.models.names

    @property
    def record_bytes(self) -> int:
        """Of the records held: what the workspace's quota counts, and the most of its memory."""
        return self.models.bytes + self.version_bytes

    @property
    def memory(self) -> int:
        """What the state takes in memory, about: the records, and what each model and version costs beside its
        record. The workspace's quota counts this."""
        return self.record_bytes + MODEL_MEMORY * len(self.models) + VERSION_MEMORY * self.version_count

    def changed_at(self, key: str) -> int:
        """The seq of the last commit that changed a model (its ID) or a version (ModelId/VersionName); 0: none known."""
        slot = self.models.ids.get(key)
        return self.models.changed[slot] if slot is not None else self.changed.get(key, 0)

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
            if name and name in self.versions.get(model_id, {}):
                continue
            if seq < horizon:
                del self.changed[key]
            else:
                self.gone += 1

    def _put(self, entry: Entry, seq: int) -> None:
        self.models.put(entry, seq)
        self.changed.pop(entry.id, None)

    def _delete(self, model_id: str, seq: int) -> None:
        self.models.remove(model_id)
        for name in list(self.versions.get(model_id, {})):
            self._delete_version(model_id, name, seq)
        self.versions.pop(model_id, None)
        self.changed[model_id] = seq
        self.gone += 1

    def _put_version(self, model_id: str, entry: Entry, seq: int) -> None:
        versions = self.versions.setdefault(model_id, {})
        old = versions.get(entry.name)
        self.version_bytes += len(entry.raw) - (len(old.raw) if old else 0)
        self.version_count += old is None
        versions[entry.name] = entry
        self.changed[f"{model_id}/{entry.name}"] = seq

    def _delete_version(self, model_id: str, name: str, seq: int) -> None:
        old = self.versions.get(model_id, {}).pop(name, None)
        if old is not None:
            self.version_bytes -= len(old.raw)
            self.version_count -= 1
        self.changed[f"{model_id}/{name}"] = seq
        self.gone += 1

    def frozen(self) -> Frozen:
        """What a checkpoint of the state writes, taken now (under the workspace's lock: a column's worth of
        pointers per model, where a snapshot copies every map) and written later, while commits go on."""
        columns, records = self.models.columns()
        return Frozen(self.seq, self.txn, columns, records, {m: list(found.values()) for m, found in self.versions.items()})

    @classmethod
    def from_checkpoint(cls, data: bytes, parts: Sequence[Part | bytes | None] = ()) -> State:
        """The state a checkpoint holds (its first object, and its parts where it has any, as read or as
        Part.of read them); CheckpointDamaged if it is truncated, corrupt or a part is missing,
        CatalogFormatTooNew if a newer registry wrote it."""
        header, lines = _checked_lines(data)
        listed = header.get("Parts", [])
        if not isinstance(listed, list) or len(parts) < len(listed):
            raise CheckpointDamaged("a part is missing")
        for n, (meta, given) in enumerate(zip(listed, parts), start=1):
            part = Part.of(given) if isinstance(given, bytes) else given
            if part is None or not isinstance(meta, dict) or part.sha256 != meta.get("Sha256"):
                raise CheckpointDamaged(f"part {n} is missing or does not match its checksum")
            if len(part.lines) != meta.get("Lines"):
                raise CheckpointDamaged(f"part {n} does not hold its lines")
            lines += part.lines
        try:
            if header.get("Format", 0) >= 2:
                count, spread = header["Models"], header.get("ColumnLines", 1)  # a line per column, or one for all
                columns = {name: value for line in lines[1:1 + spread] for name, value in json.loads(line).items()}
                table = ModelTable.from_columns(columns, lines[1 + spread:1 + spread + count], header["Seq"])
                state, versions = cls(table), lines[1 + spread + count:]
            else:
                state, versions = cls(), lines[1:]
            state.seq = header["Seq"]
            state.txn = str(header.get("Txn", ""))
            for line in versions:
                value = json.loads(line)
                raw = line[line.index(b'"Record":') + 9:-1]  # the record's own bytes, as its file holds them
                if "ModelId" in value:
                    entry = Entry.version(value["Record"], value["Fingerprint"], value.get("Token"), value["Created"], raw)
                    state._put_version(value["ModelId"], entry, state.seq)
                else:
                    state._put(Entry.model(value["Record"], value["Fingerprint"], raw), state.seq)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise CheckpointDamaged(f"a line does not parse ({type(e).__name__})") from None
        if len(state.models) != header.get("Models"):
            raise CheckpointDamaged("the count of models does not match: truncated")
        state.changed.clear()
        return state


@dataclass(frozen=True)
class Part:
    """A checkpoint's part as read: its SHA-256 and its lines, made where it was read (Store.get_each), beside the
    reads of the other parts; the bytes themselves are not kept."""

    sha256: str
    lines: list[bytes]

    @classmethod
    def of(cls, data: bytes) -> Part:
        return cls(hashlib.sha256(data).hexdigest(), data.rstrip(b"\n").split(b"\n"))


def checkpoint_parts(data: bytes) -> int:
    """How many parts a checkpoint's first object lists (0 where it cannot tell: it is then read alone)."""
    try:
        parts = json.loads(data[:data.index(b"\n")]).get("Parts", [])
    except (ValueError, AttributeError):
        return 0
    return len(parts) if isinstance(parts, list) else 0


def _checked_lines(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """A checkpoint object's header and its lines before the end line, once its count and checksum hold."""
    try:
        header = json.loads(data[:data.index(b"\n")])
    except ValueError:
        raise CheckpointDamaged("no header") from None
    if not isinstance(header, dict) or not isinstance(header.get("Seq"), int):
        raise CheckpointDamaged("no header")
    check_format(header, "checkpoint", CHECKPOINT_FORMAT)  # first: a newer format may check itself otherwise
    if header.get("Format", 0) < 1:
        return header, data.rstrip(b"\n").split(b"\n")
    body_end = len(data) - 1 if data.endswith(b"\n") else len(data)
    last = data.rfind(b"\n", 0, body_end)  # the line before the end line ends here
    try:
        end = json.loads(data[last + 1:body_end])["End"]
        count = end["Lines"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointDamaged("no end line: truncated") from None
    if not isinstance(count, int) or hashlib.sha256(memoryview(data)[:last + 1]).hexdigest() != end.get("Sha256"):
        raise CheckpointDamaged("checksum does not match")
    lines = data.split(b"\n", count)  # JSON text escapes every newline inside a record
    if len(lines) != count + 1 or len(lines[count]) != len(data) - last - 1:
        raise CheckpointDamaged("line count does not match")
    del lines[count]
    return header, lines


@dataclass(frozen=True)
class Frozen:
    """A state as its checkpoint holds it: the models' columns and records, and the versions."""

    seq: int
    txn: str
    columns: dict[str, Any]
    records: list[bytes]
    versions: dict[str, list[Entry]]


def checkpoint_objects(frozen: Frozen, part_bytes: int | None = None) -> Iterator[tuple[int, bytes]]:
    """A checkpoint as the objects it is written as: its parts (1, 2, ...), then its first object (0), each made
    only when asked for, so that a writer holds one at a time.

    The first object: a line {"Seq", "Models", "Format", "Txn", "Parts": [{"Lines", "Bytes", "Sha256"}, ...]};
    where there are no parts, a line of the models' columns (ModelTable.columns: what listing needs, so that
    loading parses no record) and the record lines; and a last line {"End": {"Lines", "Sha256"}} that counts
    and hashes the lines before it. Where there are parts, the first holds the columns' line, the others the
    record lines, each part about part_bytes and listed with its count and checksum. The record lines: a line
    per model, its record as its file holds it, in creation order; then a line per version {"ModelId",
    "Created", "Fingerprint", "Token", "Record"} ("Record" last, so that its bytes are the line's end), sorted.
    A truncated or damaged checkpoint is never trusted, and equal states give equal bytes."""
    part_bytes = PART_BYTES if part_bytes is None else part_bytes
    records = list(frozen.records)
    models = len(records)
    for model_id in sorted(frozen.versions):
        for version in sorted(frozen.versions[model_id], key=lambda v: version_order(v.name)):
            head = encode({"ModelId": model_id, "Created": version.created, "Fingerprint": version.fingerprint,
                           "Token": version.token})
            records.append(head[:-1] + b',"Record":%s}' % version.raw)
    listed: list[dict[str, Any]] = []
    inline: list[bytes] = []

    def part(data: bytes, lines: int) -> tuple[int, bytes]:
        listed.append({"Lines": lines, "Bytes": len(data), "Sha256": hashlib.sha256(data).hexdigest()})
        return len(listed), data

    # A line per column, each encoded only when its part is made: a writer holds one part's lines at a time.
    columns = (encode({name: value}) for name, value in frozen.columns.items())
    if sum(map(len, records)) + len(records) + _COLUMN_BYTES * models <= part_bytes:
        inline = [*columns, *records]
    else:
        taken: list[bytes] = []
        size = 0
        for line in itertools.chain(columns, records):
            taken.append(line)
            size += len(line) + 1
            if size >= part_bytes:
                yield part(b"\n".join(taken), len(taken))
                taken, size = [], 0
        if taken:
            yield part(b"\n".join(taken), len(taken))
    lines = [encode({"Seq": frozen.seq, "Models": models, "Format": CHECKPOINT_FORMAT, "Txn": frozen.txn,
                     "ColumnLines": len(frozen.columns), "Parts": listed}), *inline]
    digest = hashlib.sha256()
    for start in range(0, len(lines), 4096):  # in chunks: a call per line costs more than the hashing
        digest.update(b"\n".join(lines[start:start + 4096]) + b"\n")
    lines.append(encode({"End": {"Lines": len(lines), "Sha256": digest.hexdigest()}}))
    lines.append(b"")
    yield 0, b"\n".join(lines)


def checkpoint_of(state: State) -> bytes:
    """A checkpoint as one object (its records inline, however many)."""
    return dict(checkpoint_objects(state.frozen(), part_bytes=1 << 62))[0]
