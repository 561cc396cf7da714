"""No leaks: answers and log lines never carry credentials, STS tokens, tracebacks, file paths or the storage endpoint,
not even when storage fails. Secrets are recognisable strings; every answer, exception message and log record
(root at DEBUG, so urllib3 and oss2 records are captured too) is searched for them."""
from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from handler.api.app import App
from handler.api.routing import MODELS_PATH
from handler.entry import events, fc
from handler.registry import records
from handler.registry.models import Registry
from handler.stores.credentials import Credentials, CredentialSource
from handler.stores.file import FileStore
from handler.stores.memory import MemoryStore
from handler.stores.oss import OssStore
from testing.fake_oss import FakeOss, commit_then_drop, drop, error
from tests.conftest import FakeContext, FakeCredentials

STATIC = Credentials("LTAI-SECRET-KEYID-123", "SECRET-VALUE-456", "STS-TOKEN-789")
CONTEXT = FakeCredentials("STS.CTX-KEYID-ABC", "CTX-SECRET-DEF", "CTX-TOKEN-GHI")
SECRETS = (*STATIC, CONTEXT.access_key_id, CONTEXT.access_key_secret, CONTEXT.security_token)
REPO = str(Path(__file__).resolve().parent.parent)
BODY = {"ModelName": "leak-test", "Domain": "nlp"}


@dataclass
class Outcome:
    text: str  # what the invoker receives, or the message of what was raised
    raised: BaseException | None = None


def through_gateway(body: dict[str, Any]) -> Outcome:
    event = {"path": MODELS_PATH, "httpMethod": "POST", "headers": {"Content-Type": "application/json"},
             "body": json.dumps(body), "isBase64Encoded": False}
    return _invoke(json.dumps(event).encode())


def through_direct(body: dict[str, Any]) -> Outcome:
    return _invoke(json.dumps(body).encode())


def through_oss_trigger(body: dict[str, Any], bucket: str = "pai-model-registry-demo", prefix: str = "") -> Outcome:
    record = {"eventName": "ObjectCreated:PutObject", "eventSource": "acs:oss",
              "oss": {"bucket": {"name": bucket}, "object": {"key": prefix + "registrations/up.json"}}}
    return _invoke(json.dumps({"events": [record]}).encode())


def _invoke(event: bytes) -> Outcome:
    try:
        return Outcome(fc.handler(event, FakeContext(credentials=CONTEXT)))
    except events.RetryLater as e:
        return Outcome(str(e), e)


def assert_clean(outcome: Outcome, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
                 internals: tuple[str, ...] = ()) -> None:
    """Nothing secret or internal in the answer, any raised exception (with its chain) or any log line."""
    captured = capsys.readouterr()
    logs = "\n".join(r.getMessage() + (r.exc_text or "") + ("".join(traceback.format_exception(*r.exc_info)) if r.exc_info else "")
                     for r in caplog.records)
    haystacks = {"answer": outcome.text, "logs": logs, "stdout": captured.out, "stderr": captured.err}
    for where, text in haystacks.items():
        for needle in (*SECRETS, "Traceback", 'File "', REPO, "/work/", "/tmp/", "site-packages"):
            assert needle not in text, f"{needle!r} in {where}: {text[:2000]}"
    internal_logs = "\n".join(r.getMessage() for r in caplog.records)
    for needle in internals:
        assert needle not in outcome.text, f"{needle!r} in the answer"
        assert needle not in internal_logs, f"{needle!r} in the logs: {internal_logs[:2000]}"
    if outcome.raised is not None:  # FC prints what a handler raises, with its whole chain
        assert outcome.raised.__cause__ is None and outcome.raised.__context__ is None
        printed = "".join(traceback.format_exception(outcome.raised))
        assert not [s for s in SECRETS if s in printed]


def answer_body(outcome: Outcome) -> dict[str, Any]:
    """The error or success object inside whatever shape the path answers with."""
    value = json.loads(outcome.text)
    if isinstance(value, list):
        (value,) = value
    return json.loads(value["body"]) if "statusCode" in value else value


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # the root logger: urllib3, oss2, requests and ours all propagate here
    assert logging.getLogger("oss2").getEffectiveLevel() >= logging.WARNING, "oss2 logs signed headers below WARNING"
    return caplog


@pytest.fixture
def fc_credentials(monkeypatch: pytest.MonkeyPatch) -> CredentialSource:
    """The function's credential source, fresh, without environment variables: only FC contexts feed it."""
    source = CredentialSource(env={})
    monkeypatch.setattr(fc, "credentials", source)
    return source


def oss_store(oss: FakeOss, credentials: Callable[[], Credentials]) -> OssStore:
    return OssStore(oss.bucket, "registry/", endpoint=oss.endpoint, credentials=credentials,
                    attempts=3, connect_timeout=0.5, read_timeout=1.0, deadline=3.0)


FAULTS: dict[str, tuple[Callable[[FakeOss, App], None], int]] = {
    "healthy": (lambda oss, app: None, 200),
    "put-500": (lambda oss, app: oss.inject("PUT", action=error(500, "InternalError"), times=100), 503),
    "put-dropped": (lambda oss, app: oss.inject("PUT", action=drop(), times=100), 503),
    "access-denied": (lambda oss, app: oss.inject("PUT", action=error(403, "AccessDenied"), times=100), 503),
    "token-expired": (lambda oss, app: oss.inject("PUT", action=error(403, "SecurityTokenExpired"), times=100), 503),
    "unexpected-reply": (lambda oss, app: oss.inject("PUT", action=error(400, "InvalidArgument"), times=100), 500),
    "reply-lost": (lambda oss, app: oss.inject("PUT", action=commit_then_drop(), times=1), 200),
    "conflict-read-fails": (lambda oss, app: (
        Registry(app.registry.store).create(records.normalized_request({**BODY, "Domain": "cv"}, "default")),  # elsewhere
        oss.inject("GET", action=error(500, "InternalError"), times=100)), 503),
}
PATHS = ["gateway", "direct", "oss-trigger"]


@pytest.mark.parametrize("creds", ["static", "fc-context"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_oss_failures_leak_nothing(oss: FakeOss, use_app, fc_credentials, debug_logs, capsys, fault: str, path: str,
                                   creds: str) -> None:
    store = oss_store(oss, (lambda: STATIC) if creds == "static" else fc_credentials)
    if creds == "fc-context":
        fc_credentials.offer(FakeContext(credentials=CONTEXT))
    app = use_app(store)
    oss.seed("registry/registrations/up.json", json.dumps(BODY).encode())
    inject, status = FAULTS[fault]
    inject(oss, app)

    outcome = {"gateway": lambda: through_gateway(BODY), "direct": lambda: through_direct(BODY),
               "oss-trigger": lambda: through_oss_trigger(BODY, oss.bucket, "registry/")}[path]()

    # The secrets were really in play: every request to the bucket was signed with them.
    used = STATIC if creds == "static" else Credentials(CONTEXT.access_key_id, CONTEXT.access_key_secret, CONTEXT.security_token)
    assert oss.log and all(r.headers.get("x-oss-security-token") == used.security_token for r in oss.log)
    assert all(used.access_key_id in r.headers.get("authorization", "") for r in oss.log)
    if status == 200:
        assert outcome.raised is None and "ModelId" in answer_body(outcome)
    elif path == "gateway":
        body = answer_body(outcome)
        assert set(body) == {"RequestId", "Code", "Message"}
        assert (body["Code"], body["Message"]) == ({503: "ServiceUnavailable", 500: "InternalError"}[status], {
            503: "model storage is unavailable; retry later", 500: "model storage answered unexpectedly"}[status])
    else:
        assert isinstance(outcome.raised, events.RetryLater)  # FC delivers the event again
    host_port = oss.endpoint.removeprefix("http://")
    assert_clean(outcome, debug_logs, capsys, internals=(host_port, oss.endpoint, oss.bucket))


def test_the_oss_endpoint_is_not_in_debug_logs(oss: FakeOss, use_app, debug_logs, capsys) -> None:
    use_app(oss_store(oss, lambda: STATIC))
    through_gateway(BODY)
    assert oss.endpoint.removeprefix("http://") not in debug_logs.text


class ExplodingStore(MemoryStore):
    """A store with a bug: its exception message holds a path and every secret."""

    def __init__(self, where: Path, method: str) -> None:
        super().__init__()
        self.message = f"cannot open {where}/models/x.json as {STATIC.access_key_id}:{STATIC.access_key_secret} ({STATIC.security_token})"
        self.method = method

    def _explode(self) -> None:
        raise RuntimeError(self.message)

    def create(self, key: str, data: bytes) -> None:
        if self.method == "create":
            self._explode()
        super().create(key, data)

    def get(self, key: str) -> bytes:
        if self.method == "get" and key.startswith("registrations/"):
            self._explode()
        return super().get(key)


@pytest.mark.parametrize("path", ["gateway", "direct"])
def test_unexpected_store_exception_is_a_bare_500(use_app, debug_logs, capsys, tmp_path: Path, path: str) -> None:
    use_app(ExplodingStore(tmp_path, "create"))
    outcome = through_gateway(BODY) if path == "gateway" else through_direct(BODY)
    if path == "gateway":
        body = answer_body(outcome)
        assert body["Code"] == "InternalError" and set(body) == {"RequestId", "Code", "Message"}
    else:
        assert isinstance(outcome.raised, events.RetryLater)
    assert_clean(outcome, debug_logs, capsys, internals=(str(tmp_path),))
    # The operator still learns what failed, and where (module:line, no file system path).
    assert any(r.levelno == logging.ERROR and re.fullmatch(r"RequestId=[0-9A-F-]{36} unexpected RuntimeError in [\w.]+:\d+", r.getMessage())
               for r in debug_logs.records)


def test_unexpected_store_exception_in_the_oss_trigger_leaks_nothing(use_app, debug_logs, capsys, tmp_path: Path) -> None:
    store = ExplodingStore(tmp_path, "get")
    use_app(store)
    outcome = through_oss_trigger(BODY)
    assert isinstance(outcome.raised, events.RetryLater)  # a bug may be transient: FC delivers again
    assert_clean(outcome, debug_logs, capsys, internals=(str(tmp_path),))


def test_file_store_failure_is_503_without_its_path(use_app, debug_logs, capsys, tmp_path: Path) -> None:
    not_a_directory = tmp_path / "store-is-a-file"
    not_a_directory.write_text("")
    use_app(FileStore(not_a_directory))
    outcome = through_gateway(BODY)
    assert answer_body(outcome)["Code"] == "ServiceUnavailable"
    assert_clean(outcome, debug_logs, capsys, internals=(str(tmp_path), "store-is-a-file", "Errno"))


def test_missing_credentials_are_503_and_nothing_is_sent(oss: FakeOss, use_app, fc_credentials, debug_logs, capsys) -> None:
    use_app(oss_store(oss, fc_credentials))
    event = {"path": MODELS_PATH, "httpMethod": "POST", "headers": {}, "body": json.dumps(BODY)}
    outcome = Outcome(fc.handler(json.dumps(event).encode(), FakeContext(credentials=FakeCredentials("", "", ""))))
    body = answer_body(outcome)
    assert body["Code"] == "ServiceUnavailable" and body["Message"] == "model storage is unavailable; retry later"
    assert oss.log == []  # nothing goes out unsigned
    assert_clean(outcome, debug_logs, capsys)
    assert "credentials" not in outcome.text  # the operator's business: the log says which, the answer does not
    assert any(r.levelno == logging.ERROR and "no OSS credentials" in r.getMessage() for r in debug_logs.records)


def test_access_log_line_names_the_request_and_nothing_internal(oss: FakeOss, use_app, debug_logs, capsys) -> None:
    use_app(oss_store(oss, lambda: STATIC))
    oss.inject("PUT", action=error(403, "AccessDenied"), times=100)
    outcome = through_gateway(BODY)
    access = [json.loads(r.getMessage()) for r in debug_logs.records if r.name == "handler.access"]
    assert access == [{"RequestId": answer_body(outcome)["RequestId"], "Operation": "CreateModel", "Status": 503,
                       "DurationMs": access[0]["DurationMs"]}]
    assert_clean(outcome, debug_logs, capsys, internals=(oss.endpoint.removeprefix("http://"), oss.bucket))
