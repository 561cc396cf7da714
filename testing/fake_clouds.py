"""Loopback EventBridge (PutEvents) and MNS (PublishMessage to a topic) for tests and the bench: each checks what is
sent (the path, the headers, the body, Content-MD5, the date, the security token, the signature recomputed from the
request as the official SDKs compute it) and refuses what is wrong the way the service does; it can fail on demand."""
from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

KEY_ID = "LTAI-fake-key-id"
KEY_SECRET = "fake-key-secret-0123456789"
TOKEN = "fake-sts-token"
CLOCK_SKEW = 900.0  # seconds a request's Date may differ from the server's clock


@dataclass
class Seen:
    """One request as it arrived, and what the fake answered."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int
    problem: str = ""  # why it was refused ("" when taken)


@dataclass
class _State:
    requests: list[Seen] = field(default_factory=list)
    fail_next: int = 0  # answer this many well-formed requests with 500 (nothing taken)
    entry_fail_next: int = 0  # EventBridge: answer 200 with the entry failed (FailedEntryCount 1)


def _canonical(method: str, headers: dict[str, str], prefix: str, resource: str) -> str:
    own = "".join(f"{k}:{headers[k]}\n" for k in sorted(headers) if k.startswith(prefix))
    return (f"{method}\n{headers.get('content-md5', '')}\n{headers.get('content-type', '')}\n"
            f"{headers.get('date', '')}\n{own}{resource}")


def _sign(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()).decode()


class _Fake:
    """An HTTP server on 127.0.0.1 taking POSTs; subclasses check and answer them."""

    service = ""

    def __init__(self, key_id: str = KEY_ID, secret: str = KEY_SECRET, token: str | None = None) -> None:
        self.key_id, self.secret, self.token = key_id, secret, token
        self.state = _State()
        self.lock = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer, problem = fake.handle(self.path, headers, body)
                with fake.lock:
                    fake.state.requests.append(Seen(self.path, headers, body, status, problem))
                    fake.lock.notify_all()
                self.send_response(status)
                self.send_header("Content-Type", fake.answer_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    answer_type = "application/json"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Seen]:
        with self.lock:
            return list(self.state.requests)

    def refusals(self) -> list[str]:
        return [seen.problem for seen in self.requests if seen.problem]

    def fail(self, times: int = 1) -> None:
        with self.lock:
            self.state.fail_next += times

    def _failing(self) -> bool:
        with self.lock:
            if self.state.fail_next > 0:
                self.state.fail_next -= 1
                return True
            return False

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        raise NotImplementedError

    def check_common(self, headers: dict[str, str], body: bytes) -> str:
        """What is wrong with the date, the body's MD5 or the token ("" when nothing)."""
        date = email.utils.parsedate_to_datetime(headers["date"]) if headers.get("date") else None
        if date is None or abs(date.timestamp() - time.time()) > CLOCK_SKEW:
            return "the Date header is missing or too far from now"
        return ""

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> _Fake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeEventBridge(_Fake):
    """EventBridge's PutEvents: POST /openapi/putEvents, a JSON array of CloudEvents each naming a bus that exists,
    `authorization: acs:<id>:<signature>` over the x-acs-* headers. `events[bus]` holds the events each bus took."""

    service = "EventBridge"

    def __init__(self, buses: tuple[str, ...] = ("model-registry",), **keys: Any) -> None:
        self.buses = set(buses)
        self.events: dict[str, list[dict[str, Any]]] = {bus: [] for bus in buses}
        super().__init__(**keys)

    def fail_entries(self, times: int = 1) -> None:
        with self.lock:
            self.state.entry_fail_next += times

    def taken(self) -> list[dict[str, Any]]:
        with self.lock:
            return [event for events in self.events.values() for event in events]

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        if path != "/openapi/putEvents":
            return self._error(404, "ResourceNotFound", f"no operation at {path}")
        problem = self.check_common(headers, body) or self._check_auth(path, headers, body)
        if problem:
            return self._error(403, "SignatureDoesNotMatch" if "signature" in problem else "InvalidRequest", problem)
        if headers.get("x-eventbridge-version") != "2020-04-01":
            return self._error(400, "InvalidVersion", "x-eventbridge-version must be 2020-04-01")
        if not headers.get("content-type", "").startswith("application/cloudevents-batch+json"):
            return self._error(400, "InvalidContentType", "PutEvents takes application/cloudevents-batch+json")
        try:
            events = json.loads(body)
        except ValueError:
            return self._error(400, "InvalidJson", "the body is not JSON")
        if not isinstance(events, list) or not 1 <= len(events) <= 16:
            return self._error(400, "InvalidBatch", "the body is a JSON array of 1 to 16 events")
        for event in events:
            missing = [f for f in ("specversion", "id", "source", "type", "aliyuneventbusname")
                       if not isinstance(event, dict) or not isinstance(event.get(f), str) or not event[f]]
            if missing:
                return self._error(400, "InvalidArgument", f"an event has no {missing[0]}")
            if event["aliyuneventbusname"] not in self.buses:
                return self._error(404, "EventBusNotExist", f"no event bus {event['aliyuneventbusname']}")
        if self._failing():
            return self._error(500, "InternalError", "failed on demand")
        with self.lock:
            if self.state.entry_fail_next > 0:
                self.state.entry_fail_next -= 1
                entries = [{"EventId": e["id"], "ErrorCode": "EventBusBusy", "ErrorMessage": "failed on demand"}
                           for e in events]
                return 200, json.dumps({"RequestId": uuid.uuid4().hex, "FailedEntryCount": len(events),
                                        "EntryList": entries}).encode(), ""
            for event in events:
                self.events[event["aliyuneventbusname"]].append(event)
            self.lock.notify_all()
        entries = [{"EventId": e["id"], "TraceId": uuid.uuid4().hex} for e in events]
        return 200, json.dumps({"RequestId": uuid.uuid4().hex, "FailedEntryCount": 0, "EntryList": entries}).encode(), ""

    def _check_auth(self, path: str, headers: dict[str, str], body: bytes) -> str:
        md5 = headers.get("content-md5")
        if md5 is not None and md5 != base64.b64encode(hashlib.md5(body).digest()).decode():
            return "Content-MD5 is not the body's"
        if headers.get("x-acs-signature-method") != "HMAC-SHA1" or headers.get("x-acs-signature-version") != "1.0":
            return "x-acs-signature-method HMAC-SHA1 and x-acs-signature-version 1.0 are required"
        if not headers.get("x-acs-signature-nonce"):
            return "x-acs-signature-nonce is required"
        if self.token is not None and (headers.get("x-acs-security-token") != self.token
                                       or headers.get("x-acs-accesskey-id") != self.key_id):
            return "the security token is missing or wrong"
        scheme, _, rest = headers.get("authorization", "").partition(":")
        key_id, _, signature = rest.partition(":")
        if scheme != "acs" or key_id != self.key_id:
            return "authorization is not acs:<the access key id>:<signature>"
        expected = _sign(self.secret, _canonical("POST", headers, "x-acs-", path))
        if not hmac.compare_digest(signature, expected):
            return "the signature does not match"
        return ""

    def _error(self, status: int, code: str, message: str) -> tuple[int, bytes, str]:
        answer = {"code": code, "message": message, "requestId": uuid.uuid4().hex}
        return status, json.dumps(answer).encode(), f"{code}: {message}"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        with self.lock:
            self.lock.wait_for(lambda: sum(len(v) for v in self.events.values()) >= count, timeout)
        return self.taken()


class FakeMns(_Fake):
    """MNS's PublishMessage: POST /topics/<name>/messages, an XML <Message> with its <MessageBody>,
    `Authorization: MNS <id>:<signature>` over the x-mns-* headers, the token in `security-token`. Answers 201 with
    the message's id and the MD5 of its body. `messages[topic]` holds the bodies each topic took."""

    service = "MNS"
    answer_type = "text/xml;charset=utf-8"

    def __init__(self, topics: tuple[str, ...] = ("model-registry",), **keys: Any) -> None:
        self.messages: dict[str, list[str]] = {topic: [] for topic in topics}
        super().__init__(**keys)

    def taken(self) -> list[str]:
        with self.lock:
            return [body for bodies in self.messages.values() for body in bodies]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[str]:
        with self.lock:
            self.lock.wait_for(lambda: sum(len(v) for v in self.messages.values()) >= count, timeout)
        return self.taken()

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "topics" or parts[3] != "messages":
            return self._error(404, "InvalidPath", f"no operation at {path}")
        problem = self.check_common(headers, body) or self._check_auth(path, headers, body)
        if problem:
            return self._error(403, "SignatureDoesNotMatch" if "signature" in problem else "AccessDenied", problem)
        if headers.get("x-mns-version") != "2015-06-06":
            return self._error(400, "InvalidArgument", "x-mns-version must be 2015-06-06")
        if parts[2] not in self.messages:
            return self._error(404, "TopicNotExist", f"no topic {parts[2]}")
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            return self._error(400, "InvalidArgument", "the body is not XML")
        found = root.find("{http://mns.aliyuncs.com/doc/v1/}MessageBody")
        if root.tag != "{http://mns.aliyuncs.com/doc/v1/}Message" or found is None or not found.text:
            return self._error(400, "InvalidArgument", "the body is no <Message> with a <MessageBody>")
        if self._failing():
            return self._error(500, "InternalError", "failed on demand")
        text = found.text
        with self.lock:
            self.messages[parts[2]].append(text)
            self.lock.notify_all()
        answer = (f'<?xml version="1.0" encoding="UTF-8"?><Message xmlns="http://mns.aliyuncs.com/doc/v1/">'
                  f"<MessageId>{uuid.uuid4().hex.upper()}</MessageId>"
                  f"<MessageBodyMD5>{hashlib.md5(text.encode()).hexdigest().upper()}</MessageBodyMD5></Message>")
        return 201, answer.encode(), ""

    def _check_auth(self, path: str, headers: dict[str, str], body: bytes) -> str:
        md5 = headers.get("content-md5")
        if md5 is not None and md5 != base64.b64encode(hashlib.md5(body).hexdigest().encode()).decode():
            return "Content-MD5 is not the body's"
        if self.token is not None and headers.get("security-token") != self.token:
            return "the security token is missing or wrong"
        scheme, _, rest = headers.get("authorization", "").partition(" ")
        key_id, _, signature = rest.partition(":")
        if scheme != "MNS" or key_id != self.key_id:
            return "Authorization is not MNS <the access key id>:<signature>"
        expected = _sign(self.secret, _canonical("POST", headers, "x-mns-", path))
        if not hmac.compare_digest(signature, expected):
            return "the signature does not match"
        return ""

    def _error(self, status: int, code: str, message: str) -> tuple[int, bytes, str]:
        answer = (f'<?xml version="1.0" encoding="UTF-8"?><Error xmlns="http://mns.aliyuncs.com/doc/v1/">'
                  f"<Code>{code}</Code><Message>{escape(message)}</Message><RequestId>{uuid.uuid4().hex}</RequestId>"
                  f"<HostId>{self.endpoint}</HostId></Error>")
        return status, answer.encode(), f"{code}: {message}"
