"""A workspace's catalog: its models as a log of create-only commits (keys.py), kept current in memory.

A commit is the create-only write of `log/<head + 1>`: the single commit point, so commits are
totally ordered and a writer that loses the race re-plans against the newer state. A reader is
current once `log/<seq + 1>` is absent (OSS reads a new key after its write), so a warm instance
answers from memory after one GET. docs/catalog.md has the invariants and crash analysis.
"""
from __future__ import annotations

import bisect
import collections
import concurrent.futures
import contextlib
import contextvars
import hashlib
import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from ..errors import CatalogDamaged, CatalogFormatTooNew
from ..memory import release_freed
from ..rules.times import iso_time_ms
from ..stores.base import AlreadyExists, NotFound, Store, StoreError, Unavailable
from .draft import Draft
from .entry import Entry, encode
from .keys import (
    checkpoint_key,
    checkpoint_part_key,
    checkpoint_parts_prefix,
    checkpoints_prefix,
    hint_key,
    is_checkpoint_part,
    log_key,
    segment_key,
)
from .state import (
    FORMAT,
    MAX_WORKSPACE_BYTES,
    Change,
    CheckpointDamaged,
    Frozen,
    Part,
    State,
    check_entry,
    checkpoint_objects,
    checkpoint_parts,
)
from .table import Selection

log = logging.getLogger(__name__)

KEPT_CHECKPOINTS = 2
CHECKPOINT_EVERY = 32  # the fewest commits between checkpoints, and the commits a segment holds
MOST_BETWEEN_CHECKPOINTS = 8192  # the interval grows with the state (checkpoint_interval) up to this
CHECKPOINT_BYTES_PER_COMMIT = 15 << 10  # what a checkpoint may cost each commit of its interval, about
COLD_WINDOW = 8  # commits read at once while catching up from a checkpoint
SEGMENTS_AT_ONCE = 16  # segments read at once (as many as the store's connections, by default)
LOOKAHEAD = 4  # keys past the log's end a cold reader also reads: a commit there means one is missing (a gap)
LAGGING = 4  # intervals: a hinted checkpoint this far behind the log's end is not used alone: newer ones are listed
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
        before = draft.mark()
        draft.by = {"By": self.actor, "At": iso_time_ms()}
        try:
            self.result, self.error = self.plan(draft), None
        except Exception as e:  # noqa: BLE001 - the plan's own error (ApiError, or a bug) goes to its caller only
            self.result, self.error = None, e
            draft.undo(before)  # a plan may raise after changing the draft (a new model put, then its version refused)
        self._changed = len(draft.changes) > before.changes

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
        self._orders: dict[Any, Any] = {}  # derived views of the state at _orders_seq (listing.py)
        self._orders_seq = -1
        self._checkpoints: list[int] = []  # seqs of checkpoints this instance read or wrote
        self._checkpointer: threading.Thread | None = None
        self._damaged = False  # a read or a commit found the log damaged: commits read again first
        self._segment: concurrent.futures.Future[None] | None = None  # the last segment's write
        self._recent: collections.deque[tuple[int, bytes | dict[str, Any]]] = collections.deque(maxlen=CHECKPOINT_EVERY)

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
                    if state.seq - loaded >= 2 * checkpoint_interval(state):
                        self._start_checkpoint()  # the next cold instance need not replay as much
                release_freed()  # the checkpoint's bytes and what parsing them took
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
    def memory(self) -> int:
        """What this instance's copy of the workspace takes in memory, about (State.memory)."""
        return self._state.memory if self._state is not None else 0

    def changed_at(self, model_id: str) -> int:
        """The seq of the last commit this instance knows that changed the model (0: none)."""
        with self._state_lock:
            return (self._state or State()).changed_at(model_id)

    def select(self, selection: Selection, start: int, stop: int) -> tuple[list[Entry], int]:
        """The models of positions start..stop of those the selection matches, in its order, and how many match.
        The matches are found once per state and selection, so that the next page is a slice."""
        with self._state_lock:  # commits change the table in place
            state = self._state or State()
            matches = self._cached(state.seq, ("models", selection))
            if matches is None:
                matches = self._keep(state.seq, ("models", selection), state.models.select(selection))
            return [state.models.entry(slot) for slot in matches.slots(start, stop)], matches.count

    def models_after(self, model_id: str, limit: int) -> list[Entry]:
        """Up to `limit` models whose ModelIds follow `model_id`, in ModelId order (the sweep's pass)."""
        with self._state_lock:
            state = self._state or State()
            ordered: list[str] | None = self._cached(state.seq, "models by id")
            if ordered is None:
                ordered = self._keep(state.seq, "models by id", sorted(state.models.ids))
            start = bisect.bisect_right(ordered, model_id)
            return [state.models[found] for found in ordered[start:start + limit]]

    def named(self, name: str) -> Entry | None:
        """The model of that name, as this instance knows it."""
        with self._state_lock:
            state = self._state or State()
            model_id = state.names.get(name)
            return state.models.get(model_id) if model_id is not None else None

    def derived(self, key: Any, compute: Callable[[list[Entry]], list[Entry]], model_id: str) -> list[Entry]:
        """compute(every version of model_id), computed once per state and key: the filtered and sorted views
        of ListModelVersions."""
        with self._state_lock:
            state = self._state or State()
            seq = state.seq
            key = (model_id, key)
            cached: list[Entry] | None = self._cached(seq, key)
            if cached is not None:
                return cached
            entries = list(state.versions.get(model_id, {}).values())
        found = compute(entries)
        with self._state_lock:
            self._keep(seq, key, found)
        return found

    def _cached(self, seq: int, key: Any) -> Any:
        return self._orders.get(key) if self._orders_seq == seq else None

    def _keep(self, seq: int, key: Any, found: T) -> T:
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
                if self._state.seq == seq:  # whoever applied it: the segment and checkpoint at agreed seqs
                    self._landed(seq, entry)
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
        the first that a checkpoint is written at are asked for at once, with the LOOKAHEAD commits after the first:
        a workspace with none is new, and costs one round trip to find so. The hint is only a hint: missing (in a log long enough to have
        checkpoints), unreadable, dangling or far behind the log, the checkpoints are listed."""
        # Of the two commits only whether they exist counts: a first commit can be large (an import of the layout
        # before the catalog holds every model), and a cold reader would otherwise read it whole every time.
        # The LOOKAHEAD commits after the first, too: one there without a first means the first is missing (a gap).
        asked = [hint_key(self.id), log_key(self.id, CHECKPOINT_EVERY),
                 *(log_key(self.id, seq) for seq in range(1, LOOKAHEAD + 2))]
        hint_data, first_checkpointed, first, *after = self._store.get_each(asked, _as_is, heads=dict.fromkeys(asked[1:], 1))
        hinted, parts = hinted_seq(hint_data), hinted_parts(hint_data)
        if hint_data is None and first_checkpointed is None:  # too short for a checkpoint: no need to list them
            if first is not None or any(found is not None for found in after):
                return State(), False  # followed from the beginning (where a missing first is found, and refused)
            if self._legacy is not None and self._import_legacy(self._legacy(self.id)):
                return State(), False
            return State(), True  # no commit 1 when we looked: nothing was acknowledged before
        state = None
        if hinted is not None:
            lag = LAGGING * CHECKPOINT_EVERY
            data, ahead, *found = self._store.get_each([checkpoint_key(self.id, hinted), log_key(self.id, hinted + lag),
                                                        *(checkpoint_part_key(self.id, hinted, n) for n in range(1, parts + 1))],
                                                       _as_read)
            assert not isinstance(data, Part) and not isinstance(ahead, Part)  # _as_read makes parts of parts alone
            state = self._parse_checkpoint(hinted, data, found)
            if state is not None and ahead is not None and checkpoint_interval(state) > CHECKPOINT_EVERY:
                # A large state's checkpoints are further apart: lagging is measured in its own intervals.
                ahead = self._store.get_many([log_key(self.id, hinted + LAGGING * checkpoint_interval(state))])[0]
            if state is not None and ahead is None:
                return state, False
        elif hint_data is not None:
            log.warning("workspace %s: the checkpoint hint does not parse; listing checkpoints", self.id)
        newer = self._newest_checkpoint(above=state.seq if state is not None else -1)
        return (newer or state or State()), False

    def _newest_checkpoint(self, above: int) -> State | None:
        """The newest listed checkpoint above seq `above` that parses whole (older ones tried in turn)."""
        listed = (checkpoint_seq(key) for key in self._store.list(checkpoints_prefix(self.id)))
        for seq in sorted((seq for seq in listed if seq is not None and seq > above), reverse=True):
            try:
                data = self._store.get(checkpoint_key(self.id, seq))
            except NotFound:
                continue
            state = self._parse_checkpoint(seq, data)
            if state is not None:
                return state
        return None

    def _parse_checkpoint(self, seq: int, data: bytes | None, parts: Sequence[Part | bytes | None] | None = None) -> State | None:
        """The state of checkpoint `seq` (its parts read here unless given), or None (logged) if it is absent or
        cannot be trusted."""
        if data is None:
            log.warning("workspace %s: checkpoint %d is gone; listing checkpoints", self.id, seq)
            return None
        count = checkpoint_parts(data)
        if parts is None or len(parts) != count:
            parts = self._store.get_each([checkpoint_part_key(self.id, seq, n) for n in range(1, count + 1)], _as_read)
        try:
            state = State.from_checkpoint(data, parts)
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

    def _landed(self, seq: int, entry: dict[str, Any]) -> None:
        """After this instance's commit `seq` is applied (state lock held): at the seqs every writer agrees on,
        the segment that ends here and, less often, a checkpoint."""
        if not self._recent or self._recent[-1][0] < seq:  # else a reader applied it first, and kept it
            self._recent.append((seq, entry))
        if seq % CHECKPOINT_EVERY == 0:
            recent = list(self._recent)
            if len(recent) == CHECKPOINT_EVERY and recent[0][0] == seq - CHECKPOINT_EVERY + 1:
                self._segment = _probes.submit(contextvars.copy_context().run, self._write_segment, seq, recent)
        assert self._state is not None
        if seq % checkpoint_interval(self._state) == 0:
            self._start_checkpoint()  # one checkpoint per interval, however many writers

    def _write_segment(self, seq: int, recent: list[tuple[int, bytes | dict[str, Any]]]) -> None:
        """Best effort, like a checkpoint: without it a cold reader reads these commits from the log."""
        lines = [data if isinstance(data, bytes) else encode(data) for _, data in recent]
        try:
            self._store.create(segment_key(self.id, seq), segment_of(lines))
        except AlreadyExists:
            pass
        except StoreError as e:
            log.warning("segment of a workspace at %d failed: %s", seq, type(e).__name__)

    def _follow(self, state: State, window: int) -> None:
        """Apply the commits after the state's seq, reading `window` keys at a time, until the first absent
        one; a cold reader (a wide window) also reads LOOKAHEAD keys past it, and a commit there is a gap,
        and after each whole window reads segments, many commits a request, while there are some.
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
                    # Reads side by side are no snapshot: commits may have landed between them. Only a commit
                    # still missing after a later one was seen is a gap (OSS reads a key after its write).
                    if any(data is not None for data in after) and self._store.get_many([keys[offset]])[0] is None:
                        self._damaged = True
                        log.error("workspace %s: commit %d is missing while later ones exist; its log needs repair",
                                  self.id, base + offset + 1)
                        raise CatalogDamaged(f"the log of workspace {self.id} is missing commit {base + offset + 1}")
                    if any(data is not None for data in after):
                        break  # it has landed meanwhile: read on from it
                    return
                self._apply(state, base + offset + 1, data)
            if window > 1:  # a whole window: there may be many more
                self._follow_segments(state)

    def _follow_segments(self, state: State) -> None:
        """Apply the segments after the state's seq, SEGMENTS_AT_ONCE at a time, until the first absent one,
        or one that cannot be trusted whole (logged: the log is read instead)."""
        while True:
            first = (state.seq // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY
            found = self._store.get_many([segment_key(self.id, first + i * CHECKPOINT_EVERY) for i in range(SEGMENTS_AT_ONCE)])
            for data in found:
                if data is None or not self._apply_segment(state, data):
                    return

    def _apply_segment(self, state: State, data: bytes) -> bool:
        """Apply a segment's commits after the state's seq, if it holds them whole and they follow the state."""
        try:
            lines = segment_lines(data)
            entries = [json.loads(line) for line in lines]
            ahead = [(line, entry) for line, entry in zip(lines, entries) if entry["Seq"] > state.seq]
            if not ahead or any(entry["Seq"] != state.seq + n for n, (_, entry) in enumerate(ahead, start=1)):
                raise ValueError("not the commits after the state")
            for n, (_, entry) in enumerate(ahead, start=1):
                check_entry(entry, state.seq + n)
            txn = state.txn
            for _, entry in ahead:  # each names the one before it (an older registry's entry names none)
                prev = entry.get("Prev")
                if isinstance(prev, str) and prev and txn and prev != txn:
                    raise ValueError("a commit that does not follow the one before it")
                txn = str(entry.get("Txn", ""))
        except (ValueError, KeyError, TypeError, CatalogFormatTooNew) as e:
            log.warning("workspace %s: skipped the segment after %d: %s", self.id, state.seq, type(e).__name__)
            return False
        for line, entry in ahead:
            self._apply(state, entry["Seq"], line)
        return True

    def _apply(self, state: State, seq: int, data: bytes) -> None:
        try:
            entry = json.loads(data)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            self._damaged = True
            log.error("workspace %s: commit %d is not JSON; its log needs repair", self.id, seq)
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
            self._recent.append((seq, data))

    def _start_checkpoint(self) -> None:
        """Start writing a checkpoint of the state as it is now, in the background. Called with the state lock
        held. Best effort: a failure, or an instance frozen or stopped while it writes, only makes cold starts
        read more of the log."""
        state = self._state
        if state is None or (self._checkpointer is not None and self._checkpointer.is_alive()):
            return
        # What it writes is taken now, and written outside the lock while commits go on.
        self._checkpointer = threading.Thread(target=self._checkpoint, args=(state.frozen(),), name="checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    def settle(self) -> None:
        """Wait for a checkpoint and a segment being written (tests and benchmarks)."""
        checkpointer, segment = self._checkpointer, self._segment
        if checkpointer is not None:
            checkpointer.join()
        if segment is not None:
            concurrent.futures.wait([segment])

    def _checkpoint(self, frozen: Frozen) -> None:
        seq = frozen.seq
        try:
            self._store.check_writable(recheck=True)  # a checkpoint is a create-only write too
            parts = 0
            for part, data in checkpoint_objects(frozen):  # one object at a time: the parts, then the first
                key = checkpoint_part_key(self.id, seq, part) if part else checkpoint_key(self.id, seq)
                parts = max(parts, part)
                try:
                    self._store.create(key, data)
                except AlreadyExists:
                    pass  # another instance wrote this seq's checkpoint (the same bytes: equal states)
                del data
            self._store.put(hint_key(self.id), encode({"Seq": seq, "Parts": parts}))
            # Keep the newest two: a cold instance that read the hint just before it moved still finds its
            # checkpoint. Older ones this instance knows of go (the sweep removes the rest).
            known = sorted({*self._checkpoints, seq})
            for old in known[:-KEPT_CHECKPOINTS]:
                delete_checkpoint(self._store, self.id, old)
            self._checkpoints = known[-KEPT_CHECKPOINTS:]
            release_freed()
        except StoreError as e:
            log.warning("checkpoint of a workspace at %d failed: %s", seq, type(e).__name__)

    def versions_of(self, model_id: str) -> list[Entry]:
        """A model's versions as this instance knows them (none: absent, deleted, or its model is)."""
        with self._state_lock:
            return list((self._state or State()).versions.get(model_id, {}).values())


def checkpoint_interval(state: State) -> int:
    """Commits between checkpoints at this state: 32, doubled while a checkpoint would cost each commit more
    than CHECKPOINT_BYTES_PER_COMMIT (a function of the state, so that every writer agrees on where they are)."""
    size = state.record_bytes + 200 * (len(state.models) + state.version_count)  # records, and columns or line heads
    interval = CHECKPOINT_EVERY
    while size > interval * CHECKPOINT_BYTES_PER_COMMIT and interval < MOST_BETWEEN_CHECKPOINTS:
        interval *= 2
    return interval


def delete_checkpoint(store: Store, workspace_id: str, seq: int) -> None:
    """Remove a checkpoint: its first object first (a reader then no longer finds it), then its parts."""
    store.delete(checkpoint_key(workspace_id, seq))
    store.delete_many(store.list(checkpoint_parts_prefix(workspace_id, seq)))


def hinted_parts(data: bytes | None) -> int:
    """How many parts the hinted checkpoint has (0 where the hint does not say: its first object says)."""
    try:
        parts = json.loads(data)["Parts"] if data is not None else 0
    except (ValueError, KeyError, TypeError):
        return 0
    return parts if isinstance(parts, int) and 0 <= parts <= 4096 else 0


def hinted_seq(data: bytes | None) -> int | None:
    """The seq a hint names, or None if there is none or it does not parse."""
    try:
        seq = json.loads(data)["Seq"] if data is not None else None
    except (ValueError, KeyError, TypeError):
        return None
    return seq if isinstance(seq, int) and seq > 0 else None


def checkpoint_seq(key: str) -> int | None:
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


def segment_of(lines: list[bytes]) -> bytes:
    """A segment: the commits as the log holds them, a line each, then a line {"End": {"Lines", "Sha256"}} that
    counts them and checksums them, so that a copy damaged anywhere, even where it still parses, is skipped."""
    body = b"".join(line + b"\n" for line in lines)
    return body + encode({"End": {"Lines": len(lines), "Sha256": hashlib.sha256(body).hexdigest()}}) + b"\n"


def segment_lines(data: bytes) -> list[bytes]:
    """The commit lines of a segment whose end line counts and checksums them; else ValueError."""
    last = data.rfind(b"\n", 0, len(data) - 1)  # the line before the end line ends here
    if not data.endswith(b"\n") or last < 0:
        raise ValueError("no end line")
    end = json.loads(data[last + 1:])["End"]
    body = data[:last + 1]
    if hashlib.sha256(body).hexdigest() != end["Sha256"] or body.count(b"\n") != end["Lines"]:
        raise ValueError("checksum does not match")
    return body.split(b"\n")[:-1]


def _as_read(key: str, data: bytes) -> Part | bytes:
    """A checkpoint's part hashed and split where it was read; any other object as it is."""
    return Part.of(data) if is_checkpoint_part(key) else data


def _as_is(key: str, data: bytes) -> bytes:
    return data
