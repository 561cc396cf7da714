"""Loads schemas/ once per process and validates documents against them with jsonschema.

The schemas are the single source of truth. Rules JSON Schema cannot say are added here:
`x-maxUtf8Bytes` (a string's length in UTF-8 bytes), `x-name` (the rule for names and labels,
rules/names.py; with `x-notBlank`, not only spaces), `x-json` (a string holding JSON text),
`x-maxJsonBytes` (a value's size as compact JSON) and "integer" meaning a JSON integer literal
(no 1.0, no true).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, cast

import jsonschema
import referencing
import referencing.jsonschema
from jsonschema.exceptions import ValidationError

from ..errors import InvalidBody, InvalidParameter
from . import names
from .jsontext import compact, parse_json

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
MAX_MESSAGES = 5


def _max_utf8_bytes(validator: Any, limit: int, instance: Any, schema: dict[str, Any]) -> Iterable[ValidationError]:
    if isinstance(instance, str) and len(instance.encode("utf-8", "surrogatepass")) > limit:
        yield ValidationError(f"is longer than {limit} bytes in UTF-8")


def _name(validator: Any, enabled: bool, instance: Any, schema: dict[str, Any]) -> Iterable[ValidationError]:
    if enabled and isinstance(instance, str):
        why = names.problem(instance)
        if why is None and schema.get("x-notBlank") and not instance.strip():
            why = "must hold something besides spaces"
        if why is not None:
            yield ValidationError(why)


def _json_text(validator: Any, enabled: bool, instance: Any, schema: dict[str, Any]) -> Iterable[ValidationError]:
    if enabled and isinstance(instance, str):
        try:
            parse_json(instance)  # strict, as a body is: no NaN, no duplicate keys
        except InvalidBody:
            yield ValidationError("must be a JSON text (no NaN or Infinity, no duplicate keys)")


def _max_json_bytes(validator: Any, limit: int, instance: Any, schema: dict[str, Any]) -> Iterable[ValidationError]:
    size = len(compact(instance).encode("utf-8", "surrogatepass"))
    if size > limit:
        yield ValidationError(f"is {size} bytes as JSON; at most {limit}")


def _is_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_Base = jsonschema.Draft202012Validator
Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    _Base,
    validators={"x-maxUtf8Bytes": _max_utf8_bytes, "x-name": _name, "x-json": _json_text, "x-maxJsonBytes": _max_json_bytes},
    type_checker=_Base.TYPE_CHECKER.redefine("integer", _is_integer),
)


@cache
def load_schemas() -> dict[str, dict[str, Any]]:
    """Every schema in schemas/, by file name."""
    return {p.name: json.loads(p.read_text("utf-8")) for p in sorted(SCHEMA_DIR.glob("*.json")) if p.name != "openapi.json"}


@cache
def validator(name: str) -> Any:
    """The compiled validator of schemas/<name>, or of a part of one (`common.json#/$defs/WorkspaceId`);
    built once per process."""
    # Without "$schema", jsonschema keeps our Validator class when it follows a $ref instead of
    # switching to the stock Draft 2020-12 class (which knows neither of our two rules).
    schemas = {key: {k: v for k, v in s.items() if k != "$schema"} for key, s in load_schemas().items()}
    registry = referencing.Registry().with_resources(
        (key, referencing.jsonschema.DRAFT202012.create_resource(schema)) for key, schema in schemas.items()
    )
    return Validator({"$ref": name} if "#" in name else schemas[name], registry=registry)


def validate(name: str, document: Any, root: str = "body") -> None:
    """Raise InvalidParameter naming each field that breaks a rule of schemas/<name> (the first few);
    `root` names the document itself (`body`, `query`, or a parameter such as `ModelId`)."""
    errors: list[ValidationError] = []
    more = ""
    for error in validator(name).iter_errors(document):
        errors.append(error)
        if error.validator == "maxItems":  # answered at once: checking each item could take seconds
            more = "; the rest was not checked"
            break
        if len(errors) > MAX_MESSAGES:
            more = "; and more"
            break
    if errors:
        errors.sort(key=lambda e: (list(map(str, e.absolute_path)), e.validator))
        raise InvalidParameter("; ".join(describe(e, root) for e in errors[:MAX_MESSAGES]) + more)


def field_path(path: Iterable[Any]) -> str:
    """`Tag[0].Key` for the path ('Tag', 0, 'Key')."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe(error: ValidationError, root: str = "body") -> str:
    """A message naming the field and the rule it breaks, without echoing large values."""
    where = field_path(error.absolute_path)
    if where and root not in ("body", "query"):  # inside a named value: Conditions[0].Column
        where = root + ("" if where.startswith("[") else ".") + where
    rule, schema = error.validator, cast(dict[str, Any], error.schema)
    if rule == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "a field"
        return f"{_join(where, missing)} is required"
    if rule in ("additionalProperties", "unevaluatedProperties"):
        allowed = set(schema.get("properties", {}))
        extra = sorted(k for k in cast(dict[str, Any], error.instance) if k not in allowed)
        names = ", ".join(_clip(k) for k in extra[:MAX_MESSAGES])
        if len(extra) > MAX_MESSAGES:
            names += f" and {len(extra) - MAX_MESSAGES} more"
        kind = "query parameter" if root == "query" and not where else "field"
        return f"{where + ': ' if where else ''}unknown {kind}{'s' if len(extra) > 1 else ''} {names}"
    subject = where or root
    if rule == "type":
        return f"{subject} must be {_article(schema['type'])}"
    if rule == "maxItems":
        return f"{subject} must have at most {schema['maxItems']} items"
    if rule == "enum":
        return f"{subject} must be one of {', '.join(map(str, schema['enum']))}"
    if rule == "minLength":
        return f"{subject} must be at least {schema['minLength']} character{'s' if schema['minLength'] > 1 else ''}"
    if rule == "maxLength":
        return f"{subject} must be at most {schema['maxLength']} characters"
    if rule in ("x-name", "x-json", "x-maxJsonBytes"):
        return f"{subject} {error.message}"
    if rule == "x-maxUtf8Bytes":
        return f"{subject} must be at most {schema['x-maxUtf8Bytes']} bytes in UTF-8"
    if rule == "pattern":
        return f"{subject} {schema.get('x-patternMessage', 'must match ' + schema['pattern'])}"
    if rule in ("minimum", "maximum"):
        return f"{subject} must be {'at least' if rule == 'minimum' else 'at most'} {schema[rule]}"
    return f"{subject} is invalid ({rule})"


def _clip(name: str, limit: int = 64) -> str:
    return name if len(name) <= limit else name[:limit] + "..."


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _article(kind: str | list[str]) -> str:
    if isinstance(kind, list):
        return " or ".join(_article(k) for k in kind)
    return {"integer": "an integer", "object": "an object", "array": "an array"}.get(kind, f"a {kind}")
