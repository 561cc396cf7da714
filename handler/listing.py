"""ListModels: its query parameters, and filtering, sorting and paging over a workspace's state in memory."""
from __future__ import annotations

import calendar
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import names
from .catalog import Entry, Workspace
from .errors import InvalidParameter
from .validation import validate

SORT_FIELDS = ("GmtCreateTime", "GmtModifiedTime", "ModelName", "OrderNumber", "ParameterSize")
NUMERIC_COLUMNS = ("OrderNumber", "ParameterSize")
TIME_COLUMNS = ("GmtCreateTime", "GmtModifiedTime")
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "Equal": lambda a, b: a == b, "NotEqual": lambda a, b: a != b,
    "LessThan": lambda a, b: a < b, "LessThanOrEqual": lambda a, b: a <= b,
    "GreaterThan": lambda a, b: a > b, "GreaterThanOrEqual": lambda a, b: a >= b,
}
COLLECTION_LABEL = "Collection"  # a model is in collection C when it has the label Collection=C


@dataclass(frozen=True)
class Condition:
    column: str
    operator: str
    value: float | str  # a number for numeric columns, an epoch second for times

    def holds(self, entry: Entry) -> bool:
        actual = entry.fact(self.column)
        if actual is None:
            return False
        if self.column in TIME_COLUMNS:
            actual = _epoch(actual)
        return OPERATORS[self.operator](actual, self.value)


@dataclass(frozen=True)
class Query:
    """A ListModels query once parsed; hashable, so equal queries share cached results."""

    name: str | None = None
    name_exact: bool = False
    label: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    exact: tuple[tuple[str, str], ...] = ()  # (field, value) that must be equal: Domain, Task, ...
    text: str | None = None
    collections: frozenset[str] = frozenset()
    conditions: tuple[Condition, ...] = ()
    sort_by: str = "GmtCreateTime"
    descending: bool = False
    page_number: int = 1
    page_size: int = 10

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        """The query of ListModels parameters already checked against schemas/list-models-query.json."""
        name = names.nfc(params.get("ModelName"))
        exact = len(name) >= 2 and name[0] == name[-1] == '"' if name else False
        return cls(
            name=(name[1:-1] if exact else name) or None if name is not None else None, name_exact=exact,
            label=params.get("Label") or None,
            tags=tuple((t["Key"], t["Value"]) for t in _json_param(params, "Tag", "list-models-query.json#/$defs/TagFilter")),
            exact=tuple((f, params[f]) for f in ("Domain", "Task", "Origin", "ModelType", "Provider") if params.get(f)),
            text=names.nfc(params.get("Query") or "").lower() or None,
            collections=frozenset(c.strip() for c in params.get("Collections", "").split(",") if c.strip()),
            conditions=tuple(_condition(c) for c in _json_param(params, "Conditions", "list-models-query.json#/$defs/Conditions")),
            sort_by=params.get("SortBy") or "GmtCreateTime",
            descending=(params.get("Order") or "ASC").upper() == "DESC",
            page_number=int(params.get("PageNumber") or 1),
            page_size=int(params.get("PageSize") or 10),
        )

    def matches(self, entry: Entry) -> bool:
        if self.name is not None:
            if self.name_exact and entry.name != self.name:
                return False
            if not self.name_exact and self.name.lower() not in entry.name.lower():
                return False
        if any(entry.fact(f) != v for f, v in self.exact):
            return False
        if self.text is not None and self.text not in entry.search:
            return False
        labels = entry.labels
        if self.tags and not labels.issuperset(self.tags):
            return False
        if self.label is not None and not any(self.label in key or self.label in value for key, value in labels):
            return False
        if self.collections and not any(key == COLLECTION_LABEL and value in self.collections for key, value in labels):
            return False
        return all(c.holds(entry) for c in self.conditions)


def page(workspace: Workspace, query: Query) -> tuple[list[dict[str, Any]], int]:
    """The models of one page, and how many match in all (exact), from the state the workspace holds.
    The filtered, sorted order is kept for that state, so that the next page is a slice of it."""
    key = (query.name, query.name_exact, query.label, query.tags, query.exact, query.text,
           query.collections, query.conditions, query.sort_by, query.descending)
    ordered = workspace.derived(key, lambda entries: _sort([e for e in entries if query.matches(e)], query.sort_by,
                                                             query.descending))
    start = (query.page_number - 1) * query.page_size
    return [entry.record() for entry in ordered[start:start + query.page_size]], len(ordered)


def _sort(entries: list[Entry], sort_by: str, descending: bool) -> list[Entry]:
    """Sorted by the field, ties by creation (ModelIds begin with their creation time); models without
    the field come last in either order."""
    entries.sort(key=lambda e: (e.fact("GmtCreateTime"), e.id), reverse=descending)
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
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidParameter(f"{name} must be a JSON array; it is not valid JSON") from None
    validate(schema, value, root=name)
    return value  # type: ignore[no-any-return]


def _condition(value: Mapping[str, Any]) -> Condition:
    column, operator, raw = value["Column"], value["Operator"], str(value["Value"])
    if column in NUMERIC_COLUMNS:
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise InvalidParameter(f"Conditions: the Value for {column} must be a number, not {raw[:40]!r}")
        return Condition(column, operator, number)
    try:
        return Condition(column, operator, _epoch(raw))
    except ValueError:
        raise InvalidParameter(f"Conditions: the Value for {column} must be a time like 2021-01-30T12:51:33Z, not {raw[:40]!r}") from None


def _epoch(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC time (`2021-01-30T12:51:33Z`, fractions allowed)."""
    main, _, fraction = text.rstrip("Z").partition(".")
    if not text.endswith("Z") or (fraction and not fraction.isdigit()):
        raise ValueError(text)
    return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + (float("0." + fraction) if fraction else 0.0)
