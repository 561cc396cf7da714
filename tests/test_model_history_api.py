"""ListModelHistory (GET /api/v1/models/{ModelId}/history): who changed a model and its versions, what and when, from
its workspace's log, in a window of at most 1,000 commits (Since, Until] whose reads are bounded."""
from __future__ import annotations

import json
from typing import Any

import pytest

from handler.api.app import App
from handler.api.model_routes import HISTORY_COMMITS
from handler.catalog.keys import CATALOG
from handler.catalog.workspace import acting_as
from handler.registry import records
from handler.registry.versions import Versions
from handler.rules.validation import validator
from handler.stores.memory import MemoryStore
from tests.conftest import invoke

URI = "oss://registry-bucket.oss-cn-hangzhou.aliyuncs.com/models/m/1"


def call(method: str, path: str, body: Any = None, **query: str) -> tuple[int, dict[str, Any]]:
    event = {"httpMethod": method, "path": path, "headers": {"Content-Type": "application/json"},
             "queryParameters": query, "body": json.dumps(body) if body is not None else ""}
    answer = invoke(event)
    return answer["statusCode"], json.loads(answer["body"])


def history(model_id: str, **query: str) -> dict[str, Any]:
    status, answer = call("GET", f"/api/v1/models/{model_id}/history", **query)
    assert status == 200, answer
    validator("list-model-history-response.json").validate(answer)
    return answer


def test_the_history_says_who_did_what_and_when_oldest_first(memory_app: App) -> None:
    registry = memory_app.registry
    versions = Versions(registry)
    with acting_as("key:alice"):
        model_id = registry.create(records.normalized_request({"ModelName": "resnet"}, "default"))[0]
        registry.update(model_id, {"ModelDescription": "d"})
        registry.add_labels(model_id, [{"Key": "team", "Value": "cv"}])
    with acting_as("key:bob"):
        versions.create(model_id, {"Uri": URI})
        versions.update(model_id, "0.1.0", {"ApprovalStatus": "Approved"})
        other = registry.create(records.normalized_request({"ModelName": "other"}, "default"))[0]  # not in its history
    answer = history(model_id)
    assert [(c["Operation"], c["By"], c.get("VersionName")) for c in answer["Changes"]] == [
        ("CreateModel", "key:alice", None), ("UpdateModel", "key:alice", None), ("CreateModelLabels", "key:alice", None),
        ("CreateModelVersion", "key:bob", "0.1.0"), ("UpdateModelVersion", "key:bob", "0.1.0")]
    assert [c["Seq"] for c in answer["Changes"]] == [1, 2, 3, 4, 5] and (answer["Since"], answer["Until"]) == (0, 6)
    assert all(c["At"].endswith("Z") for c in answer["Changes"])
    assert [c["Operation"] for c in history(other)["Changes"]] == ["CreateModel"]
    window = history(model_id, Since="2", Until="4")
    assert [c["Seq"] for c in window["Changes"]] == [3, 4] and (window["Since"], window["Until"]) == (2, 4)
    assert history(model_id, Since="6")["Changes"] == []  # nothing of it after its last change: an empty answer


def test_a_window_reads_at_most_a_thousand_commits_and_says_where_it_starts(use_app: Any) -> None:
    class Counting(MemoryStore):
        log_reads = 0

        def get_many(self, keys: list[str]) -> list[bytes | None]:
            Counting.log_reads += sum(1 for k in keys if k.startswith(CATALOG) and "/log/" in k)
            return super().get_many(keys)

    store = Counting()
    app = use_app(store)
    model_id = app.registry.create(records.normalized_request({"ModelName": "old"}, "default"))[0]
    for i in range(HISTORY_COMMITS + 20):
        app.registry.update(model_id, {"ModelDescription": f"d{i}"})
    head = HISTORY_COMMITS + 21
    app.registry.workspace("default").read()
    Counting.log_reads = 0
    newest = history(model_id)
    assert (newest["Since"], newest["Until"]) == (head - HISTORY_COMMITS, head)
    assert len(newest["Changes"]) == HISTORY_COMMITS and newest["Changes"][0]["Seq"] == head - HISTORY_COMMITS + 1
    assert Counting.log_reads <= HISTORY_COMMITS + 64  # the window, and the workspace's catch-up read at most
    earlier = history(model_id, Until=str(newest["Since"]))  # the page before: down to the model's creation
    assert earlier["Since"] == 0 and [c["Operation"] for c in earlier["Changes"][:2]] == ["CreateModel", "UpdateModel"]
    asked_for_more = history(model_id, Since="0")
    assert asked_for_more["Since"] == head - HISTORY_COMMITS, "a window never exceeds 1,000 commits"


@pytest.mark.parametrize("query, named", [({"Since": "-1"}, "Since"), ({"Until": "x"}, "Until"), ({"Limit": "5"}, "Limit")])
def test_a_bad_window_is_a_clear_error(memory_app: App, query: dict[str, str], named: str) -> None:
    model_id = memory_app.registry.create(records.normalized_request({"ModelName": "m"}, "default"))[0]
    status, answer = call("GET", f"/api/v1/models/{model_id}/history", **query)
    assert (status, answer["Code"]) == (400, "InvalidParameter") and named in answer["Message"]


def test_a_deleted_models_history_ends_with_its_delete_and_an_unknown_model_has_none(memory_app: App) -> None:
    model_id = memory_app.registry.create(records.normalized_request({"ModelName": "m"}, "default"))[0]
    memory_app.registry.delete(model_id)
    assert [c["Operation"] for c in history(model_id)["Changes"]] == ["CreateModel", "DeleteModel"]
    status, answer = call("GET", "/api/v1/models/model-doesnotexist/history")
    assert (status, answer["Code"]) == (404, "ModelNotFound")
