"""PAI's higher-level Python SDK (`pai`, from the `alipai` package), unmodified, listing models and
versions through the local server. It builds its clients from a region's public endpoint; pointing it
here takes replacing that endpoint (and HTTPS) in its client factory, which is all this test changes."""
from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from handler.stores.memory import MemoryStore
from tests.conftest import local_api


@pytest.fixture
def session(use_app, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    import pai.session
    from alibabacloud_credentials.models import Config as CredentialConfig
    from pai.api.client_factory import ClientFactory

    use_app(MemoryStore())
    with local_api() as server:
        endpoint = f"127.0.0.1:{server.server_address[1]}"
        create = ClientFactory.create_client.__func__  # type: ignore[attr-defined]
        monkeypatch.setattr(ClientFactory, "get_endpoint", classmethod(lambda cls, **kwargs: endpoint))
        monkeypatch.setattr(ClientFactory, "create_client",
                            classmethod(lambda cls, *args, **kwargs: create(cls, *args, protocol="http", **kwargs)))
        session = pai.session.Session(region_id="cn-hangzhou", workspace_id="default", credential_config=CredentialConfig(
            type="access_key", access_key_id="ak", access_key_secret="sk"))
        monkeypatch.setattr(pai.session, "_default_session", session)  # or it would look for one in the environment
        yield session, server.url


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_registered_models_and_their_versions_list_through_pai(session: tuple[Any, str]) -> None:
    from pai.model import RegisteredModel

    pai_session, url = session
    for i in range(13):  # more than pai's page of 10
        model_id = post(url + "/api/v1/models", {"ModelName": f"m{i}"})["ModelId"]
        for n in range(2):
            post(f"{url}/api/v1/models/{model_id}/versions", {"Uri": f"oss://bench-bucket.oss-cn-hangzhou.aliyuncs.com/m{i}/{n}",
                                                              "FormatType": "ONNX"})
    listed = list(RegisteredModel.list(session=pai_session))
    assert sorted(m.model_name for m in listed) == sorted(f"m{i}" for i in range(13))
    assert all(m.model_version == "0.2.0" for m in listed)  # each from its LatestVersion
    model = RegisteredModel(model_name="m3", session=pai_session)  # an exact lookup: "m3", not "m13"
    assert (model.model_version, model.uri) == ("0.2.0", "oss://bench-bucket.oss-cn-hangzhou.aliyuncs.com/m3/1")
    assert [v.model_version for v in model.list_versions()] == ["0.1.0", "0.2.0"]
    assert sorted(m.model_name for m in RegisteredModel.list(model_name="m1", session=pai_session)) == ["m1", "m10", "m11", "m12"]


def test_pais_own_approval_spellings_are_accepted_and_stored_as_pai_spells_them(session: tuple[Any, str]) -> None:

    pai_session, url = session
    model_id = post(url + "/api/v1/models", {"ModelName": "approved-by-pai"})["ModelId"]
    api = pai_session.model_api
    pending = api.create_version(model_id, uri="oss://b-bucket.oss-cn-hangzhou.aliyuncs.com/m/1", approval_status="PENDING")
    approved = api.create_version(model_id, uri="oss://b-bucket.oss-cn-hangzhou.aliyuncs.com/m/2", approval_status="APPROVED")
    assert api.get_version(model_id, pending)["ApprovalStatus"] == "Pending"
    assert api.get_version(model_id, approved)["ApprovalStatus"] == "Approved"
    api.update_version(model_id, pending, approval_status="REJECTED")
    assert api.get_version(model_id, pending)["ApprovalStatus"] == "Rejected"
    listed = api.list_versions(model_id, approval_status="APPROVED")
    assert [v["VersionName"] for v in listed.items] == [approved]
