"""Identifiers, timestamps and the record built from a request."""
from __future__ import annotations

import re

from handler.api import http
from handler.registry import records
from handler.rules import times

MODEL_ID = re.compile(r"model-[a-z0-9]{25}")


def test_model_ids_are_lower_case_unique_and_sort_by_creation_time() -> None:
    ids = [records.new_model_id(now_ms=1_700_000_000_000 + i) for i in range(1000)]
    assert all(MODEL_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == 1000
    assert ids == sorted(ids)
    same_ms = {records.new_model_id(now_ms=5) for _ in range(1000)}
    assert len(same_ms) == 1000  # the random part keeps them apart


def test_request_ids_are_upper_case_uuids() -> None:
    assert re.fullmatch(r"[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}", http.new_request_id())


def test_times_are_utc_iso_8601_with_z() -> None:
    assert times.iso_time(1611249155.9) == "2021-01-21T17:12:35Z"


def test_tag_and_labels_merge_in_order_without_duplicates() -> None:
    request = {"Tag": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}],
               "Labels": [{"Key": "b", "Value": "2"}, {"Key": "c", "Value": "3"}]}
    assert records.merged_labels(request) == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}, {"Key": "c", "Value": "3"}]


def test_the_fingerprint_ignores_spelling_but_not_content() -> None:
    a = records.normalized_request({"ModelName": "m", "Tag": [{"Key": "k", "Value": "v"}], "Domain": "cv"}, "w")
    b = records.normalized_request({"Domain": "cv", "Labels": [{"Key": "k", "Value": "v"}], "ModelName": "m",
                                    "Accessibility": "PRIVATE"}, "w")
    c = records.normalized_request({"ModelName": "m", "Domain": "nlp"}, "w")
    assert records.fingerprint(a) == records.fingerprint(b) != records.fingerprint(c)
    assert records.fingerprint(a) != records.fingerprint(records.normalized_request({"ModelName": "m", "Domain": "cv"}, "other"))


def test_the_record_has_the_sdk_model_shape() -> None:
    normal = records.normalized_request({"ModelName": "m", "ExtraInfo": {"x": 1.5}, "OrderNumber": 2}, "w")
    record = records.build_record(normal, "model-abc", 0, "1234")
    assert record == {
        "ModelId": "model-abc", "ModelName": "m", "OrderNumber": 2, "ExtraInfo": {"x": 1.5}, "WorkspaceId": "w",
        "Accessibility": "PRIVATE", "Labels": [], "Tags": [], "GmtCreateTime": "1970-01-01T00:00:00Z",
        "GmtModifiedTime": "1970-01-01T00:00:00Z", "OwnerId": "1234",
    }
    assert "OwnerId" not in records.build_record(normal, "model-abc", 0, None)
