"""A workspace's catalog: its models as a log of create-only commits (keys.py), kept current in memory.

A commit is the create-only write of `log/<head + 1>`: the single commit point, so commits are
totally ordered and a writer that loses the race re-plans against the newer state. A reader is
current once `log/<seq + 1>` is absent (OSS reads a new key after its write), so a warm instance
answers from memory after one GET. docs/catalog.md has the invariants and crash analysis.
"""
from __future__ import annotations

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

from ..rules.times import iso_time_ms
from ..stores.base import AlreadyExists, Store, StoreError, Unavailable
from .draft import Draft
from .keys import checkpoint_key, hint_key, log_key
from .state import MAX_WORKSPACE_BYTES, Change, Entry, State, checkpoint_of, encode

log = logging.getLogger(__name__)

KEPT_CHECKPOINTS = 2
CHECKPOINT_EVERY = 32  # a cold instance reads a checkpoint, then at most about this many commits
COLD_WINDOW = 8  # commits read at once while catching up from a checkpoint
COMMIT_TRIES = 16  # plans re-run against a newer state before a commit gives up (503)
_BACKOFF_CAP = 0.05  # seconds: the most a writer that lost a race waits before it plans again
_DERIVED_KEPT = 32  # filtered and sorted views kept per state, so that paging is slicing

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


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Within: the changes this thread commits are attributed to actor (an access key, an FC account)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


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
                self._state, current = self._load()
                if not current:
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
    def bytes(self) -> int:
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
                entry = {"Seq": seq, "Txn": uuid.uuid4().hex, "Time": iso_time_ms(), "Changes": draft.changes}
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

    def _load(self) -> tuple[State, bool]:
        """The state from the newest checkpoint the hint names, else from the beginning of the log; and
        whether it is known current already (an empty log, seen so). The hint and the log's first commit
        are asked for at once: a workspace with neither is new, and costs one round trip to find so."""
        hint_data, first = self._store.get_many([hint_key(self.id), log_key(self.id, 1)])
        if hint_data is not None:
            checkpoint = self._store.get_many([checkpoint_key(self.id, int(json.loads(hint_data)["Seq"]))])[0]
            if checkpoint is not None:
                state = State.from_checkpoint(checkpoint)
                self._checkpointed = state.seq
                self._checkpoints = [state.seq]
                return state, False
        elif first is None:
            if self._legacy is not None and self._import_legacy(self._legacy(self.id)):
                return State(), False
            return State(), True  # no commit 1 when we looked: nothing was acknowledged before
        return State(), False

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
            # Entries never change, so copies of the maps are a consistent state to write outside the lock.
            seq, entries = state.seq, list(state.models.values())
            versions = {model_id: dict(found) for model_id, found in state.versions.items()}
            self._checkpointer = threading.Thread(target=self._checkpoint, args=(seq, entries, versions), name="checkpoint",
                                                  daemon=True)
            self._checkpointer.start()

    def settle(self) -> None:
        """Wait for a checkpoint being written (tests and benchmarks)."""
        checkpointer = self._checkpointer
        if checkpointer is not None:
            checkpointer.join()

    def _checkpoint(self, seq: int, entries: list[Entry], versions: dict[str, dict[str, Entry]]) -> None:
        try:
            try:
                self._store.create(checkpoint_key(self.id, seq), checkpoint_of(seq, entries, versions))
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

