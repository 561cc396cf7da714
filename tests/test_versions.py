"""Model versions through PAI's official SDK, unmodified, over real HTTP, on every store; LatestVersion;
crashes at every write of every version operation; concurrent unnamed creates; registrations by event."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from alibabacloud_aiworkspace20210204 import models
from alibabacloud_aiworkspace20210204.client import Client

from handler.catalog import workspace as catalog
from handler.catalog.keys import record_key, version_record_key
from handler.entry import fc
from handler.registry import records, upkeep
from handler.registry.listing import VersionQuery
from handler.registry.models import Registry
from handler.registry.versions import Versions
from handler.rules.validation import validator
from handler.stores.base import Store
from handler.stores.memory import MemoryStore
from tests.conftest import FakeContext, invoke
from tests.conftest import sdk_raises as raises
from tests.test_exactly_once import CrashingStore

URI = "oss://registry-bucket.oss-cn-hangzhou.aliyuncs.com/models/resnet/1"


def create_model(client: Client, name: str = "resnet") -> str:
    return str(client.create_model(models.CreateModelRequest(model_name=name)).body.model_id)


def test_every_version_operation_through_the_sdk(sdk: Client, any_store: Store) -> None:
    model_id = create_model(sdk)
    first = sdk.create_model_version(model_id, models.CreateModelVersionRequest(
        uri=URI, format_type="TorchScript", framework_type="Pytorch", metrics={"top1": 0.76},
        inference_spec={"processor": "pytorch_gpu"}, options='{"precision": "fp16"}',
        labels=[models.Label(key="stage", value="dev")])).body.version_name
    second = sdk.create_model_version(model_id, models.CreateModelVersionRequest(uri=URI + "-2")).body.version_name
    named = sdk.create_model_version(model_id, models.CreateModelVersionRequest(uri=URI + "-3", version_name="2.3.4_beta")).body
    assert (first, second, named.version_name) == ("0.1.0", "0.2.0", "2.3.4_beta")
    third = sdk.create_model_version(model_id, models.CreateModelVersionRequest(uri=URI + "-4")).body.version_name
    assert third == "2.4.0"  # the next minor after the highest

    got = sdk.get_model_version(model_id, first, models.GetModelVersionRequest()).body
    assert (got.uri, got.format_type, got.framework_type, got.metrics, got.options) == (
        URI, "TorchScript", "Pytorch", {"top1": 0.76}, '{"precision": "fp16"}')
    assert (got.approval_status, got.source_type, [(lb.key, lb.value) for lb in got.labels]) == ("Pending", "Custom", [("stage", "dev")])

    sdk.update_model_version(model_id, first, models.UpdateModelVersionRequest(approval_status="Approved",
                                                                                 metrics={"top1": 0.78}))
    sdk.create_model_version_labels(model_id, first, models.CreateModelVersionLabelsRequest(
        labels=[models.Label(key="stage", value="prod"), models.Label(key="owner", value="vision")]))
    sdk.delete_model_version_labels(model_id, first, models.DeleteModelVersionLabelsRequest(label_keys="owner"))
    got = sdk.get_model_version(model_id, first, models.GetModelVersionRequest()).body
    assert (got.approval_status, got.metrics, [(lb.key, lb.value) for lb in got.labels]) == (
        "Approved", {"top1": 0.78}, [("stage", "prod")])
    stored = json.loads(any_store.get(version_record_key(model_id, first)))
    assert stored.pop("VersionNumber") == 1  # beyond the SDK's shape: the version's MLflow number (docs/mlflow.md)
    assert stored == {k: v for k, v in got.to_map().items() if k != "RequestId" and v is not None}

    listed = sdk.list_model_versions(model_id, models.ListModelVersionsRequest()).body
    assert ([v.version_name for v in listed.versions], listed.total_count) == ([first, second, "2.3.4_beta", third], 4)
    approved = sdk.list_model_versions(model_id, models.ListModelVersionsRequest(approval_status="Approved")).body
    assert [v.version_name for v in approved.versions] == [first]
    by_name = sdk.list_model_versions(model_id, models.ListModelVersionsRequest(sort_by="VersionName", order="DESC",
                                                                               page_size=2, page_number=1)).body
    assert ([v.version_name for v in by_name.versions], by_name.total_count) == ([third, "2.3.4_beta"], 4)
    assert [v.version_name for v in sdk.list_model_versions(model_id, models.ListModelVersionsRequest(
        label="prod")).body.versions] == [first]

    sdk.delete_model_version(model_id, third, models.DeleteModelVersionRequest())
    raises("ModelVersionNotFound", 404, lambda: sdk.get_model_version(model_id, third, models.GetModelVersionRequest()))
    assert any_store.list(f"models/{model_id}/versions/") == sorted(version_record_key(model_id, n) for n in (first, second, "2.3.4_beta"))


def test_get_and_list_models_carry_the_latest_version(sdk: Client) -> None:
    model_id = create_model(sdk)
    plain = create_model(sdk, "no-versions")
    sdk.create_model_version(model_id, models.CreateModelVersionRequest(uri=URI))
    sdk.create_model_version(model_id, models.CreateModelVersionRequest(uri=URI + "-2", version_name="0.0.9"))
    body = sdk.get_model(model_id, models.GetModelRequest()).body
    assert body.latest_version.version_name == "0.0.9"  # the most recently created, not the highest name
    assert body.gmt_latest_version_modified_time == body.latest_version.gmt_modified_time
    assert sdk.get_model(plain, models.GetModelRequest()).body.latest_version is None
    listed = {m.model_id: m for m in sdk.list_models(models.ListModelsRequest()).body.models}
    assert listed[model_id].latest_version.uri == URI + "-2" and listed[plain].latest_version is None
    sdk.delete_model_version(model_id, "0.0.9", models.DeleteModelVersionRequest())
    assert sdk.get_model(model_id, models.GetModelRequest()).body.latest_version.version_name == "0.1.0"
    answer = json.loads(invoke({"httpMethod": "GET", "path": f"/api/v1/models/{model_id}", "headers": {}})["body"])
    validator("get-model-response.json").validate(answer)


def test_version_errors_reach_the_sdk_with_their_codes(sdk: Client, any_store: Store) -> None:
    model_id = create_model(sdk)
    sdk.create_model_version(model_id, models.CreateModelVersionRequest(uri=URI, version_name="1.0.0"))
    assert sdk.create_model_version(model_id, models.CreateModelVersionRequest(
        uri=URI, version_name="1.0.0")).body.version_name == "1.0.0"  # the same request again
    raises("ModelVersionAlreadyExists", 409, lambda: sdk.create_model_version(
        model_id, models.CreateModelVersionRequest(uri=URI + "-other", version_name="1.0.0")))
    raises("ModelNotFound", 404, lambda: sdk.create_model_version("model-nope", models.CreateModelVersionRequest(uri=URI)))
    raises("ModelVersionNotFound", 404, lambda: sdk.update_model_version(
        model_id, "9.9.9", models.UpdateModelVersionRequest(approval_status="Approved")))
    for request, words in [
        (models.CreateModelVersionRequest(), "Uri is required"),
        (models.CreateModelVersionRequest(uri="ftp://x"), "Uri"),
        (models.CreateModelVersionRequest(uri=URI, version_name="v1"), "VersionName"),
        (models.CreateModelVersionRequest(uri=URI, approval_status="Maybe"), "ApprovalStatus"),
        (models.CreateModelVersionRequest(uri=URI, metrics={"m": "x" * 9000}), "8192"),
        (models.CreateModelVersionRequest(uri=URI, options="not json"), "Options"),
    ]:
        assert words in raises("InvalidParameter", 400, lambda r=request: sdk.create_model_version(model_id, r))
    raises("InvalidParameter", 400, lambda: sdk.get_model_version(model_id, "v1", models.GetModelVersionRequest()))
    assert len(any_store.list(f"models/{model_id}/versions/")) == 1


def test_a_refused_uri_is_told_what_is_accepted(sdk: Client) -> None:
    model_id = create_model(sdk)
    accepted = ["oss://abc/m/1", "oss://" + "b" * 63 + "/m", "oss://my-bucket.oss-cn-hangzhou.aliyuncs.com/m/1",
                "https://example.com/m.onnx"]
    for uri in accepted:
        sdk.create_model_version(model_id, models.CreateModelVersionRequest(uri=uri))
    for uri in ["oss://ab/m", "oss://" + "b" * 64 + "/m", "oss://My-Bucket/m", "oss://-bucket/m", "oss://bucket-/m",
                "oss://bucket", "ftp://host/m", "oss://bucket/a b"]:
        message = raises("InvalidParameter", 400, lambda u=uri: sdk.create_model_version(
            model_id, models.CreateModelVersionRequest(uri=u)))
        assert "Uri must be an http(s):// URL or oss://BUCKET/OBJECT" in message, message
        assert "3 to 63 lowercase letters, digits and hyphens" in message and "optional" in message, message
    listed = sdk.list_model_versions(model_id, models.ListModelVersionsRequest()).body.versions
    assert sorted(v.uri for v in listed) == sorted(accepted)  # the refused ones wrote nothing


def test_deleting_a_model_deletes_its_versions_and_their_records(sdk: Client, any_store: Store) -> None:
    model_id = create_model(sdk)
    for _ in range(3):
        sdk.create_model_version(model_id, models.CreateModelVersionRequest(uri=URI))
    sdk.delete_model(model_id, models.DeleteModelRequest())
    raises("ModelNotFound", 404, lambda: sdk.list_model_versions(model_id, models.ListModelVersionsRequest()))
    raises("ModelNotFound", 404, lambda: sdk.get_model_version(model_id, "0.1.0", models.GetModelVersionRequest()))
    assert any_store.list("models/") == []
    again = create_model(sdk)  # a new model of the name starts its versions afresh
    assert sdk.create_model_version(again, models.CreateModelVersionRequest(uri=URI)).body.version_name == "0.1.0"


def test_concurrent_unnamed_creates_get_distinct_names_across_instances(any_store: Store) -> None:
    model_id, _ = Registry(any_store).create(records.normalized_request({"ModelName": "busy"}, "ws"))
    instances = [Versions(Registry(any_store)) for _ in range(2)]
    barrier = threading.Barrier(10)

    def create(i: int) -> str:
        barrier.wait()
        return instances[i % 2].create(model_id, {"Uri": f"{URI}-{i}"})[0]

    with ThreadPoolExecutor(10) as pool:
        names = list(pool.map(create, range(10)))
    assert sorted(names, key=lambda n: int(n.split(".")[1])) == [f"0.{i}.0" for i in range(1, 11)]
    fresh = Versions(Registry(any_store))
    for name in names:
        assert fresh.get(model_id, name)["Uri"].startswith(URI)
        assert json.loads(any_store.get(version_record_key(model_id, name))) == fresh.get(model_id, name)


def test_a_cold_instance_reads_versions_from_a_checkpoint(any_store: Store) -> None:
    registry = Registry(any_store)
    versions = Versions(registry)
    model_id, _ = registry.create(records.normalized_request({"ModelName": "m"}, "ws"))
    for i in range(catalog.CHECKPOINT_EVERY + 3):
        versions.create(model_id, {"Uri": f"{URI}-{i}", "Labels": [{"Key": "i", "Value": str(i)}]})
        registry.workspace("ws").settle()
    assert any_store.list("catalog/ws/checkpoints/")
    cold = Registry(any_store)
    assert cold.get(model_id)["LatestVersion"]["Uri"] == f"{URI}-{catalog.CHECKPOINT_EVERY + 2}"
    names, total = Versions(cold).list_versions(model_id, VersionQuery(page_size=100))
    assert total == catalog.CHECKPOINT_EVERY + 3 and names[0]["Labels"] == [{"Key": "i", "Value": "0"}]


VERSION_CHANGES = {
    "create": lambda v, m: v.create(m, {"Uri": URI + "-new", "VersionName": "3.0.0"}),
    "update": lambda v, m: v.update(m, "1.0.0", {"ApprovalStatus": "Approved"}),
    "labels": lambda v, m: v.add_labels(m, "1.0.0", [{"Key": "k", "Value": "v"}]),
    "delete": lambda v, m: v.delete(m, "1.0.0"),
}


@pytest.mark.parametrize("change", VERSION_CHANGES)
@pytest.mark.parametrize(("kind", "when"), [("log", "before"), ("log", "after"), ("record", "before"), ("record", "after")])
def test_a_crash_at_any_write_of_a_version_change_then_a_retry_ends_correct(
    any_store: Store, change: str, kind: str, when: str
) -> None:
    from handler.errors import ApiError
    from handler.stores.base import Unavailable

    store = CrashingStore(any_store)
    registry = Registry(store)
    model_id, _ = registry.create(records.normalized_request({"ModelName": "m"}, "ws"))
    Versions(registry).create(model_id, {"Uri": URI, "VersionName": "1.0.0"})
    registry.settle()  # the create's read after its answer is over: the armed write is the change's own
    store.kind, store.when = kind, when  # armed
    with pytest.raises(Unavailable):
        VERSION_CHANGES[change](Versions(registry), model_id)
    try:
        VERSION_CHANGES[change](Versions(Registry(store)), model_id)  # the same request, retried, on any instance
    except ApiError as e:
        assert change == "delete" and e.code == "ModelVersionNotFound"  # it had committed before the crash
    fresh = Versions(Registry(any_store))
    expected = {"create": ["1.0.0", "3.0.0"], "update": ["1.0.0"], "labels": ["1.0.0"], "delete": []}[change]
    listed, _ = fresh.list_versions(model_id, VersionQuery(page_size=100))
    assert [v["VersionName"] for v in listed] == expected
    for version in listed:  # every record file is its version's current state; none of a deleted one is left
        assert json.loads(any_store.get(version_record_key(model_id, version["VersionName"]))) == version
    assert len(any_store.list(f"models/{model_id}/versions/")) == len(listed)
    if change == "update":
        assert listed[0]["ApprovalStatus"] == "Approved"
    assert json.loads(any_store.get(record_key(model_id)))["ModelName"] == "m"


def test_an_event_registers_a_model_and_a_version_once_however_often_it_is_delivered(use_app, any_store: Store) -> None:
    use_app(any_store)
    event = {"specversion": "1.0", "id": "train-42", "source": "pai.training", "type": "pai:Model:Registered",
             "data": {"ModelName": "from-pipeline", "Domain": "cv", "Version": {"Uri": URI, "Metrics": {"top1": 0.8}}}}
    first = invoke(event, FakeContext())
    again = invoke(event, FakeContext())  # FC delivers again
    assert first["VersionName"] == again["VersionName"] == "0.1.0" and first["ModelId"] == again["ModelId"]
    event["data"]["Version"]["Uri"] = URI + "-2"
    event["data"]["Domain"] = "nlp"  # the model exists: its fields are left alone
    assert invoke(event, FakeContext())["VersionName"] == "0.2.0"
    model = Registry(any_store).get(first["ModelId"])
    assert model["Domain"] == "cv" and model["LatestVersion"]["Uri"] == URI + "-2"
    event["data"]["Version"] = {"Uri": "ftp://nowhere"}
    refused = json.loads(fc.handler(json.dumps(event).encode(), FakeContext()))
    assert refused["Code"] == "InvalidParameter" and refused["Message"].startswith("Version: Uri")


# --- an adversarial pass over versions ---------------------------------------------------------------

def test_creates_racing_deletes_leave_no_record_of_a_deleted_version(any_store: Store) -> None:
    registry = Registry(any_store)
    model_id, _ = registry.create(records.normalized_request({"ModelName": "m"}, "ws"))
    versions = Versions(registry)

    def churn(i: int) -> None:
        name = f"1.{i}.0"
        versions.create(model_id, {"VersionName": name, "Uri": URI})
        versions.delete(model_id, name)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(churn, range(40)))
    assert any_store.list(f"models/{model_id}/versions/") == []


def test_a_delete_model_cut_short_removes_every_version_record_on_retry(any_store: Store) -> None:
    from handler.stores.base import Unavailable

    store = CrashingStore(any_store)
    registry = Registry(store)
    model_id, _ = registry.create(records.normalized_request({"ModelName": "m"}, "ws"))
    for _ in range(3):
        Versions(registry).create(model_id, {"Uri": URI})
    registry.settle()
    store.kind, store.when = "record", "before"  # the model's record removal fails, after the commit
    with pytest.raises(Unavailable):
        registry.delete(model_id)
    with pytest.raises(Exception, match="does not exist"):
        Registry(any_store).delete(model_id)  # the retry, on another instance
    assert any_store.list("models/") == []


def test_the_sweep_writes_a_version_record_a_crash_left_unwritten_and_removes_orphans(any_store: Store) -> None:
    registry = Registry(any_store)
    model_id, _ = registry.create(records.normalized_request({"ModelName": "m"}, "ws"))
    Versions(registry).create(model_id, {"Uri": URI, "VersionName": "1.0.0"})
    record = any_store.get(version_record_key(model_id, "1.0.0"))
    any_store.delete(version_record_key(model_id, "1.0.0"))  # as if the crash came before the write
    any_store.put(version_record_key(model_id, "9.9.9"), b"{}")  # a record of a version that is gone
    summary = upkeep.sweep(Registry(any_store))
    assert (summary["VersionsRestored"], summary["VersionsRemoved"], summary["VersionsRewritten"]) == (1, 1, 0)
    assert any_store.list(f"models/{model_id}/versions/") == [version_record_key(model_id, "1.0.0")]
    assert any_store.get(version_record_key(model_id, "1.0.0")) == record
    with pytest.raises(ValueError, match="older than 60"):
        upkeep.sweep(Registry(any_store), older_than=0)


def test_the_latest_version_is_the_same_on_every_instance_when_one_commit_creates_several(any_store: Store) -> None:
    registry = Registry(any_store)
    model_id, _ = registry.create(records.normalized_request({"ModelName": "m"}, "ws"))
    workspace = registry.workspace("ws")

    def plan(draft: Any) -> None:  # one commit, five versions, created in this order
        for name in ["5.0.0", "4.0.0", "3.0.0", "1.0.0", "2.0.0"]:
            normal = records.normalized_version({"Uri": URI})
            draft.put_version(model_id, records.build_version(normal, name, 0, None), records.fingerprint(normal))

    workspace.commit(plan)
    for _ in range(catalog.CHECKPOINT_EVERY):
        registry.update(model_id, {"ModelDescription": str(_)})
        workspace.settle()
    warm, cold = registry.get(model_id), Registry(any_store).get(model_id)
    assert warm["LatestVersion"]["VersionName"] == cold["LatestVersion"]["VersionName"] == "2.0.0"


def test_a_next_version_name_past_the_rule_is_refused(use_app) -> None:
    store = MemoryStore()
    use_app(store)
    model_id = invoke({"httpMethod": "POST", "path": "/api/v1/models", "headers": {},
                       "body": json.dumps({"ModelName": "m"})})
    model_id = json.loads(model_id["body"])["ModelId"]

    def post(body: dict[str, Any]) -> dict[str, Any]:
        result = invoke({"httpMethod": "POST", "path": f"/api/v1/models/{model_id}/versions", "headers": {},
                         "body": json.dumps(body)})
        return {"Status": result["statusCode"], **json.loads(result["body"])}

    assert post({"Uri": URI, "VersionName": "999999999.999999999.0"})["Status"] == 200
    answer = post({"Uri": URI})
    assert (answer["Status"], answer["Code"]) == (400, "InvalidParameter") and "VersionName" in answer["Message"]


@pytest.mark.parametrize(("body", "words"), [
    ({"Uri": URI, "Options": "NaN"}, "Options"),
    ({"Uri": URI, "Options": '{"a": 1, "a": 2}'}, "Options"),
    ({"Uri": "oss://bucket"}, "Uri"),
    ({"Uri": "http://example.com/\u202emodel"}, "Uri"),
    ({"Uri": URI, "VersionName": "01.002.0003"}, "VersionName"),
])
def test_version_fields_are_read_strictly(use_app, body: dict[str, Any], words: str) -> None:
    store = MemoryStore()
    use_app(store)
    created = json.loads(invoke({"httpMethod": "POST", "path": "/api/v1/models", "headers": {},
                                 "body": json.dumps({"ModelName": "m"})})["body"])["ModelId"]
    result = invoke({"httpMethod": "POST", "path": f"/api/v1/models/{created}/versions", "headers": {}, "body": json.dumps(body)})
    answer = json.loads(result["body"])
    assert result["statusCode"] == 400 and answer["Message"].startswith(words), answer
    assert store.list(f"models/{created}/versions/") == []


def test_an_operation_without_query_parameters_refuses_them(use_app) -> None:
    store = MemoryStore()
    use_app(store)
    created = json.loads(invoke({"httpMethod": "POST", "path": "/api/v1/models", "headers": {},
                                 "body": json.dumps({"ModelName": "m"})})["body"])["ModelId"]
    result = invoke({"httpMethod": "DELETE", "path": f"/api/v1/models/{created}", "headers": {}, "queryParameters": {"x": "1"}})
    assert result["statusCode"] == 400 and "takes no query parameters" in json.loads(result["body"])["Message"]
    assert Registry(store).get(created) is not None


def test_what_the_state_remembers_of_deleted_things_stays_bounded(monkeypatch) -> None:
    from handler.catalog import state

    monkeypatch.setattr(state, "_FORGOTTEN_KEPT", 10)
    current = state.State()
    record = records.build_record(records.normalized_request({"ModelName": "m"}, "ws"), "model-1", 0, None)
    current.apply(1, [{"Put": {"Model": record, "Fingerprint": "f"}}])
    for seq in range(2, 500):
        version = records.build_version(records.normalized_version({"Uri": URI}), f"1.{seq}.0", 0, None)
        current.apply(seq, [{"PutVersion": {"ModelId": "model-1", "Version": version, "Fingerprint": "f"}},
                            {"DeleteVersion": {"ModelId": "model-1", "VersionName": f"1.{seq}.0"}}])
    assert len(current.changed) < 60 and current.changed_at("model-1") == 1


@pytest.mark.parametrize("decided", ["Approved", "Rejected"])
def test_approved_and_rejected_are_final_and_a_change_away_writes_nothing(sdk: Client, any_store: Store, decided: str) -> None:
    model_id = create_model(sdk)
    name = sdk.create_model_version(model_id, models.CreateModelVersionRequest(uri=URI)).body.version_name
    assert sdk.get_model_version(model_id, name, models.GetModelVersionRequest()).body.approval_status == "Pending"
    sdk.update_model_version(model_id, name, models.UpdateModelVersionRequest(approval_status=decided))
    record = any_store.get(version_record_key(model_id, name))
    log_before = any_store.list("catalog/")
    for other in {"Pending", "Approved", "Rejected"} - {decided}:
        message = raises("ApprovalStatusFinal", 409, lambda other=other: sdk.update_model_version(
            model_id, name, models.UpdateModelVersionRequest(approval_status=other, version_description="changed")))
        assert decided in message and "final" in message
    assert any_store.get(version_record_key(model_id, name)) == record  # nothing written: not even the description
    assert any_store.list("catalog/") == log_before
    # The same status again, and the version's other fields, may still change.
    sdk.update_model_version(model_id, name, models.UpdateModelVersionRequest(approval_status=decided, version_description="d"))
    got = sdk.get_model_version(model_id, name, models.GetModelVersionRequest()).body
    assert (got.approval_status, got.version_description) == (decided, "d")


def test_a_version_created_decided_is_final_too(sdk: Client) -> None:
    model_id = create_model(sdk)
    name = sdk.create_model_version(model_id, models.CreateModelVersionRequest(uri=URI, approval_status="Approved")).body.version_name
    raises("ApprovalStatusFinal", 409, lambda: sdk.update_model_version(
        model_id, name, models.UpdateModelVersionRequest(approval_status="Pending")))
