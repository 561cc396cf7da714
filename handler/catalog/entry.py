"""A model or a version as the catalog hands it out: its record's bytes and what listing looks at."""
from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..rules.jsontext import compact
from ..rules.times import parse_utc

MODEL_FACTS = ("Domain", "Task", "Origin", "ModelType", "Provider", "OrderNumber", "ParameterSize", "GmtCreateTime",
               "GmtModifiedTime", "ModelName")
ALIASES = "Aliases"  # in a model's record: [{"Alias": "champion", "VersionName": "0.2.0"}], sorted by alias
VERSION_FACTS = ("ApprovalStatus", "FormatType", "FrameworkType", "SourceId", "SourceType", "VersionName",
                 "GmtCreateTime", "GmtModifiedTime", "VersionNumber")
_TIMES = ("GmtCreateTime", "GmtModifiedTime")  # kept as epoch seconds, parsed once
_SHARED = frozenset({"ApprovalStatus", "FormatType", "FrameworkType", "SourceType", "Domain", "Task", "Origin", "ModelType",
                     "Provider"})  # facts of few distinct values: one string object for all entries that have each
_NO_LABELS: frozenset[tuple[str, str]] = frozenset()


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
    token: str | None = None  # versions: the idempotency token of the event that registered it
    created: int = 0  # versions: the seq of the commit that created it (the newest is the LatestVersion)

    @classmethod
    def model(cls, record: Mapping[str, Any], fingerprint: str, raw: bytes | None = None) -> Entry:
        labels = frozenset((label["Key"], label["Value"]) for label in record["Labels"])
        return cls(raw if raw is not None else encode(record), fingerprint, str(record["ModelId"]), str(record["ModelName"]),
                   _facts(record, MODEL_FACTS), labels)

    @classmethod
    def version(cls, record: Mapping[str, Any], fingerprint: str, token: str | None, created: int,
                raw: bytes | None = None) -> Entry:
        labels = frozenset((label["Key"], label["Value"]) for label in record.get("Labels", [])) or _NO_LABELS
        name = str(record["VersionName"])
        return cls(raw if raw is not None else encode(record), fingerprint, name, name, _facts(record, VERSION_FACTS),
                   labels, token, created)

    def search(self) -> str:
        """What ListModels' Query looks in: the name, Domain, Task and labels, lower-cased."""
        words = [self.name, self.fact("Domain") or "", self.fact("Task") or "", *(w for pair in self.labels for w in pair)]
        return "\n".join(words).lower()

    def fact(self, name: str, facts: tuple[str, ...] = MODEL_FACTS) -> Any:
        return self.facts[facts.index(name)]

    def record(self) -> dict[str, Any]:
        """The record as an object (parsed on each call)."""
        return json.loads(self.raw)  # type: ignore[no-any-return]


def _facts(record: Mapping[str, Any], names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(parse_utc(record.get(name)) if name in _TIMES else _shared(name, record.get(name)) for name in names)


def _shared(name: str, value: Any) -> Any:
    return sys.intern(value) if name in _SHARED and isinstance(value, str) else value
