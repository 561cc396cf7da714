"""A workspace's catalog: its models as a log of create-only commits (keys.py), kept current in memory.

A commit is the create-only write of `log/<head + 1>`: the single commit point, so commits are
totally ordered and a writer that loses the race re-plans against the newer state. A reader is
current once `log/<seq + 1>` is absent (OSS reads a new key after its write), so a warm instance
answers from memory after one GET. docs/catalog.md has the invariants and crash analysis.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from ..errors import CatalogDamaged
from ..rules.times import iso_time_ms
from ..stores.base import AlreadyExists, NotFound, Store, StoreError, Unavailable
from .draft import Draft
from .keys import checkpoint_key, checkpoints_prefix, hint_key, log_key
from .state import FORMAT, MAX_WORKSPACE_BYTES, Change, CheckpointDamaged, Entry, State, check_entry, checkpoint_of, encode

log = logging.getLogger(__name__)

KEPT_CHECKPOINTS = 2
CHECKPOINT_EVERY = 32  # a cold instance reads a checkpoint, then at most about this many commits
COLD_WINDOW = 8  # commits read at once while catching up from a checkpoint
LOOKAHEAD = 4  # keys past the log's end a cold reader also reads: a commit there means one is missing (a gap)
LAGGING = 4 * CHECKPOINT_EVERY  # a hinted checkpoint this far behind the log's end is not used alone: newer ones are listed
REPLAYED = 2 * CHECKPOINT_EVERY  # commits a cold reader replayed after which it writes a checkpoint itself
COMMIT_TRIES = 16  # plans re-run against a newer state before a commit gives up (503)
_BACKOFF_CAP = 0.05  # seconds: the most a writer that lost a race waits before it plans again
_DERIVED_KEPT = 32  # filtered and sorted views kept per state, so that paging is slicing
_probes = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="catalog")  # the gap probe beside a commit

T = TypeVar("T")


Plan = Callable[[Draft], T]  # reads the draft, raises an ApiError or changes it, returns the caller's answer


class _Pending(Generic[T]):
    """One caller's plan waiting in a batch, and its outcome."""

    def __init__(self, plan: Plan[T]) -> None:
        self.plan = plan
        self.actor = _actor.get()  # the caller's, though the commit may run on another caller's thread
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None
        self.seq: int | None = None
        self._changed = False

    def run(self, draft: Draft) -> None:
        before = len(draft.changes)
        draft.by = {"By": self.actor, "At": iso_time_ms()}
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
_actor: contextvars.ContextVar[str] = contextvars.ContextVar("actor", default="local")
_gate: contextvars.ContextVar[concurrent.futures.Future[Any] | None] = contextvars.ContextVar("gate", default=None)


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Within: the changes this thread commits are attributed to actor (an access key, an FC account)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


@contextlib.contextmanager
def gated(gate: concurrent.futures.Future[Any] | None) -> Iterator[None]:
    """Within: a commit is planned only once `gate` (a write under way, such as a signature's nonce) has
    succeeded, and fails with its error otherwise; a cold workspace is read meanwhile."""
    token = _gate.set(gate)
    try:
        yield
    finally:
        _gate.reset(token)


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
        self._state_lock = threading.Lock()  # held to change the state or read it, never across a storage request
        self._read_lock = threading.Lock()  # one catch-up at a time
        self._commit_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending[Any]] = []
        self._orders: dict[Any, list[Entry]] = {}  # derived views of the state at _orders_seq (listing.py)
        self._orders_seq = -1
        self._checkpoints: list[int] = []  # seqs of checkpoints this instance read or wrote
        self._checkpointer: threading.Thread | None = None
        self._damaged = False  # a read or a commit found the log damaged: commits read again first

    def read(self) -> int:
        """Catch up with every commit acknowledged (by any instance) before this call; the seq now held."""
        arrival = next(_tickets)
        # One catch-up at a time, but the state lock only while applying what it read: answers from memory
        # (model(), listing) and a commit's apply never wait for a storage round trip.
        with self._read_lock:
            if self._state is not None and self._fresh_since > arrival:
                return self._state.seq  # a catch-up that started after we arrived has just finished
            started = next(_tickets)
            if self._state is None:
                state, current = self._load()
                loaded = state.seq
                if not current:
                    self._follow(state, COLD_WINDOW)
                with self._state_lock:
                    self._state = state
                    if state.seq - loaded >= REPLAYED:
                        self._start_checkpoint()  # the next cold instance need not replay as much
            else:
                self._follow(self._state, 1)
            self._damaged = False
            self._fresh_since = started
            return self._state.seq

    def model(self, model_id: str) -> tuple[Entry | None, int]:
        """A model as this instance knows it (None: absent or deleted), and the seq of that knowledge."""
        with self._state_lock:
            state = self._state or State()
            return state.models.get(model_id), state.seq

    def version(self, model_id: str, name: str) -> tuple[Entry | None, int]:
        """A version as this instance knows it (None: absent, deleted, or its model is), and the seq."""
        with self._state_lock:
            state = self._state or State()
            return state.versions.get(model_id, {}).get(name), state.seq

    def version_names(self) -> dict[str, list[str]]:
        """Every model's version names, as this instance knows them."""
        with self._state_lock:
            return {m: list(v) for m, v in (self._state or State()).versions.items() if v}

    def latest(self, model_id: str) -> Entry | None:
        with self._state_lock:
            return (self._state or State()).latest(model_id)

    @property
    def loaded(self) -> bool:
        """Whether this instance has read the workspace's state (later reads only catch up)."""
        return self._state is not None

    @property
    def record_bytes(self) -> int:
        """The records this instance holds of the workspace, in bytes."""
        return self._state.bytes if self._state is not None else 0

    def changed_at(self, model_id: str) -> int:
        """The seq of the last commit this instance knows that changed the model (0: none)."""
        with self._state_lock:
            return (self._state or State()).changed.get(model_id, 0)

    def derived(self, key: Any, compute: Callable[[list[Entry]], list[Entry]], model_id: str | None = None) -> list[Entry]:
        """compute(every model, or every version of model_id), computed once per state and key: the
        filtered and sorted views of listing."""
        with self._state_lock:
            state = self._state or State()
            seq = state.seq
            key = (model_id, key)
            if self._orders_seq == seq and key in self._orders:
                return self._orders[key]
            entries = list(state.models.values() if model_id is None else state.versions.get(model_id, {}).values())
        found = compute(entries)
        with self._state_lock:
            if self._orders_seq != seq or len(self._orders) >= _DERIVED_KEPT:
                self._orders, self._orders_seq = {}, seq
            self._orders[key] = found
        return found

    def commit(self, plan: Plan[T]) -> tuple[T, int | None]:
        """Run plan against the newest state and commit what it changes: (its result, the seq of the commit
        that holds its changes, or None if it changed nothing). Concurrent commits share one log entry."""
        gate = _gate.get()
        if gate is not None:
            if self._state is None and not gate.done():
                self.read()  # a cold workspace loads while the gate's write is under way
            gate.result()  # its error (a nonce used before) refuses the change before anything is planned
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
        """Commit a batch's plans as one log entry; every caller of the batch ends done, with the commit's
        seq or with the error that stopped it, whatever escaped: none is answered without its commit."""
        try:
            self._commit_batch(batch)
        except BaseException as e:  # noqa: BLE001 - not only a store's error: a bug or MemoryError fails the batch too
            for pending in batch:
                if not pending.done:
                    pending.fail(e)

    def _commit_batch(self, batch: list[_Pending[Any]]) -> None:
        fresh = self._state is None or self._damaged
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
            txn = uuid.uuid4().hex
            entry = {"Seq": seq, "Txn": txn, "Prev": self._state.txn, "Format": FORMAT, "Time": iso_time_ms(),
                     "Changes": draft.changes}
            # The key after ours is read meanwhile: a commit there that does not follow ours means ours filled a
            # hole in the log (one that follows ours was planned on it, by another instance, just now).
            after = _probes.submit(contextvars.copy_context().run, self._store.get_many, [log_key(self.id, seq + 1)])
            try:
                self._store.create(log_key(self.id, seq), encode(entry))
            except AlreadyExists:  # another instance committed first: catch up, plan again
                fresh = True
                time.sleep(random.uniform(0, min(_BACKOFF_CAP, 0.001 * 2 ** attempt)))
                continue
            finally:
                concurrent.futures.wait([after])  # the probe never outlives its attempt
            # A probe that failed tells nothing: the commit stands (it is a safety net, not the commit point).
            if after.exception() is None and _follows_another(after.result()[0], txn):
                self._damaged = True
                log.error("workspace %s: commit %d was missing while %d existed; its log needs repair", self.id, seq,
                          seq + 1)
                raise CatalogDamaged(f"the log of workspace {self.id} is missing commit {seq}; nothing was changed")
            with self._state_lock:
                if self._state.seq == draft.seq:  # else a reader has applied this very commit already
                    self._state.apply(seq, draft.changes)
                    self._state.txn = txn
                if self._state.seq == seq and seq % CHECKPOINT_EVERY == 0:
                    self._start_checkpoint()  # at a seq every writer agrees on: one checkpoint per interval
            for pending in batch:
                pending.finish(seq)
            return
        else:
            raise Unavailable("the workspace log kept moving")
        for pending in batch:
            pending.finish(None)

    def _load(self) -> tuple[State, bool]:
        """The state from the newest checkpoint that can be trusted, else from the beginning of the log; and
        whether it is known current already (an empty log, seen so). The hint, the log's first commit and
        the first that a checkpoint is written at are asked for at once: a workspace with none is new, and
        costs one round trip to find so. The hint is only a hint: missing (in a log long enough to have
        checkpoints), unreadable, dangling or far behind the log, the checkpoints are listed."""
        hint_data, first, first_checkpointed = self._store.get_many(
            [hint_key(self.id), log_key(self.id, 1), log_key(self.id, CHECKPOINT_EVERY)])
        hinted = hinted_seq(hint_data)
        if hint_data is None and first_checkpointed is None:  # too short for a checkpoint: no need to list them
            if first is not None:
                return State(), False
            if self._legacy is not None and self._import_legacy(self._legacy(self.id)):
                return State(), False
            return State(), True  # no commit 1 when we looked: nothing was acknowledged before
        state = None
        if hinted is not None:
            data, ahead = self._store.get_many([checkpoint_key(self.id, hinted), log_key(self.id, hinted + LAGGING)])
            state = self._parse_checkpoint(hinted, data)
            if state is not None and ahead is None:
                return state, False
        elif hint_data is not None:
            log.warning("workspace %s: the checkpoint hint does not parse; listing checkpoints", self.id)
        newer = self._newest_checkpoint(above=state.seq if state is not None else -1)
        return (newer or state or State()), False

    def _newest_checkpoint(self, above: int) -> State | None:
        """The newest listed checkpoint above seq `above` that parses whole (older ones tried in turn)."""
        listed = (_seq_of(key) for key in self._store.list(checkpoints_prefix(self.id)))
        for seq in sorted((seq for seq in listed if seq is not None and seq > above), reverse=True):
            try:
                data = self._store.get(checkpoint_key(self.id, seq))
            except NotFound:
                continue
            state = self._parse_checkpoint(seq, data)
            if state is not None:
                return state
        return None

    def _parse_checkpoint(self, seq: int, data: bytes | None) -> State | None:
        """The state of checkpoint `seq`, or None (logged) if it is absent or cannot be trusted."""
        if data is None:
            log.warning("workspace %s: checkpoint %d is gone; listing checkpoints", self.id, seq)
            return None
        try:
            state = State.from_checkpoint(data)
        except CheckpointDamaged as e:
            log.warning("workspace %s: skipped checkpoint %d: %s", self.id, seq, e)
            return None
        if state.seq != seq:
            log.warning("workspace %s: skipped checkpoint %d: it holds seq %d", self.id, seq, state.seq)
            return None
        self._checkpoints = sorted({*self._checkpoints, seq})
        return state

    def _import_legacy(self, changes: list[Change]) -> bool:
        """Commit models of the layout before the catalog as the log's first entry (one winner); whether
        there were any (the log then has a commit 1 to read)."""
        if not changes:
            return False
        entry = {"Seq": 1, "Txn": "import", "Time": iso_time_ms(), "Changes": changes}
        try:
            self._store.create(log_key(self.id, 1), encode(entry))
        except AlreadyExists:
            pass  # another instance imported first, or committed into an empty workspace
        return True

    def _follow(self, state: State, window: int) -> None:
        """Apply the commits after the state's seq, reading `window` keys at a time, until the first absent
        one; a cold reader (a wide window) also reads LOOKAHEAD keys past it, and a commit there is a gap.
        Every entry is checked whole (format, seq, chain) before any of it is applied."""
        while True:
            base = state.seq  # the state may move meanwhile: a commit of this instance applies its own entry
            keys = [log_key(self.id, base + i) for i in range(1, window + 1)]
            found = self._store.get_many(keys)
            for offset, data in enumerate(found):
                if data is None:
                    after = found[offset + 1:]
                    if window > 1 and len(after) < LOOKAHEAD:
                        after += self._store.get_many([log_key(self.id, base + window + i)
                                                       for i in range(1, LOOKAHEAD - len(after) + 1)])
                    if any(data is not None for data in after):
                        self._damaged = True
                        log.error("workspace %s: commit %d is missing while later ones exist; its log needs repair",
                                  self.id, base + offset + 1)
                        raise CatalogDamaged(f"the log of workspace {self.id} is missing commit {base + offset + 1}")
                    return
                self._apply(state, base + offset + 1, data)

    def _apply(self, state: State, seq: int, data: bytes) -> None:
        try:
            entry = json.loads(data)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            self._damaged = True
            raise CatalogDamaged(f"commit {seq} of workspace {self.id} is not JSON")
        with self._state_lock:
            if state.seq >= seq:
                return  # this instance's own commit, applied by its writer since it was read
            check_entry(entry, seq)
            prev = entry.get("Prev")
            if isinstance(prev, str) and prev and state.txn and prev != state.txn:
                self._damaged = True
                log.error("workspace %s: commit %d does not follow the commit before it; its log needs repair", self.id, seq)
                raise CatalogDamaged(f"commit {seq} of workspace {self.id} does not follow the commit before it")
            state.apply(seq, entry["Changes"])
            state.txn = str(entry.get("Txn", ""))

    def _start_checkpoint(self) -> None:
        """Start writing a checkpoint of the state as it is now, in the background. Called with the state lock
        held. Best effort: a failure, or an instance frozen or stopped while it writes, only makes cold starts
        read more of the log."""
        state = self._state
        if state is None or (self._checkpointer is not None and self._checkpointer.is_alive()):
            return
        # Entries never change, so copies of the maps are a consistent state to write outside the lock.
        seq, txn, entries = state.seq, state.txn, list(state.models.values())
        versions = {model_id: dict(found) for model_id, found in state.versions.items()}
        self._checkpointer = threading.Thread(target=self._checkpoint, args=(seq, txn, entries, versions), name="checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    def settle(self) -> None:
        """Wait for a checkpoint being written (tests and benchmarks)."""
        checkpointer = self._checkpointer
        if checkpointer is not None:
            checkpointer.join()

    def _checkpoint(self, seq: int, txn: str, entries: list[Entry], versions: dict[str, dict[str, Entry]]) -> None:
        try:
            self._store.check_writable(recheck=True)  # a checkpoint is a create-only write too
            try:
                self._store.create(checkpoint_key(self.id, seq), checkpoint_of(seq, entries, versions, txn))
            except AlreadyExists:
                pass  # another instance wrote this seq's checkpoint
            self._store.put(hint_key(self.id), encode({"Seq": seq}))
            # Keep the newest two: a cold instance that read the hint just before it moved still finds its
            # checkpoint. Older ones this instance knows of go (the sweep removes the rest).
            known = sorted({*self._checkpoints, seq})
            for old in known[:-KEPT_CHECKPOINTS]:
                self._store.delete(checkpoint_key(self.id, old))
            self._checkpoints = known[-KEPT_CHECKPOINTS:]
        except StoreError as e:
            log.warning("checkpoint of a workspace at %d failed: %s", seq, type(e).__name__)

    def versions_of(self, model_id: str) -> list[Entry]:
        """A model's versions as this instance knows them (none: absent, deleted, or its model is)."""
        with self._state_lock:
            return list((self._state or State()).versions.get(model_id, {}).values())


def hinted_seq(data: bytes | None) -> int | None:
    """The seq a hint names, or None if there is none or it does not parse."""
    try:
        seq = json.loads(data)["Seq"] if data is not None else None
    except (ValueError, KeyError, TypeError):
        return None
    return seq if isinstance(seq, int) and seq > 0 else None


def _seq_of(key: str) -> int | None:
    """The seq in a checkpoint's key, or None if the key is not one."""
    name = key.rpartition("/")[2].removesuffix(".json")
    return int(name) if len(name) == 20 and name.isdigit() else None


def _follows_another(data: bytes | None, txn: str) -> bool:
    """Whether a log entry exists and names another commit than `txn` as the one before it (an entry of an older
    registry names none: it cannot tell, and is taken to follow)."""
    if data is None:
        return False
    try:
        prev = json.loads(data).get("Prev")
    except (ValueError, AttributeError):
        return True
    return isinstance(prev, str) and prev != txn
