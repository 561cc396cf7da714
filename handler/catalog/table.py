"""A workspace's models in columns: compact in memory, selected and sorted by C-level scans and kept orders."""
from __future__ import annotations

import base64
import bisect
import collections
import functools
import itertools
import math
import operator
import re
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .entry import MODEL_FACTS, Entry

# What listing filters and sorts on, each a column: strings of few distinct values (interned, shared), numbers
# and times (epoch seconds) kept in orders of their own.
WORDS = ("Domain", "Task", "Origin", "ModelType", "Provider")
NUMBERS = ("OrderNumber", "ParameterSize", "GmtCreateTime", "GmtModifiedTime")
TIMES = ("GmtCreateTime", "GmtModifiedTime")  # floats: packed in checkpoints (NaN where absent); the others exact
SORTS = ("GmtCreateTime", "GmtModifiedTime", "ModelName", "OrderNumber", "ParameterSize")
_FACT_AT = {name: MODEL_FACTS.index(name) for name in MODEL_FACTS}
_HEX = frozenset("0123456789abcdef")
Labels = tuple[tuple[str, str], ...]  # a model's labels: sorted (Key, Value) pairs


@dataclass(frozen=True)
class Selection:
    """What a ListModels query asks of the models: filters (all must hold) and an order."""

    name: str | None = None  # ModelName: a substring (any case), or the whole name when name_exact
    name_exact: bool = False
    label: str | None = None  # a substring of some label's key or value
    tags: tuple[tuple[str, str], ...] = ()  # labels every match has
    exact: tuple[tuple[str, str], ...] = ()  # (WORDS column, value) that must be equal
    text: str | None = None  # lower-cased; in the name, Domain, Task or a label's key or value
    collections: frozenset[str] = frozenset()  # a match has a label Collection=C for one of them
    conditions: tuple[tuple[str, str, float], ...] = ()  # (NUMBERS column, operator, value)
    sort_by: str = "GmtCreateTime"
    descending: bool = False
    # (regular expression, whether the whole name matches it or must not); each holds
    name_patterns: tuple[tuple[str, bool], ...] = ()
    label_tests: tuple[Callable[[Labels], bool], ...] = ()  # each holds of the model's labels (asked of none too)


COLLECTION_LABEL = "Collection"
_NEGATED = bytes([1, 0]).ljust(256, b"\0")


class _Coded:
    """A column of few distinct values: a code per slot (a byte while there are at most 256 values), the values by
    code, and how many slots use each. Code 0 is the empty value (no word, no labels), which no filter matches."""

    def __init__(self, empty: Any, values: list[Any] | None = None, codes: Iterable[int] = ()) -> None:
        self.values: list[Any] = values if values is not None else [empty]
        self.data: bytearray | array[int] = bytearray(codes) if len(self.values) <= 256 else array("i", codes)
        self.code: dict[Any, int] = {value: n for n, value in enumerate(self.values)}
        self.counts = [0] * len(self.values)
        for code, count in collections.Counter(self.data).items():
            self.counts[code] = count
        self._free = [n for n in range(1, len(self.values)) if not self.counts[n]]

    def __getitem__(self, slot: int) -> Any:
        return self.values[self.data[slot]]

    def append(self) -> None:
        self.data.append(0)
        self.counts[0] += 1

    def set(self, slot: int, value: Any) -> None:
        old = self.data[slot]
        self.counts[old] -= 1
        if old and not self.counts[old]:  # no slot uses it: its code serves another value
            del self.code[self.values[old]]
            self._free.append(old)
        code = self.code.get(value)
        if code is None:
            code = self._free.pop() if self._free else len(self.values)
            if code == len(self.values):
                self.values.append(value)
                self.counts.append(0)
            else:
                self.values[code] = value
            self.code[value] = code
            if code == 256 and isinstance(self.data, bytearray):
                self.data = array("i", iter(self.data))  # an iterator: a bytes-like one would be read as raw ints
        self.data[slot] = code
        self.counts[code] += 1

    def in_use(self) -> Iterator[Any]:
        """The values some slot has (the empty one aside)."""
        return (value for code, value in enumerate(self.values) if code and self.counts[code])

    def mask(self, holds: Callable[[Any], Any], empty: bool = False) -> bytes:
        """1 in each slot whose value `holds` is true of (asked once per value in use; of the empty one only when
        `empty`, and then free slots hold it too)."""
        flags = bytes((code > 0 or empty) and self.counts[code] > 0 and holds(value) is True
                      for code, value in enumerate(self.values))
        if isinstance(self.data, bytearray):
            return bytes(self.data.translate(flags.ljust(256, b"\0")))
        return bytes(map(flags.__getitem__, self.data))


class ModelTable:
    """The models of one state: a slot per model, columns indexed by slot, orders of slots per sort field.

    A model costs its record's bytes and about 300 bytes more (ID and name, the two maps that find them, a
    pointer per column, its labels as a tuple of shared pairs, a slot in each order), where objects per model
    cost several times that. Filters scan columns with C-level iterators (map, compress) and conditions and
    sorts read the kept orders, so a query that changes on every call stays a few milliseconds at 100,000."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}  # ModelId -> slot
        self.names: dict[str, str] = {}  # ModelName -> ModelId
        self._id: list[str | None] = []  # None: a free slot
        self._name: list[str] = []
        self._lower: list[str] = []  # the name, lower-cased (the same object when it already is)
        self._raw: list[bytes] = []
        self._fingerprint = bytearray()  # 32 bytes a slot (a SHA-256), else in _odd_fingerprints
        self._odd_fingerprints: dict[int, str] = {}
        self._words: dict[str, _Coded] = {name: _Coded(None) for name in WORDS}
        # OrderNumber and ParameterSize as ints (None where absent); times as doubles (NaN where absent)
        self._numbers: dict[str, Any] = {name: array("d") if name in TIMES else [] for name in NUMBERS}
        self._labels = _Coded(())  # each slot's labels: a sorted tuple of (Key, Value) pairs
        self.changed = array("q")  # the seq of each slot's last change
        self._orders: dict[str, array[int]] = {name: array("i") for name in SORTS}
        self._free: list[int] = []
        self._strings: dict[str, str] = {}  # shared copies of words, label keys and values
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}
        self.bytes = 0

    # --- reading ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self.ids

    def get(self, model_id: str) -> Entry | None:
        slot = self.ids.get(model_id)
        return None if slot is None else self.entry(slot)

    def __getitem__(self, model_id: str) -> Entry:
        return self.entry(self.ids[model_id])

    def entry(self, slot: int) -> Entry:
        """The model in `slot` as an Entry (built on each call)."""
        facts = tuple(self._fact(slot, name) for name in MODEL_FACTS)
        model_id = self._id[slot]
        assert model_id is not None
        return Entry(self._raw[slot], self.fingerprint(slot), model_id, self._name[slot], facts,
                     frozenset(self._labels[slot]))

    def fingerprint(self, slot: int) -> str:
        odd = self._odd_fingerprints.get(slot)
        return odd if odd is not None else self._fingerprint[slot * 32:slot * 32 + 32].hex()

    def _fact(self, slot: int, name: str) -> Any:
        if name == "ModelName":
            return self._name[slot]
        if name in self._words:
            return self._words[name][slot]
        value = self._numbers[name][slot]
        return None if value != value else value  # NaN: absent

    def keys(self) -> Iterator[str]:
        return iter(self.ids)

    def values(self) -> Iterator[Entry]:
        """Every model, in slot order."""
        return (self.entry(slot) for slot in self.ids.values())

    def items(self) -> Iterator[tuple[str, Entry]]:
        return ((model_id, self.entry(slot)) for model_id, slot in self.ids.items())

    def slots(self) -> list[int]:
        """Every live slot, in creation order."""
        return list(self._orders["GmtCreateTime"])

    # --- changing --------------------------------------------------------------------------------

    def put(self, entry: Entry, seq: int) -> None:
        """Add the model, or replace the one with its ID."""
        slot = self.ids.get(entry.id)
        if slot is not None:
            self._unorder(slot)
            self.bytes -= len(self._raw[slot])
            old_name = self._name[slot]
            if self.names.get(old_name) == entry.id:
                del self.names[old_name]
        else:
            slot = self._take_slot()
            self.ids[entry.id] = slot
        self._id[slot] = entry.id
        self._name[slot] = entry.name
        lower = entry.name.lower()
        self._lower[slot] = entry.name if lower == entry.name else lower
        self._raw[slot] = entry.raw
        self._set_fingerprint(slot, entry.fingerprint)
        for name in WORDS:
            value = entry.facts[_FACT_AT[name]]
            self._words[name].set(slot, self._share(value) if isinstance(value, str) else None)
        for name in NUMBERS:
            value = entry.facts[_FACT_AT[name]]
            number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            self._numbers[name][slot] = (math.nan if number is None else number) if name in TIMES else number
        self._labels.set(slot, tuple(sorted(self._pair(k, v) for k, v in entry.labels)))
        self.changed[slot] = seq
        self.names[entry.name] = entry.id
        self.bytes += len(entry.raw)
        self._order(slot)

    def remove(self, model_id: str) -> bool:
        """Remove the model; whether it was there."""
        slot = self.ids.pop(model_id, None)
        if slot is None:
            return False
        self._unorder(slot)
        self.bytes -= len(self._raw[slot])
        if self.names.get(self._name[slot]) == model_id:
            del self.names[self._name[slot]]
        self._id[slot], self._raw[slot], self._lower[slot] = None, b"", ""  # no filter holds
        self._labels.set(slot, ())
        for words in self._words.values():
            words.set(slot, None)
        self._odd_fingerprints.pop(slot, None)
        self._free.append(slot)
        return True

    def _take_slot(self) -> int:
        if self._free:
            return self._free.pop()
        slot = len(self._id)
        self._id.append(None)
        self._name.append("")
        self._lower.append("")
        self._raw.append(b"")
        self._fingerprint.extend(bytes(32))
        for words in self._words.values():
            words.append()
        for name, numbers in self._numbers.items():
            numbers.append(math.nan if name in TIMES else None)
        self._labels.append()
        self.changed.append(0)
        return slot

    def _set_fingerprint(self, slot: int, fingerprint: str) -> None:
        if len(fingerprint) == 64 and _HEX.issuperset(fingerprint):
            self._fingerprint[slot * 32:slot * 32 + 32] = bytes.fromhex(fingerprint)
            self._odd_fingerprints.pop(slot, None)
        else:
            self._odd_fingerprints[slot] = fingerprint

    def _share(self, text: str) -> str:
        return self._strings.setdefault(text, text)

    def _pair(self, key: str, value: str) -> tuple[str, str]:
        pair = (self._share(key), self._share(value))
        return self._pairs.setdefault(pair, pair)

    # --- orders: slots sorted by (field, creation time, ID); a slot without the field is in none but creation's

    def _key(self, field: str) -> Callable[[int], tuple[Any, ...]]:
        created, ids = self._numbers["GmtCreateTime"], self._id

        def when(slot: int) -> float:
            moment: float = created[slot]
            return moment if moment == moment else 0.0

        if field == "GmtCreateTime":
            return lambda slot: (when(slot), ids[slot])
        column = self._name if field == "ModelName" else self._numbers[field]
        return lambda slot: (column[slot], when(slot), ids[slot])

    def _has(self, field: str, slot: int) -> bool:
        if field == "GmtCreateTime" or field == "ModelName":
            return True
        value = self._numbers[field][slot]
        return value is not None and value == value

    def _order(self, slot: int) -> None:
        for field, order in self._orders.items():
            if self._has(field, slot):
                key = self._key(field)
                order.insert(bisect.bisect_left(order, key(slot), key=key), slot)

    def _unorder(self, slot: int) -> None:
        for field, order in self._orders.items():
            if self._has(field, slot):
                key = self._key(field)
                at = bisect.bisect_left(order, key(slot), key=key)
                if at < len(order) and order[at] == slot:
                    del order[at]
                else:  # not where its key says (never expected): found by a scan rather than left behind
                    order.remove(slot)

    # --- selecting: each filter is a mask (a byte per slot, 1 where it holds), made and combined by C-level code

    def select(self, selection: Selection) -> Matches:
        """The models the selection matches, in its order."""
        mask = self._mask(selection)
        field = selection.sort_by if selection.sort_by in self._orders else "GmtCreateTime"
        order = self._orders[field]
        missing: list[int] = []
        if len(order) < len(self.ids):  # some models lack the field: they follow, in creation order
            column = self._numbers[field]  # every model has a name
            created = self._orders["GmtCreateTime"]
            values = map(column.__getitem__, created)
            absent = map(math.isnan, values) if field in TIMES else map(operator.is_, values, itertools.repeat(None))
            missing = list(itertools.compress(created, absent))
            if mask is not None:
                missing = list(itertools.compress(missing, map(mask.__getitem__, missing)))
        count = len(self.ids) if mask is None else mask.count(1)
        return Matches(order, mask, missing, selection.descending, count)

    def _mask(self, selection: Selection) -> bytes | None:
        """The slots every filter of the selection holds for, or None when it has no filter."""
        masks: list[bytes] = []
        size = len(self._id)
        if selection.name is not None:
            if selection.name_exact:
                model_id = self.names.get(selection.name)
                masks.append(_ones(size, [self.ids[model_id]] if model_id is not None else []))
            else:
                masks.append(self._scan(self._lower, selection.name.lower()))
        for pattern, holds in selection.name_patterns:
            masks.append(self._matching(pattern, holds))
        for column, operator_name, value in selection.conditions:
            masks.append(_ones(size, self._range(column, operator_name, value)))
        for test in selection.label_tests:
            masks.append(self._live(bytearray(self._labels.mask(test, empty=True))))
        for column, word in selection.exact:
            masks.append(self._with_words(column, word.__eq__))
        for tag in selection.tags:
            masks.append(self._with_labels(lambda labels, tag=tag: tag in labels))  # type: ignore[misc]
        if selection.collections:
            wanted = selection.collections
            masks.append(self._with_labels(lambda labels: any(k == COLLECTION_LABEL and v in wanted for k, v in labels)))
        if selection.label is not None:
            label = selection.label
            masks.append(self._with_labels(lambda labels: any(label in k or label in v for k, v in labels)))
        if selection.text is not None:
            text = selection.text
            masks.append(_any(size, [
                self._scan(self._lower, text),
                self._with_words("Domain", lambda value: text in value.lower()),
                self._with_words("Task", lambda value: text in value.lower()),
                self._with_labels(lambda labels: any(text in k.lower() or text in v.lower() for k, v in labels))]))
        return _all(size, masks) if masks else None

    def _scan(self, column: list[str], needle: str) -> bytes:
        """Where the text in `column` holds needle (free slots hold "")."""
        return bytes(map(operator.contains, column, itertools.repeat(needle)))

    def _matching(self, pattern: str, holds: bool) -> bytes:
        """Where the whole name matches the regular expression (or, holds being False, does not); free slots never."""
        found = bytearray(map(bool, map(_compiled(pattern).fullmatch, self._name)))
        return self._live(found.translate(_NEGATED) if not holds else found)

    def _live(self, mask: bytearray) -> bytes:
        """The mask with free slots cleared (they keep a name and hold no labels, which some filters match)."""
        for slot in self._free:
            mask[slot] = 0
        return bytes(mask)

    def _with_labels(self, holds: Callable[[Labels], bool]) -> bytes:
        """Where `holds` is true of the labels: asked once per set of labels in use (models share them)."""
        return self._labels.mask(holds)

    def _with_words(self, column: str, holds: Callable[[str], Any]) -> bytes:
        """Where `holds` is true of a WORDS column's value: asked once per value in use."""
        return self._words[column].mask(holds)

    def _range(self, field: str, operator_name: str, value: float) -> Iterable[int]:
        """Slots whose `field` compares with value as the operator says, from the field's kept order."""
        order = self._orders[field]
        column = self._numbers[field]

        def key(slot: int) -> Any:
            return column[slot]

        low, high = bisect.bisect_left(order, value, key=key), bisect.bisect_right(order, value, key=key)
        spans = {"Equal": [(low, high)], "NotEqual": [(0, low), (high, len(order))], "LessThan": [(0, low)],
                 "LessThanOrEqual": [(0, high)], "GreaterThan": [(high, len(order))],
                 "GreaterThanOrEqual": [(low, len(order))]}[operator_name]
        return itertools.chain.from_iterable(order[a:b] for a, b in spans)

    # --- checkpoints -----------------------------------------------------------------------------

    def columns(self) -> tuple[dict[str, Any], list[bytes]]:
        """The table as a checkpoint holds it: columns (JSON) and records, live slots only, in creation order."""
        live = self.slots()
        position = array("i", bytes(4 * len(self._id)))
        collections.deque(map(position.__setitem__, live, range(len(live))), maxlen=0)
        labels_of = list(map(self._labels.__getitem__, live))
        sets = sorted(set(labels_of))
        set_at = {labels: n for n, labels in enumerate(sets)}
        digests = self._fingerprint
        columns: dict[str, Any] = {
            "ModelId": list(map(self._id.__getitem__, live)), "ModelName": list(map(self._name.__getitem__, live)),
            "Fingerprint": b"".join([digests[s * 32:s * 32 + 32] for s in live]).hex(),
            "OddFingerprints": {str(position[s]): fingerprint for s, fingerprint in self._odd_fingerprints.items()},
            "Labels": {"Sets": [[list(p) for p in labels] for labels in sets],
                       "Of": _pack(array("i", map(set_at.__getitem__, labels_of)))},
            "Orders": {field: _pack(array("i", map(position.__getitem__, order)))
                       for field, order in self._orders.items() if field != "GmtCreateTime"},
        }
        for name in WORDS:
            words = list(map(self._words[name].__getitem__, live))
            values = sorted({word for word in words if word is not None})
            at: dict[str | None, int] = {None: -1, **{v: n for n, v in enumerate(values)}}
            columns[name] = {"Values": values, "Of": _pack(array("i", map(at.__getitem__, words)))}
        for name in NUMBERS:
            numbers = self._numbers[name]
            columns[name] = _pack(array("d", map(numbers.__getitem__, live))) if name in TIMES else list(
                map(numbers.__getitem__, live))
        return columns, [self._raw[s] for s in live]

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], raws: list[bytes], seq: int) -> ModelTable:
        """The table a checkpoint's columns and records describe (KeyError, TypeError or ValueError if they
        do not fit together)."""
        table = cls()
        ids: list[str] = columns["ModelId"]
        count = len(ids)
        numbers = {name: _unpack(columns[name], "d") if name in TIMES else list(columns[name]) for name in NUMBERS}
        if any(len(column) != count for column in (columns["ModelName"], *numbers.values())) or len(raws) != count:
            raise ValueError("columns of different lengths")
        table._id = list(ids)
        table._name = list(columns["ModelName"])
        table._lower = [name if name == lower else lower for name, lower in zip(table._name, map(str.lower, table._name))]
        table._raw = raws
        table.ids = dict(zip(ids, range(count)))
        table.names = dict(zip(table._name, ids))
        if len(table.ids) != count or len(table.names) != count:
            raise ValueError("an ID or a name twice")
        odd: dict[str, str] = columns["OddFingerprints"]
        digests: str = columns["Fingerprint"]
        if len(digests) != 64 * count:
            raise ValueError("fingerprints of another length")
        table._fingerprint = bytearray.fromhex(digests)  # SHA-256 digests, as the registry makes them
        table._odd_fingerprints = {int(position): fingerprint for position, fingerprint in odd.items()}
        for name in WORDS:
            values = [table._share(v) for v in columns[name]["Values"]]
            of = _unpack(columns[name]["Of"], "i")  # -1: none
            if len(of) != count or len(set(values)) != len(values) or min(of, default=0) < -1 or max(of, default=-1) >= len(values):
                raise ValueError("a column that does not hold together")
            table._words[name] = _Coded(None, [None, *values], map((1).__add__, of))
        table._numbers = numbers
        sets: list[tuple[tuple[str, str], ...]] = [()]  # code 0: no labels, whether or not the checkpoint lists it
        at = []
        for labels in columns["Labels"]["Sets"]:
            shared = tuple(table._pair(k, v) for k, v in labels)
            at.append(len(sets) if shared else 0)
            if shared:
                sets.append(shared)
        of = _unpack(columns["Labels"]["Of"], "i")
        if len(of) != count or len(set(sets)) != len(sets) or min(of, default=0) < 0 or max(of, default=-1) >= len(at):
            raise ValueError("a column that does not hold together")
        table._labels = _Coded((), sets, map(at.__getitem__, of))
        table.changed = array("q", itertools.repeat(seq, count))
        table._orders = {"GmtCreateTime": array("i", range(count))}
        for field, order in columns["Orders"].items():
            if field not in SORTS:
                raise ValueError(f"an order of {field}")
            table._orders[field] = _unpack(order, "i")
        for field in SORTS:
            column = table._numbers.get(field, ())
            having = count - (sum(map(math.isnan, column)) if field in TIMES else column.count(None))
            if len(table._orders.get(field, ())) != having:
                raise ValueError(f"the order of {field} does not hold every model that has it")
        table.bytes = sum(map(len, raws))
        return table



class Matches:
    """The slots a selection matched, in its order: counted at once, listed only as far as a page needs
    (the first page stops early; a later one lists them all, once)."""

    def __init__(self, order: array[int], mask: bytes | None, missing: list[int], descending: bool, count: int) -> None:
        self._order, self._mask, self._missing, self._descending = order, mask, missing, descending
        self.count = count
        self._all: list[int] | None = None

    def _walk(self) -> Iterator[int]:
        order: Iterable[int] = reversed(self._order) if self._descending else self._order
        missing: Iterable[int] = reversed(self._missing) if self._descending else self._missing
        if self._mask is not None:
            walked: Iterable[int] = reversed(self._order) if self._descending else self._order
            order = itertools.compress(order, map(self._mask.__getitem__, walked))
        return itertools.chain(order, missing)

    def slots(self, start: int, stop: int) -> list[int]:
        if self._all is None and start == 0:
            return list(itertools.islice(self._walk(), stop))
        if self._all is None:
            self._all = list(self._walk())
        return self._all[start:stop]


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)


def _ones(size: int, slots: Iterable[int]) -> bytes:
    """A mask with a 1 at each of `slots`."""
    mask = bytearray(size)
    collections.deque(map(mask.__setitem__, slots, itertools.repeat(1)), maxlen=0)
    return bytes(mask)


def _all(size: int, masks: list[bytes]) -> bytes:
    """1 where every mask has a 1."""
    if len(masks) == 1:
        return masks[0]
    combined = -1
    for mask in masks:
        combined &= int.from_bytes(mask, "little")
    return combined.to_bytes(size, "little")


def _any(size: int, masks: list[bytes]) -> bytes:
    """1 where some mask has a 1."""
    combined = 0
    for mask in masks:
        combined |= int.from_bytes(mask, "little")
    return combined.to_bytes(size, "little")


def _pack(values: array[Any]) -> str:
    """An array as base64 of its little-endian bytes: a checkpoint's numbers, read back without parsing each."""
    if sys.byteorder == "big":
        values = values[:]
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


def _unpack(text: str, typecode: str) -> array[Any]:
    values = array(typecode)
    values.frombytes(base64.b64decode(text, validate=True))
    if sys.byteorder == "big":
        values.byteswap()
    return values
