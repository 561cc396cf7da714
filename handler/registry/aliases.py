"""Version numbers and aliases, kept inside the records: a model's record holds its aliases (`Aliases`) and the
last version number it gave (`LastVersionNumber`); a version's record holds its number (`VersionNumber`),
given at creation in creation order and never given again. Models by name, for the MLflow API."""
from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from ..catalog.draft import Draft
from ..catalog.entry import ALIASES, VERSION_FACTS
from ..catalog.state import Entry
from ..catalog.workspace import Workspace
from ..errors import InvalidParameter, ModelNotFound, VersionNotFound
from . import changes
from .changes import Subject
from .models import Registry

LAST_NUMBER = "LastVersionNumber"  # in a model's record
NUMBER = "VersionNumber"  # in a version's record
MAX_ALIAS = 255
_ALIAS = re.compile(r"[A-Za-z0-9_-]+")
_RESERVED = re.compile(r"[vV][0-9]+")


def check_alias(alias: str) -> None:
    """Refuse an alias MLflow would refuse: empty, too long, other characters, `latest` or `v<number>`."""
    if not alias or len(alias) > MAX_ALIAS or not _ALIAS.fullmatch(alias):
        raise InvalidParameter(f"alias {alias[:64]!r} must be 1 to {MAX_ALIAS} letters, digits, _ or -")
    if alias.lower() == "latest" or _RESERVED.fullmatch(alias):
        raise InvalidParameter(f"alias {alias[:64]!r} is reserved")


def aliases_of(record: dict[str, Any]) -> dict[str, str]:
    """A model record's aliases: alias -> VersionName."""
    return {item["Alias"]: item["VersionName"] for item in record.get(ALIASES, [])}


def with_aliases(record: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    return {**record, ALIASES: [{"Alias": a, "VersionName": v} for a, v in sorted(aliases.items())]}


def numbered(record: dict[str, Any], versions: list[Entry]) -> tuple[dict[str, int], int]:
    """Every version's number (VersionName -> number) and the model's last number. Versions made before
    numbers existed have none stored: they take the next numbers in creation order, which the model's next
    version create stores (numbered_in)."""
    last = int(record.get(LAST_NUMBER, 0))
    found: dict[str, int] = {}
    unnumbered: list[Entry] = []
    for version in versions:
        number = version.fact(NUMBER, VERSION_FACTS)  # kept beside the record: no record is parsed
        if isinstance(number, int) and not isinstance(number, bool):
            found[version.name] = number
            last = max(last, number)
        else:
            unnumbered.append(version)
    for version in sorted(unnumbered, key=lambda v: v.created):
        last += 1
        found[version.name] = last
    return found, last


def numbers(workspace: Workspace, model: Entry, names: Collection[str]) -> dict[str, int]:
    """The numbers of the model's versions of those names (VersionName -> number): the stored ones, and all of the
    model's versions numbered (numbered) only when one of them has none."""
    found: dict[str, int] = {}
    for name in names:
        version = workspace.version(model.id, name)[0]
        if version is None:
            continue
        number = version.fact(NUMBER, VERSION_FACTS)
        if not isinstance(number, int) or isinstance(number, bool):
            every = numbered(model.record(), versions_of(workspace, model.id))[0]
            return {name: every[name] for name in names if name in every}
        found[name] = number
    return found


def number_given_before(number: int, last: int) -> str:
    """Why a version cannot take a number: the model gave it before (to a version deleted since)."""
    return f"version {number} was given before and deleted (the model's last number is {last}): numbers are never given twice"


def numbered_in(draft: Draft, model_id: str, model: Entry) -> tuple[int, list[str]]:
    """Store numbers in the draft for the model's versions that have none: the model's last number, and the
    versions given one."""
    versions = draft.versions(model_id)
    numbers, last = numbered(model.record(), versions)
    given = []
    for version in versions:
        if version.fact(NUMBER, VERSION_FACTS) is None:
            draft.put_version(model_id, {**version.record(), NUMBER: numbers[version.name]}, version.fingerprint, version.token)
            given.append(version.name)
    return last, given


def versions_of(workspace: Workspace, model_id: str) -> list[Entry]:
    """Every version of the model, as this instance knows them."""
    return workspace.derived("versions", list, model_id)


def shown(workspace: Workspace, model: Entry, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Version records as Get and List answer them: with their number (stored, or the one they will take)
    and the aliases naming them."""
    record = model.record()
    held = aliases_of(record)
    numbers: dict[str, int] | None = None
    for answer in answers:
        if NUMBER not in answer:
            numbers = numbers or numbered(record, versions_of(workspace, model.id))[0]
            answer[NUMBER] = numbers.get(answer["VersionName"], 0)
        names = [alias for alias, version in held.items() if version == answer["VersionName"]]
        if names:
            answer[ALIASES] = names
    return answers


def named(workspace: Workspace, name: str) -> Entry:
    """The model of that name in the workspace (as this instance knows it); ModelNotFound if none."""
    found = workspace.named(name)
    if found is None:
        raise ModelNotFound(f"Registered Model with name={name[:200]} not found")
    return found


class Aliases:
    """Set and remove a model's aliases: each one commit that changes only the model's record."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def set(self, model_id: str, alias: str, version_name: str) -> None:
        """Point alias at the version (moving it if it points elsewhere)."""
        check_alias(alias)

        def change(draft: Draft, record: dict[str, Any]) -> dict[str, Any]:
            if draft.version(model_id, version_name) is None:
                raise VersionNotFound(f"model {model_id} has no version {version_name}")
            return with_aliases(record, {**aliases_of(record), alias: version_name})

        changes.modify(self.registry.store, self.registry.workspace_of(model_id), Subject(model_id), change)

    def remove(self, model_id: str, alias: str) -> None:
        """Remove alias (absent: nothing changes)."""
        def change(draft: Draft, record: dict[str, Any]) -> dict[str, Any]:
            aliases = aliases_of(record)
            return with_aliases(record, {a: v for a, v in aliases.items() if a != alias}) if alias in aliases else record

        changes.modify(self.registry.store, self.registry.workspace_of(model_id), Subject(model_id), change)
