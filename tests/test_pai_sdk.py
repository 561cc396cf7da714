"""PAI's higher-level Python SDK (`pai`, from the `alipai` package), unmodified, through the local server over
real HTTP. It builds its clients for a region's public endpoint; pointing it here takes handing its session a
workspace client for this registry: README's recipe, which runs here exactly as printed, signed."""
from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.entry import fc
from handler.stores.memory import MemoryStore
from tests.conftest import local_api
from tests.test_auth import signed_app

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_recipe() -> str:
    """The README's `pai` example, as printed."""
    return next(block for block in re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), re.S) if "import pai" in block)


def pai_session(endpoint: str) -> Any:
    """A pai Session whose workspace client talks to this registry, as the README's recipe makes it."""
    import pai.session
    from alibabacloud_tea_openapi.models import Config
    from pai.api.base import ServiceName
    from pai.libs.alibabacloud_aiworkspace20210204.client import Client

    session = pai.session.Session(region_id="cn-hangzhou", workspace_id="default", network="PUBLIC")
    session.acs_client_container[ServiceName.PAI_WORKSPACE] = Client(Config(
        access_key_id="ak", access_key_secret="sk", endpoint=endpoint, protocol="http"))
    return session


@pytest.fixture(autouse=True)
def no_default_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets pai's default session itself; none is left to the next (or looked for on this machine)."""
    import pai.session

    monkeypatch.setattr(pai.session, "_default_session", None)


@pytest.fixture
def session(use_app, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    import pai.session

    use_app(MemoryStore())
    with local_api() as server:
        made = pai_session(f"127.0.0.1:{server.server_address[1]}")
        monkeypatch.setattr(pai.session, "_default_session", made)
        yield made, server.url


def test_the_readme_recipe_runs_as_printed_against_a_signed_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = readme_recipe()
    assert "session.acs_client_container[ServiceName.PAI_WORKSPACE] = Client(Config(" in recipe  # what pai_session does
    promised = [line.split("  # ")[-1] for line in recipe.splitlines() if line.startswith("print(")]
    app = signed_app(tmp_path)
    fc.set_app(app)
    try:
        with local_api() as server:
            here = recipe.replace('"127.0.0.1:9000"', f'"127.0.0.1:{server.server_address[1]}"')
            wrong = here.replace('"ak"', '"admin"')  # a key the registry knows, with another secret
            with pytest.raises(Exception, match="SignatureDoesNotMatch"):
                exec(compile(wrong, str(README), "exec"), {})
            assert app.registry.store.list("models/") == []  # the refused request wrote nothing
            exec(compile(wrong.replace('"sk"', '"admin-secret-for-tests"'), str(README), "exec"), {})
    finally:
        fc.set_app(None)
    assert capsys.readouterr().out.splitlines() == promised
    assert app.registry.store.list("models/") == []  # and its last line deleted what it made


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
