"""MLflow's search grammar as the registry supports it: `filter_string` clauses joined by AND, `order_by`,
`max_results` and `page_token` (an offset)."""
from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ...catalog.table import Labels, Selection
from ...errors import InvalidParameter

T = TypeVar("T")

_CLAUSE = re.compile(
    r"\s*(?P<key>[A-Za-z_]+(?:\.(?:`[^`]+`|\"[^\"]+\"|[\w.-]+))?)\s*"
    r"(?P<op>!=|=|(?i:not\s+like)|(?i:ilike)|(?i:like)|(?i:in))\s*"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\((?:\s*(?:'[^']*'|\"[^\"]*\")\s*,?)*\)|-?[0-9]+)\s*")
_AND = re.compile(r"(?i:and)\b")


@dataclass(frozen=True)
class Clause:
    """One comparison: `key` is `name`, `run_id`, `source_path`, `version_number` or `tags.<key>`."""

    key: str
    op: str  # =, !=, LIKE, ILIKE, NOT LIKE, IN
    values: tuple[str, ...]

    def holds(self, actual: str) -> bool:
        if self.op == "=":
            return actual == self.values[0]
        if self.op == "!=":
            return actual != self.values[0]
        if self.op == "IN":
            return actual in self.values
        found = like(self.values[0], self.op == "ILIKE").fullmatch(actual) is not None
        return not found if self.op == "NOT LIKE" else found


    def pattern(self) -> tuple[str, bool]:
        """The clause as a regular expression the whole value matches, and whether a value holds when it does."""
        if self.op in ("=", "!="):
            return re.escape(self.values[0]), self.op == "="
        if self.op == "IN":
            return "(?:" + "|".join(map(re.escape, self.values)) + ")" if self.values else "(?!)", True
        return like_source(self.values[0], self.op == "ILIKE"), self.op != "NOT LIKE"


@dataclass(frozen=True)
class TagTest:
    """A `tags.<key>` clause as a test of a model's labels: as in MLflow's server, a model without the tag never
    matches, whatever the operator."""

    clause: Clause

    def __call__(self, labels: Labels) -> bool:
        key = self.clause.key[5:]
        return any(self.clause.holds(value) for k, value in labels if k == key)


@dataclass(frozen=True)
class Untagged:
    """A test of a model's labels: it has not the label (key, value)."""

    key: str
    value: str

    def __call__(self, labels: Labels) -> bool:
        return (self.key, self.value) not in labels


PROMPT_TAG = "mlflow.prompt.is_prompt"  # MLflow keeps prompts as registered models and versions with this tag "true"
NOT_A_PROMPT = Untagged(PROMPT_TAG, "true")


def without_prompts(clauses: list[Clause]) -> tuple[list[Clause], bool]:
    """MLflow's rule for prompts: a search answers them only when a clause asks for them (the tag = 'true' or
    != 'false'); otherwise clauses on the tag are dropped and prompts left out (MLflow's clients add
    `tags.mlflow.prompt.is_prompt != 'true'` to every search). The clauses, and whether to leave prompts out."""
    key = "tags." + PROMPT_TAG
    for clause in clauses:
        if clause.key == key:
            asked = clause.values[0].lower()
            if (clause.op == "=" and asked == "true") or (clause.op == "!=" and asked == "false"):
                return clauses, False
            break
    return [c for c in clauses if c.key != key], True


def like_source(pattern: str, ignore_case: bool) -> str:
    """SQL LIKE as a regular expression: % any run, _ one character. Each run between two %s takes its first place
    in what is left, and keeps it: `(?=(?P<r>.*?run))(?P=r)` is an atomic group (Python 3.10 has none), so a pattern like
    `%a%a%a%b` is one pass over a name, not a backtracking search of every way to place the runs."""
    runs = ["".join("." if c == "_" else re.escape(c) for c in run) for run in pattern.split("%")]
    if len(runs) == 1:
        text = runs[0]
    else:
        middle = "".join(f"(?=(?P<r{n}>.*?{run}))(?P=r{n})" for n, run in enumerate(filter(None, runs[1:-1])))
        text = runs[0] + middle + ".*" + runs[-1]
    return "(?i)" + text if ignore_case else text


@functools.lru_cache(maxsize=256)
def like(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(like_source(pattern, ignore_case), re.DOTALL)


def selection(clauses: list[Clause], order: Order | None, leave_out_prompts: bool) -> Selection:
    """The models' clauses (on `name` and `tags.<key>`) as the catalog selects them, in the order (by name without
    one)."""
    exact = next((c.values[0] for c in clauses if c.key == "name" and c.op == "="), None)
    return Selection(
        name=exact, name_exact=exact is not None,
        name_patterns=tuple(c.pattern() for c in clauses if c.key == "name" and not (c.op == "=" and c.values[0] == exact)),
        label_tests=tuple(TagTest(c) for c in clauses if c.key.startswith("tags.")) + ((NOT_A_PROMPT,) if leave_out_prompts else ()),
        sort_by=order.key if order else "ModelName", descending=order.descending if order else False)


def parse_filter(text: str, keys: tuple[str, ...]) -> list[Clause]:
    """The clauses of a filter_string; INVALID_PARAMETER_VALUE naming what does not parse or is not supported."""
    clauses: list[Clause] = []
    at, text = 0, text.strip()
    while at < len(text):
        found = _CLAUSE.match(text, at)
        if found is None:
            raise InvalidParameter(f"filter_string does not parse at {text[at:at + 40]!r}")
        key, op = found["key"], " ".join(found["op"].upper().split())
        base, dot, tag = key.partition(".")
        if base == "tag":  # MLflow's clients write both
            base = "tags"
        if base not in keys or bool(dot) != (base == "tags"):
            raise InvalidParameter(f"filter_string: {key[:64]!r} is not a key this search supports ({', '.join(keys)})")
        if dot:
            key = "tags." + tag.strip("`\"")
        clauses.append(Clause(key, op, _values(found["value"], op)))
        at = found.end()
        if at < len(text):
            joined = _AND.match(text, at)
            if joined is None:
                raise InvalidParameter(f"filter_string: clauses are joined by AND; got {text[at:at + 20]!r}")
            at = joined.end()
            if not text[at:].strip():
                raise InvalidParameter("filter_string ends with AND: a clause must follow it")
    return clauses


def _values(value: str, op: str) -> tuple[str, ...]:
    if value.startswith("("):
        if op != "IN":
            raise InvalidParameter("filter_string: a list of values goes only with IN")
        return tuple(v[1:-1] for v in re.findall(r"'[^']*'|\"[^\"]*\"", value))
    if op == "IN":
        raise InvalidParameter("filter_string: IN takes a list of values: ('a', 'b')")
    if value[0] in "'\"":
        return (re.sub(r"\\(.)", r"\1", value[1:-1]),)
    return (value,)


@dataclass(frozen=True)
class Order:
    key: str
    descending: bool


def parse_order(given: list[str], keys: dict[str, str]) -> list[Order]:
    """order_by items like `name ASC`; `keys` maps what MLflow names to what the registry sorts by."""
    orders = []
    for item in given:
        parts = item.split(" ")
        if not parts or len(parts) > 2 or parts[0] not in keys or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
            raise InvalidParameter(f"order_by {item[:64]!r} is not supported; use one of {', '.join(keys)} with ASC or DESC")
        orders.append(Order(keys[parts[0]], len(parts) == 2 and parts[1].upper() == "DESC"))
    return orders


def sort_by(items: list[T], orders: list[Order], value: Callable[[T, str], Any], tie: Callable[[T], Any]) -> list[T]:
    """Sorted by the orders (value(item, key) gives what an order compares), then by tie; stable sorts, the last key first."""
    ordered = sorted(items, key=tie)
    for order in reversed(orders):
        ordered.sort(key=lambda item: value(item, order.key), reverse=order.descending)
    return ordered


def offset(token: str | None) -> int:
    """The offset a page_token holds (0 without one)."""
    if not token:
        return 0
    try:
        value = json.loads(base64.b64decode(token, validate=True))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidParameter("page_token is not one this server gave") from None
    if not isinstance(value, int) or value < 0:
        raise InvalidParameter("page_token is not one this server gave")
    return value


def token(at: int) -> str:
    return base64.b64encode(json.dumps({"offset": at}).encode()).decode()


def max_results(given: str | int | None, default: int, limit: int) -> int:
    if given is None or given == "":
        return default
    try:
        count = int(given)
    except ValueError:
        raise InvalidParameter(f"max_results must be an integer; got {str(given)[:20]!r}") from None
    if not 1 <= count <= limit:
        raise InvalidParameter(f"max_results must be between 1 and {limit}; got {count}")
    return count
