"""MLflow's own client, unmodified, against the local server over real HTTP: every registry call it makes,
on the same models PAI's API sees."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import RestException

from handler.api.app import App
from handler.catalog.keys import record_key, version_record_key
from handler.registry.listing import Query, VersionQuery
from handler.registry.models import Registry
from handler.registry.versions import Versions
from handler.stores.base import NotFound
from handler.stores.file import FileStore
from handler.stores.memory import MemoryStore
from tests.conftest import local_api


@pytest.fixture
def served(use_app, tmp_path: Path) -> Iterator[tuple[str, App]]:
    app = use_app(FileStore(tmp_path / "store"))
    with local_api() as server:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}", app


@pytest.fixture
def client(served: tuple[str, App]) -> MlflowClient:
    return MlflowClient(tracking_uri=served[0], registry_uri=served[0])


def fails(code: str, status: int, action) -> str:
    with pytest.raises(RestException) as caught:
        action()
    assert (caught.value.error_code, caught.value.get_http_status_code()) == (code, status), caught.value.message
    return caught.value.message


def test_registered_model_lifecycle_is_a_pai_model(client: MlflowClient, served, tmp_path: Path) -> None:
    model = client.create_registered_model("fraud", tags={"team": "risk"}, description="flags fraud")
    assert (model.name, model.description, model.tags) == ("fraud", "flags fraud", {"team": "risk"})
    # The same model through PAI's API: labels are its tags.
    _, app = served
    pai, total = app.registry.list_models("default", Query())
    assert total == 1 and pai[0]["ModelName"] == "fraud" and pai[0]["Labels"] == [{"Key": "team", "Value": "risk"}]
    assert json.loads((tmp_path / "store" / record_key(pai[0]["ModelId"])).read_text())["ModelDescription"] == "flags fraud"

    for again in ({}, {"description": "other words"}):  # the same request, or another: MLflow's words either way
        message = fails("RESOURCE_ALREADY_EXISTS", 400, lambda: client.create_registered_model("fraud", **again))  # noqa: B023
        assert message.endswith(": Registered Model (name=fraud) already exists."), message
    client.rename_registered_model("fraud", "fraud-v2")
    fails("RESOURCE_DOES_NOT_EXIST", 404, lambda: client.get_registered_model("fraud"))
    client.update_registered_model("fraud-v2", description="new words")
    client.set_registered_model_tag("fraud-v2", "stage", "prod")
    client.delete_registered_model_tag("fraud-v2", "team")
    got = client.get_registered_model("fraud-v2")
    assert (got.description, got.tags) == ("new words", {"stage": "prod"})
    client.delete_registered_model("fraud-v2")
    fails("RESOURCE_DOES_NOT_EXIST", 404, lambda: client.get_registered_model("fraud-v2"))
    assert app.registry.list_models("default", Query())[1] == 0


def test_versions_are_numbered_in_creation_order_and_never_reused(client: MlflowClient, served) -> None:
    client.create_registered_model("m")
    one = client.create_model_version("m", "runs:/r1/model", run_id="r1", tags={"k": "v"}, description="first")
    assert (one.version, one.source, one.run_id, one.tags, one.description, one.status) == (
        "1", "runs:/r1/model", "r1", {"k": "v"}, "first", "READY")
    # A version PAI's API creates takes the next number too.
    _, app = served
    model_id = app.registry.list_models("default", Query())[0][0]["ModelId"]
    name, _ = app.versions.create(model_id, {"Uri": "oss://bucket.oss-cn-hangzhou.aliyuncs.com/m/2"})
    assert client.get_model_version("m", "2").source == "oss://bucket.oss-cn-hangzhou.aliyuncs.com/m/2"
    assert app.versions.get(model_id, name)["VersionNumber"] == 2
    three = client.create_model_version("m", "s3://bucket/m/3")
    client.delete_model_version("m", "3")
    assert client.create_model_version("m", "s3://bucket/m/4").version == "4"  # 3 is never given again
    fails("RESOURCE_DOES_NOT_EXIST", 404, lambda: client.get_model_version("m", three.version))

    client.update_model_version("m", "1", description="better")
    client.set_model_version_tag("m", "1", "stage", "prod")
    client.delete_model_version_tag("m", "1", "k")
    got = client.get_model_version("m", "1")
    assert (got.description, got.tags) == ("better", {"stage": "prod"})
    assert client.get_model_version_download_uri("m", "1") == "runs:/r1/model"
    assert [v.version for v in client.get_latest_versions("m")] == ["4"]
    assert client.get_registered_model("m").latest_versions[0].version == "4"


def test_aliases_move_atomically_and_go_with_their_version(client: MlflowClient, served) -> None:
    client.create_registered_model("m")
    for i in range(3):
        client.create_model_version("m", f"s3://bucket/m/{i}")
    client.set_registered_model_alias("m", "champion", "1")
    client.set_registered_model_alias("m", "challenger", "2")
    client.set_registered_model_alias("m", "champion", "2")  # moved
    assert client.get_registered_model("m").aliases == {"champion": "2", "challenger": "2"}
    assert client.get_model_version_by_alias("m", "champion").version == "2"
    assert sorted(client.get_model_version("m", "2").aliases) == ["challenger", "champion"]
    # PAI's GetModel and ListModelVersions show them as additional fields.
    _, app = served
    model = app.registry.list_models("default", Query())[0][0]
    assert model["Aliases"] == [{"Alias": "challenger", "VersionName": "0.2.0"}, {"Alias": "champion", "VersionName": "0.2.0"}]
    listed, _ = app.versions.list_versions(model["ModelId"], VersionQuery())
    assert {v["VersionName"]: v.get("Aliases") for v in listed} == {"0.1.0": None, "0.2.0": ["challenger", "champion"], "0.3.0": None}

    fails("INVALID_PARAMETER_VALUE", 400, lambda: client.set_registered_model_alias("m", "latest", "1"))
    fails("INVALID_PARAMETER_VALUE", 400, lambda: client.set_registered_model_alias("m", "v1", "1"))
    fails("RESOURCE_DOES_NOT_EXIST", 404, lambda: client.set_registered_model_alias("m", "gold", "9"))
    client.delete_registered_model_alias("m", "challenger")
    client.delete_model_version("m", "2")  # champion goes with it, in the same commit
    assert client.get_registered_model("m").aliases == {}
    fails("RESOURCE_DOES_NOT_EXIST", 404, lambda: client.get_model_version_by_alias("m", "champion"))


def test_an_alias_never_outlives_its_version_in_the_log() -> None:
    """The delete's commit carries the model without the alias: no state in between shows an alias of no version."""
    store = MemoryStore()
    registry = Registry(store)
    versions = Versions(registry)
    from handler.registry import records
    from handler.registry.aliases import Aliases

    model_id, _ = registry.create(records.normalized_request({"ModelName": "m", "Labels": []}, "default"))
    name, _ = versions.create(model_id, {"Uri": "s3://b/1"})
    Aliases(registry).set(model_id, "gold", name)
    versions.delete(model_id, name)
    logs = sorted(k for k in store.list("") if "/log/" in k)
    last = json.loads(store.get(logs[-1]))
    kinds = [next(k for k in change if k in ("Put", "DeleteVersion")) for change in last["Changes"]]
    assert kinds == ["DeleteVersion", "Put"] and last["Changes"][1]["Put"]["Model"]["Aliases"] == []
    assert json.loads(store.get(record_key(model_id)))["Aliases"] == []
    with pytest.raises(NotFound):
        store.get(version_record_key(model_id, name))


def test_search_registered_models_filters_orders_and_pages(client: MlflowClient) -> None:
    for i in range(7):
        client.create_registered_model(f"model-{i}", tags={"team": "a" if i % 2 else "b"})
    client.create_registered_model("Other")
    names = lambda page: [m.name for m in page]  # noqa: E731
    assert names(client.search_registered_models("name LIKE 'model-%'")) == [f"model-{i}" for i in range(7)]
    assert names(client.search_registered_models("name ILIKE 'other'")) == ["Other"]
    assert names(client.search_registered_models("name = 'model-3'")) == ["model-3"]
    assert names(client.search_registered_models("tags.team = 'a'")) == ["model-1", "model-3", "model-5"]
    assert names(client.search_registered_models("tags.team = 'a' AND name LIKE '%5'")) == ["model-5"]
    # as on MLflow's server, a model without the tag is in no tag's answer ("Other" has no team)
    assert names(client.search_registered_models("tags.team != 'a'")) == ["model-0", "model-2", "model-4", "model-6"]
    assert names(client.search_registered_models("name != 'model-0'", order_by=["creation_timestamp DESC"], max_results=2)) == \
        ["Other", "model-6"]
    assert names(client.search_registered_models(order_by=["name DESC"], max_results=2)) == ["model-6", "model-5"]
    first = client.search_registered_models(max_results=3)
    second = client.search_registered_models(max_results=3, page_token=first.token)
    third = client.search_registered_models(max_results=3, page_token=second.token)
    assert names(first) + names(second) + names(third) == ["Other", *[f"model-{i}" for i in range(7)]]
    assert not third.token  # the last page
    fails("INVALID_PARAMETER_VALUE", 400, lambda: client.search_registered_models("description = 'x'"))
    fails("INVALID_PARAMETER_VALUE", 400, lambda: client.search_registered_models(max_results=1001))


def test_a_like_pattern_of_many_runs_is_answered_and_the_server_keeps_serving(client: MlflowClient, served) -> None:
    # "%a%a...%b" against long names of a's: a backtracking match tries every way to place the runs and never ends
    names = [f"{'a' * 120}-{i}" for i in range(3)]
    for name in names:
        client.create_registered_model(name)
        client.create_model_version(name, "s3://b/m")
    stalling = "name LIKE '" + "%a" * 25 + "%b'"
    assert client.search_registered_models(stalling) == []
    assert client.search_model_versions(stalling) == []
    assert [m.name for m in client.search_registered_models("name LIKE '" + "%a" * 25 + "%-_'")] == names
    assert [m.name for m in client.search_registered_models("name ILIKE '" + "%A" * 25 + "%1'")] == names[1:2]


def test_prompts_are_answered_only_when_asked_for_as_mlflow_s_server_does(client: MlflowClient, served) -> None:
    client.create_registered_model("model")
    client.create_model_version("model", "s3://b/m")
    prompt = {"key": "mlflow.prompt.is_prompt", "value": "true"}  # as MLflow's prompt registry writes them
    for path, body in (("registered-models/create", {"name": "prompt", "tags": [prompt]}),
                       ("model-versions/create", {"name": "prompt", "source": "s3://b/p", "tags": [prompt]})):
        requests.post(f"{served[0]}/api/2.0/mlflow/{path}", json=body, timeout=10).raise_for_status()
    assert [m.name for m in client.search_registered_models()] == ["model"]  # the client asks "!= 'true'"
    assert [m.name for m in client.search_registered_models("tags.`mlflow.prompt.is_prompt` = 'true'")] == ["prompt"]
    assert [v.name for v in client.search_model_versions()] == ["model"]
    assert [v.name for v in client.search_model_versions("tags.`mlflow.prompt.is_prompt` != 'false'")] == ["prompt"]


def test_search_model_versions_by_name_run_and_tag(client: MlflowClient) -> None:
    client.create_registered_model("a")
    client.create_registered_model("b")
    client.create_model_version("a", "runs:/r1/m", run_id="r1", tags={"t": "x"})
    client.create_model_version("a", "runs:/r2/m", run_id="r2")
    client.create_model_version("b", "runs:/r1/m", run_id="r1", tags={"t": "x"})
    found = lambda f: [(v.name, v.version) for v in client.search_model_versions(f)]  # noqa: E731
    assert found("name = 'a'") == [("a", "2"), ("a", "1")]
    assert found("run_id = 'r1'") == [("a", "1"), ("b", "1")]
    assert found("tags.t = 'x' AND name = 'b'") == [("b", "1")]
    assert found("run_id IN ('r2', 'r9')") == [("a", "2")]


def test_workspaces_under_their_own_path(served, client: MlflowClient) -> None:
    base, _ = served
    other = MlflowClient(tracking_uri=base + "/workspaces/team-b", registry_uri=base + "/workspaces/team-b")
    other.create_registered_model("shared-name")
    client.create_registered_model("shared-name")  # the default workspace is another one
    assert [m.name for m in other.search_registered_models()] == ["shared-name"]
    fails("INVALID_PARAMETER_VALUE", 400, lambda: MlflowClient(
        tracking_uri=base + "/workspaces/bad%20id", registry_uri=base + "/workspaces/bad%20id").search_registered_models())


def test_errors_carry_mlflow_s_fields_and_ours(served) -> None:
    base, _ = served
    answer = requests.get(base + "/api/2.0/mlflow/registered-models/get", params={"name": "absent"}, timeout=5)
    body = answer.json()
    assert answer.status_code == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert {"RequestId", "Code", "Message", "message"} <= set(body)
    answer = requests.post(base + "/api/2.0/mlflow/registered-models/create", json={"tags": []}, timeout=5)
    assert (answer.status_code, answer.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    answer = requests.get(base + "/api/2.0/mlflow/registered-models/nothing-here", timeout=5)
    assert (answer.status_code, answer.json()["error_code"]) == (404, "ENDPOINT_NOT_FOUND")


def test_bad_tags_are_refused_and_nothing_is_written(client: MlflowClient, served, tmp_path: Path) -> None:
    fails("INVALID_PARAMETER_VALUE", 400, lambda: client.create_registered_model("m", tags={"a=b": "c"}))
    assert not (tmp_path / "store" / "models").exists() or not list((tmp_path / "store" / "models").glob("*.json"))


@pytest.fixture
def keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, App]]:
    from handler.entry import fc
    from tests.test_auth import signed_app

    app = signed_app(tmp_path)
    fc.set_app(app)
    try:
        with local_api() as server:
            host, port = server.server_address[:2]
            yield f"http://{host}:{port}", app
    finally:
        fc.set_app(None)


def as_key(monkeypatch: pytest.MonkeyPatch, base: str, key: str | None, secret: str | None) -> MlflowClient:
    for name, value in (("MLFLOW_TRACKING_USERNAME", key), ("MLFLOW_TRACKING_PASSWORD", secret)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return MlflowClient(tracking_uri=base, registry_uri=base)


def test_with_keys_mlflow_clients_use_basic_auth_under_the_same_policies(keyed, monkeypatch: pytest.MonkeyPatch) -> None:
    base, app = keyed
    admin = as_key(monkeypatch, base, "admin", "admin-secret-for-tests")
    admin.create_registered_model("m")
    admin.create_model_version("m", "s3://b/1")
    stored = sorted(app.registry.store.list(""))

    reader = as_key(monkeypatch, base, "reader", "reader-secret-for-tests")
    assert reader.get_registered_model("m").name == "m"  # GetModel
    assert [v.version for v in reader.search_model_versions("name = 'm'")] == ["1"]  # ListModelVersions
    fails("PERMISSION_DENIED", 403, lambda: reader.create_registered_model("other"))  # CreateModel
    fails("PERMISSION_DENIED", 403, lambda: reader.set_registered_model_alias("m", "gold", "1"))  # UpdateModel
    fails("PERMISSION_DENIED", 403, lambda: reader.delete_model_version("m", "1"))  # DeleteModelVersion
    team = as_key(monkeypatch, base, "team", "team-secret-for-tests")
    fails("PERMISSION_DENIED", 403, lambda: team.create_registered_model("elsewhere"))  # only in team-a
    in_team = MlflowClient(tracking_uri=base + "/workspaces/team-a", registry_uri=base + "/workspaces/team-a")
    in_team.create_registered_model("theirs")
    stored_after_team = sorted(app.registry.store.list(""))

    fails("UNAUTHENTICATED", 401, lambda: as_key(monkeypatch, base, "admin", "wrong-secret-of-length").create_registered_model("x"))
    fails("UNAUTHENTICATED", 401, lambda: as_key(monkeypatch, base, "nobody", "whatever-secret-1234").create_registered_model("x"))
    fails("UNAUTHENTICATED", 401, lambda: as_key(monkeypatch, base, None, None).create_registered_model("x"))
    assert sorted(app.registry.store.list("")) == stored_after_team  # refused requests write nothing
    assert len(stored_after_team) > len(stored)


def test_a_signature_is_not_accepted_for_basic_on_the_pai_api(keyed) -> None:
    base, _ = keyed
    answer = requests.get(base + "/api/v1/models", auth=("admin", "admin-secret-for-tests"), timeout=5)
    assert answer.status_code == 400 and answer.json()["Code"] == "InvalidAuthorization"


def test_pai_alias_routes_set_move_and_remove_the_aliases_mlflow_sees(client: MlflowClient, served) -> None:
    base, app = served
    client.create_registered_model("m")
    client.create_model_version("m", "s3://b/1")
    client.create_model_version("m", "s3://b/2")
    model_id = app.registry.list_models("default", Query())[0][0]["ModelId"]
    at = f"{base}/api/v1/models/{model_id}/aliases"

    assert requests.put(f"{at}/champion", json={"VersionName": "0.1.0"}, timeout=10).status_code == 200
    assert client.get_model_version_by_alias("m", "champion").version == "1"
    assert requests.put(f"{at}/champion", json={"VersionName": "0.2.0"}, timeout=10).status_code == 200  # moved
    assert client.get_model_version_by_alias("m", "champion").version == "2"
    assert app.registry.get(model_id)["Aliases"] == [{"Alias": "champion", "VersionName": "0.2.0"}]
    record = app.registry.get(model_id)
    for alias, body, status, code in (("champion", {"VersionName": "9.9.9"}, 404, "ModelVersionNotFound"),
                                      ("latest", {"VersionName": "0.1.0"}, 400, "InvalidParameter"),
                                      ("v2", {"VersionName": "0.1.0"}, 400, "InvalidParameter"),
                                      ("gold", {}, 400, "InvalidParameter")):
        answer = requests.put(f"{at}/{alias}", json=body, timeout=10)
        assert (answer.status_code, answer.json()["Code"].split(".")[0]) == (status, code), answer.text
    assert app.registry.get(model_id) == record  # refused: nothing written
    assert requests.delete(f"{at}/champion", timeout=10).status_code == 200
    fails("RESOURCE_DOES_NOT_EXIST", 404, lambda: client.get_model_version_by_alias("m", "champion"))
    assert "Aliases" not in app.versions.get(model_id, "0.2.0")


def test_pai_alias_routes_are_checked_as_update_model(keyed, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_auth import sign

    base, app = keyed
    admin = as_key(monkeypatch, base, "admin", "admin-secret-for-tests")
    admin.create_registered_model("m")
    admin.create_model_version("m", "s3://b/1")
    model_id = app.registry.list_models("default", Query())[0][0]["ModelId"]
    path, body = f"/api/v1/models/{model_id}/aliases/gold", json.dumps({"VersionName": "0.1.0"}).encode()
    host = base.removeprefix("http://")

    def put(key: str, secret: str) -> requests.Response:
        return requests.put(base + path, data=body, headers=sign("PUT", path, {}, body, key, secret, host=host), timeout=10)

    answer = put("reader", "reader-secret-for-tests")  # Get* and List* only
    assert (answer.status_code, answer.json()["Code"]) == (403, "Forbidden.RAM"), answer.text
    assert "Aliases" not in app.registry.get(model_id)
    assert put("admin", "admin-secret-for-tests").status_code == 200
    assert admin.get_model_version_by_alias("m", "gold").version == "1"


def test_an_import_may_give_a_version_its_number_but_never_one_given_before(client: MlflowClient, served) -> None:
    client.create_registered_model("m")
    create = f"{served[0]}/api/2.0/mlflow/model-versions/create"

    def post(**fields: str) -> requests.Response:
        return requests.post(create, json={"name": "m", "source": "s3://b/m", **fields}, timeout=10)

    made = post(version="3", status="FAILED_REGISTRATION")
    assert made.status_code == 200 and made.json()["model_version"]["version"] == "3"
    assert client.get_model_version("m", "3").status == "FAILED_REGISTRATION"
    assert post(version="3").json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    assert client.create_model_version("m", "s3://b/m").version == "4"  # the next after the highest
    client.delete_model_version("m", "4")
    again = post(version="4")
    assert (again.status_code, again.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "given before" in again.json()["message"]
    for bad in ({"version": "0"}, {"version": "x"}, {"status": "DONE"}):
        refused = post(**bad)
        assert (refused.status_code, refused.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), bad
    assert [v.version for v in client.search_model_versions("name = 'm'")] == ["3"]
