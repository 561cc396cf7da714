"""PAI's official Python SDK, unmodified, against the local server."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from alibabacloud_aiworkspace20210204 import models
from alibabacloud_aiworkspace20210204.client import Client
from alibabacloud_tea_openapi import models as open_api
from alibabacloud_tea_openapi.exceptions import ClientException

from handler.api.app import App
from handler.entry.local import LocalServer
from handler.stores.file import FileStore
from tests.conftest import local_api


@pytest.fixture
def server(use_app, tmp_path: Path) -> Iterator[tuple[LocalServer, App]]:
    app = use_app(FileStore(tmp_path / "store"))
    with local_api(app.max_body_bytes) as srv:
        yield srv, app


def sdk_client(srv: LocalServer) -> Client:
    host, port = srv.server_address[:2]
    return Client(open_api.Config(access_key_id="ak", access_key_secret="sk", endpoint=f"{host}:{port}", protocol="http"))


def test_create_model_with_every_field(server, tmp_path: Path) -> None:
    srv, _ = server
    request = models.CreateModelRequest(
        model_name="新闻分类", model_description="新闻分类。", workspace_id="796", accessibility="PUBLIC",
        labels=[models.Label(key="old", value="label")], tag=[models.Label(key="team", value="nlp")],
        origin="ModelScope", domain="nlp", task="text-classification", model_doc="https://example.com/doc.md",
        order_number=0, model_type="Checkpoint", parameter_size=3000,
        extra_info={"RatingCount": 2866, "Rating": 4.94, "CoverUris": ["https://example.com/w.png"], "Nested": {"a": None}},
    )
    response = sdk_client(srv).create_model(request)
    assert response.status_code == 200
    model_id = response.body.model_id
    assert model_id.startswith("model-") and response.body.request_id

    record = json.loads((tmp_path / "store" / "models" / f"{model_id}.json").read_text("utf-8"))
    assert record["ModelId"] == model_id
    expected = {
        "ModelName": "新闻分类", "ModelDescription": "新闻分类。", "WorkspaceId": "796", "Accessibility": "PUBLIC",
        "Origin": "ModelScope", "Domain": "nlp", "Task": "text-classification", "ModelDoc": "https://example.com/doc.md",
        "OrderNumber": 0, "ModelType": "Checkpoint", "ParameterSize": 3000,
        "ExtraInfo": {"RatingCount": 2866, "Rating": 4.94, "CoverUris": ["https://example.com/w.png"], "Nested": {"a": None}},
    }
    assert {k: record[k] for k in expected} == expected
    assert record["Tags"] == record["Labels"] == [{"Key": "team", "Value": "nlp"}, {"Key": "old", "Value": "label"}]


def test_rejected_request_raises_the_sdk_exception_with_our_code(server) -> None:
    srv, app = server
    request = models.CreateModelRequest(model_name="x" * 128)
    with pytest.raises(ClientException) as caught:
        sdk_client(srv).create_model(request)
    error = caught.value
    assert (error.code, error.status_code) == ("InvalidParameter", 400)
    assert re.fullmatch(r"[0-9A-F-]{36}", error.request_id) and error.data["RequestId"] == error.request_id
    assert "ModelName" in error.message
    assert app.registry.store.list("") == []


def test_conflict_reaches_the_sdk_as_409(server) -> None:
    srv, _ = server
    client = sdk_client(srv)
    first = client.create_model(models.CreateModelRequest(model_name="dup", domain="nlp")).body.model_id
    assert client.create_model(models.CreateModelRequest(model_name="dup", domain="nlp")).body.model_id == first
    with pytest.raises(ClientException) as caught:
        client.create_model(models.CreateModelRequest(model_name="dup", domain="cv"))
    assert (caught.value.code, caught.value.status_code) == ("ModelAlreadyExists", 409)
    assert first in caught.value.message
