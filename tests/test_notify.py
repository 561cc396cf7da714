"""Change events out: each accepted change is one CloudEvent named after what it did, delivered per rule in commit
order, at least once, through failures, hangs, restarts and two instances at once; the NOTIFICATIONS document read
strictly; private addresses refused; secrets never logged."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.catalog.keys import log_key
from handler.catalog.workspace import acting_as
from handler.notify import delivery, webhook
from handler.notify.delivery import Deliverer, log_head
from handler.notify.events import events_of
from handler.notify.rules import BadRules, RuleBook, parse_rules
from handler.registry import records
from handler.registry.models import Registry
from handler.registry.versions import Versions
from handler.stores.base import Store
from handler.stores.documents import document_reader
from handler.stores.file import FileStore
from handler.stores.memory import MemoryStore
from testing.receiver import SECRET, Receiver

ROOT = Path(__file__).resolve().parent.parent
URI = "oss://registry-bucket.oss-cn-hangzhou.aliyuncs.com/models/m/1"


class Clock:
    """A wall clock the test moves: back-off and the 24-hour dead letter without waiting."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def rule(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {"Name": name, "Events": ["*"], "Workspaces": ["*"], "AllowPrivateNetwork": True,
            "Target": {"Webhook": {"Url": url, "Secret": SECRET}}, **fields}


def write_rules(path: Path, *rules: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"Rules": list(rules)}))
    return path


def deliverer_of(store: Store, doc: Path, clock: Clock | None = None, timeout: float = 5.0) -> Deliverer:
    book = RuleBook(document_reader(f"file://{doc}", "NOTIFICATIONS"))
    return Deliverer(store, book, timeout=timeout, now=clock or Clock())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def create(registry: Registry, name: str, workspace: str = "default") -> str:
    return registry.create(records.normalized_request({"ModelName": name}, workspace))[0]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("model-registry.") for e in events]


def test_each_accepted_change_is_one_event_named_after_what_it_did(tmp_path: Path, receiver: Receiver) -> None:
    store = MemoryStore()
    registry, versions = Registry(store), Versions(Registry(store))
    versions.registry = registry
    deliverer = deliverer_of(store, write_rules(tmp_path / "rules.json", rule("all", receiver.url)))
    deliverer.run()  # the rule's first sight of the workspace: it delivers what is committed from now on
    with acting_as("key:alice"):
        model_id = create(registry, "resnet")
        registry.update(model_id, {"ModelDescription": "d"})
        registry.add_labels(model_id, [{"Key": "team", "Value": "cv"}])
        versions.create(model_id, {"Uri": URI})
        versions.update(model_id, "0.1.0", {"VersionDescription": "v"})
        versions.update(model_id, "0.1.0", {"ApprovalStatus": "APPROVED"})
        versions.update(model_id, "0.1.0", {"ApprovalStatus": "Approved"})  # the same again: no change, no event
        versions.delete(model_id, "0.1.0")
        registry.delete(model_id)
    assert deliverer.run() == 9 - 1
    events = receiver.wait_for(8)
    assert types(events) == ["ModelCreated", "ModelUpdated", "ModelUpdated", "ModelVersionCreated", "ModelVersionUpdated",
                             "ModelVersionApprovalStatusChanged", "ModelVersionDeleted", "ModelDeleted"]
    approval = events[5]
    assert approval["data"] == {"WorkspaceId": "default", "ModelId": model_id, "ModelName": "resnet", "VersionName": "0.1.0",
                                "ApprovalStatus": "Approved", "PreviousApprovalStatus": "Pending", "By": "key:alice",
                                "At": approval["time"], "Seq": approval["data"]["Seq"]}
    assert (approval["specversion"], approval["source"], approval["subject"], approval["datacontenttype"]) == (
        "1.0", "/model-registry/workspaces/default", f"models/{model_id}/versions/0.1.0", "application/json")
    assert events[-1]["data"]["ModelName"] == "resnet" and events[-1]["subject"] == f"models/{model_id}"
    assert len({e["id"] for e in events}) == 8
    # Ids are the commit and the place in it: the same from the log at any later time (a redelivery).
    entries = [json.loads(store.get(log_key("default", seq))) for seq in range(1, log_head(store, "default") + 1)]
    again = [e for entry in entries for e in events_of("default", entry)]
    assert [e["id"] for e in again] == [e["id"] for e in events]
    assert receiver.bad_signatures == 0


def test_alias_changes_say_what_the_aliases_are_and_were(tmp_path: Path, receiver: Receiver) -> None:
    from handler.registry.aliases import Aliases

    store = MemoryStore()
    registry = Registry(store)
    versions = Versions(registry)
    deliverer = deliverer_of(store, write_rules(tmp_path / "rules.json", rule("all", receiver.url)))
    deliverer.run()
    model_id = create(registry, "fraud")
    one, _ = versions.create(model_id, {"Uri": URI})
    two, _ = versions.create(model_id, {"Uri": URI + "2"})
    assert deliverer.run() == 3 and types(receiver.wait_for(3)) == ["ModelCreated", "ModelVersionCreated", "ModelVersionCreated"]
    receiver.events.clear()
    Aliases(registry).set(model_id, "champion", one)
    Aliases(registry).set(model_id, "champion", two)  # moved
    Aliases(registry).set(model_id, "champion", two)  # the same again: no change, no event
    registry.update(model_id, {"ModelDescription": "d"})  # no alias changed: none said
    versions.delete(model_id, two)  # its alias goes with it
    assert deliverer.run() == 4
    events = receiver.wait_for(4)
    assert types(events) == ["ModelUpdated", "ModelUpdated", "ModelUpdated", "ModelVersionDeleted"]
    said = [(e["data"].get("Aliases"), e["data"].get("PreviousAliases")) for e in events]
    assert said == [([{"Alias": "champion", "VersionName": one}], []),
                    ([{"Alias": "champion", "VersionName": two}], [{"Alias": "champion", "VersionName": one}]),
                    (None, None),
                    ([], [{"Alias": "champion", "VersionName": two}])]


def test_an_entry_without_what_it_replaced_is_named_from_its_times() -> None:
    record = {"ModelId": "model-1", "ModelName": "m", "GmtCreateTime": "2026-01-01T00:00:00Z", "GmtModifiedTime": "2026-01-01T00:00:00Z"}
    later = {**record, "GmtModifiedTime": "2026-01-02T00:00:00Z"}
    older = {"Seq": 1, "Txn": "t", "Time": "2026-01-01T00:00:00.000Z", "Changes": [
        {"Put": {"Model": record, "Fingerprint": "f"}}, {"Put": {"Model": later, "Fingerprint": "f"}}]}
    assert types(events_of("default", older)) == ["ModelCreated", "ModelUpdated"]


def test_a_receiver_failing_three_times_gets_every_event_once_in_order_with_back_off(tmp_path: Path, receiver: Receiver) -> None:
    store, clock = MemoryStore(), Clock()
    registry = Registry(store)
    deliverer = deliverer_of(store, write_rules(tmp_path / "rules.json", rule("hook", receiver.url)), clock)
    deliverer.run()
    for i in range(3):
        create(registry, f"m{i}")
    receiver.fail_next = 3
    waits = []
    for _ in range(3):
        assert deliverer.run() == 0  # failed
        position = deliverer.position("hook", "default")
        waits.append(position.until - clock.now)
        assert deliverer.run() == 0 and receiver.attempts == len(waits)  # not before its retry is due
        clock.now = position.until
    assert waits == [2.0, 4.0, 8.0]  # the first retry within 5 seconds, then doubling (capped at 5 minutes)
    assert deliverer.run() == 3
    assert [e["data"]["ModelName"] for e in receiver.events] == ["m0", "m1", "m2"]
    assert delivery.backoff(20) == 300.0


def test_a_receiver_that_hangs_times_out_and_is_retried(tmp_path: Path, receiver: Receiver) -> None:
    store, clock = MemoryStore(), Clock()
    deliverer = deliverer_of(store, write_rules(tmp_path / "rules.json", rule("hook", receiver.url)), clock, timeout=0.5)
    deliverer.run()
    create(Registry(store), "m")
    receiver.hang_next, receiver.hang_for = 1, 3.0
    assert deliverer.run() == 0
    assert "did not answer in time" in deliverer.status()[0]["Failing"]["Error"], (deliverer.status(), receiver.attempts)
    clock.now += 2
    assert deliverer.run() == 1
    assert [e["data"]["ModelName"] for e in receiver.events] == ["m"]


def test_an_event_refused_for_a_day_becomes_a_dead_letter_and_later_events_go_on(tmp_path: Path, receiver: Receiver) -> None:
    store, clock = MemoryStore(), Clock()
    registry = Registry(store)
    deliverer = deliverer_of(store, write_rules(tmp_path / "rules.json", rule("hook", receiver.url)), clock)
    deliverer.run()
    create(registry, "poison")
    create(registry, "next")
    receiver.fail_next = 10_000
    deliverer.run()
    start = clock.now
    while clock.now < start + delivery.DEAD_AFTER:
        clock.now = max(deliverer.position("hook", "default").until, clock.now + 1)
        deliverer.run()
    assert receiver.events == []
    receiver.fail_next = 0
    clock.now += 400
    assert deliverer.run() == 1
    assert [e["data"]["ModelName"] for e in receiver.events] == ["next"]
    (letter,) = deliverer.dead_letters("hook", "default")
    assert json.loads(store.get(letter))["Event"]["data"]["ModelName"] == "poison"
    assert deliverer.status()[0]["DeadLetters"] == 1
    # Sent again by hand once the receiver is fixed, and then gone.
    assert deliverer.resend_dead_letters(deliverer.book.rules()[0], "default") == (1, 0)
    assert [e["data"]["ModelName"] for e in receiver.events] == ["next", "poison"]
    assert deliverer.dead_letters("hook", "default") == []


def test_two_instances_delivering_one_backlog_send_each_event_once_in_order(tmp_path: Path, receiver: Receiver) -> None:
    store = FileStore(tmp_path / "store")
    registry = Registry(store)
    doc = write_rules(tmp_path / "rules.json", rule("hook", receiver.url), rule("other", receiver.url, Events=["ModelDeleted"]))
    first, second = deliverer_of(store, doc), deliverer_of(store, doc)
    first.run()
    ids = [create(registry, f"m{i:03d}") for i in range(150)]
    registry.delete(ids[0])
    barrier = threading.Barrier(2)

    def drain(d: Deliverer) -> None:
        barrier.wait()
        for _ in range(200):
            d.run()
            if d.position("hook", "default").seq == d.position("other", "default").seq == log_head(store, "default"):
                return

    threads = [threading.Thread(target=drain, args=(d,)) for d in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = receiver.wait_for(152)
    hook = [e for e in events if e["type"].endswith("ModelCreated")]
    assert [e["data"]["ModelName"] for e in hook] == [f"m{i:03d}" for i in range(150)]  # each once, in commit order
    assert [e["data"]["ModelId"] for e in events if e["type"].endswith("ModelDeleted")] == [ids[0], ids[0]]  # once per rule
    assert len(events) == 152


def test_a_private_address_is_refused_unless_the_rule_allows_it(tmp_path: Path, receiver: Receiver,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store, clock = MemoryStore(), Clock()
    port = receiver.url.split(":")[2].split("/")[0]
    hooks = [rule("loopback", f"https://127.0.0.1:{port}/hook", AllowPrivateNetwork=False),
             rule("named", f"https://hooks.example.com:{port}/hook", AllowPrivateNetwork=False),
             rule("mapped", f"https://[::ffff:10.0.0.1]:{port}/hook", AllowPrivateNetwork=False),
             rule("metadata", "https://100.100.100.200/latest/meta-data", AllowPrivateNetwork=False)]
    real = socket.getaddrinfo

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:  # a public-looking name that resolves to a private address
        return real("10.1.2.3" if host == "hooks.example.com" else host, *args, **kwargs)

    monkeypatch.setattr(webhook.socket, "getaddrinfo", resolve)
    deliverer = deliverer_of(store, write_rules(tmp_path / "rules.json", *hooks), clock)
    deliverer.run()
    create(Registry(store), "m")
    assert deliverer.run() == 0
    assert receiver.attempts == 0
    for row in deliverer.status():
        assert "AllowPrivateNetwork" in row["Failing"]["Error"], row
    with pytest.raises(BadRules, match="https"):  # plain http only where the rule allows private networks
        parse_rules(json.dumps({"Rules": [rule("plain", receiver.url, AllowPrivateNetwork=False)]}).encode())


def test_a_redirect_is_never_followed(tmp_path: Path, receiver: Receiver) -> None:
    store, clock = MemoryStore(), Clock()
    with Receiver() as inside:
        receiver.redirect = inside.url  # e.g. to an address inside the network
        deliverer = deliverer_of(store, write_rules(tmp_path / "rules.json", rule("hook", receiver.url)), clock)
        deliverer.run()
        create(Registry(store), "m")
        assert deliverer.run() == 0
        assert inside.attempts == 0 and receiver.attempts == 1
        assert "redirect" in deliverer.status()[0]["Failing"]["Error"]


@pytest.mark.parametrize("document, problem", [
    (b"{", "not JSON"),
    (b'{"Rules": {}}', '{"Rules": [...]}'),
    (json.dumps({"Rules": [{**rule("a", "https://x.example/"), "Event": ["*"]}]}).encode(), "unknown field 'Event'"),
    (json.dumps({"Rules": [{**rule("a", "https://x.example/"), "Events": ["ModelApproved"]}]}).encode(), "no event is called"),
    (json.dumps({"Rules": [{**rule("a", "https://x.example/"), "Workspaces": "*"}]}).encode(), "Workspaces must be a list"),
    (json.dumps({"Rules": [rule("a", "https://x.example/"), rule("a", "https://y.example/")]}).encode(), "two rules"),
    (json.dumps({"Rules": [{**rule("a", "https://x.example/"), "Target": {"Webhook": {"Url": "https://x.example/",
                                                                                      "Secret": "short"}}}]}).encode(), "shorter"),
    (json.dumps({"Rules": [{**rule("a", "https://x.example/"), "Target": {"Webhook": {}, "MNS": {}}}]}).encode(), "exactly one"),
    (json.dumps({"Rules": [{**rule("a", "https://x.example/"), "AllowPrivateNetwork": "yes"}]}).encode(), "true or false"),
])
def test_a_malformed_document_is_refused_whole_with_what_is_wrong(document: bytes, problem: str) -> None:
    with pytest.raises(BadRules) as caught:
        parse_rules(document)
    assert problem in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_malformed_document_delivers_nothing_and_loses_nothing_once_fixed(tmp_path: Path, receiver: Receiver) -> None:
    store = MemoryStore()
    doc = write_rules(tmp_path / "rules.json", rule("hook", receiver.url))
    ticks = [0.0]
    deliverer = Deliverer(store, RuleBook(document_reader(f"file://{doc}", "NOTIFICATIONS"), now=lambda: ticks[0]), now=Clock())
    deliverer.run()
    doc.write_text('{"Rules": [{"Name": "hook", "Events": "*"}]}')
    ticks[0] += 61  # re-read a minute later at most
    create(Registry(store), "m")
    assert deliverer.run() == 0 and "Events must be a list" in deliverer.book.problem
    write_rules(doc, rule("hook", receiver.url))
    ticks[0] += 6  # an unusable document is read again a few seconds later
    assert deliverer.run() == 1
    assert [e["data"]["ModelName"] for e in receiver.events] == ["m"]


def test_a_secret_is_never_logged_nor_stored(tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store, clock = MemoryStore(), Clock()
    hooks = [rule("hook", receiver.url), rule("private", receiver.url.replace("http:", "https:"), AllowPrivateNetwork=False)]
    doc = write_rules(tmp_path / "rules.json", *hooks)
    deliverer = deliverer_of(store, doc, clock)
    deliverer.run()
    create(Registry(store), "m")
    receiver.fail_next = 1
    deliverer.run()
    clock.now += delivery.DEAD_AFTER + 1
    deliverer.run()
    doc.write_text(json.dumps({"Rules": [{**rule("bad", receiver.url), "Target": {"Webhook": {"Url": receiver.url, "Secret": SECRET,
                                                                                             "Extra": SECRET}}}]}))
    deliverer.book._loaded_at = float("-inf")
    deliverer.run()
    assert caplog.records and all(SECRET not in r.getMessage() for r in caplog.records)
    assert SECRET not in repr(RuleBook(lambda: doc.read_bytes()).rules()) + repr(parse_rules(write_rules(doc, *hooks).read_bytes()))
    assert all(SECRET.encode() not in store.get(key) for key in store.list(""))


def _serve(store: Path, doc: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MODEL_STORE": f"file://{store}", "NOTIFICATIONS": f"file://{doc}"}
    env.pop("ACCESS_KEYS", None)
    server = subprocess.Popen([sys.executable, "-m", "handler", "serve", "--port", str(port)], env=env, cwd=ROOT,
                              stderr=subprocess.PIPE)
    assert server.stderr is not None
    server.stderr.readline()  # the startup line: listening
    return server


def _post(port: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_a_receiver_down_across_a_server_restart_gets_every_event_once_back(tmp_path: Path) -> None:
    receiver = Receiver()
    doc = write_rules(tmp_path / "rules.json", rule("hook", receiver.url))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = _serve(tmp_path / "store", doc, port)
    try:
        first = _post(port, "/api/v1/models", {"ModelName": "before"})["ModelId"]
        receiver.wait_for(1)
        receiver.stop()  # down: the answers below never wait for it
        second = _post(port, "/api/v1/models", {"ModelName": "while-down"})["ModelId"]
        _post(port, f"/api/v1/models/{second}/versions", {"Uri": URI})
    finally:
        server.terminate()
        server.wait(10)
    receiver.start()  # up again, on the same port, and the server too
    server = _serve(tmp_path / "store", doc, port)
    try:
        events = receiver.wait_for(3)
    finally:
        server.terminate()
        server.wait(10)
        receiver.stop()
    assert [(e["type"].rpartition(".")[2], e["data"]["ModelId"]) for e in events] == [
        ("ModelCreated", first), ("ModelCreated", second), ("ModelVersionCreated", second)]
    status = subprocess.run([sys.executable, "-m", "handler", "deliveries", "--json"], capture_output=True, cwd=ROOT, timeout=60,
                            env={**os.environ, "MODEL_STORE": f"file://{tmp_path / 'store'}", "NOTIFICATIONS": f"file://{doc}"})
    (row,) = [json.loads(line) for line in status.stdout.splitlines()]
    assert (row["Rule"], row["Cursor"], row["Lag"], row["DeadLetters"]) == ("hook", 3, 0, 0), status.stderr


def test_redeliver_from_a_commit_sends_its_events_again_with_the_same_ids(tmp_path: Path, receiver: Receiver) -> None:
    store = FileStore(tmp_path / "store")
    doc = write_rules(tmp_path / "rules.json", rule("hook", receiver.url))
    deliverer = deliverer_of(store, doc)
    deliverer.run()
    for name in ("a", "b", "c"):
        create(Registry(store), name)
    deliverer.run()
    env = {**os.environ, "MODEL_STORE": f"file://{tmp_path / 'store'}", "NOTIFICATIONS": f"file://{doc}"}
    done = subprocess.run([sys.executable, "-m", "handler", "redeliver", "hook", "--from", "2"], capture_output=True, cwd=ROOT,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert deliverer.run() == 2
    ids = [e["id"] for e in receiver.events]
    assert ids == ["default/1/0", "default/2/0", "default/3/0", "default/2/0", "default/3/0"]
    unknown = subprocess.run([sys.executable, "-m", "handler", "redeliver", "nope"], capture_output=True, cwd=ROOT, env=env, timeout=60)
    assert unknown.returncode == 1 and b"no rule 'nope'" in unknown.stderr


def test_on_fc_a_commit_to_the_log_invokes_delivery_for_its_workspace(tmp_path: Path, receiver: Receiver, use_app: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from handler.entry import fc
    from tests.conftest import invoke

    store = MemoryStore()
    app = use_app(store)
    doc = write_rules(tmp_path / "rules.json", rule("hook", receiver.url))
    monkeypatch.setenv("NOTIFICATIONS", f"file://{doc}")
    assert invoke({"triggerTime": "2026-01-01T00:00:00Z", "triggerName": "deliveries", "payload": "deliveries"}) == {
        "Delivered": 0, "Rules": 1}
    model_id = create(app.registry, "m")
    checkpoint = {"oss": {"bucket": {"name": "b"}, "object": {"key": "catalog/default/checkpoints/x.json"}}}
    commit = {"oss": {"bucket": {"name": "b"}, "object": {"key": "catalog/default/log/00000000000000000001.json"}}}
    monkeypatch.setattr(store, "locate", lambda bucket, key: key)
    assert invoke({"events": [checkpoint, commit]}) == {"Delivered": 1, "Rules": 1}
    assert [e["data"]["ModelId"] for e in receiver.events] == [model_id]
    assert fc.get_deliverer() is fc.get_deliverer()
