"""The models in columns: every selection answers as the plain definition of ListModels does (filter each
model, sort), through puts, renames, deletes, slot reuse and a checkpoint's round trip."""
from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handler.catalog.entry import Entry
from handler.catalog.state import State, checkpoint_objects, checkpoint_of
from handler.catalog.table import ModelTable
from handler.registry import listing

WORDS = ["cv", "nlp", "NLP-x", "audio"]
LABELS = [("team", "vision"), ("team", "search"), ("stage", "prod"), ("Collection", "c1"), ("Collection", "c2"), ("k", "nlp")]


def record(n: int, name: str, domain: str | None, labels: list[tuple[str, str]], order: int | None, size: int | None,
           modified: int) -> dict[str, Any]:
    value: dict[str, Any] = {"ModelId": f"model-{n:03d}", "ModelName": name, "GmtCreateTime": f"2024-01-01T00:00:{n % 60:02d}Z",
                             "GmtModifiedTime": f"2024-01-02T00:{modified % 60:02d}:00Z",
                             "Labels": [{"Key": k, "Value": v} for k, v in labels]}
    if domain is not None:
        value["Domain"] = domain
        value["Task"] = domain + "-task"
    if order is not None:
        value["OrderNumber"] = order
    if size is not None:
        value["ParameterSize"] = size
    return value


records = st.builds(
    record, st.integers(0, 30), st.sampled_from(["a", "b-nlp", "c", "CV model", "zz", "a2"]), st.sampled_from([None, *WORDS]),
    st.lists(st.sampled_from(LABELS), max_size=3, unique_by=lambda p: p[0]), st.one_of(st.none(), st.integers(-3, 3)),
    st.one_of(st.none(), st.integers(0, 5)), st.integers(0, 5))
changes = st.lists(st.one_of(records, st.integers(0, 30).map(lambda n: f"model-{n:03d}")), min_size=1, max_size=40)
queries = st.fixed_dictionaries({}, optional={
    "ModelName": st.sampled_from(["a", '"a"', "nlp", "cv", '"CV model"', "Z"]),
    "Query": st.sampled_from(["nlp", "cv", "team", "vision", "task", "x"]),
    "Label": st.sampled_from(["team", "c", "prod", "nlp"]),
    "Domain": st.sampled_from(WORDS),
    "Tag": st.sampled_from(LABELS).map(lambda p: json.dumps([{"Key": p[0], "Value": p[1]}])),
    "Collections": st.sampled_from(["c1", "c1,c2", "c3"]),
    "Conditions": st.tuples(st.sampled_from(["OrderNumber", "ParameterSize"]), st.sampled_from(list(listing.OPERATORS)),
                            st.integers(-2, 4)).map(lambda c: json.dumps([{"Column": c[0], "Operator": c[1], "Value": str(c[2])}])),
    "SortBy": st.sampled_from(list(listing.SORT_FIELDS)),
    "Order": st.sampled_from(["ASC", "DESC"]),
})


def apply(state: State, items: list[Any]) -> None:
    names: set[str] = set()
    for seq, item in enumerate(items, start=state.seq + 1):
        if isinstance(item, str):
            state.apply(seq, [{"Delete": item}])
        elif item["ModelName"] not in names or state.names.get(item["ModelName"]) == item["ModelId"]:
            if state.names.get(item["ModelName"], item["ModelId"]) != item["ModelId"]:
                continue  # names are unique in a workspace: the registry refuses such a put
            state.apply(seq, [{"Put": {"Model": item, "Fingerprint": "f" * 64}}])
            names.add(item["ModelName"])


def plainly(table: ModelTable, params: dict[str, str]) -> list[str]:
    """ListModels as its definition says: each model filtered, then sorted."""
    query = listing.Query.parse(params)
    entries = [e for e in table.values() if query.matches(e)]
    return [e.id for e in listing.sort_entries(entries, query.sort_by, query.descending)]


def selected(table: ModelTable, params: dict[str, str], start: int = 0, stop: int = 1000) -> list[str]:
    matches = table.select(listing.Query.parse(params).selection())
    found = [table.entry(slot).id for slot in matches.slots(start, stop)]
    assert matches.count == len(plainly(table, params))
    return found


@settings(max_examples=300, deadline=None)
@given(changes, st.lists(queries, min_size=1, max_size=5))
def test_every_selection_answers_as_filtering_each_model_and_sorting_does(items: list[Any], asked: list[dict[str, str]]) -> None:
    state = State()
    apply(state, items)
    reread = State.from_checkpoint(checkpoint_of(state))
    for params in asked:
        expected = plainly(state.models, params)
        assert selected(state.models, params) == expected
        assert selected(state.models, params, 1, 3) == expected[1:3]  # a later page lists them all, then slices
        assert selected(reread.models, params) == expected  # what a checkpoint holds selects alike


@settings(max_examples=100, deadline=None)
@given(changes, changes)
def test_what_a_checkpoint_takes_is_left_alone_by_later_changes(first: list[Any], then: list[Any]) -> None:
    state = State()
    apply(state, first)
    before = checkpoint_of(state)
    frozen = state.frozen()
    apply(state, then)
    assert dict(checkpoint_objects(frozen, part_bytes=1 << 62))[0] == before


def test_an_entry_reads_back_as_it_was_put() -> None:
    table = ModelTable()
    put = Entry.model(record(1, "m", "cv", [("team", "vision")], 3, None, 2), "ab" * 32)
    odd = Entry.model(record(2, "n", None, [], None, 7, 2), "import")  # not a SHA-256: kept aside
    table.put(put, 4)
    table.put(odd, 5)
    assert table.get(put.id) == put and table.get(odd.id) == odd
    assert table.remove(put.id) and table.get(put.id) is None and not table.remove(put.id)
    again = Entry.model(record(3, "m", "nlp", [], None, None, 1), "cd" * 32)
    table.put(again, 6)  # takes the freed slot
    assert table.get(again.id) == again and table.names == {"m": again.id, "n": odd.id}
    assert table.bytes == len(again.raw) + len(odd.raw)


def test_columns_of_more_than_256_values_select_alike_and_reuse_the_codes_of_values_gone() -> None:
    state = State()
    for n in range(300):  # a word and a label of its own each: past a byte per code
        state.apply(n + 1, [{"Put": {"Model": record(n, f"m{n}", f"domain-{n}", [("run", f"r{n}")], n, None, 1) |
                                     {"ModelId": f"model-{n:04d}"}, "Fingerprint": "f" * 64}}])
    for params in ({"Domain": "domain-299"}, {"Tag": json.dumps([{"Key": "run", "Value": "r7"}])}, {"Query": "domain-29"},
                   {"Label": "r29"}):
        assert selected(state.models, params) == plainly(state.models, params) != []
    for n in range(0, 300, 2):
        state.apply(400 + n, [{"Delete": f"model-{n:04d}"}])
    state.apply(1000, [{"Put": {"Model": record(1, "fresh", "domain-new", [("run", "new")], 1, None, 1) | {"ModelId": "model-new"},
                                "Fingerprint": "f" * 64}}])
    new_tag = json.dumps([{"Key": "run", "Value": "new"}])
    for params in ({"Domain": "domain-new"}, {"Domain": "domain-2"}, {"Query": "domain-29"}, {"Tag": new_tag}):
        assert selected(state.models, params) == plainly(state.models, params)
    assert len(state.models._words["Domain"].values) <= 302  # codes of values gone were given to new ones
    reread = State.from_checkpoint(checkpoint_of(state))
    assert selected(reread.models, {"Query": "domain-29"}) == plainly(state.models, {"Query": "domain-29"})
