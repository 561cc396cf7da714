"""The catalog: each workspace's models as a log of create-only commits, kept current in memory.

Keys below the store's root, for workspace W (docs/catalog.md has the invariants and crash analysis):

    catalog/W/log/<seq>.json              commit seq (20 digits): {Seq, Txn, Time, Changes}, create-only
    catalog/W/checkpoints/<seq>.json      the whole state at seq: a line per model, create-only
    catalog/W/last-checkpoint.json        {"Seq": seq} of a recent checkpoint: a hint, overwritten

A commit is the create-only write of `log/<head + 1>`: the single commit point, so commits are
totally ordered and a writer that loses the race re-plans against the newer state. A reader is
current once `log/<seq + 1>` is absent (OSS reads a new key after its write), so a warm instance
answers from memory after one GET.
"""
from __future__ import annotations

import calendar
import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import QuotaExceeded
from .stores.base import AlreadyExists, NotFound, Store, StoreError, Unavailable

log = logging.getLogger(__name__)

KEPT_CHECKPOINTS = 2
CHECKPOINT_EVERY = 32  # a cold instance reads a checkpoint, then at most about this many commits
COLD_WINDOW = 8  # commits read at once while catching up from a checkpoint
COMMIT_TRIES = 16  # plans re-run against a newer state before a commit gives up (503)
_BACKOFF_CAP = 0.05  # seconds: the most a writer that lost a race waits before it plans again
MAX_WORKSPACE_BYTES = 64 << 20  # a workspace's records together (10,000 typical models take about 12 MiB)
_DERIVED_KEPT = 32  # filtered and sorted views kept per state, so that paging is slicing

T = TypeVar("T")
Change = dict[str, Any]  # {"Put": {"Model": record, "Fingerprint": fp}} or {"Delete": ModelId}


def log_key(workspace_id: str, seq: int) -> str:
    return f"catalog/{workspace_id}/log/{seq:020d}.json"


def checkpoint_key(workspace_id: str, seq: int) -> str:
    return f"catalog/{workspace_id}/checkpoints/{seq:020d}.json"


def hint_key(workspace_id: str) -> str:
    return f"catalog/{workspace_id}/last-checkpoint.json"


def encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


FACTS = ("Domain", "Task", "Origin", "ModelType", "Provider", "OrderNumber", "ParameterSize", "GmtCreateTime",
         "GmtModifiedTime", "ModelName")  # the fields ListModels filters and sorts on
_FACT = {name: i for i, name in enumerate(FACTS)}
_TIMES = ("GmtCreateTime", "GmtModifiedTime")  # kept as epoch seconds, parsed once


def _seconds(text: Any) -> float | None:
    """Epoch seconds of a record's time (`2021-01-21T17:12:35Z`)."""
    if not isinstance(text, str) or len(text) < 20:
        return None
    try:
        return calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                                int(text[17:19])))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Entry:
    """A model as the catalog keeps it: its record as stored (bytes, a third of the memory of the
    parsed object), the fingerprint of the request that created it, and what listing looks at."""

    raw: bytes  # the record exactly as models/<ModelId>.json holds it
    fingerprint: str
    id: str
    name: str
    facts: tuple[Any, ...]  # the FACTS fields, None where absent; times as epoch seconds
    labels: frozenset[tuple[str, str]]  # (Key, Value) pairs
    search: str  # what ListModels' Query looks in: name, domain, task, label keys and values, lower-cased

    @classmethod
    def of(cls, record: Mapping[str, Any], fingerprint: str, raw: bytes | None = None) -> Entry:
        labels = frozenset((label["Key"], label["Value"]) for label in record["Labels"])
        words = [record["ModelName"], record.get("Domain", ""), record.get("Task", ""), *(w for pair in labels for w in pair)]
        facts = tuple(_seconds(record.get(name)) if name in _TIMES else record.get(name) for name in FACTS)
        return cls(raw if raw is not None else encode(record), fingerprint, str(record["ModelId"]), str(record["ModelName"]),
                   facts, labels, "\n".join(words).lower())

    def fact(self, name: str) -> Any:
        return self.facts[_FACT[name]]

    def record(self) -> dict[str, Any]:
        """The record as an object (parsed on each call)."""
        return json.loads(self.raw)  # type: ignore[no-any-return]

    def line(self) -> bytes:
        """The entry as one line of a checkpoint."""
        return b'{"Fingerprint":"%s","Model":%s}\n' % (self.fingerprint.encode(), self.raw)

    @classmethod
    def from_line(cls, line: bytes) -> Entry:
        value = json.loads(line)
        return cls.of(value["Model"], value["Fingerprint"], line[line.index(b'"Model":') + 8:-1])


class State:
    """A workspace's state after commit `seq`. Changed in place, one commit at a time, under its
    workspace's lock: a commit costs the same at ten models as at ten thousand."""

    def __init__(self) -> None:
        self.seq = 0
        self.models: dict[str, Entry] = {}  # by ModelId, in commit order
        self.names: dict[str, str] = {}  # ModelName -> ModelId
        self.changed: dict[str, int] = {}  # ModelId -> seq of its last change (deleted models too)
        self.bytes = 0  # of the records held: what the workspace's quota counts, and about a third of its memory

    def apply(self, seq: int, changes: Iterable[Change]) -> State:
        models, names = self.models, self.names
        for change in changes:
            if "Put" in change:
                entry = Entry.of(change["Put"]["Model"], change["Put"]["Fingerprint"])
                old = models.get(entry.id)
                if old is not None:
                    self.bytes -= len(old.raw)
                    if names.get(old.name) == old.id:
                        del names[old.name]
                models[entry.id], names[entry.name] = entry, entry.id
                self.bytes += len(entry.raw)
                self.changed[entry.id] = seq
            else:
                old = models.pop(change["Delete"], None)
                if old is not None:
                    self.bytes -= len(old.raw)
                    if names.get(old.name) == old.id:
                        del names[old.name]
                self.changed[change["Delete"]] = seq
        self.seq = seq
        return self

    @classmethod
    def from_checkpoint(cls, data: bytes) -> State:
        header, *lines = data.rstrip(b"\n").split(b"\n")  # JSON text escapes every newline inside a record
        state = cls()
        state.seq = int(json.loads(header)["Seq"])
        for line in lines:
            entry = Entry.from_line(line)
            state.models[entry.id], state.names[entry.name], state.changed[entry.id] = entry, entry.id, state.seq
            state.bytes += len(entry.raw)
        return state


def checkpoint_of(seq: int, entries: Iterable[Entry]) -> bytes:
    """A checkpoint: a line {"Seq", "Models"}, then a line {"Fingerprint", "Model"} per model, sorted
    by ModelId, so that equal states give equal bytes."""
    ordered = sorted(entries, key=lambda e: e.id)
    return encode({"Seq": seq, "Models": len(ordered)}) + b"\n" + b"".join(entry.line() for entry in ordered)


class Draft:
    """A snapshot with a batch's uncommitted changes on top: what plans read and change."""

    def __init__(self, base: State, max_bytes: int = MAX_WORKSPACE_BYTES) -> None:
        self.base = base
        self.seq = base.seq  # taken first: if base moves while a plan reads it, the commit at seq + 1 fails
        self.bytes = base.bytes
        self.max_bytes = max_bytes
        self.changes: list[Change] = []
        self._models: dict[str, Entry | None] = {}
        self._names: dict[str, str | None] = {}

    def model(self, model_id: str) -> Entry | None:
        return self._models[model_id] if model_id in self._models else self.base.models.get(model_id)

    def named(self, name: str) -> str | None:
        return self._names[name] if name in self._names else self.base.names.get(name)

    def put(self, record: dict[str, Any], fingerprint: str, raw: bytes | None = None) -> None:
        """Put a model's record; refused (before anything changes) when the workspace's records would outgrow
        their bound, which is what bounds the memory an instance holding the workspace needs."""
        entry = Entry.of(record, fingerprint, raw)
        old = self.model(entry.id)
        grown = self.bytes + len(entry.raw) - (len(old.raw) if old else 0)
        if grown > self.max_bytes and grown > self.bytes:
            raise QuotaExceeded(f"the workspace's model records would take {grown} bytes; its limit is {self.max_bytes}")
        self.bytes = grown
        if old is not None and self.named(old.name) == old.id:
            self._names[old.name] = None
        self._models[entry.id], self._names[entry.name] = entry, entry.id
        self.changes.append({"Put": {"Model": record, "Fingerprint": fingerprint}})

    def delete(self, model_id: str) -> None:
        old = self.model(model_id)
        if old is not None:
            self.bytes -= len(old.raw)
        if old is not None and self.named(old.name) == old.id:
            self._names[old.name] = None
        self._models[model_id] = None
        self.changes.append({"Delete": model_id})


Plan = Callable[[Draft], T]  # reads the draft, raises an ApiError or changes it, returns the caller's answer


class _Pending(Generic[T]):
    """One caller's plan waiting in a batch, and its outcome."""

    def __init__(self, plan: Plan[T]) -> None:
        self.plan = plan
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None
        self.seq: int | None = None
        self._changed = False

    def run(self, draft: Draft) -> None:
        before = len(draft.changes)
        try:
            self.result, self.error = self.plan(draft), None
        except Exception as e:  # noqa: BLE001 - the plan's own error (ApiError, or a bug) goes to its caller only
            self.result, self.error = None, e
            del draft.changes[before:]  # plans raise before changing; this is only a safeguard
        self._changed = len(draft.changes) > before

    def finish(self, seq: int | None) -> None:
        self.seq = seq if self._changed else None
        self.done = True

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True

    def outcome(self) -> tuple[T, int | None]:
        if self.error is not None:
            raise self.error
        return self.result, self.seq  # type: ignore[return-value]


_tickets = itertools.count()


class Workspace:
    """One workspace's catalog on one instance: the newest state it knows, and its commits."""

    def __init__(self, store: Store, workspace_id: str, legacy: Callable[[str], list[Change]] | None = None,
                 max_bytes: int = MAX_WORKSPACE_BYTES) -> None:
        store.verify(log_key(workspace_id, 0))  # refused now, before a create writes anything
        self.id = workspace_id
        self._store = store
        self._legacy = legacy
        self.max_bytes = max_bytes
        self._state: State | None = None
        self._fresh_since = -1  # ticket taken when the last completed catch-up started
        self._state_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending[Any]] = []
        self._orders: dict[Any, list[Entry]] = {}  # derived views of the state at _orders_seq (listing.py)
        self._orders_seq = -1
        self._checkpointed = 0
        self._checkpoints: list[int] = []  # seqs of checkpoints this instance read or wrote
        self._checkpointer: threading.Thread | None = None

    def read(self) -> int:
        """Catch up with every commit acknowledged (by any instance) before this call; the seq now held."""
        arrival = next(_tickets)
        with self._state_lock:
            if self._state is not None and self._fresh_since > arrival:
                return self._state.seq  # a catch-up that started after we arrived has just finished
            started = next(_tickets)
            if self._state is None:
                self._state = self._load()
                self._follow(COLD_WINDOW)
            else:
                self._follow(1)
            self._fresh_since = started
            return self._state.seq

    def model(self, model_id: str) -> tuple[Entry | None, int]:
        """A model as this instance knows it (None: absent or deleted), and the seq of that knowledge."""
        with self._state_lock:
            state = self._state or State()
            return state.models.get(model_id), state.seq

    @property
    def bytes(self) -> int:
        """The records this instance holds of the workspace, in bytes."""
        return self._state.bytes if self._state is not None else 0

    def changed_at(self, model_id: str) -> int:
        """The seq of the last commit this instance knows that changed the model (0: none)."""
        with self._state_lock:
            return (self._state or State()).changed.get(model_id, 0)

    def derived(self, key: Any, compute: Callable[[list[Entry]], list[Entry]]) -> list[Entry]:
        """compute(every model), computed once per state and key: filtered and sorted views for listing."""
        with self._state_lock:
            state = self._state or State()
            seq = state.seq
            if self._orders_seq == seq and key in self._orders:
                return self._orders[key]
            entries = list(state.models.values())
        found = compute(entries)
        with self._state_lock:
            if self._orders_seq != seq or len(self._orders) >= _DERIVED_KEPT:
                self._orders, self._orders_seq = {}, seq
            self._orders[key] = found
        return found

    def commit(self, plan: Plan[T]) -> tuple[T, int | None]:
        """Run plan against the newest state and commit what it changes: (its result, the seq of the commit
        that holds its changes, or None if it changed nothing). Concurrent commits share one log entry."""
        pending: _Pending[T] = _Pending(plan)
        with self._queue_lock:
            self._queue.append(pending)
        with self._commit_lock:
            if not pending.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        return pending.outcome()

    def _commit(self, batch: list[_Pending[Any]]) -> None:
        try:
            fresh = self._state is None
            for attempt in range(COMMIT_TRIES):
                # Optimistic: plan on what this instance knows; if log/<seq+1> is taken, catch up and plan again.
                if fresh:
                    self.read()
                assert self._state is not None
                draft = Draft(self._state, self.max_bytes)
                for pending in batch:
                    pending.run(draft)
                if not draft.changes:
                    if fresh:
                        break
                    # Nothing to write, so no commit can prove that what the plans read was the newest
                    # state: a refusal (404, 409) or a no-op on an old state could be wrong. Read, plan again.
                    fresh = True
                    continue
                seq = draft.seq + 1
                entry = {"Seq": seq, "Txn": uuid.uuid4().hex, "Time": _now(), "Changes": draft.changes}
                try:
                    self._store.create(log_key(self.id, seq), encode(entry))
                except AlreadyExists:  # another instance committed first: catch up, plan again
                    fresh = True
                    time.sleep(random.uniform(0, min(_BACKOFF_CAP, 0.001 * 2 ** attempt)))
                    continue
                with self._state_lock:
                    if self._state.seq == draft.seq:  # else a reader has applied this very commit already
                        self._state.apply(seq, draft.changes)
                for pending in batch:
                    pending.finish(seq)
                return
            else:
                raise Unavailable("the workspace log kept moving")
            for pending in batch:
                pending.finish(None)
        except StoreError as e:
            for pending in batch:
                pending.fail(e)

    def _load(self) -> State:
        """The state from the newest checkpoint the hint names, else from the beginning of the log."""
        hint = self._get_json(hint_key(self.id))
        if hint is not None:
            checkpoint = self._store.get_many([checkpoint_key(self.id, int(hint["Seq"]))])[0]
            if checkpoint is not None:
                state = State.from_checkpoint(checkpoint)
                self._checkpointed = state.seq
                self._checkpoints = [state.seq]
                return state
        elif self._legacy is not None and self._get_json(log_key(self.id, 1)) is None:
            self._import_legacy(self._legacy(self.id))
        return State()

    def _import_legacy(self, changes: list[Change]) -> None:
        """Commit models of the layout before the catalog as the log's first entry (one winner)."""
        if not changes:
            return
        entry = {"Seq": 1, "Txn": "import", "Time": _now(), "Changes": changes}
        try:
            self._store.create(log_key(self.id, 1), encode(entry))
        except AlreadyExists:
            pass  # another instance imported first, or committed into an empty workspace

    def _follow(self, window: int) -> None:
        """Apply the commits after the state's seq, reading `window` keys at a time, until the first
        absent one. Called with the state lock held."""
        state = self._state
        assert state is not None
        while True:
            keys = [log_key(self.id, state.seq + i) for i in range(1, window + 1)]
            for data in self._store.get_many(keys):
                if data is None:
                    return
                entry = json.loads(data)
                if entry["Seq"] != state.seq + 1:
                    raise StoreError("log entry out of sequence")
                state.apply(entry["Seq"], entry["Changes"])

    def _get_json(self, key: str) -> Any:
        try:
            return json.loads(self._store.get(key))
        except NotFound:
            return None

    def maybe_checkpoint(self) -> None:
        """Start writing a checkpoint, in the background, when the newest state is CHECKPOINT_EVERY
        commits past the last one. Best effort: a failure, or an instance frozen or stopped while it
        writes, only makes cold starts read more of the log."""
        with self._state_lock:
            state = self._state
            if state is None or state.seq - self._checkpointed < CHECKPOINT_EVERY:
                return
            if self._checkpointer is not None and self._checkpointer.is_alive():
                return
            seq, entries = state.seq, list(state.models.values())  # entries never change: safe to use outside the lock
            self._checkpointer = threading.Thread(target=self._checkpoint, args=(seq, entries), name="checkpoint", daemon=True)
            self._checkpointer.start()

    def settle(self) -> None:
        """Wait for a checkpoint being written (tests and benchmarks)."""
        checkpointer = self._checkpointer
        if checkpointer is not None:
            checkpointer.join()

    def _checkpoint(self, seq: int, entries: list[Entry]) -> None:
        try:
            try:
                self._store.create(checkpoint_key(self.id, seq), checkpoint_of(seq, entries))
            except AlreadyExists:
                pass  # another instance wrote this seq's checkpoint
            self._store.put(hint_key(self.id), encode({"Seq": seq}))
            self._checkpointed = seq
            # Keep the newest two: a cold instance that read the hint just before it moved still finds its
            # checkpoint. Older ones this instance knows of go (the sweep removes the rest).
            known = sorted({*self._checkpoints, seq})
            for old in known[:-KEPT_CHECKPOINTS]:
                self._store.delete(checkpoint_key(self.id, old))
            self._checkpoints = known[-KEPT_CHECKPOINTS:]
        except StoreError as e:
            log.warning("checkpoint of a workspace at %d failed: %s", seq, type(e).__name__)


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
