"""The request rules of schemas/, as clients meet them: what passes, and the message for what does not."""
from __future__ import annotations

import pytest

from handler.errors import InvalidParameter
from handler.rules.validation import load_schemas, validate, validator

VALID = {"ModelName": "m"}


def message(body: dict) -> str:
    with pytest.raises(InvalidParameter) as caught:
        validate("create-model-request.json", body)
    return caught.value.message


@pytest.mark.parametrize("body", [
    {"ModelName": "新" * 127},
    {"ModelName": "😀" * 127},
    {"ModelName": "m", "Accessibility": "PUBLIC", "WorkspaceId": "796_a-b"},
    {"ModelName": "m", "OrderNumber": -(2**63), "ParameterSize": 2**63 - 1},
    {"ModelName": "m", "Tag": [{"Key": "é" * 64, "Value": ""}], "Labels": []},
    {"ModelName": "m", "ExtraInfo": {"a": [1, 2.5, None, {"b": True}]}},
])
def test_valid_requests_pass(body: dict) -> None:
    validate("create-model-request.json", body)


@pytest.mark.parametrize(("body", "expected"), [
    ({}, "ModelName is required"),
    ({"ModelName": ""}, "ModelName must be at least 1 character"),
    ({"ModelName": "x" * 128}, "ModelName must be at most 127 characters"),
    ({"ModelName": 5}, "ModelName must be a string"),
    ({"ModelName": "m", "Accessibility": "public"}, "Accessibility must be one of PRIVATE, PUBLIC"),
    ({"ModelName": "m", "OrderNumber": 1.5}, "OrderNumber must be an integer"),
    ({"ModelName": "m", "OrderNumber": 1.0}, "OrderNumber must be an integer"),
    ({"ModelName": "m", "OrderNumber": "1"}, "OrderNumber must be an integer"),
    ({"ModelName": "m", "ParameterSize": True}, "ParameterSize must be an integer"),
    ({"ModelName": "m", "ParameterSize": 2**63}, "ParameterSize must be at most 9223372036854775807"),
    ({"ModelName": "m", "OrderNumber": -(2**63) - 1}, "OrderNumber must be at least -9223372036854775808"),
    ({"ModelName": "m", "ExtraInfo": [1]}, "ExtraInfo must be an object"),
    ({"ModelName": "m", "Tag": {}}, "Tag must be an array"),
    ({"ModelName": "m", "Tag": [{"Key": "a=b", "Value": "v"}]}, "Tag[0].Key must not contain '=' or ','"),
    ({"ModelName": "m", "Labels": [{"Key": "k", "Value": "a,b"}]}, "Labels[0].Value must not contain '=' or ','"),
    ({"ModelName": "m", "Tag": [{"Key": "é" * 65, "Value": ""}]}, "Tag[0].Key must be at most 128 bytes in UTF-8"),
    ({"ModelName": "m", "Tag": [{"Key": "k"}]}, "Tag[0].Value is required"),
    ({"ModelName": "m", "Tag": [{"Key": "k", "Value": "v", "Extra": 1}]}, "Tag[0]: unknown field Extra"),
    ({"ModelName": "m", "Colour": "red"}, "unknown field Colour"),
    ({"ModelName": "m", "WorkspaceId": "../x"}, "WorkspaceId must be 1 to 64 letters"),
    ({"ModelName": "m", "WorkspaceId": "a" * 65}, "WorkspaceId must be 1 to 64 letters"),
])
def test_each_broken_rule_is_named(body: dict, expected: str) -> None:
    assert expected in message(body)


def test_several_problems_are_reported_together() -> None:
    text = message({"ModelName": "", "Accessibility": "x", "Foo": 1})
    assert "ModelName" in text and "Accessibility" in text and "Foo" in text


def test_a_huge_value_is_not_echoed_back() -> None:
    assert len(message({"ModelName": "x" * 100_000})) < 200


def test_validators_are_compiled_once() -> None:
    assert validator("create-model-request.json") is validator("create-model-request.json")


def test_every_schema_is_valid_draft_2020_12() -> None:
    import jsonschema

    for schema in load_schemas().values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_an_over_long_label_list_is_refused_without_checking_every_item() -> None:
    # Every item breaks a rule too; checking 30,000 of them would take seconds. Only the length is reported.
    text = message({"ModelName": "m", "Tag": [{"Key": "a=b", "Value": "v"}] * 30_000})
    assert text == "Tag must have at most 1000 items; the rest was not checked"


def test_unknown_field_names_are_not_echoed_in_full() -> None:
    text = message({"ModelName": "m", "x" * 100_000: 1, **{f"f{i}": 1 for i in range(50)}})
    assert len(text) < 500 and "more" in text
