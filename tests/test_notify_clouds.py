"""Change events to EventBridge (PutEvents to a custom bus) and MNS (a topic), signed with the function's credentials:
against loopback fakes that recompute each signature, checked against the official SDKs' own signing, retried when
the service refuses, never sending the credentials outside Alibaba Cloud or the rule's private network."""
from __future__ import annotations

import json
import logging
import socket
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.catalog.workspace import acting_as
from handler.notify import delivery, webhook
from handler.notify.clouds import MnsTopic, target_of
from handler.notify.delivery import Deliverer
from handler.notify.rules import BadRules, RuleBook, parse_rules
from handler.notify.webhook import DeliveryFailed
from handler.registry import records
from handler.registry.models import Registry
from handler.registry.versions import Versions
from handler.stores.base import Unavailable
from handler.stores.credentials import Credentials
from handler.stores.documents import document_reader
from handler.stores.memory import MemoryStore
from testing.fake_clouds import KEY_ID, KEY_SECRET, TOKEN, FakeEventBridge, FakeMns

URI = "oss://registry-bucket.oss-cn-hangzhou.aliyuncs.com/models/m/1"
STS = Credentials(KEY_ID, KEY_SECRET, TOKEN)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def eventbridge_rule(endpoint: str, bus: str = "model-registry", **fields: Any) -> dict[str, Any]:
    return {"Name": "bus", "Events": ["*"], "Workspaces": ["*"], "AllowPrivateNetwork": True,
            "Target": {"EventBridge": {"Endpoint": endpoint, "EventBusName": bus, **fields}}}


def mns_rule(endpoint: str, topic: str = "model-registry") -> dict[str, Any]:
    return {"Name": "topic", "Events": ["*"], "Workspaces": ["*"], "AllowPrivateNetwork": True,
            "Target": {"MNS": {"Endpoint": endpoint, "TopicName": topic}}}


def deliverer(tmp_path: Path, store: MemoryStore, clock: Clock, *rules: dict[str, Any], credentials: Any = None) -> Deliverer:
    doc = tmp_path / "rules.json"
    doc.write_text(json.dumps({"Rules": list(rules)}))
    return Deliverer(store, RuleBook(document_reader(f"file://{doc}", "NOTIFICATIONS")), timeout=5.0, now=clock,
                     credentials=credentials or (lambda: STS))


@pytest.fixture
def bridge() -> Iterator[FakeEventBridge]:
    with FakeEventBridge(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def mns() -> Iterator[FakeMns]:
    with FakeMns(token=TOKEN) as fake:
        yield fake


def changes(store: MemoryStore) -> str:
    """A model, a version, its approval: three events."""
    registry = Registry(store)
    versions = Versions(registry)
    with acting_as("key:alice"):
        model_id = registry.create(records.normalized_request({"ModelName": "resnet"}, "default"))[0]
        versions.create(model_id, {"Uri": URI})
        versions.update(model_id, "0.1.0", {"ApprovalStatus": "Approved"})
    return model_id


def test_eventbridge_takes_each_event_on_the_bus_in_commit_order_signed_with_the_functions_credentials(
        tmp_path: Path, bridge: FakeEventBridge) -> None:
    store, clock = MemoryStore(), Clock()
    d = deliverer(tmp_path, store, clock, eventbridge_rule(bridge.endpoint, Source="model.registry"))
    d.run()
    model_id = changes(store)
    assert d.run() == 3
    assert bridge.refusals() == []
    taken = bridge.events["model-registry"]
    assert [e["type"] for e in taken] == ["model-registry.ModelCreated", "model-registry.ModelVersionCreated",
                                          "model-registry.ModelVersionApprovalStatusChanged"]
    assert [e["id"] for e in taken] == [f"default/{i}/0" for i in (1, 2, 3)]
    assert all(e["source"] == "model.registry" and e["aliyuneventbusname"] == "model-registry" for e in taken)
    assert taken[2]["data"]["ApprovalStatus"] == "Approved" and taken[2]["subject"] == f"models/{model_id}/versions/0.1.0"
    for seen in bridge.requests:
        assert seen.path == "/openapi/putEvents" and seen.status == 200
        assert seen.headers["authorization"].startswith(f"acs:{KEY_ID}:")
        assert seen.headers["x-acs-security-token"] == TOKEN
        assert KEY_SECRET not in json.dumps(seen.headers)


def test_the_eventbridge_signature_is_the_official_sdks(tmp_path: Path, bridge: FakeEventBridge) -> None:
    """The signing code of alibabacloud-eventbridge (its util package) signs the request the target sent alike."""
    from alibabacloud_eventbridge_util.client import Client as Official

    store, clock = MemoryStore(), Clock()
    d = deliverer(tmp_path, store, clock, eventbridge_rule(bridge.endpoint))
    d.run()
    changes(store)
    d.run()
    for seen in bridge.requests:
        request = types.SimpleNamespace(method="POST", pathname=seen.path, headers=seen.headers, query={})
        expected = Official.get_signature(Official.get_string_to_sign(request), KEY_SECRET)
        assert seen.headers["authorization"] == f"acs:{KEY_ID}:{expected}"


@pytest.mark.parametrize("refusal", ["server error", "failed entry", "no such bus", "wrong key"])
def test_what_eventbridge_refuses_is_retried_with_back_off_then_delivered_once_in_order(
        tmp_path: Path, bridge: FakeEventBridge, refusal: str) -> None:
    store, clock = MemoryStore(), Clock()
    credentials = {"now": Credentials(KEY_ID, "another secret", TOKEN) if refusal == "wrong key" else STS}
    bus = "missing-bus" if refusal == "no such bus" else "model-registry"
    rules = [eventbridge_rule(bridge.endpoint, bus=bus)]
    d = deliverer(tmp_path, store, clock, *rules, credentials=lambda: credentials["now"])
    d.run()
    changes(store)
    if refusal == "server error":
        bridge.fail(3)
    if refusal == "failed entry":
        bridge.fail_entries(3)
    assert d.run() == 0
    failing = d.status()[0]["Failing"]
    assert failing["Seq"] == 1 and failing["Attempts"] == 1
    assert {"server error": "answered 500 InternalError", "failed entry": "answered 200 EventBusBusy",
            "no such bus": "answered 404 EventBusNotExist", "wrong key": "answered 403 SignatureDoesNotMatch"}[refusal] \
        in failing["Error"]
    assert bridge.taken() == []
    if refusal == "no such bus":
        bridge.buses.add("missing-bus")
        bridge.events["missing-bus"] = []
    if refusal == "wrong key":
        credentials["now"] = STS  # FC handed over fresh credentials
    for attempt in range(1, 4):
        assert d.run() == 0  # its retry is not due yet
        clock.now += delivery.backoff(attempt)
        if d.run() == 3:
            break
    assert [e["id"] for e in bridge.taken()] == ["default/1/0", "default/2/0", "default/3/0"]


def test_without_credentials_nothing_is_sent_and_the_events_wait(tmp_path: Path, bridge: FakeEventBridge) -> None:
    def none() -> Credentials:
        raise Unavailable("no OSS credentials", "none anywhere")

    store, clock = MemoryStore(), Clock()
    d = deliverer(tmp_path, store, clock, eventbridge_rule(bridge.endpoint), credentials=none)
    d.run()
    changes(store)
    assert d.run() == 0
    assert bridge.requests == []
    assert "no credentials" in d.status()[0]["Failing"]["Error"]


def test_mns_takes_each_event_as_a_message_on_the_topic_signed_with_the_functions_credentials(
        tmp_path: Path, mns: FakeMns) -> None:
    store, clock = MemoryStore(), Clock()
    d = deliverer(tmp_path, store, clock, mns_rule(mns.endpoint))
    d.run()
    changes(store)
    assert d.run() == 3
    assert mns.refusals() == []
    bodies = [json.loads(text) for text in mns.messages["model-registry"]]
    assert [b["id"] for b in bodies] == ["default/1/0", "default/2/0", "default/3/0"]
    assert bodies[2]["data"]["PreviousApprovalStatus"] == "Pending" and bodies[2]["data"]["By"] == "key:alice"
    for seen in mns.requests:
        assert seen.path == "/topics/model-registry/messages" and seen.status == 201
        assert seen.headers["authorization"].startswith(f"MNS {KEY_ID}:") and seen.headers["security-token"] == TOKEN


def test_the_mns_fake_checks_what_the_official_sdk_sends() -> None:
    """The official MNS SDK publishes to the fake, and is refused with the wrong secret: the fake checks the SDK's
    signature, which the target's therefore is."""
    from mns.account import Account
    from mns.mns_exception import MNSServerException
    from mns.topic import TopicMessage

    with FakeMns(token=TOKEN) as fake:
        topic = Account(fake.endpoint, KEY_ID, KEY_SECRET, TOKEN).get_topic("model-registry")
        answer = topic.publish_message(TopicMessage('{"id": "x", "note": "<&>"}'))
        assert answer.message_id and fake.messages["model-registry"] == ['{"id": "x", "note": "<&>"}']
        with pytest.raises(MNSServerException, match="SignatureDoesNotMatch"):
            Account(fake.endpoint, KEY_ID, "wrong", TOKEN).get_topic("model-registry").publish_message(TopicMessage("y"))
        rule = parse_rules(json.dumps({"Rules": [mns_rule(fake.endpoint)]}).encode())[0]
        target = MnsTopic(rule, 5.0, lambda: STS)
        try:
            target.send(b'{"id": "z", "note": "<&>]]>"}')  # escaped in the XML, taken as it was
        finally:
            target.close()
        assert fake.messages["model-registry"][-1] == '{"id": "z", "note": "<&>]]>"}'


@pytest.mark.parametrize("refusal", ["server error", "no such topic"])
def test_what_mns_refuses_is_retried_then_delivered(tmp_path: Path, mns: FakeMns, refusal: str) -> None:
    store, clock = MemoryStore(), Clock()
    topic = "missing" if refusal == "no such topic" else "model-registry"
    d = deliverer(tmp_path, store, clock, mns_rule(mns.endpoint, topic))
    d.run()
    changes(store)
    if refusal == "server error":
        mns.fail(2)
    assert d.run() == 0
    assert ("answered 500 InternalError" if refusal == "server error" else "answered 404 TopicNotExist") \
        in d.status()[0]["Failing"]["Error"]
    if refusal == "no such topic":
        mns.messages["missing"] = []
    for attempt in range(1, 4):
        clock.now += delivery.backoff(attempt)
        if d.run() == 3:
            break
    assert [json.loads(b)["id"] for b in mns.taken()] == ["default/1/0", "default/2/0", "default/3/0"]


@pytest.mark.parametrize("endpoint, allow, problem", [
    ("https://evil.example.com", False, "under aliyuncs.com"),
    ("http://123.mns.cn-hangzhou.aliyuncs.com", False, "https://HOST"),
    ("https://123.mns.cn-hangzhou.aliyuncs.com/path", False, "https://HOST"),
    ("ftp://127.0.0.1", True, "https://HOST"),
    ("https://1.mns.cn-hangzhou.aliyuncs.com:port", False, "https://HOST"),
])
def test_a_cloud_endpoint_is_under_aliyuncs_or_on_the_rules_private_network(endpoint: str, allow: bool, problem: str) -> None:
    rule = {**mns_rule(endpoint), "AllowPrivateNetwork": allow}
    with pytest.raises(BadRules, match=problem):
        parse_rules(json.dumps({"Rules": [rule]}).encode())
    assert parse_rules(json.dumps({"Rules": [mns_rule("https://123.mns.cn-hangzhou.aliyuncs.com")]}).encode())
    with pytest.raises(BadRules, match="TopicName is not a valid name"):
        parse_rules(json.dumps({"Rules": [mns_rule("https://1.mns.cn-hangzhou.aliyuncs.com", "../queues/q")]}).encode())
    with pytest.raises(BadRules, match="EventBridge takes Endpoint, EventBusName"):
        parse_rules(json.dumps({"Rules": [{**eventbridge_rule("https://x.aliyuncs.com"),
                                           "Target": {"EventBridge": {"EventBusName": "b"}}}]}).encode())


def test_credentials_go_to_no_public_host_outside_aliyuncs_nor_to_a_private_address_unless_allowed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:
        return real({"relay.corp.example": "8.8.8.8", "1.eventbridge.cn-hangzhou.aliyuncs.com": "10.0.0.7"}.get(host, host),
                    *args, **kwargs)

    monkeypatch.setattr(webhook.socket, "getaddrinfo", resolve)
    outside = parse_rules(json.dumps({"Rules": [eventbridge_rule("https://relay.corp.example")]}).encode())[0]
    inside = parse_rules(json.dumps({"Rules": [{**eventbridge_rule("https://1.eventbridge.cn-hangzhou.aliyuncs.com"),
                                                "AllowPrivateNetwork": False}]}).encode())[0]
    for rule, problem in ((outside, "not on a private network"), (inside, "AllowPrivateNetwork")):
        target = target_of(rule, 1.0, lambda: STS)
        with pytest.raises(DeliveryFailed, match=problem):
            target.send(b'{"specversion": "1.0", "id": "a", "source": "s", "type": "t"}')


def test_the_functions_credentials_are_never_logged_nor_stored(tmp_path: Path, bridge: FakeEventBridge, mns: FakeMns,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store, clock = MemoryStore(), Clock()
    wrong = Credentials(KEY_ID, KEY_SECRET + "-old", TOKEN)
    d = deliverer(tmp_path, store, clock, eventbridge_rule(bridge.endpoint), mns_rule(mns.endpoint), credentials=lambda: wrong)
    d.run()
    changes(store)
    d.run()
    clock.now += delivery.DEAD_AFTER + 1
    d.run()  # the first event, refused for a day: a dead letter, with the service's answer; the next one is tried
    assert len(d.dead_letters("bus", "default")) == 1 and len(d.dead_letters("topic", "default")) == 1
    assert caplog.records
    stored = b"".join(store.get(key) for key in store.list(""))
    for secret in (KEY_SECRET, TOKEN):
        assert all(secret not in r.getMessage() for r in caplog.records)
        assert secret.encode() not in stored
