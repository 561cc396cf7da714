"""JSON text in and out: strict decoding of what clients send (UTF-8 only, no duplicates, no NaN, numbers kept
exactly, bounded nesting and values, so that the memory a body costs is bounded too), and the one compact encoder."""
from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from ..errors import InvalidBody

MAX_DEPTH = 32
# Values (objects, arrays, strings, numbers, literals) in one body. The costliest accepted body, this
# many empty objects, takes about 10 MiB of memory while it is parsed and checked (test_limits.py):
# InstanceConcurrency (10) such requests fit well inside MemorySize (512 MiB).
MAX_VALUES = 50_000
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string literal, escapes included


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidBody(f"body has a duplicate key: {clip(key)!r}")
            seen.add(key)
    return obj


def _constant(name: str) -> Any:
    raise InvalidBody(f"body contains {name}, which is not JSON")


def _float(text: str) -> float:
    """A number with a fraction or an exponent, if a 64-bit float holds its value exactly: `1e2` is
    kept as 100.0 and `0.1` as 0.1 (its shortest form), `0.1000000000000000055511151231257827` or a
    900-digit decimal are refused rather than silently rounded."""
    value = float(text)
    if math.isinf(value):
        raise InvalidBody(f"body contains a number out of range: {clip(text, 40)}")
    if Decimal(repr(value)) != Decimal(text):
        raise InvalidBody(f"body contains a number a 64-bit float cannot hold exactly: {clip(text, 40)}; "
                         "send it as a string to keep every digit")
    return value


def _count_values(text: str) -> int:
    """An upper bound on the values in a JSON text, without decoding it: each value but the first
    follows a '[', ',' or ':' outside a string."""
    structure = _STRING.sub('""', text)
    return 1 + structure.count("[") + structure.count(",") + structure.count(":")


def compact(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as it is: what the registry stores, answers and logs."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def clip(text: str, limit: int = 64) -> str:
    """At most `limit` characters of text a client sent, for a message."""
    return text if len(text) <= limit else text[:limit] + "..."


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float)


def _check(value: Any) -> None:
    """Reject nesting deeper than MAX_DEPTH and strings that are not valid Unicode (lone surrogates)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidBody("body contains an invalid Unicode escape (lone surrogate)") from None
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise InvalidBody(f"body is nested deeper than {MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def parse_json(body: bytes | str) -> Any:
    """Decode a JSON document; raise InvalidBody naming what is wrong."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidBody("body is not valid UTF-8") from None
    else:
        text = body
    if not text.strip():
        raise InvalidBody("body is empty; expected a JSON object")
    if _count_values(text) > MAX_VALUES:
        raise InvalidBody(f"body holds more than {MAX_VALUES} JSON values")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise InvalidBody(f"body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise InvalidBody(f"body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # an integer literal with more digits than Python converts
        raise InvalidBody("body contains a number that is too long") from None
    _check(value)
    return value


def parse_object(body: bytes | str) -> dict[str, Any]:
    """Decode a body that must be a JSON object."""
    value = parse_json(body)
    if not isinstance(value, dict):
        raise InvalidBody(f"body must be a JSON object, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}[type(value)]
