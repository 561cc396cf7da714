"""The change machinery models and versions share: plan a new record against the newest state, commit it,
and keep its record file current beside the catalog (invariant 5 of docs/catalog.md)."""
from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..catalog.draft import Draft
from ..catalog.keys import record_key, version_record_key
from ..catalog.state import Entry
from ..catalog.workspace import Workspace
from ..errors import ModelNotFound, VersionNotFound
from ..stores.base import NotFound, Store, StoreError
from . import records

log = logging.getLogger(__name__)

_RECORD_ROUNDS = 32  # record rewrites while other instances keep changing the same model
_confirming = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="records")  # the read after a record write
_publishing = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="publish")  # record writes side by side
_unconfirmed: set[concurrent.futures.Future[None]] = set()
_unconfirmed_lock = threading.Lock()

Change = Callable[[Draft, dict[str, Any]], dict[str, Any]]  # (draft, record as it is) -> the record it becomes


@dataclass(frozen=True)
class Subject:
    """A model, or one of its versions (`version` set): what a change is about."""

    model_id: str
    version: str | None = None

    @property
    def kind(self) -> str:
        return "model" if self.version is None else "version"

    def find(self, draft: Draft) -> Entry:
        """Its entry in the draft; ModelNotFound or VersionNotFound if it has none."""
        model = draft.model(self.model_id)
        return self.existing(model, draft.version(self.model_id, self.version) if self.version is not None else None)

    def existing(self, model: Entry | None, version: Entry | None) -> Entry:
        """Its entry, given its model's and (for a version) its own; ModelNotFound or VersionNotFound if absent."""
        if model is None:
            raise ModelNotFound(f"model {self.model_id} does not exist")
        if self.version is None:
            return model
        if version is None:
            raise VersionNotFound(f"model {self.model_id} has no version {self.version}")
        return version

    def put(self, draft: Draft, record: dict[str, Any], entry: Entry) -> None:
        """Put its new record in the draft, keeping what its creation fixed (fingerprint, token)."""
        if self.version is None:
            draft.put(record, entry.fingerprint)
        else:
            draft.put_version(self.model_id, record, entry.fingerprint, entry.token)

    def with_labels(self, record: dict[str, Any], labels: list[dict[str, str]]) -> dict[str, Any]:
        """Its record with these labels (a model's `Tags` mirror its `Labels`)."""
        return records.with_labels(record, labels) if self.version is None else {**record, "Labels": labels}

    def record_file(self, workspace: Workspace) -> RecordFile:
        if self.version is None:
            model_id = self.model_id
            return RecordFile(record_key(model_id), model_id, lambda: workspace.model(model_id))
        name = self.version
        return RecordFile(version_record_key(self.model_id, name), f"{self.model_id}/{name}",
                          lambda: workspace.version(self.model_id, name))


@dataclass(frozen=True)
class RecordFile:
    """A record file kept current beside the catalog: where it is, which change marks it, what it holds now."""

    key: str
    changed: str  # its key in the state's `changed` map
    current: Callable[[], tuple[Entry | None, int]]


def modify(store: Store, workspace: Workspace, subject: Subject, change: Change) -> None:
    """Commit the record `change(draft, record)` makes of the subject, unless it equals the old one; then
    make its record file show it."""
    def plan(draft: Draft) -> None:
        entry = subject.find(draft)
        old = entry.record()
        new = change(draft, old)
        if records.same_content(new, old):
            return  # nothing to change: a retried update is answered without a commit
        subject.put(draft, records.touched(new), entry)

    _, seq = workspace.commit(plan)
    # Even when nothing changed: this may be the retry of a change whose record write was cut short.
    publish(store, workspace, subject.record_file(workspace), seq or 0)


def add_labels(store: Store, workspace: Workspace, subject: Subject, labels: list[dict[str, str]]) -> None:
    """Add labels; a given key replaces every label of that key."""
    keys = {label["Key"] for label in labels}

    def change(draft: Draft, record: dict[str, Any]) -> dict[str, Any]:
        merged = [lb for lb in record["Labels"] if lb["Key"] not in keys] + records.merged_labels({"Labels": labels})
        records.check_label_count(len(merged), subject.kind)
        return subject.with_labels(record, merged)

    modify(store, workspace, subject, change)


def remove_labels(store: Store, workspace: Workspace, subject: Subject, keys: Iterable[str]) -> None:
    """Remove every label whose key is one of keys (absent keys are ignored)."""
    gone = set(keys)
    modify(store, workspace, subject,
           lambda draft, record: subject.with_labels(record, [lb for lb in record["Labels"] if lb["Key"] not in gone]))


def publish(store: Store, workspace: Workspace, target: RecordFile, seq: int) -> bool:
    """Make a record file (a model's, or a version's) show its entry as of commit `seq` or later
    (removed once deleted): one write before the answer; whether it wrote the file.

    Another instance's commit may write the file between our commit and our write, and ours would
    then undo it; so once written, the writer catches up and writes again while a newer commit changed
    that entry. After a commit (`seq`) that read runs after the answer: the file is derived, and the
    read finds something only when another instance changed the same entry meanwhile. A repair (no
    `seq`: a retry, the sweep) makes it before returning."""
    if not seq:
        workspace.read()
    entry, known = target.current()  # as of commit seq, or newer
    if entry is None:
        # No commit can follow a model's delete; a writer of an earlier one that is still
        # writing the record finds this delete when it catches up, and removes the record.
        store.delete(target.key)
        return False
    if not seq and not _differs(store, target.key, entry.raw):
        return False  # nothing was committed and the record is current: a retry writes only to repair
    store.put_derived(target.key, entry.raw)
    if not seq:  # a repair (a retry, the sweep): done when it returns
        _rewrite_while_changed(store, workspace, target, known)
        return True
    future = _confirming.submit(contextvars.copy_context().run, _confirm, store, workspace, target, known)
    with _unconfirmed_lock:
        _unconfirmed.add(future)
    future.add_done_callback(_confirmed)
    return True


def publish_all(store: Store, workspace: Workspace, targets: list[RecordFile], seq: int) -> None:
    """`publish` each of the files one commit changed, side by side: one round trip, not one each."""
    if len(targets) == 1:
        publish(store, workspace, targets[0], seq)
        return
    futures = [_publishing.submit(contextvars.copy_context().run, publish, store, workspace, target, seq) for target in targets]
    concurrent.futures.wait(futures)
    for future in futures:
        future.result()  # the first failure, raised here


def settle() -> None:
    """Wait until every record file written so far is confirmed current (tests, benchmarks, an instance stopping)."""
    with _unconfirmed_lock:
        waiting = list(_unconfirmed)
    concurrent.futures.wait(waiting)


def _rewrite_while_changed(store: Store, workspace: Workspace, target: RecordFile, known: int) -> None:
    """Write the record file again while a commit newer than `known` changed its entry."""
    for _ in range(_RECORD_ROUNDS):
        workspace.read()
        if workspace.changed_at(target.changed) <= known:
            return
        entry, known = target.current()
        if entry is None:
            store.delete(target.key)
            return
        store.put_derived(target.key, entry.raw)
    log.warning("the record of a model kept changing under its writer; its next change rewrites it")


def _confirm(store: Store, workspace: Workspace, target: RecordFile, known: int) -> None:
    """_rewrite_while_changed after the answer: what fails is logged (the file is derived; the next change rewrites it)."""
    try:
        _rewrite_while_changed(store, workspace, target, known)
    except StoreError as e:
        log.warning("a record file could not be confirmed current (%s); its next change rewrites it", type(e).__name__)
    except Exception as e:  # noqa: BLE001 - after the answer, on a thread of its own: logged by kind
        log.error("confirming a record file failed: %s", type(e).__name__)


def _confirmed(future: concurrent.futures.Future[None]) -> None:
    with _unconfirmed_lock:
        _unconfirmed.discard(future)


def _differs(store: Store, key: str, data: bytes) -> bool:
    try:
        return store.get(key) != data
    except NotFound:
        return True
