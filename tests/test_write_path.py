"""The write paths at their floor: every change costs at most two sequential storage round trips when
nothing conflicts, a signed create costs no more than an unsigned one, a replay writes nothing, reads never
wait behind another request's storage read, and a record file a late write left behind is made current."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest

from handler.api.app import App
from handler.api.auth import KeyRing, Verifier
from handler.api.http import Request, Response
from handler.catalog.keys import record_key
from handler.registry import records
from handler.registry.models import Registry
from handler.stores.base import Store
from handler.stores.memory import MemoryStore
from tests.test_auth import KEYS, sign

T = TypeVar("T")
LATENCY = 0.02  # seconds each storage request takes here: long enough that requests sent together overlap


class TimedStore(Store):
    """Passes every call to a store after a fake network latency, and records when each request started and
    ended: the longest chain of requests each sent after the previous one answered is the sequential round trips."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.requests: list[tuple[float, float, str]] = []  # (started, ended, what)
        self._lock = threading.Lock()

    def _request(self, what: str, call: Callable[[], T]) -> T:
        started = time.monotonic()
        time.sleep(LATENCY)
        try:
            return call()
        finally:
            with self._lock:
                self.requests.append((started, time.monotonic(), what))

    def create(self, key: str, data: bytes) -> None:
        self._request(f"create {key}", lambda: self.inner.create(key, data))

    def get(self, key: str) -> bytes:
        return self._request(f"get {key}", lambda: self.inner.get(key))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:  # sent together: one round trip
        return self._request(f"get {' '.join(keys)}", lambda: self.inner.get_many(keys))

    def get_each(self, keys: Sequence[str], then: Callable[[str, bytes], T],  # sent together, as OSS sends them
                 heads: Mapping[str, int] | None = None) -> list[T | None]:
        return self._request(f"get {' '.join(keys)}", lambda: self.inner.get_each(keys, then, heads))

    def put(self, key: str, data: bytes) -> None:
        self._request(f"put {key}", lambda: self.inner.put(key, data))

    def delete(self, key: str) -> None:
        self._request(f"delete {key}", lambda: self.inner.delete(key))

    def delete_many(self, keys: Sequence[str]) -> None:
        self._request(f"delete {' '.join(keys)}", lambda: self.inner.delete_many(keys))

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        return self._request(f"list {prefix}", lambda: self.inner.list(prefix, start_after, limit))

    def round_trips(self, call: Callable[[Request], T], request: Request) -> tuple[T, int, list[str]]:
        """call(request)'s result, the sequential round trips of the requests it waited for (those answered before
        it returned; work it left running after its answer is not its caller's), and those requests."""
        with self._lock:
            first = len(self.requests)
        started = time.monotonic()
        result = call(request)
        returned = time.monotonic()
        with self._lock:
            made = sorted(r for r in self.requests[first:] if r[0] >= started and r[1] <= returned)
        chain: list[int] = []  # the longest chain ending with each request
        for i, (begin, _, _) in enumerate(made):
            chain.append(1 + max((chain[j] for j in range(i) if made[j][1] <= begin), default=0))
        return result, max(chain, default=0), [what for _, _, what in made]


def unsigned_app(store: Store) -> App:
    return App(Registry(store), default_workspace="ws")


def signed_app(store: Store) -> App:
    return App(Registry(store), default_workspace="ws", verifier=Verifier(KeyRing(lambda: json.dumps(KEYS).encode()), store))


Spec = tuple[str, str, dict[str, Any] | None, dict[str, str]]  # method, path, body, query


def signed(app: App, spec: Spec) -> Request:
    """The request, signed as the SDK signs it when the app checks signatures."""
    method, path, body, query = spec
    data = json.dumps(body).encode() if body is not None else b""
    headers = sign(method, path, query, data) if app.verifier is not None else {}
    pairs = list(query.items())
    return Request(method, path, data, headers=headers, query=pairs, raw_query=urlencode(pairs))


def call(app: App, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, str] | None = None) -> Response:
    return app.handle(signed(app, (method, path, body, query or {})))


def ok(response: Response) -> dict[str, Any]:
    assert response.status == 200, response.body
    return response.body


M = "/api/v1/models"
WRITES: dict[str, Callable[[str, str], Spec]] = {  # (ModelId, VersionName) -> the request
    "CreateModel": lambda m, v: ("POST", M, {"ModelName": "another"}, {}),
    "UpdateModel": lambda m, v: ("PUT", f"{M}/{m}", {"ModelDescription": "changed"}, {}),
    "CreateModelLabels": lambda m, v: ("POST", f"{M}/{m}/labels", {"Labels": [{"Key": "k", "Value": "added"}]}, {}),
    "DeleteModelLabels": lambda m, v: ("DELETE", f"{M}/{m}/labels", None, {"LabelKeys": "stage"}),
    "CreateModelVersion": lambda m, v: ("POST", f"{M}/{m}/versions", {"Uri": "oss://bucket/path/model"}, {}),
    "UpdateModelVersion": lambda m, v: ("PUT", f"{M}/{m}/versions/{v}", {"VersionDescription": "changed"}, {}),
    "CreateModelVersionLabels": lambda m, v: ("POST", f"{M}/{m}/versions/{v}/labels", {"Labels": [{"Key": "k", "Value": "v"}]}, {}),
    "DeleteModelVersionLabels": lambda m, v: ("DELETE", f"{M}/{m}/versions/{v}/labels", None, {"LabelKeys": "stage"}),
    "DeleteModelVersion": lambda m, v: ("DELETE", f"{M}/{m}/versions/{v}", None, {}),
    "DeleteModel": lambda m, v: ("DELETE", f"{M}/{m}", None, {}),
}


def warm(app: App) -> tuple[str, str]:
    """A model with a version, both labelled, on an instance that has read the workspace and is idle."""
    model_id = ok(call(app, "POST", M, {"ModelName": "subject", "Labels": [{"Key": "stage", "Value": "dev"}]}))["ModelId"]
    version = ok(call(app, "POST", f"{M}/{model_id}/versions", {"Uri": "oss://bucket/path/model", "VersionName": "1.0.0",
                                                                  "Labels": [{"Key": "stage", "Value": "dev"}]}))["VersionName"]
    ok(call(app, "GET", f"{M}/{model_id}"))
    app.registry.settle()
    return model_id, version


@pytest.mark.parametrize("operation", WRITES)
def test_every_write_path_takes_two_sequential_round_trips_when_nothing_conflicts(operation: str) -> None:
    store = TimedStore(MemoryStore())
    app = unsigned_app(store)
    request = signed(app, WRITES[operation](*warm(app)))
    answer, round_trips, requests = store.round_trips(app.handle, request)
    ok(answer)
    # A model's delete removes its versions' records before its own (so that its record leads to what is left).
    assert round_trips == (3 if operation == "DeleteModel" else 2), requests
    app.registry.settle()


@pytest.mark.parametrize("operation", WRITES)
def test_a_signed_change_costs_at_most_its_nonce_beside_an_unsigned_one(operation: str) -> None:
    """A create writes its nonce beside its record; a change that begins with its commit waits for its nonce."""
    costs = {}
    for make in (unsigned_app, signed_app):
        store = TimedStore(MemoryStore())
        app = make(store)
        request = signed(app, WRITES[operation](*warm(app)))
        answer, costs[make], requests = store.round_trips(app.handle, request)
        ok(answer)
        assert sum(what.startswith("create nonces/") for what in requests) == (make is signed_app)
        app.registry.settle()
    assert costs[signed_app] == costs[unsigned_app] + (operation != "CreateModel")


def test_a_signed_create_on_a_cold_instance_costs_what_an_unsigned_one_does() -> None:
    costs = {}
    for make in (unsigned_app, signed_app):
        store = TimedStore(MemoryStore())
        ok(call(make(store), "POST", M, {"ModelName": "first"}))
        cold = make(store)
        request = signed(cold, ("POST", M, {"ModelName": "second"}, {}))
        answer, costs[make], _ = store.round_trips(cold.handle, request)
        ok(answer)
        cold.registry.settle()
    assert costs[signed_app] == costs[unsigned_app]


def _catalog_and_records(store: Store) -> dict[str, bytes]:
    return {key: store.get(key) for key in store.list("") if not key.startswith("nonces/")}


@pytest.mark.parametrize("operation", WRITES)
def test_a_replayed_change_is_refused_and_writes_nothing(operation: str) -> None:
    store = MemoryStore()
    first = signed_app(store)
    request = signed(first, WRITES[operation](*warm(first)))
    before = _catalog_and_records(store)
    ok(first.handle(request))
    first.registry.settle()
    # Everything the change wrote undone but its nonce, so that the replay could do it all again.
    for key in set(_catalog_and_records(store)) - set(before):
        store.delete(key)
    for key, data in before.items():
        store.put(key, data)
    for instance in (first, signed_app(store)):  # the same instance, and one that never saw the request
        answer = instance.handle(request)
        instance.registry.settle()
        assert (answer.status, answer.body["Code"]) == (400, "SignatureNonceUsed")
        assert _catalog_and_records(store) == before


def test_a_request_refused_after_its_signature_passed_spends_its_nonce_and_its_replay_is_answered_as_one() -> None:
    """The nonce is no change of the registry: spent once signature and policy pass, whatever the request then meets."""
    store = MemoryStore()
    app = signed_app(store)
    request = signed(app, ("POST", M, {"ModelName": "x", "Domain": 7}, {}))  # the schema wants a string
    before = _catalog_and_records(store)
    assert app.handle(request).body["Code"] == "InvalidParameter"
    assert len(store.list("nonces/")) == 1 and _catalog_and_records(store) == before
    assert app.handle(request).body["Code"] == "SignatureNonceUsed"


class HeldStore(Store):
    """Passes every call to a store, but holds the reads of one named thread until released."""

    def __init__(self, inner: Store, thread: str) -> None:
        self.inner, self.thread = inner, thread
        self.holding, self.release = threading.Event(), threading.Event()

    def create(self, key: str, data: bytes) -> None:
        self.inner.create(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if threading.current_thread().name == self.thread:
            self.holding.set()
            self.release.wait()
        return self.inner.get_many(keys)

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        return self.inner.list(prefix, start_after, limit)


def test_commits_and_answers_from_memory_never_wait_behind_another_requests_storage_read() -> None:
    store = HeldStore(MemoryStore(), thread="slow-reader")
    registry = Registry(store)
    model_id, _ = registry.create(records.normalized_request({"ModelName": "m"}, "ws"))
    registry.get(model_id)
    reader = threading.Thread(target=registry.workspace("ws").read, name="slow-reader")
    reader.start()
    assert store.holding.wait(10)  # its GET of the next commit is in flight, and stays so
    updated = threading.Event()

    def update() -> None:
        registry.update(model_id, {"Domain": "nlp"})
        updated.set()

    threading.Thread(target=update).start()
    try:
        assert updated.wait(10)  # committed, applied and answered meanwhile (a deadlock guard, not a timing)
        assert registry.workspace("ws").model(model_id)[0].record()["Domain"] == "nlp"  # type: ignore[union-attr]
    finally:
        store.release.set()
        reader.join()
        registry.settle()


class LateStore(Store):
    """Passes every call to a store, but holds the first write of one key until released: a write that lands late."""

    def __init__(self, inner: Store, key: str) -> None:
        self.inner, self.key = inner, key
        self.writing, self.release = threading.Event(), threading.Event()

    def create(self, key: str, data: bytes) -> None:
        self.inner.create(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.inner.get_many(keys)

    def put(self, key: str, data: bytes) -> None:
        if key == self.key and not self.writing.is_set():
            self.writing.set()
            self.release.wait()
        self.inner.put(key, data)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        return self.inner.list(prefix, start_after, limit)


def test_a_record_write_that_lands_after_a_newer_change_is_made_current_by_its_writer(any_store: Store) -> None:
    """The writer's read after its answer finds the newer commit and writes the record again."""
    b = Registry(any_store)
    model_id, _ = b.create(records.normalized_request({"ModelName": "m"}, "ws"))
    late = LateStore(any_store, record_key(model_id))
    a = Registry(late)
    a.get(model_id)
    writer = threading.Thread(target=a.update, args=(model_id, {"Domain": "older"}))
    writer.start()
    assert late.writing.wait(10)  # a has committed; its record write is on its way
    b.update(model_id, {"Task": "newer"})  # committed after a's, its record written first
    b.settle()
    late.release.set()  # a's write lands last, with the older state
    writer.join()
    a.settle()
    current = Registry(any_store).get(model_id)
    assert (current["Domain"], current["Task"]) == ("older", "newer")
    assert json.loads(any_store.get(record_key(model_id))) == current
