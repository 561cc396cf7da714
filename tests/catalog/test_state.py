"""The catalog's state: applying commits, and checkpoints that read back exactly."""
from __future__ import annotations

from handler.catalog.draft import Draft
from handler.catalog.state import State, checkpoint_of
from handler.registry import records


def record(name: str, model_id: str, **fields: object) -> dict:
    normal = records.normalized_request({"ModelName": name, **fields}, "ws")
    return records.build_record(normal, model_id, 1_700_000_000, None)


def test_a_checkpoint_reads_back_byte_for_byte_whatever_the_records_hold() -> None:
    odd = record("新闻\n分类\u2028\r", "model-a", ExtraInfo={"text": "line\nbreak \"quoted\" \\ \u0000", "n": [1.5, -0, 10**30]},
                 Tag=[{"Key": "k", "Value": "\t"}])
    plain = record("plain", "model-b", Domain="cv", OrderNumber=3)
    state = State().apply(7, [{"Put": {"Model": odd, "Fingerprint": "f" * 64}}, {"Put": {"Model": plain, "Fingerprint": "0" * 64}}])
    data = checkpoint_of(state)
    loaded = State.from_checkpoint(data)
    assert loaded.seq == 7 and loaded.names == state.names
    for model_id, entry in state.models.items():
        assert loaded.models[model_id] == entry
        assert entry.raw == records.record_json(entry.record())  # what models/<ModelId>.json holds
    again = State().apply(7, [{"Put": {"Model": plain, "Fingerprint": "0" * 64}}, {"Put": {"Model": odd, "Fingerprint": "f" * 64}}])
    assert checkpoint_of(loaded) == checkpoint_of(again) == data  # equal states, equal bytes


def test_renames_and_deletes_keep_names_pointing_at_their_holders() -> None:
    state = State().apply(1, [{"Put": {"Model": record("a", "model-1"), "Fingerprint": "x"}}])
    state.apply(2, [{"Put": {"Model": record("b", "model-1"), "Fingerprint": "x"}},
                    {"Put": {"Model": record("a", "model-2"), "Fingerprint": "y"}}])
    assert state.names == {"b": "model-1", "a": "model-2"}
    state.apply(3, [{"Delete": "model-1"}])
    assert state.names == {"a": "model-2"} and (state.changed_at("model-1"), state.changed_at("model-2")) == (3, 2)


def test_a_draft_sees_its_own_changes_and_leaves_the_state_alone() -> None:
    state = State().apply(1, [{"Put": {"Model": record("a", "model-1"), "Fingerprint": "x"}}])
    draft = Draft(state)
    draft.put(record("b", "model-1"), "x")
    assert draft.named("a") is None and draft.named("b") == "model-1"
    draft.delete("model-1")
    assert draft.model("model-1") is None and draft.named("b") is None
    assert state.names == {"a": "model-1"} and draft.seq == 1 and len(draft.changes) == 2
