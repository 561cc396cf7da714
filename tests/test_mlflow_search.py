"""MLflow's search grammar on the catalog's columns: every filter_string and order answers as its plain definition
does (each model tested clause by clause, as MLflow's server tests a row, then sorted), through puts and deletes."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.api.mlflow import search
from handler.api.mlflow.routes import MODEL_KEYS, MODEL_ORDER
from handler.catalog.entry import Entry
from handler.catalog.state import State
from handler.errors import InvalidParameter

NAMES = ["a", "A", "ab", "model-1", "model-10", "Model_2", "m%x", "x.y", "", "b"]
LABELS = [("team", "a"), ("team", "b"), ("team", "A"), ("stage", "prod"), ("stage", "dev"), ("k", "a%b"),
          ("mlflow.prompt.is_prompt", "true"), ("mlflow.prompt.is_prompt", "false")]


def record(n: int, name: str, labels: list[tuple[str, str]], modified: int) -> dict[str, Any]:
    return {"ModelId": f"model-{n:03d}", "ModelName": name or f"unnamed-{n}", "GmtCreateTime": f"2024-01-01T00:00:{n % 60:02d}Z",
            "GmtModifiedTime": f"2024-01-02T00:{modified % 60:02d}:00Z", "Labels": [{"Key": k, "Value": v} for k, v in labels]}


records = st.builds(record, st.integers(0, 20), st.sampled_from(NAMES),
                    st.lists(st.sampled_from(LABELS), max_size=3, unique_by=lambda p: p), st.integers(0, 3))
changes = st.lists(st.one_of(records, st.integers(0, 20).map(lambda n: f"model-{n:03d}")), min_size=1, max_size=30)
values = st.sampled_from(["a", "A", "ab", "model-1", "model-1%", "%1%", "m_del%", "%", "_", "a%b", "x.y", "%2", "m\\%x", "b"])
name_clauses = st.builds(lambda op, v: f"name {op} '{v}'", st.sampled_from(["=", "!=", "LIKE", "ILIKE", "NOT LIKE"]), values)
in_clauses = st.lists(values, min_size=1, max_size=3).map(lambda vs: "name IN (" + ", ".join(f"'{v}'" for v in vs) + ")")
tag_clauses = st.builds(lambda key, op, v: f"tags.{key} {op} '{v}'", st.sampled_from(["team", "stage", "k", "none"]),
                        st.sampled_from(["=", "!=", "LIKE", "ILIKE"]), values)
prompt_clauses = st.builds(lambda op, v: f"tags.`mlflow.prompt.is_prompt` {op} '{v}'", st.sampled_from(["=", "!="]),
                           st.sampled_from(["true", "false", "TRUE"]))
filters = st.lists(st.one_of(name_clauses, in_clauses, tag_clauses, prompt_clauses), max_size=3).map(" AND ".join)
orders = st.lists(st.builds(lambda key, way: f"{key} {way}", st.sampled_from(list(MODEL_ORDER)), st.sampled_from(["ASC", "DESC"])),
                  max_size=2)


def apply(state: State, items: list[Any]) -> None:
    for seq, item in enumerate(items, start=state.seq + 1):
        if isinstance(item, str):
            state.apply(seq, [{"Delete": item}])
        elif state.names.get(item["ModelName"], item["ModelId"]) == item["ModelId"]:  # names are unique
            state.apply(seq, [{"Put": {"Model": item, "Fingerprint": "f" * 64}}])


def plainly(state: State, text: str, order_by: list[str]) -> list[str]:
    """What MLflow's server answers: rows where every clause holds, sorted by the orders and then by name."""
    clauses, leave_out = search.without_prompts(search.parse_filter(text, MODEL_KEYS))

    def holds(entry: Entry, clause: search.Clause) -> bool:
        if clause.key == "name":
            return clause.holds(entry.name)
        return any(clause.holds(v) for k, v in entry.labels if k == clause.key[5:])  # a model without the tag: no row

    found = sorted((e for e in state.models.values() if all(holds(e, c) for c in clauses)
                    and not (leave_out and (search.PROMPT_TAG, "true") in e.labels)), key=lambda e: e.name)
    for order in reversed(search.parse_order(order_by, MODEL_ORDER)):
        found.sort(key=lambda e: e.name if order.key == "ModelName" else e.fact(order.key), reverse=order.descending)
    return [e.name for e in found]


def selected(state: State, text: str, order_by: list[str]) -> list[str]:
    parsed = search.parse_order(order_by, MODEL_ORDER)
    clauses, leave_out = search.without_prompts(search.parse_filter(text, MODEL_KEYS))
    matches = state.models.select(search.selection(clauses, parsed[0] if parsed else None, leave_out))
    found = [state.models.entry(slot) for slot in matches.slots(0, 1000)]
    assert matches.count == len(found)
    if len(parsed) > 1 and parsed[0].key != "ModelName":  # as the route does: ties of the first key go by the next
        found = search.sort_by(found, parsed, lambda e, key: e.name if key == "ModelName" else e.fact(key), lambda e: e.name)
    return [e.name for e in found]


@settings(max_examples=400, deadline=None)
@given(changes, filters, orders)
def test_every_search_answers_as_testing_each_model_does(items: list[Any], text: str, order_by: list[str]) -> None:
    state = State()
    apply(state, items)
    expected = plainly(state, text, order_by)
    if len(search.parse_order(order_by, MODEL_ORDER)) == 1 and not order_by[0].startswith("name"):
        # one order on a time: ties are in creation order in the catalog, by name in MLflow's server
        assert sorted(selected(state, text, order_by)) == sorted(expected)
    else:
        assert selected(state, text, order_by) == expected


def test_like_is_sql_s_like() -> None:
    state = State()
    apply(state, [record(n, name, [], 0) for n, name in enumerate(["model-1", "Model-1", "model-10", "m%x", "mx", "m\nx"])])
    assert selected(state, "name LIKE 'model-1'", []) == ["model-1"]  # the whole name, case as given
    assert selected(state, "name ILIKE 'model-1'", []) == ["Model-1", "model-1"]
    assert selected(state, "name LIKE 'm_x'", []) == ["m\nx", "m%x"]  # _ is one character, any
    assert selected(state, "name LIKE '%-1_'", []) == ["model-10"]
    assert selected(state, "name NOT LIKE 'm%'", []) == ["Model-1"]
    assert selected(state, "name != 'mx' AND name LIKE 'm%x'", []) == ["m\nx", "m%x"]
    assert selected(state, "name IN ('mx', 'nothing')", []) == ["mx"]


def sql_like(pattern: str, text: str) -> bool:
    """SQL's LIKE by its definition: % matches any run (empty too), _ one character, the rest itself."""
    if not pattern:
        return not text
    if pattern[0] == "%":
        return any(sql_like(pattern[1:], text[at:]) for at in range(len(text) + 1))
    return bool(text) and pattern[0] in ("_", text[0]) and sql_like(pattern[1:], text[1:])


@settings(max_examples=2000, deadline=None)
@given(st.text("ab%_.", max_size=7), st.text("abAB.", max_size=8), st.booleans())
def test_like_answers_as_sql_s_definition(pattern: str, text: str, ignore_case: bool) -> None:
    expected = sql_like(pattern.lower(), text.lower()) if ignore_case else sql_like(pattern, text)
    assert (search.like(pattern, ignore_case).fullmatch(text) is not None) == expected


def test_a_deleted_model_matches_no_pattern_even_one_that_matches_everything() -> None:
    state = State()
    apply(state, [record(1, "gone", [("team", "a")], 0), record(2, "kept", [("team", "a")], 0), "model-001"])
    assert selected(state, "name LIKE '%'", []) == ["kept"]
    assert selected(state, "name != 'kept'", []) == []
    assert selected(state, "tags.team != 'b'", []) == ["kept"]


@pytest.mark.parametrize("text", ["name LIKE", "name ~ 'a'", "description = 'x'", "tags.team = 'a' OR name = 'b'", "name = 'a' AND"])
def test_what_does_not_parse_is_named(text: str) -> None:
    with pytest.raises(InvalidParameter, match="filter_string"):
        search.parse_filter(text, MODEL_KEYS)
