"""Model versions over the catalog: create (named or the next name), read, list, update, delete and
label them, with the guarantees models have. A version's record is `models/<ModelId>/versions/<VersionName>.json`."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from ..catalog.draft import Draft
from ..catalog.workspace import Workspace
from ..errors import InvalidParameter, ModelNotFound, VersionNameConflict, VersionNotFound
from ..rules.validation import validator
from . import aliases, changes, listing, records
from .changes import Subject
from .models import Registry

_LOOKUP_GROUPS = 256  # workspaces whose lookup groups are kept (idle ones are dropped beyond)
Found = tuple[str | None, str | None]  # (ModelId of the name, VersionName of the token's version)


class _Lookup:
    """One caller's question, and its answer once a round has given it."""

    def __init__(self, model_name: str, token: str) -> None:
        self.model_name, self.token = model_name, token
        self.answer: Found | BaseException | None = None


class _Lookups:
    """Registration lookups in one workspace, answered in rounds: the first caller to find no round
    running leads one for everything queued, a commit that changes nothing (one catch-up read), while
    the others wait for its answer. A workspace's commits take turns; its lookups need not."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._changed = threading.Condition()
        self._queue: list[_Lookup] = []
        self._leading = False

    @property
    def busy(self) -> bool:
        return self._leading or bool(self._queue)

    def find(self, model_name: str, token: str) -> Found:
        mine = _Lookup(model_name, token)
        with self._changed:
            self._queue.append(mine)
            while mine.answer is None and self._leading:
                self._changed.wait()
            lead = mine.answer is None
            if lead:
                self._leading = True
                asked, self._queue = self._queue, []
        if lead:
            try:
                found: list[Found] | BaseException = self.workspace.commit(
                    lambda draft: [_find(draft, q.model_name, q.token) for q in asked])[0]
            except BaseException as e:  # noqa: BLE001 - every caller of the round gets the failure
                found = e
            with self._changed:
                for i, question in enumerate(asked):
                    question.answer = found if isinstance(found, BaseException) else found[i]
                self._leading = False
                self._changed.notify_all()
        if isinstance(mine.answer, BaseException):
            raise mine.answer
        assert mine.answer is not None
        return mine.answer


def _find(draft: Draft, model_name: str, token: str) -> Found:
    holder = draft.named(model_name)
    if holder is None:
        return None, None
    return holder, next((v.name for v in draft.versions(holder) if v.token == token), None)


class _NewVersion:
    """What a version create plans on a model in a draft: found again by its token or name (a retry), else a new
    version with the next name and number (or the given ones), and the model's last number."""

    def __init__(self, fields: dict[str, Any], owner_id: str | None, token: str | None, number: int | None) -> None:
        self.normal = records.normalized_version(fields)
        records.check_label_count(len(self.normal["Labels"]), "version")
        self.fingerprint = records.fingerprint(self.normal)
        self.requested: str | None = fields.get("VersionName")
        self.owner_id, self.token, self.number = owner_id, token, number
        self.now = time.time()
        self.renumbered: list[str] = []  # versions given a number by this plan (made before numbers existed)

    def plan(self, draft: Draft, model_id: str) -> tuple[str, bool]:
        model = draft.model(model_id)
        if model is None:
            raise ModelNotFound(f"model {model_id} does not exist")
        versions = draft.versions(model_id)
        if self.token is not None:
            for version in versions:
                if version.token == self.token:
                    return version.name, False
        if self.requested is not None:
            existing = draft.version(model_id, self.requested)
            if existing is not None:
                if existing.fingerprint == self.fingerprint:
                    return self.requested, False
                raise VersionNameConflict(f"model {model_id} has a version {self.requested} with other fields")
            name = self.requested
        else:
            name = records.next_version_name([v.name for v in versions])
            if not validator("common.json#/$defs/VersionName").is_valid(name):
                raise InvalidParameter(f"model {model_id} has no next version name after its highest; give a VersionName")
        last, given = aliases.numbered_in(draft, model_id, model)
        self.renumbered[:] = given
        number = self.number
        if number is not None and number in aliases.numbered(model.record(), draft.versions(model_id))[0].values():
            raise VersionNameConflict(f"model {model_id} has a version numbered {number}")
        if number is not None and number <= last:
            raise InvalidParameter(aliases.number_given_before(number, last))
        new = last + 1 if number is None else number
        record = {**records.build_version(self.normal, name, self.now, self.owner_id), aliases.NUMBER: new}
        draft.put_version(model_id, record, self.fingerprint, self.token)
        draft.put({**model.record(), aliases.LAST_NUMBER: max(last, new)}, model.fingerprint)
        return name, True


class Versions:
    """The seven version operations; a model's versions live in its workspace's catalog."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store
        self._lookups: dict[str, _Lookups] = {}  # by WorkspaceId: registration lookups answered together
        self._lock = threading.Lock()

    def create(self, model_id: str, fields: dict[str, Any], owner_id: str | None = None,
               token: str | None = None, number: int | None = None) -> tuple[str, bool]:
        """Add a version: (its name, created). A named version that exists answers its name when the
        request is the same (a retry), else 409; an unnamed one takes the next name after the model's
        highest. A token (an event's identity) makes the create idempotent: redelivered, it finds its version.
        The new version takes the model's next version number, or `number` (an import) if no version has it."""
        workspace = self.registry.workspace_of(model_id)
        planned = _NewVersion(fields, owner_id, token, number)
        (name, created), seq = workspace.commit(lambda draft: planned.plan(draft, model_id))
        self._publish(workspace, model_id, name, created, planned.renumbered, seq)
        return name, created

    def register(self, normal: dict[str, Any], fields: dict[str, Any], owner_id: str | None, token: str) -> tuple[str, str]:
        """A registration of a model no model of that name held when it was looked up: the model (a normalized
        CreateModel request) and its version, in one commit: (ModelId, VersionName). Where a model of that name
        was made meanwhile, the version is added to it; where the token's version exists, it is answered."""
        planned = _NewVersion(fields, owner_id, token, None)
        model_id, _, answer, seq = self.registry.create_then(normal, owner_id, True, planned.plan)
        assert answer is not None  # planned on the model created or adopted
        name, created = answer
        self._publish(self.registry.workspace(normal["WorkspaceId"]), model_id, name, created, planned.renumbered, seq)
        return model_id, name

    def _publish(self, workspace: Workspace, model_id: str, name: str, created: bool, renumbered: list[str],
                 seq: int | None) -> None:
        # Written, then checked: a delete committed meanwhile would otherwise find no file to remove
        # and leave ours behind. A retry that found its version repairs the file only if needed.
        subjects = [Subject(model_id, name)]
        if created:  # the model's record holds its last version number
            subjects += [Subject(model_id), *(Subject(model_id, given) for given in renumbered)]
        changes.publish_all(self.store, workspace, [subject.record_file(workspace) for subject in subjects], seq or 0)

    def registered(self, workspace_id: str, model_name: str, token: str) -> tuple[str | None, str | None]:
        """Where a registration stands, from the newest state for one catch-up read and no write: the
        model of that name (ModelId, or None) and its version the registration `token` made (or None).
        Concurrent lookups in a workspace share that read (a batch's items, a redelivered batch)."""
        workspace = self.registry.workspace(workspace_id)
        with self._lock:
            group = self._lookups.get(workspace_id)
            if group is None or group.workspace is not workspace:
                if len(self._lookups) >= _LOOKUP_GROUPS:
                    self._lookups = {k: g for k, g in self._lookups.items() if g.busy}
                group = self._lookups[workspace_id] = _Lookups(workspace)
        return group.find(model_name, token)

    def list_versions(self, model_id: str, query: listing.VersionQuery) -> tuple[list[dict[str, Any]], int]:
        workspace = self._read(model_id)
        model = workspace.model(model_id)[0]
        if model is None:
            raise ModelNotFound(f"model {model_id} does not exist")
        entries, total = listing.version_page(workspace, model_id, query)
        shown = listing.within_budget(entries, lambda entry: len(entry.raw))
        return aliases.shown(workspace, model, [entry.record() for entry in shown]), total

    def get(self, model_id: str, name: str) -> dict[str, Any]:
        """The version's record; ModelNotFound or VersionNotFound if either is absent."""
        workspace = self._read(model_id)
        model = workspace.model(model_id)[0]
        found = Subject(model_id, name).existing(model, workspace.version(model_id, name)[0]).record()
        assert model is not None  # else existing() raised
        return aliases.shown(workspace, model, [found])[0]

    def update(self, model_id: str, name: str, fields: dict[str, Any]) -> None:
        changes.modify(self.store, self.registry.workspace_of(model_id), Subject(model_id, name),
                       lambda draft, record: records.updated_version(record, fields))

    def add_labels(self, model_id: str, name: str, labels: list[dict[str, str]]) -> None:
        changes.add_labels(self.store, self.registry.workspace_of(model_id), Subject(model_id, name), labels)

    def remove_labels(self, model_id: str, name: str, keys: Iterable[str]) -> None:
        changes.remove_labels(self.store, self.registry.workspace_of(model_id), Subject(model_id, name), keys)

    def delete(self, model_id: str, name: str) -> None:
        workspace = self.registry.workspace_of(model_id)
        subject = Subject(model_id, name)

        def plan(draft: Draft) -> bool:
            subject.find(draft)
            draft.delete_version(model_id, name)
            model = draft.model(model_id)
            assert model is not None  # found above
            record = model.record()
            held = aliases.aliases_of(record)
            if name not in held.values():
                return False
            # Its aliases go in the same commit: no reader sees an alias pointing at no version.
            draft.put(aliases.with_aliases(record, {a: v for a, v in held.items() if v != name}), model.fingerprint)
            return True

        try:
            unaliased, seq = workspace.commit(plan)
        except (ModelNotFound, VersionNotFound):
            changes.publish(self.store, workspace, subject.record_file(workspace), 0)  # a delete cut short
            raise
        changes.publish(self.store, workspace, subject.record_file(workspace), seq or 0)
        if unaliased:
            changes.publish(self.store, workspace, Subject(model_id).record_file(workspace), seq or 0)

    def _read(self, model_id: str) -> Workspace:
        workspace = self.registry.workspace_of(model_id)
        workspace.read()
        return workspace
