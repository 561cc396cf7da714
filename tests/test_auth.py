"""Signed and scoped access: the official SDK with a key does everything its policy allows, and every
forged, replayed or out-of-policy request is refused with the SDK's code and writes nothing."""
from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from alibabacloud_aiworkspace20210204 import models
from alibabacloud_aiworkspace20210204.client import Client
from alibabacloud_openapi_util.client import Client as SdkUtil
from alibabacloud_tea_openapi import models as open_api
from hypothesis import given
from hypothesis import strategies as st

from handler import errors
from handler.api import auth
from handler.api.app import App
from handler.api.http import Request
from handler.config import Settings
from handler.entry import fc
from handler.entry.compose import build_app
from handler.entry.local import LocalServer
from tests.conftest import local_api, sdk_raises
from tests.test_fuzz import FUZZ

KEYS = {"AccessKeys": [
    {"AccessKeyId": "admin", "AccessKeySecret": "admin-secret-for-tests", "Workspaces": ["*"], "Actions": ["*"]},
    {"AccessKeyId": "reader", "AccessKeySecret": "reader-secret-for-tests", "Workspaces": ["*"], "Actions": ["Get*", "List*"]},
    {"AccessKeyId": "team", "AccessKeySecret": "team-secret-for-tests", "Workspaces": ["team-a"], "Actions": ["*"]},
    {"AccessKeyId": "strict", "AccessKeySecret": "strict-secret-for-tests", "Workspaces": ["*"], "Actions": ["*"], "RequireAcs3": True},
]}


def signed_app(tmp_path: Path, keys: dict[str, Any] = KEYS) -> App:
    document = tmp_path / "access-keys.json"
    document.write_text(json.dumps(keys))
    return build_app(Settings.from_env({"MODEL_STORE": "memory://", "ACCESS_KEYS": f"file://{document}"}))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LocalServer, App]]:
    app = signed_app(tmp_path)
    fc.set_app(app)
    try:
        with local_api() as srv:
            yield srv, app
    finally:
        fc.set_app(None)


def client(srv: LocalServer, key: str, secret: str, algorithm: str | None = None) -> Client:
    host, port = srv.server_address[:2]
    config = open_api.Config(access_key_id=key, access_key_secret=secret, endpoint=f"{host}:{port}", protocol="http")
    if algorithm:
        config.signature_algorithm = algorithm
    return Client(config)


def objects(app: App) -> list[str]:
    return [k for k in app.registry.store.list("") if not k.startswith("nonces/")]


def test_a_key_does_everything_its_policy_allows_through_the_sdk(server) -> None:
    srv, app = server
    admin = client(srv, "admin", "admin-secret-for-tests")
    model_id = admin.create_model(models.CreateModelRequest(model_name="signed")).body.model_id
    admin.update_model(model_id, models.UpdateModelRequest(domain="nlp"))
    admin.create_model_labels(model_id, models.CreateModelLabelsRequest(labels=[models.Label(key="k", value="v")]))
    version = admin.create_model_version(model_id, models.CreateModelVersionRequest(uri="oss://bucket.e/m/1")).body.version_name
    admin.update_model_version(model_id, version, models.UpdateModelVersionRequest(approval_status="Approved"))
    reader = client(srv, "reader", "reader-secret-for-tests")
    assert reader.get_model(model_id, models.GetModelRequest()).body.latest_version.approval_status == "Approved"
    assert reader.list_models(models.ListModelsRequest()).body.total_count == 1
    assert reader.list_model_versions(model_id, models.ListModelVersionsRequest()).body.total_count == 1
    assert reader.get_model_version(model_id, version, models.GetModelVersionRequest()).body.uri == "oss://bucket.e/m/1"
    sdk_raises("Forbidden.RAM", 403, lambda: reader.delete_model(model_id, models.DeleteModelRequest()))
    admin.delete_model_labels(model_id, models.DeleteModelLabelsRequest(label_keys="k"))
    admin.create_model_version_labels(model_id, version, models.CreateModelVersionLabelsRequest(
        labels=[models.Label(key="k", value="v")]))
    admin.delete_model_version_labels(model_id, version, models.DeleteModelVersionLabelsRequest(label_keys="k"))
    admin.delete_model_version(model_id, version, models.DeleteModelVersionRequest())
    admin.delete_model(model_id, models.DeleteModelRequest())
    assert objects(app) == [k for k in objects(app) if k.startswith("catalog/")]  # the model and its files are gone


def test_every_change_is_attributed_to_its_key(server, tmp_path: Path, capsys) -> None:
    from handler.entry.cli import main

    srv, app = server
    admin = client(srv, "admin", "admin-secret-for-tests")
    model_id = admin.create_model(models.CreateModelRequest(model_name="owned")).body.model_id
    client(srv, "team", "team-secret-for-tests")  # another key, allowed only in team-a: it cannot touch this model
    admin.update_model(model_id, models.UpdateModelRequest(domain="cv"))
    entries = [json.loads(app.registry.store.get(k)) for k in app.registry.store.list("catalog/default/log/")]
    assert [change["By"] for entry in entries for change in entry["Changes"]] == ["admin", "admin"]
    assert all(change["At"].endswith("Z") for entry in entries for change in entry["Changes"])
    fc.set_app(app)
    assert main(["history", model_id]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]  # after the header
    assert [line.split()[1:3] for line in lines] == [["admin", "CreateModel"], ["admin", "UpdateModel"]]
    version = admin.create_model_version(model_id, models.CreateModelVersionRequest(uri="oss://bucket.e/m/2")).body.version_name
    admin.delete_model(model_id, models.DeleteModelRequest())
    assert main(["history", model_id]) == 0  # a deleted model's history too: who deleted it
    lines = capsys.readouterr().out.strip().splitlines()[1:]  # after the header
    assert [line.split()[1:3] for line in lines][2:] == [["admin", "CreateModelVersion"], ["admin", "DeleteModel"]]
    assert lines[2].endswith(version)


@pytest.mark.parametrize(("key", "secret", "code", "status"), [
    ("admin", "wrong-secret-for-tests", "SignatureDoesNotMatch", 400),
    ("nobody", "whatever", "InvalidAccessKeyId.NotFound", 404),
    ("reader", "reader-secret-for-tests", "Forbidden.RAM", 403),  # an action outside the policy
    ("team", "team-secret-for-tests", "Forbidden.RAM", 403),  # a workspace outside the policy
])
def test_a_request_outside_a_key_is_refused_and_writes_nothing(server, key: str, secret: str, code: str, status: int) -> None:
    srv, app = server
    sdk_raises(code, status, lambda: client(srv, key, secret).create_model(models.CreateModelRequest(model_name="x")))
    assert app.registry.store.list("") == []  # not even a nonce


def test_a_key_limited_to_a_workspace_works_there_only(server) -> None:
    srv, _ = server
    team = client(srv, "team", "team-secret-for-tests")
    model_id = team.create_model(models.CreateModelRequest(model_name="t", workspace_id="team-a")).body.model_id
    assert team.list_models(models.ListModelsRequest(workspace_id="team-a")).body.total_count == 1
    sdk_raises("Forbidden.RAM", 403, lambda: team.list_models(models.ListModelsRequest()))  # the default workspace
    admin_model = client(srv, "admin", "admin-secret-for-tests").create_model(models.CreateModelRequest(model_name="a")).body.model_id
    sdk_raises("Forbidden.RAM", 403, lambda: team.get_model(admin_model, models.GetModelRequest()))
    assert team.get_model(model_id, models.GetModelRequest()).body.model_name == "t"


def test_the_older_roa_signature_is_accepted_unless_the_key_requires_acs3(server) -> None:
    srv, app = server
    roa = client(srv, "admin", "admin-secret-for-tests", algorithm="v2")
    model_id = roa.create_model(models.CreateModelRequest(model_name="roa")).body.model_id
    assert roa.get_model(model_id, models.GetModelRequest()).body.model_name == "roa"
    sdk_raises("InvalidAuthorization", 400, lambda: client(srv, "strict", "strict-secret-for-tests", "v2").list_models(
        models.ListModelsRequest()))
    assert client(srv, "strict", "strict-secret-for-tests").list_models(models.ListModelsRequest()).body.total_count == 1


def test_an_roa_query_value_holding_an_ampersand_or_equals_is_refused(server) -> None:
    """ROA signs `?ModelName=a&Domain=b` unencoded: one value `a&Domain=b` would sign the same."""
    srv, app = server
    roa = client(srv, "admin", "admin-secret-for-tests", algorithm="v2")
    roa.create_model(models.CreateModelRequest(model_name="a", domain="b"))
    for name in ("a&Domain=b", "k=v"):
        message = sdk_raises("InvalidParameter", 400, lambda name=name: roa.list_models(models.ListModelsRequest(model_name=name)))
        assert "ModelName" in message and "ACS3" in message
    assert roa.list_models(models.ListModelsRequest(model_name="a", domain="b")).body.total_count == 1
    acs3 = client(srv, "admin", "admin-secret-for-tests")  # ACS3 encodes each pair: the same value is unambiguous
    assert acs3.list_models(models.ListModelsRequest(model_name="a&Domain=b")).body.total_count == 0


def roa_sign(method: str, path: str, body: bytes, extra: dict[str, str]) -> dict[str, str]:
    """The headers the SDK's ROA (v2) client sends, plus `extra`, signed by the SDK's own ROA code."""
    headers = {"host": "127.0.0.1", "accept": "application/json", "date": email.utils.formatdate(usegmt=True),
               "x-acs-signature-nonce": uuid.uuid4().hex, "x-acs-signature-method": "HMAC-SHA1",
               "x-acs-signature-version": "1.0", "x-acs-version": "2021-02-04", "x-acs-action": "CreateModel",
               "content-type": "application/json; charset=utf-8", **extra}
    text = SdkUtil.get_string_to_sign(SimpleNamespace(method=method, pathname=path, headers=headers, query={}))
    headers["authorization"] = f"acs admin:{SdkUtil.get_roasignature(text, 'admin-secret-for-tests')}"
    return headers


def test_an_roa_content_md5_is_checked_against_the_body(tmp_path: Path) -> None:
    app = signed_app(tmp_path)
    body = json.dumps({"ModelName": "md5"}).encode()
    digest = base64.b64encode(hashlib.md5(body).digest()).decode()
    headers = roa_sign("POST", "/api/v1/models", body, {"content-md5": digest})
    other = json.dumps({"ModelName": "m55"}).encode()  # what a man in the middle would send instead
    answer = app.handle(Request("POST", "/api/v1/models", other, headers=headers))
    assert (answer.status, answer.body["Code"]) == (400, "InvalidContentSha256") and "Content-MD5" in answer.body["Message"]
    assert app.registry.store.list("") == []
    answer = app.handle(Request("POST", "/api/v1/models", body, headers=headers))
    assert answer.status == 200, answer.body
    plain = roa_sign("POST", "/api/v1/models", other, {})  # as the SDKs sign: no Content-MD5, nothing to compare
    assert app.handle(Request("POST", "/api/v1/models", other, headers=plain)).status == 200


# --- raw requests, signed as the SDK signs them --------------------------------------------------

def sign(method: str, path: str, query: dict[str, str], body: bytes, key: str = "admin", secret: str = "admin-secret-for-tests",
         when: float | None = None, nonce: str | None = None, host: str = "127.0.0.1") -> dict[str, str]:
    headers = {"host": host, "x-acs-action": "Action", "x-acs-version": "2021-02-04", "accept": "application/json",
               "x-acs-date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when or time.time())),
               "x-acs-signature-nonce": nonce or uuid.uuid4().hex, "x-acs-content-sha256": hashlib.sha256(body).hexdigest()}
    if body:
        headers["content-type"] = "application/json; charset=utf-8"
    request = SimpleNamespace(method=method, pathname=path, headers=headers, query=query)
    headers["authorization"] = SdkUtil.get_authorization(request, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"],
                                                         key, secret)
    return headers


def send(srv: LocalServer, method: str, path: str, query: dict[str, str], body: bytes,
         headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    target = path + ("?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items()) if query else "")
    connection = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
    try:
        connection.request(method, target, body=body or None, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_replayed_request_is_refused_on_every_instance(server, tmp_path: Path) -> None:
    srv, app = server
    body = json.dumps({"ModelName": "once"}).encode()
    headers = sign("POST", "/api/v1/models", {}, body, host=f"127.0.0.1:{srv.server_address[1]}")
    assert send(srv, "POST", "/api/v1/models", {}, body, headers)[0] == 200
    status, answer = send(srv, "POST", "/api/v1/models", {}, body, headers)
    assert (status, answer["Code"]) == (400, "SignatureNonceUsed")
    other = signed_app(tmp_path)  # another instance over the same storage
    other.registry.store = app.registry.store
    other.verifier.store = app.registry.store  # type: ignore[union-attr]
    replay = other.handle(Request("POST", "/api/v1/models", body, headers=headers))
    assert replay.body["Code"] == "SignatureNonceUsed"
    assert len([k for k in objects(app) if k.startswith("models/")]) == 1


@pytest.mark.parametrize(("change", "code"), [
    ("old-date", "InvalidTimeStamp.Expired"),
    ("future-date", "InvalidTimeStamp.Expired"),
    ("tampered-body", "InvalidContentSha256"),
    ("no-authorization", "MissingAuthorization"),
    ("garbled-authorization", "InvalidAuthorization"),
])
def test_forged_requests_are_refused_with_the_right_code(server, change: str, code: str) -> None:
    srv, app = server
    body = json.dumps({"ModelName": "forged"}).encode()
    host = f"127.0.0.1:{srv.server_address[1]}"
    when = {"old-date": time.time() - 20 * 60, "future-date": time.time() + 20 * 60}.get(change)
    headers = sign("POST", "/api/v1/models", {}, body, when=when, host=host)
    if change == "tampered-body":
        body = json.dumps({"ModelName": "forget"}).encode()
    if change == "no-authorization":
        del headers["authorization"]
    if change == "garbled-authorization":
        headers["authorization"] = "Bearer x"
    status, answer = send(srv, "POST", "/api/v1/models", {}, body, headers)
    assert answer["Code"] == code, answer
    assert objects(app) == []


def test_on_fc_without_access_keys_every_request_is_refused(monkeypatch) -> None:
    app = build_app(Settings.from_env({"MODEL_STORE": "memory://", "FC_FUNCTION_NAME": "registry"}))
    answer = app.handle(Request("GET", "/api/v1/models"))
    assert (answer.status, answer.body["Code"]) == (403, "Forbidden.AccessKeysNotConfigured")


# --- any single-byte change to a signed request is refused ------------------------------------------

PARTS = ["method", "path", "query", "header", "body"]


def original(part: str) -> tuple[str, str, dict[str, str], bytes]:
    """A request the admin key may send: a search for the query, a create for everything else."""
    if part == "query":
        return "GET", "/api/v1/models", {"ModelName": "signed", "Order": "DESC"}, b""
    return "POST", "/api/v1/models", {}, json.dumps({"ModelName": "signed", "Domain": "nlp"}).encode()


@pytest.mark.parametrize("part", ["query", "body"])
def test_the_requests_the_property_changes_are_accepted_unchanged(tmp_path: Path, part: str) -> None:
    app = signed_app(tmp_path)
    method, path, query, body = original(part)
    answer = app.handle(Request(method, path, body, headers=sign(method, path, query, body), query=list(query.items())))
    assert answer.status == 200, answer.body


@FUZZ
@given(part=st.sampled_from(PARTS), position=st.integers(0, 10_000), byte=st.integers(1, 255))
def test_any_single_byte_change_to_a_signed_request_is_refused(tmp_path_factory, part: str, position: int, byte: int) -> None:
    app = signed_app(tmp_path_factory.mktemp("keys"))
    method, path, query, body = original(part)
    headers = sign(method, path, query, body)
    pairs = list(query.items())

    def flip(text: str) -> str:
        i = position % len(text)
        new = chr(byte) if chr(byte) != text[i] else chr((byte % 254) + 1)
        return text[:i] + new + text[i + 1:]

    if part == "method":
        method = flip(method)
    elif part == "path":
        path = flip(path)
    elif part == "query":
        pairs = [(name, flip(value)) for name, value in pairs]
    elif part == "header":
        name = sorted(h for h in headers if h != "authorization")[position % (len(headers) - 1)]
        headers = {**headers, name: flip(headers[name])}
    else:
        raw = bytearray(body)
        raw[position % len(raw)] ^= byte
        body = bytes(raw)  # its x-acs-content-sha256 no longer matches
    answer = app.handle(Request(method, path, body, headers=headers, query=pairs))
    assert answer.status >= 400 and answer.status != 500, answer.body
    assert [k for k in app.registry.store.list("") if not k.startswith("nonces/")] == []


def test_the_sweep_forgets_only_nonces_no_request_could_replay(tmp_path: Path) -> None:
    app = signed_app(tmp_path)
    assert app.verifier is not None
    now = time.time()
    def spend(headers: dict[str, str]) -> None:
        app.verifier.spend(app.verifier.verify("POST", "/api/v1/models", [], headers, b"{}", writes=True))  # type: ignore[union-attr]

    for age in (0, 14 * 60):  # requests still within the 15 minutes: their nonces must stay
        spend(sign("POST", "/api/v1/models", {}, b"{}", when=now - age))
    app.verifier.store.create(time.strftime("nonces/%Y%m%d%H/old", time.gmtime(now - 3 * 3600)), b"x")
    assert app.sweep()["Nonces"] == 1
    assert len(app.verifier.store.list("nonces/")) == 2
    fresh = sign("POST", "/api/v1/models", {}, b"{}", when=now - 14 * 60)
    spend(fresh)
    with pytest.raises(errors.NonceUsed):
        spend(fresh)


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Start the local server; its exit code (None while it runs) and what it printed first."""
    import os
    import subprocess
    import sys

    environment = {k: v for k, v in os.environ.items() if k not in ("ACCESS_KEYS", "FC_FUNCTION_NAME")}
    process = subprocess.Popen([sys.executable, "-m", "handler", "serve", "--port", "0", "--store", "memory://", *args],
                               cwd=Path(__file__).parent.parent, env={**environment, **(env or {})},
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline()]
        if "warning" in lines[0]:
            lines.append(process.stderr.readline())
        return None if "listening" in lines[-1] else process.wait(timeout=10), "".join(lines)
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()  # type: ignore[union-attr]


def test_the_local_server_without_keys_serves_loopback_only_and_says_so(tmp_path: Path) -> None:
    code, printed = _serve(tmp_path)
    assert code is None and "no signatures checked: loopback only" in printed
    code, printed = _serve(tmp_path, "--host", "0.0.0.0")
    assert code == 2 and "refusing to listen on 0.0.0.0 without access keys" in printed
    code, printed = _serve(tmp_path, "--host", "0.0.0.0", "--insecure")
    assert code is None and printed.startswith("warning:") and "open to anyone" in printed


def test_the_local_server_with_keys_listens_anywhere_and_checks_signatures(tmp_path: Path) -> None:
    document = tmp_path / "access-keys.json"
    document.write_text(json.dumps(KEYS))
    code, printed = _serve(tmp_path, "--host", "0.0.0.0", env={"ACCESS_KEYS": f"file://{document}"})
    assert code is None and "signed requests only (ACCESS_KEYS)" in printed


def test_a_key_rotated_or_revoked_in_the_document_counts_within_a_minute(monkeypatch) -> None:
    from handler.stores.base import Unavailable

    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    document: list[Any] = [json.dumps(KEYS).encode()]

    def load() -> bytes:
        if isinstance(document[0], Exception):
            raise document[0]
        return document[0]

    ring = auth.KeyRing(load)

    def read_later(key_id: str) -> auth.AccessKey | None:
        """What a request after the reload its predecessor started sees."""
        with contextlib.suppress(errors.KeysNotConfigured):
            ring.get(key_id)  # answered with the keys held, and starts a read in the background
        ring.settle()
        return ring.get(key_id)

    assert ring.get("admin") is not None
    document[0] = json.dumps({"AccessKeys": [{"AccessKeyId": "new", "AccessKeySecret": "a-new-secret-long-enough"}]}).encode()
    clock[0] += 30
    assert ring.get("admin") is not None and ring.get("new") is None  # cached for up to a minute
    ring.settle()
    clock[0] += 31
    assert read_later("admin") is None and ring.get("new") is not None  # rotated
    document[0] = Unavailable("storage unreachable")
    clock[0] += 61
    assert read_later("new") is not None  # a storage hiccup keeps the keys it had, and does not open anything
    document[0] = errors.KeysNotConfigured("the access keys document does not exist yet")
    clock[0] += 6  # after a hiccup the document is read again within seconds
    with pytest.raises(errors.KeysNotConfigured):
        read_later("new")  # the document removed: everything is refused
    document[0] = json.dumps({"AccessKeys": [{"AccessKeyId": "blank", "AccessKeySecret": ""}]}).encode()
    clock[0] += 6  # an unusable document is read again within seconds, not a minute
    with pytest.raises(errors.KeysNotConfigured):
        read_later("blank")  # a key anyone could sign for is never accepted
    document[0] = json.dumps(KEYS).encode()
    clock[0] += 6
    assert read_later("admin") is not None  # fixed: accepted again seconds later
    key = auth.parse_keys(json.dumps({"AccessKeys": [{"AccessKeyId": "k", "AccessKeySecret": "s3cr3t-s3cr3t-s3cr3t"}]}).encode())["k"]
    assert "s3cr3t" not in repr(key) and "s3cr3t" not in str(key)


def test_a_slow_keys_read_holds_up_no_signed_request(monkeypatch, caplog) -> None:
    """Reloading reads in the background: requests are answered with the keys held meanwhile."""
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    release = threading.Event()
    reads = [0]
    document = [json.dumps(KEYS).encode()]

    def load() -> bytes:
        reads[0] += 1
        if reads[0] > 1:
            release.wait(30)  # a slow storage read
        return document[0]

    ring = auth.KeyRing(load)
    assert ring.get("admin") is not None  # the first read is waited for: nothing to answer with before it
    document[0] = json.dumps({"AccessKeys": [{"AccessKeyId": "new", "AccessKeySecret": "a-new-secret-long-enough"}]}).encode()
    clock[0] += 61
    answers: list[auth.AccessKey | None] = []
    readers = [threading.Thread(target=lambda: answers.append(ring.get("admin"))) for _ in range(10)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(5)
    assert len(answers) == 10 and all(answer is not None for answer in answers)  # none waited for the read
    assert reads[0] == 2  # one read in the background, not one per request
    release.set()
    ring.settle(5)
    assert ring.get("admin") is None and ring.get("new") is not None
    document[0] = b"{not json"
    clock[0] += 61
    ring.get("new")
    ring.settle(5)
    for _ in range(3):  # unusable: read again every few seconds, logged once
        clock[0] += auth.RETRY_UNUSABLE
        with pytest.raises(errors.KeysNotConfigured):
            ring.get("new")
        ring.settle(5)
    assert reads[0] == 6 and caplog.text.count("access keys document is unusable") == 1


def test_events_need_no_signature_and_are_attributed_to_the_fc_account(tmp_path: Path) -> None:
    from tests.conftest import FakeContext

    app = signed_app(tmp_path)
    fc.set_app(app)
    try:
        answer = json.loads(fc.handler(json.dumps({"ModelName": "from-an-event"}).encode(), FakeContext("1234567890")))
    finally:
        fc.set_app(None)
    (entry,) = [json.loads(app.registry.store.get(k)) for k in app.registry.store.list("catalog/default/log/")]
    assert answer["ModelId"] and [c["By"] for c in entry["Changes"]] == ["fc-account:1234567890"]


def resign(method: str, headers: dict[str, str], signed: list[str], path: str = "/api/v1/models") -> dict[str, str]:
    """The headers signed again as ACS3 over exactly `signed` (a client other than the SDK may choose them)."""
    text = auth.acs3_string_to_sign(method, path, [], headers, signed, headers["x-acs-content-sha256"])
    signature = hmac.new(b"admin-secret-for-tests", text.encode(), hashlib.sha256).hexdigest()
    return {**headers, "authorization": f"ACS3-HMAC-SHA256 Credential=admin,SignedHeaders={';'.join(signed)},Signature={signature}"}


def test_a_changing_request_must_sign_its_nonce(tmp_path: Path) -> None:
    """Else a captured request could be replayed with a fresh, unsigned nonce."""
    app = signed_app(tmp_path)
    body = json.dumps({"ModelName": "unsigned-nonce"}).encode()
    headers = resign("POST", sign("POST", "/api/v1/models", {}, body), ["x-acs-content-sha256", "x-acs-date"])
    answer = app.handle(Request("POST", "/api/v1/models", body, headers=headers))
    assert (answer.status, answer.body["Code"]) == (400, "InvalidAuthorization")
    assert "x-acs-signature-nonce" in answer.body["Message"] and app.registry.store.list("") == []
    read = app.handle(Request("GET", "/api/v1/models", headers=headers))
    assert read.body["Code"] == "SignatureDoesNotMatch"  # a read needs no nonce, but this one was signed for a POST


@pytest.mark.parametrize("item", [
    {"Workspaces": "team-*"},  # a string, not a list: its characters would include "*"
    {"Actions": "Get*"},
    {"Actions": [1]},
    {"RequireAcs3": "false"},
    {"AccessKeySecret": ""},
    {"AccessKeySecret": "…"},  # the README's placeholder, pasted as it is
    {"AccessKeyId": 7},
])
def test_an_access_keys_document_of_the_wrong_shape_refuses_everything(tmp_path: Path, item: dict[str, Any]) -> None:
    app = signed_app(tmp_path, {"AccessKeys": [{"AccessKeyId": "admin", "AccessKeySecret": "admin-secret-for-tests", **item}]})
    answer = app.handle(Request("GET", "/api/v1/models", headers=sign("GET", "/api/v1/models", {}, b"")))
    assert (answer.status, answer.body["Code"]) == (403, "Forbidden.AccessKeysNotConfigured")


def test_a_key_listed_twice_refuses_everything_and_says_why(tmp_path: Path, caplog) -> None:
    twice = {"AccessKeyId": "admin", "AccessKeySecret": "another-secret-for-tests", "Workspaces": ["*"], "Actions": ["*"]}
    app = signed_app(tmp_path, {"AccessKeys": [*KEYS["AccessKeys"], twice]})
    answer = app.handle(Request("GET", "/api/v1/models", headers=sign("GET", "/api/v1/models", {}, b"")))
    assert answer.body["Code"] == "Forbidden.AccessKeysNotConfigured"
    assert "access key 'admin' appears twice" in caplog.text and "secret-for-tests" not in caplog.text


def test_a_deeply_nested_keys_document_refuses_everything(tmp_path: Path) -> None:
    document = tmp_path / "access-keys.json"
    document.write_text("[" * 100_000 + "]" * 100_000)
    app = build_app(Settings.from_env({"MODEL_STORE": "memory://", "ACCESS_KEYS": f"file://{document}"}))
    answer = app.handle(Request("GET", "/api/v1/models", headers=sign("GET", "/api/v1/models", {}, b"")))
    assert answer.body["Code"] == "Forbidden.AccessKeysNotConfigured"


@pytest.mark.parametrize("date", ["{now}+08:00", "{now}Zjunk", "{now}".replace("-", "/"), "{now}"])
def test_a_request_time_in_another_form_than_the_sdks_is_refused(tmp_path: Path, date: str) -> None:
    app = signed_app(tmp_path)
    headers = sign("GET", "/api/v1/models", {}, b"")
    headers["x-acs-date"] = date.format(now=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()))
    headers = resign("GET", headers, sorted(h for h in headers if h.startswith("x-acs-") or h == "host"))
    assert app.handle(Request("GET", "/api/v1/models", headers=headers)).body["Code"] == "InvalidAuthorization"


def test_the_access_log_names_the_key_a_refused_request_claimed_and_never_its_secret(server, caplog) -> None:
    srv, _ = server
    body = json.dumps({"ModelName": "m"}).encode()
    caplog.set_level("INFO")
    for key, secret in (("admin", "a-guessed-secret-of-length"), ("gone-key\"}{\"forged\":1", "whatever-secret-1234")):
        status, _ = send(srv, "POST", "/api/v1/models", {}, body, sign("POST", "/api/v1/models", {}, body, key=key, secret=secret))
        assert status in (400, 401, 404)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("access")]
    assert [line.get("AccessKeyId") for line in lines[-2:]] == ["admin", "gone-key\"}{\"forged\":1"]  # a JSON string, not a field
    assert all("\n" not in r.getMessage() for r in caplog.records if r.name.endswith("access"))
    host, port = srv.server_address[:2]
    basic = "Basic " + base64.b64encode(b"reader:a-guessed-basic-secret").decode()  # MLflow's clients
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/api/2.0/mlflow/registered-models/get?name=m", headers={"authorization": basic})
    assert connection.getresponse().status == 401
    connection.close()
    assert json.loads([r for r in caplog.records if r.name.endswith("access")][-1].getMessage())["AccessKeyId"] == "reader"
    assert not [secret for secret in ("a-guessed-secret-of-length", "whatever-secret-1234", "a-guessed-basic-secret")
                if secret in caplog.text]
