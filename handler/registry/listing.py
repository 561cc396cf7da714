"""ListModels: its query parameters, and filtering, sorting and paging over a workspace's state in memory."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..catalog.entry import VERSION_FACTS, Entry, version_order
from ..catalog.table import COLLECTION_LABEL, Selection
from ..catalog.workspace import Workspace
from ..errors import InvalidBody, InvalidParameter
from ..rules import names
from ..rules.jsontext import parse_json
from ..rules.times import parse_utc
from ..rules.validation import validate

SORT_FIELDS = ("GmtCreateTime", "GmtModifiedTime", "ModelName", "OrderNumber", "ParameterSize")
NUMERIC_COLUMNS = ("OrderNumber", "ParameterSize")
TIME_COLUMNS = ("GmtCreateTime", "GmtModifiedTime")
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "Equal": lambda a, b: a == b, "NotEqual": lambda a, b: a != b,
    "LessThan": lambda a, b: a < b, "LessThanOrEqual": lambda a, b: a <= b,
    "GreaterThan": lambda a, b: a > b, "GreaterThanOrEqual": lambda a, b: a >= b,
}
_NUMBER = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][+-]?[0-9]{1,3})?")
_INTEGER = re.compile(r"-?[0-9]{1,20}")
PAGE_BYTES = 2 << 20  # records one list answer holds at most (models with their LatestVersion, or versions)


@dataclass(frozen=True)
class Condition:
    column: str
    operator: str
    value: float  # a number for numeric columns, an epoch second for times

    def holds(self, entry: Entry) -> bool:
        actual = entry.fact(self.column)  # times are kept as epoch seconds (catalog.Entry)
        if actual is None:
            return False
        return OPERATORS[self.operator](actual, self.value)


@dataclass(frozen=True)
class Ordering:
    """The sort and page of a list query: SortBy, Order, PageNumber, PageSize."""

    sort_by: str = "GmtCreateTime"
    descending: bool = False
    page_number: int = 1
    page_size: int = 10

    @staticmethod
    def fields(params: Mapping[str, str]) -> dict[str, Any]:
        """The ordering parameters, already checked against the query's schema, as fields."""
        return {"sort_by": params.get("SortBy") or "GmtCreateTime", "descending": (params.get("Order") or "ASC") == "DESC",
                "page_number": int(params.get("PageNumber") or 1), "page_size": int(params.get("PageSize") or 10)}

    def page(self, ordered: list[Entry]) -> list[Entry]:
        start = (self.page_number - 1) * self.page_size
        return ordered[start:start + self.page_size]

    def cut_short(self, returned: int, total: int) -> bool:
        """Whether a page of `returned` items ended before its PageSize with items left (the byte budget)."""
        return returned < min(self.page_size, max(0, total - (self.page_number - 1) * self.page_size))


@dataclass(frozen=True)
class Query(Ordering):
    """A ListModels query once parsed; hashable, so equal queries share cached results."""

    name: str | None = None
    name_exact: bool = False
    label: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    exact: tuple[tuple[str, str], ...] = ()  # (field, value) that must be equal: Domain, Task, ...
    text: str | None = None
    collections: frozenset[str] = frozenset()
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        """The query of ListModels parameters already checked against schemas/list-models-query.json."""
        name = names.nfc(params.get("ModelName")) or None
        exact = name is not None and len(name) >= 2 and name[0] == name[-1] == '"'
        return cls(
            name=name[1:-1] if exact and name else name, name_exact=exact,
            label=names.nfc(params.get("Label") or "") or None,
            tags=tuple((t["Key"], t["Value"]) for t in _json_param(params, "Tag", "list-models-query.json#/$defs/TagFilter")),
            exact=tuple((f, params[f]) for f in ("Domain", "Task", "Origin", "ModelType", "Provider") if params.get(f)),
            text=names.nfc(params.get("Query") or "").lower() or None,
            collections=frozenset(c.strip() for c in params.get("Collections", "").split(",") if c.strip()),
            conditions=tuple(_condition(c) for c in _json_param(params, "Conditions", "list-models-query.json#/$defs/Conditions")),
            **cls.fields(params),
        )

    def matches(self, entry: Entry) -> bool:
        if self.name is not None:
            if self.name_exact and entry.name != self.name:
                return False
            if not self.name_exact and self.name.lower() not in entry.name.lower():
                return False
        if any(entry.fact(f) != v for f, v in self.exact):
            return False
        if self.text is not None and self.text not in entry.search():
            return False
        labels = entry.labels
        if self.tags and not labels.issuperset(self.tags):
            return False
        if self.label is not None and not any(self.label in key or self.label in value for key, value in labels):
            return False
        if self.collections and not any(key == COLLECTION_LABEL and value in self.collections for key, value in labels):
            return False
        return all(c.holds(entry) for c in self.conditions)


    def selection(self) -> Selection:
        """What the catalog is asked for (catalog/table.py finds it without looking at each model in Python)."""
        return Selection(self.name, self.name_exact, self.label, self.tags, self.exact, self.text, self.collections,
                         tuple((c.column, c.operator, c.value) for c in self.conditions),
                         self.sort_by, self.descending)


def page(workspace: Workspace, query: Query) -> tuple[list[Entry], int]:
    """The models of one page, and how many match in all (exact), from the state the workspace holds.
    The filtered, sorted order is kept for that state, so that the next page is a slice of it."""
    start = (query.page_number - 1) * query.page_size
    return workspace.select(query.selection(), start, start + query.page_size)


def sort_entries(entries: list[Entry], sort_by: str, descending: bool) -> list[Entry]:
    """Sorted by the field, ties by creation (ModelIds begin with their creation time); models without
    the field come last in either order: what ListModels' order is, said plainly (the catalog keeps it
    by other means)."""
    entries.sort(key=lambda e: (e.fact("GmtCreateTime") or 0, e.id), reverse=descending)
    if sort_by == "GmtCreateTime":
        return entries
    having = [e for e in entries if e.fact(sort_by) is not None]
    missing = [e for e in entries if e.fact(sort_by) is None]
    having.sort(key=lambda e: e.fact(sort_by), reverse=descending)  # stable: ties keep creation order
    return having + missing


def _json_param(params: Mapping[str, str], name: str, schema: str) -> list[Any]:
    text = params.get(name)
    if not text:
        return []
    try:
        value = parse_json(text)  # strict, as a body is: no duplicate keys, no NaN, bounded
    except InvalidBody as e:
        raise InvalidParameter(f"{name} must be a JSON array: {e.message.removeprefix('body ')}") from None
    validate(schema, value, root=name)
    return value  # type: ignore[no-any-return]


def _condition(value: Mapping[str, Any]) -> Condition:
    column, operator, given = value["Column"], value["Operator"], value["Value"]
    raw = given if isinstance(given, str) else json.dumps(given)
    if column in NUMERIC_COLUMNS:
        if not _NUMBER.fullmatch(raw):
            raise InvalidParameter(f"Conditions: the Value for {column} must be a number, not {raw[:40]!r}")
        # integers compare exactly (OrderNumber and ParameterSize are 64-bit integers); others as floats
        number: float = int(raw) if _INTEGER.fullmatch(raw) else float(raw)
        if not math.isfinite(number):
            raise InvalidParameter(f"Conditions: the Value for {column} is out of range")
        return Condition(column, operator, number)
    seconds = parse_utc(raw)
    if seconds is None:
        raise InvalidParameter(f"Conditions: the Value for {column} must be a UTC time like 2021-01-30T12:51:33Z, not {raw[:40]!r}")
    return Condition(column, operator, seconds)


@dataclass(frozen=True)
class VersionQuery(Ordering):
    """A ListModelVersions query once parsed."""

    exact: tuple[tuple[str, str], ...] = ()  # (field, value) that must be equal: ApprovalStatus, FormatType, ...
    label: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> VersionQuery:
        """The query of parameters already checked against schemas/list-model-versions-query.json."""
        exact = ("ApprovalStatus", "FormatType", "FrameworkType", "SourceId", "SourceType", "VersionName")
        return cls(exact=tuple((f, params[f]) for f in exact if params.get(f)), label=names.nfc(params.get("Label") or "") or None,
                   **cls.fields(params))

    def matches(self, entry: Entry) -> bool:
        if any(entry.fact(f, VERSION_FACTS) != v for f, v in self.exact):
            return False
        return self.label is None or any(self.label in key or self.label in value for key, value in entry.labels)


def version_page(workspace: Workspace, model_id: str, query: VersionQuery) -> tuple[list[Entry], int]:
    """One page of a model's versions matching query, and how many match in all."""
    def order(entries: list[Entry]) -> list[Entry]:
        matching = [e for e in entries if query.matches(e)]
        if query.sort_by == "VersionName":
            return sorted(matching, key=lambda e: version_order(e.name), reverse=query.descending)
        if query.sort_by == "GmtModifiedTime":
            return sorted(matching, key=lambda e: (e.fact("GmtModifiedTime", VERSION_FACTS) or 0, e.created),
                          reverse=query.descending)
        return sorted(matching, key=lambda e: e.created, reverse=query.descending)  # creation order

    ordered = workspace.derived(("versions", query.exact, query.label, query.sort_by, query.descending), order, model_id)
    return query.page(ordered), len(ordered)


def within_budget(entries: list[Entry], size: Callable[[Entry], int], budget: int = PAGE_BYTES) -> list[Entry]:
    """The leading entries of a page whose records add up to at most `budget` bytes (the first whatever its
    size): what one answer parses and serialises stays bounded, however large each record is."""
    kept: list[Entry] = []
    spent = 0
    for entry in entries:
        spent += size(entry)
        if kept and spent > budget:
            break
        kept.append(entry)
    return kept
