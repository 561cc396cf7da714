"""Cloud targets: EventBridge PutEvents to a custom bus and MNS topic publishing, over their HTTP APIs, each request
signed as the official SDK signs it (HMAC-SHA1 of the method, Content-MD5, Content-Type, Date, the service's own
headers and the path) with the function's own credentials, sent through the webhook's checked, pinned Endpoint."""
from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from ..rules.jsontext import compact
from ..stores.base import StoreError
from ..stores.credentials import Credentials, CredentialSource
from .rules import CLOUD_DOMAIN, Rule
from .webhook import TIMEOUT, DeliveryFailed, Endpoint, special

PUT_EVENTS = "/openapi/putEvents"
EVENTBRIDGE_VERSION = "2020-04-01"
MNS_VERSION = "2015-06-06"
MNS_NAMESPACE = "http://mns.aliyuncs.com/doc/v1/"
_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def string_to_sign(method: str, headers: Mapping[str, str], prefix: str, resource: str) -> str:
    """`METHOD\\nContent-MD5\\nContent-Type\\nDate\\n`, then each header named `prefix*` as `name:value\\n` in the
    order of their (lower-case) names, then the resource: EventBridge's (prefix `x-acs-`) and MNS's (`x-mns-`)."""
    lower = {name.lower(): value for name, value in headers.items()}
    own = "".join(f"{name}:{lower[name]}\n" for name in sorted(lower) if name.startswith(prefix))
    return (f"{method}\n{lower.get('content-md5', '')}\n{lower.get('content-type', '')}\n{lower.get('date', '')}\n"
            f"{own}{resource}")


def hmac_sha1(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()).decode()


class CloudTarget(Endpoint):
    """A target in Alibaba Cloud, reached with the function's credentials: its host is under aliyuncs.com (checked
    like a webhook's), or a host of the rule's private network (every address it resolves to private)."""

    def __init__(self, rule: Rule, timeout: float, credentials: Callable[[], Credentials]) -> None:
        super().__init__(rule, rule.target["Endpoint"], timeout)
        self.credentials = credentials

    def allowed(self, addresses: list[str]) -> None:
        if self.host.lower().endswith(CLOUD_DOMAIN):
            super().allowed(addresses)
        elif not self.rule.allow_private or not all(special(a) for a in addresses):
            raise DeliveryFailed(f"{self.where()} is outside {CLOUD_DOMAIN[1:]} and not on a private network: rule "
                                 f"{self.rule.name}'s target is not sent the function's credentials")

    def send(self, body: bytes) -> None:
        raise NotImplementedError

    def _keys(self) -> Credentials:
        try:
            return self.credentials()
        except StoreError:
            raise DeliveryFailed("no credentials to sign with (the FC context, ALIBABA_CLOUD_ACCESS_KEY_* or the "
                                 "default chain)") from None

    def _refused(self, service: str, status: int, code: str | None) -> DeliveryFailed:
        named = f" {code}" if code and _CODE.fullmatch(code) else ""
        return DeliveryFailed(f"{service} at {self.where()} answered {status}{named}")


class EventBridge(CloudTarget):
    """PutEvents of one event (a batch of one, in commit order) to the rule's custom bus."""

    def send(self, body: bytes) -> None:
        event = json.loads(body)
        event["aliyuneventbusname"] = self.rule.target["EventBusName"]
        if "Source" in self.rule.target:
            event["source"] = self.rule.target["Source"]
        payload = compact([event]).encode()
        keys = self._keys()
        headers = {"accept": "application/json", "content-md5": base64.b64encode(hashlib.md5(payload).digest()).decode(),
                   "content-type": "application/cloudevents-batch+json; charset=utf-8",
                   "date": email.utils.formatdate(usegmt=True), "host": self.host,
                   "x-acs-signature-method": "HMAC-SHA1", "x-acs-signature-nonce": uuid.uuid4().hex,
                   "x-acs-signature-version": "1.0", "x-eventbridge-version": EVENTBRIDGE_VERSION}
        if keys.security_token:
            headers["x-acs-accesskey-id"] = keys.access_key_id
            headers["x-acs-security-token"] = keys.security_token
        signed = hmac_sha1(keys.access_key_secret, string_to_sign("POST", headers, "x-acs-", PUT_EVENTS))
        headers["authorization"] = f"acs:{keys.access_key_id}:{signed}"
        status, data = self.post(PUT_EVENTS, payload, headers)
        answer = _json(data)
        if not 200 <= status < 300:
            raise self._refused("EventBridge", status, answer.get("code") or answer.get("Code"))
        if answer.get("FailedEntryCount", 0) != 0:
            entries = answer.get("EntryList") or [{}]
            code = entries[0].get("ErrorCode") if isinstance(entries[0], dict) else None
            raise self._refused("EventBridge", status, code or "FailedEntry")


class MnsTopic(CloudTarget):
    """PublishMessage of one event (its JSON as the message body) to the rule's topic."""

    def send(self, body: bytes) -> None:
        topic = self.rule.target["TopicName"]
        resource = f"/topics/{topic}/messages"
        payload = (f'<?xml version="1.0" encoding="UTF-8"?><Message xmlns="{MNS_NAMESPACE}">'
                   f"<MessageBody>{escape(body.decode())}</MessageBody></Message>").encode()
        keys = self._keys()
        headers = {"content-md5": base64.b64encode(hashlib.md5(payload).hexdigest().encode()).decode(),
                   "content-type": "text/xml;charset=UTF-8", "date": email.utils.formatdate(usegmt=True),
                   "host": self.host, "x-mns-version": MNS_VERSION}
        signed = hmac_sha1(keys.access_key_secret, string_to_sign("POST", headers, "x-mns-", resource))
        headers["authorization"] = f"MNS {keys.access_key_id}:{signed}"
        if keys.security_token:
            headers["security-token"] = keys.security_token
        status, data = self.post(resource, payload, headers)
        answer = _xml(data)
        if not 200 <= status < 300:
            raise self._refused("MNS", status, answer.get("Code"))
        if answer.get("MessageBodyMD5", "").upper() != hashlib.md5(body).hexdigest().upper():
            raise DeliveryFailed(f"MNS at {self.where()} answered without the message's MD5: not taken as published")


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _xml(data: bytes) -> dict[str, str]:
    """The text of the root's children, by their names without the namespace."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return {}
    return {child.tag.rpartition("}")[2]: (child.text or "").strip() for child in root}


def target_of(rule: Rule, timeout: float = TIMEOUT, credentials: Callable[[], Credentials] | None = None) -> CloudTarget:
    """The rule's cloud target, signing with `credentials` (the function's own: a CredentialSource)."""
    source = credentials or CredentialSource()
    if rule.kind == "EventBridge":
        return EventBridge(rule, timeout, source)
    if rule.kind == "MNS":
        return MnsTopic(rule, timeout, source)
    raise DeliveryFailed(f"rule {rule.name}: no target is called {rule.kind}")
