"""Reproductions of an adversarial user's findings: bounded memory, no truncated or smuggled requests,
slow and idle clients, bounded batches and reads, bounded echoes, diagnosable failures, leftovers,
exact numbers, one rule for names, HTTP details and a CLI that answers in one line."""
from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml

from handler.api.app import App
from handler.api.http import Request
from handler.catalog.keys import record_key
from handler.entry import fc, local
from handler.registry import records, upkeep
from handler.registry.models import Registry
from handler.rules import jsontext as jsonbody
from handler.stores.file import FileStore
from handler.stores.memory import MemoryStore
from testing.fake_oss import FakeOss
from tests.conftest import FakeContext, invoke, local_api, make_oss_store, raw_exchange

REPO = Path(__file__).resolve().parent.parent
JSON = "application/json"


def post(body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    result = invoke({"httpMethod": "POST", "path": "/api/v1/models", "headers": {"Content-Type": JSON},
                     "body": data.decode("utf-8", "surrogatepass")})
    return result["statusCode"], json.loads(result["body"])


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def body_of(raw: bytes) -> dict[str, Any]:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


# --- 1. memory ----------------------------------------------------------------------------------

def _template_function() -> dict[str, Any]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((REPO / "template.yml").read_text(), Loader=Loader)
    return template["Resources"]["pai-model-registry"]["registry"]["Properties"]  # type: ignore[no-any-return]


WORST_BODIES = {
    # the most values a body may hold, each the costliest kind (an empty object in a list)
    "values": b'{"ModelName":"n","ExtraInfo":{"a":[' + b",".join([b"{}"] * (jsonbody.MAX_VALUES - 10)) + b"]}}",
    # a 1 MiB string of characters outside the BMP: four bytes each as a Python str
    "wide-text": b'{"ModelName":"n","ModelDoc":"' + "\U0001F600".encode() * ((1 << 20) // 4 - 16) + b'"}',
    # the deepest nesting allowed, as wide as the size limit lets it be
    "deep": b'{"ModelName":"n","ExtraInfo":' + b'{"a":' * 30 + b"1" + b"}" * 30 + b"}",
}


@pytest.mark.parametrize("name", WORST_BODIES)
def test_the_costliest_accepted_requests_at_full_concurrency_fit_well_inside_the_memory_size(name: str) -> None:
    app = App(Registry(MemoryStore()), default_workspace="ws")
    body = WORST_BODIES[name]
    assert len(body) <= app.max_body_bytes
    tracemalloc.start()
    try:
        answer = app.handle(Request("POST", "/api/v1/models", body, headers={"content-type": JSON}))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert answer.status == 200, answer.body
    function = _template_function()
    concurrent_mib = function["InstanceConcurrency"] * peak / 2**20
    # The instance's own baseline is about 60 MiB (bench: "Peak RSS of a warm instance"): keep half the memory free.
    assert concurrent_mib + 60 <= function["MemorySize"] / 2, f"{concurrent_mib:.0f} MiB for {name}"


def test_the_reported_body_of_330000_empty_arrays_is_refused_before_it_is_decoded(use_app) -> None:
    use_app(MemoryStore())
    body = b'{"ModelName":"n","ExtraInfo":{"a":[' + b",".join([b"[]"] * 330_000) + b"]}}"
    tracemalloc.start()
    try:
        status, answer = post(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (status, answer["Code"]) == (400, "InvalidBody") and "JSON values" in answer["Message"]
    assert peak < 16 * 2**20  # the text of the body, a few times over; never its 330,000 parsed lists


# --- 2, 3, 4, 12: the local server -----------------------------------------------------------------

@pytest.fixture
def server(use_app) -> Any:
    store = MemoryStore()
    use_app(store)
    with local_api() as srv:
        yield srv, store


@pytest.mark.parametrize(("head", "status"), [
    (b"Content-Length: 100", 400),  # 24 bytes of valid JSON sent, then the sending side closed
    (b"Content-Length: 5000000", 413),  # declared over the limit, short body
])
def test_a_body_shorter_than_declared_is_never_committed(server, head: bytes, status: int) -> None:
    srv, store = server
    request = b"POST /api/v1/models HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + head + b"\r\n\r\n"
    raw = raw_exchange(srv, request + b'{"ModelName":"trunc-123"}')
    assert status_of(raw) == status and body_of(raw)["Code"] in ("BadRequest", "RequestTooLarge")
    assert store.list("") == []


def test_a_chunk_declared_larger_than_its_data_is_never_committed(server) -> None:
    srv, store = server
    request = (b"POST /api/v1/models HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"64\r\n" + b'{"ModelName":"chunked-123"}')
    raw = raw_exchange(srv, request)
    assert status_of(raw) == 400 and store.list("") == []


@pytest.mark.parametrize("line", [b"Content-Length : 58", b"No colon in this line"])
def test_a_malformed_header_line_is_refused_and_nothing_is_smuggled(server, line: bytes) -> None:
    srv, store = server
    smuggled = b'POST /api/v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 24\r\n\r\n{"ModelName":"smuggled"}'
    request = b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\n" + line + b"\r\nX-After: 1\r\n\r\n" + smuggled
    raw = raw_exchange(srv, request)
    assert status_of(raw) == 400 and b"Connection: close" in raw
    assert raw.count(b"HTTP/1.1 ") == 1 and store.list("") == []


def test_an_idle_connection_is_closed_after_the_read_timeout(server, monkeypatch) -> None:
    srv, _ = server
    monkeypatch.setattr(local._GatewayHandler, "timeout", 0.3)
    sock = socket.create_connection(srv.server_address[:2], timeout=5)
    started = time.monotonic()
    try:
        assert sock.recv(100) == b""  # the server hangs up on a client that says nothing
    finally:
        sock.close()
    assert time.monotonic() - started < 3


def test_a_slow_body_is_cut_off_at_the_request_deadline(server, monkeypatch) -> None:
    srv, store = server
    monkeypatch.setattr(local, "REQUEST_DEADLINE", 0.5)
    sock = socket.create_connection(srv.server_address[:2], timeout=5)
    try:
        sock.sendall(b"POST /api/v1/models HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{")
        time.sleep(1.0)
        raw = sock.recv(65536)
    finally:
        sock.close()
    assert status_of(raw) == 400 and store.list("") == []


def test_trickling_clients_at_the_bound_lose_their_connections_to_normal_requests(use_app) -> None:
    """Slow clients holding every connection (a byte now and then) deny service to no one: each new
    connection takes the place of the one that has waited longest for its client."""
    use_app(MemoryStore())
    server = local.LocalServer(("127.0.0.1", 0), fc.get_app, 1 << 20, max_connections=8)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    slow: list[socket.socket] = []
    normal: list[http.client.HTTPConnection] = []
    try:
        for _ in range(8):
            sock = socket.create_connection(server.server_address[:2], timeout=5)
            sock.sendall(b"POST /api/v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # and no more
            slow.append(sock)
            time.sleep(0.02)
        for count in range(1, 9):  # normal clients that keep their connections open, one after another
            client = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
            client.request("GET", "/api/v1/models")
            answer = client.getresponse()
            assert answer.status == 200 and json.loads(answer.read())["TotalCount"] == 0
            normal.append(client)
            # The trickler that had waited longest lost its connection to each, without its request served.
            slow[count - 1].settimeout(5)
            rest = slow[count - 1].recv(65536)
            assert rest == b"" or status_of(rest) == 400
        normal[0].request("GET", "/api/v1/models")  # the normal clients' connections are still theirs
        assert normal[0].getresponse().status == 200
    finally:
        for sock in slow:
            sock.close()
        for client in normal:
            client.close()
        server.shutdown()
        server.server_close()


def test_connections_over_the_bound_are_answered_503_at_once_when_every_one_is_being_served(use_app) -> None:
    app = use_app(MemoryStore())
    release, inside = threading.Event(), threading.Semaphore(0)

    def slow_operation(request: Any) -> None:
        inside.release()
        release.wait(10)

    app.hooks.append(slow_operation)
    server = local.LocalServer(("127.0.0.1", 0), fc.get_app, 1 << 20, max_connections=3)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    busy = [threading.Thread(target=raw_exchange, args=(server, b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\n\r\n"))
            for _ in range(3)]
    try:
        for thread in busy:
            thread.start()
        for _ in busy:
            assert inside.acquire(timeout=5)  # three requests whole and being served: nothing to take a place from
        started = time.monotonic()
        raw = raw_exchange(server, b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(raw) == 503 and body_of(raw)["Code"] == "ServiceUnavailable"
        assert time.monotonic() - started < 2
    finally:
        release.set()
        for thread in busy:
            thread.join(10)
        server.shutdown()
        server.server_close()


def test_accepting_backs_off_when_out_of_file_descriptors(monkeypatch) -> None:
    import errno as errnos
    import socketserver

    server = local.LocalServer(("127.0.0.1", 0), fc.get_app, 1 << 20)
    sleeps: list[float] = []
    monkeypatch.setattr(socketserver.TCPServer, "get_request", lambda self: (_ for _ in ()).throw(OSError(errnos.EMFILE, "Too many")))
    monkeypatch.setattr(local.time, "sleep", sleeps.append)
    try:
        with pytest.raises(OSError):
            server.get_request()
    finally:
        server.server_close()
    assert sleeps == [0.1]


def test_http_details(server) -> None:
    srv, store = server
    body = b'Content-Length: 17\r\n\r\n{"ModelName":"a"}'
    two_types = b"POST /api/v1/models HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Type: application/json\r\n" + body
    assert status_of(raw_exchange(srv, two_types)) == 400
    latin = b"POST /api/v1/models HTTP/1.1\r\nHost: x\r\nContent-Type: application/json; charset=latin-1\r\n" + body
    raw = raw_exchange(srv, latin)
    assert status_of(raw) == 415 and "charset" in body_of(raw)["Message"]
    raw = raw_exchange(srv, b"POST /openapi.json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert status_of(raw) == 405 and b"Allow: GET, HEAD" in raw
    raw = raw_exchange(srv, b"GET http://example.com/api/v1/models?PageSize=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert status_of(raw) == 200 and body_of(raw)["TotalCount"] == 0
    server_header = [line for line in raw.split(b"\r\n") if line.lower().startswith(b"server:")]
    assert server_header == [b"Server: pai-model-registry"]
    assert store.list("") == []


# --- 5, 6: batches and registrations ------------------------------------------------------------

def test_a_batch_over_the_bound_is_answered_quickly_without_touching_storage(use_app) -> None:
    from handler.entry.events import MAX_BATCH

    store = MemoryStore()
    use_app(store)
    started = time.monotonic()
    answer = invoke([{"ModelName": f"m{i}"} for i in range(60_000)])
    assert answer["Code"] == "InvalidParameter" and str(MAX_BATCH) in answer["Message"]
    assert time.monotonic() - started < 2 and store.list("") == []
    assert len(invoke([{"ModelName": f"m{i}"} for i in range(3)])) == 3


@pytest.mark.parametrize("declared", [None, 10])
def test_a_registration_whose_size_is_missing_or_understated_is_read_no_further_than_the_limit(
    oss: FakeOss, use_app, declared: int | None
) -> None:
    use_app(make_oss_store(oss), max_body_bytes=1024)
    oss.seed("registry/registrations/huge.json", b'{"ModelName": "x", "ModelDoc": "' + b"a" * (3 << 20) + b'"}')
    event = json.loads((REPO / "tests" / "events" / "oss.json").read_text())
    event["events"][0]["oss"]["bucket"]["name"] = oss.bucket
    event["events"][0]["oss"]["object"]["key"] = "registry/registrations/huge.json"
    if declared is None:
        del event["events"][0]["oss"]["object"]["size"]
    else:
        event["events"][0]["oss"]["object"]["size"] = declared
    [result] = invoke(event)
    assert result["Code"] == "RequestTooLarge"
    [read] = [r for r in oss.log if r.method == "GET" and r.key.endswith("huge.json")]
    assert read.headers["range"] == "bytes=0-1024"


# --- 7. echoes ----------------------------------------------------------------------------------

def test_no_echo_of_what_a_client_sent_is_longer_than_a_few_hundred_characters(server) -> None:
    srv, _ = server
    key = "k" * 500_000
    status, answer = post(b'{"ModelName": "x", "' + key.encode() + b'": 1, "' + key.encode() + b'": 2}')
    assert status == 400 and len(answer["Message"]) < 300
    raw = raw_exchange(srv, b"GET /" + b"a" * 60_000 + b" HTTP/1.1 junk\r\n\r\n")
    assert status_of(raw) == 400 and len(body_of(raw)["Message"]) < 300


# --- 8. diagnosis -------------------------------------------------------------------------------

def test_a_storage_failure_is_logged_with_its_cause_and_request_id_but_no_path(use_app, tmp_path: Path, caplog) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "models").write_text("a file where a directory should be")
    use_app(FileStore(root))
    with caplog.at_level(logging.INFO):
        status, answer = post({"ModelName": "x"})
    assert status == 503
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"RequestId={answer['RequestId']} storage unavailable: NotADirectoryError ENOTDIR"]
    assert str(tmp_path) not in caplog.text


def test_protocol_errors_and_the_document_are_logged_like_every_request(server, caplog) -> None:
    srv, _ = server
    with caplog.at_level(logging.INFO, logger="handler.access"):
        raw_exchange(srv, b"GET / HTTP/9.9\r\n\r\n")
        raw_exchange(srv, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "handler.access"]
    assert [(line["Operation"], line["Status"]) for line in lines] == [("Protocol", 505), ("OpenApi", 200)]
    assert all(len(line["RequestId"]) == 36 for line in lines)


# --- 9. leftovers -------------------------------------------------------------------------------

def test_old_temporary_files_are_removed_at_start_and_young_ones_kept(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir(parents=True)
    old, young = tmp_path / "models" / ".tmp-old", tmp_path / "models" / ".tmp-young"
    old.write_bytes(b"x" * 900_000)
    young.write_bytes(b"y")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    FileStore(tmp_path)
    assert not old.exists() and young.exists()


def test_a_workspace_directory_that_leads_out_of_the_store_is_refused_before_anything_is_written(use_app, tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "catalog").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, root / "catalog" / "evil")
    use_app(FileStore(root))
    status, answer = post({"ModelName": "m", "WorkspaceId": "evil"})
    assert (status, answer["Code"]) == (400, "InvalidParameter")
    assert not (root / "models").exists() and list(outside.iterdir()) == []


def test_the_sweep_removes_only_old_records_no_commit_points_to(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    registry = Registry(store)
    kept, _ = registry.create(records.normalized_request({"ModelName": "kept"}, "ws"))
    old_id = records.new_model_id(int((time.time() - 3600) * 1000))
    young_id = records.new_model_id()
    for model_id in (old_id, young_id):  # records of creates that never committed
        normal = records.normalized_request({"ModelName": model_id}, "ws")
        store.create(record_key(model_id), records.record_json(records.build_record(normal, model_id, time.time(), None)))
    summary = upkeep.sweep(Registry(store))  # a cold instance: reads each workspace once
    assert summary["Removed"] == [old_id]
    assert sorted(k for k in store.list("models/")) == sorted([record_key(kept), record_key(young_id)])
    assert Registry(store).get(kept) is not None


def test_the_timer_trigger_runs_the_sweep(use_app) -> None:
    store = MemoryStore()
    use_app(store)
    old_id = records.new_model_id(int((time.time() - 3600) * 1000))
    store.create(record_key(old_id), records.record_json(records.build_record(
        records.normalized_request({"ModelName": "orphan"}, "ws"), old_id, 0, None)))
    answer = json.loads(fc.handler(json.dumps({"triggerTime": "2026-11-30T00:00:00Z", "triggerName": "upkeep",
                                                   "payload": "sweep"}).encode(), FakeContext()))
    assert answer["Removed"] == [old_id] and store.list("models/") == []


# --- 10, 11: numbers and names ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "kept"), [
    ("0.1000000000000000055511151231257827", None),  # a float would round it: refused
    ("1." + "0" * 900_000 + "1", None),
    ("1e2", 100.0),  # the same value, in its shortest form
    ("-0", 0),
    ("12345678901234567890123456789", 12345678901234567890123456789),  # integers are exact at any size
    ("1.5e300", 1.5e300),
])
def test_numbers_in_extra_info_are_kept_exactly_or_refused(use_app, text: str, kept: Any) -> None:
    store = MemoryStore()
    use_app(store)
    status, answer = post(b'{"ModelName": "n", "ExtraInfo": {"v": ' + text.encode() + b"}}")
    if kept is None:
        assert (status, answer["Code"]) == (400, "InvalidBody") and "exactly" in answer["Message"]
        assert store.list("") == []
    else:
        assert status == 200
        assert json.loads(store.get(record_key(answer["ModelId"])))["ExtraInfo"]["v"] == kept


def test_a_name_in_nfc_and_nfd_is_one_model(use_app) -> None:
    use_app(MemoryStore())
    composed, decomposed = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    _, first = post({"ModelName": composed, "Tag": [{"Key": "ville", "Value": "Orléans"}]})
    status, again = post({"ModelName": decomposed, "Tag": [{"Key": "ville", "Value": unicodedata.normalize("NFD", "Orléans")}]})
    assert (status, again["ModelId"]) == (200, first["ModelId"])


@pytest.mark.parametrize("name", ["a\u200bb", "\ufeffname", "evil\u202egnp.exe", "a\x00b", "two\nlines", "tab\there",
                                  "   ", "\u2028", "a\u2066b"])
def test_invisible_and_control_characters_and_blank_names_are_refused(use_app, name: str) -> None:
    store = MemoryStore()
    use_app(store)
    status, answer = post({"ModelName": name})
    assert (status, answer["Code"]) == (400, "InvalidParameter") and "ModelName" in answer["Message"]
    if name.strip():  # a label may be blank, not invisible
        status, answer = post({"ModelName": "ok", "Tag": [{"Key": "k", "Value": name}]})
        assert status == 400 and "Tag[0].Value" in answer["Message"]
    assert store.list("") == []


# --- 13, 14: the command line -----------------------------------------------------------------

def cli(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "handler", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "MODEL_STORE": "memory://", **env})


def test_the_cli_answers_mistakes_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        outcomes = [
            cli("serve", "--port", str(busy.getsockname()[1])),
            cli("serve", "--port", "99999"),
            cli("invoke", str(tmp_path / "missing.json")),
        ]
    finally:
        busy.close()
    for outcome in outcomes:
        assert outcome.returncode != 0 and "Traceback" not in outcome.stderr, outcome.stderr
        assert len(outcome.stderr.strip().splitlines()) <= 3, outcome.stderr  # argparse adds its usage line
    assert "cannot listen" in outcomes[0].stderr and "port" in outcomes[1].stderr and "cannot read" in outcomes[2].stderr


def test_the_local_server_listens_on_ipv6_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "handler", "serve", "--host", "::1", "--port", "0",
                                "--store", f"file://{tmp_path}/store"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "http://[::1]:" in line and f"file://{tmp_path}/store" in line  # the real location, absolute
        process.terminate()
        assert process.wait(timeout=10) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        process.kill()


# --- a second adversarial pass over the model API -------------------------------------------------

def test_tag_and_labels_together_cannot_exceed_the_label_cap(use_app) -> None:
    store = MemoryStore()
    use_app(store)
    tag = [{"Key": f"t{i}", "Value": "v"} for i in range(1000)]
    labels = [{"Key": f"l{i}", "Value": "v"} for i in range(1000)]
    status, answer = post({"ModelName": "z", "Tag": tag, "Labels": labels})
    assert (status, answer["Code"]) == (400, "InvalidParameter") and "2000" in answer["Message"]
    assert store.list("") == []


@pytest.mark.parametrize(("query", "words"), [
    ({"Conditions": '[{"Column":"GmtCreateTime","Operator":"LessThan","Value":"2020-01-01T00:00:00ZZZ"}]'}, "UTC time"),
    ({"Conditions": '[{"Column":"GmtCreateTime","Operator":"LessThan","Value":"2020-1-1T0:0:0Z"}]'}, "UTC time"),
    ({"Conditions": '[{"Column":"OrderNumber","Operator":"Equal","Value":" 1 "}]'}, "number"),
    ({"Conditions": '[{"Column":"OrderNumber","Operator":"Equal","Value":"1_0"}]'}, "number"),
    ({"Conditions": '[{"Column":"OrderNumber","Operator":"Equal","Value":"\u0661"}]'}, "number"),
    ({"Tag": '[{"Key":"a","Key":"b","Value":"v"}]'}, "duplicate key"),
])
def test_list_values_are_read_strictly(use_app, query: dict[str, str], words: str) -> None:
    use_app(MemoryStore())
    result = invoke({"httpMethod": "GET", "path": "/api/v1/models", "headers": {}, "queryParameters": query})
    answer = json.loads(result["body"])
    assert result["statusCode"] == 400 and words in answer["Message"], answer
    assert answer["Message"].startswith(next(iter(query)))  # it names the parameter, not "body"


def test_quoted_empty_name_matches_nothing_and_big_integers_compare_exactly(use_app) -> None:
    use_app(MemoryStore())
    for i, order in enumerate([9007199254740992, 9007199254740993]):
        assert post({"ModelName": f"m{i}", "OrderNumber": order})[0] == 200

    def names(**query: str) -> list[str]:
        result = invoke({"httpMethod": "GET", "path": "/api/v1/models", "headers": {}, "queryParameters": query})
        return [m["ModelName"] for m in json.loads(result["body"])["Models"]]

    assert names(ModelName='""') == []
    assert names(Conditions='[{"Column":"OrderNumber","Operator":"Equal","Value":"9007199254740993"}]') == ["m1"]
    assert names(Conditions='[{"Column":"OrderNumber","Operator":"Equal","Value":9007199254740993}]') == ["m1"]


def test_path_and_query_details_over_http(server) -> None:
    srv, _ = server
    raw = raw_exchange(srv, b"GET /api/v1/models?Query=%FF HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(raw) == 400 and "UTF-8" in body_of(raw)["Message"]
    raw = raw_exchange(srv, b"GET /api/v1/models/model-abc%0A HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(raw) == 400 and body_of(raw)["Message"].startswith("ModelId")
    raw = raw_exchange(srv, b"HEAD /api/v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(raw) == 200 and raw.endswith(b"\r\n\r\n")  # the GET's headers, no body
    for target in (b"/api/v1/models?=&&&=x", b"/api/v1/models?PageSize=1&=x", b"/api/2.0/mlflow/registered-models/search?=x"):
        raw = raw_exchange(srv, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(raw) == 400 and "has no name" in str(body_of(raw).get("Message", body_of(raw).get("message"))), target


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_request_deadline(server, monkeypatch) -> None:
    srv, _ = server
    monkeypatch.setattr(local, "REQUEST_DEADLINE", 1.0)
    sock = socket.create_connection(srv.server_address[:2], timeout=10)
    started = time.monotonic()
    try:
        sock.sendall(b"GET /api/v1/models HTTP/1.1\r\nX-Slow: ")
        closed = False
        for _ in range(40):  # a byte every 0.1 s: never silent for the read timeout, always slower than the deadline
            try:
                sock.sendall(b"a")
            except OSError:
                closed = True
                break
            time.sleep(0.1)
        sock.settimeout(3)
        tail = sock.recv(65536) if not closed else b""
    finally:
        sock.close()
    assert closed or tail in (b"",) or tail.startswith(b"HTTP/1.1 4")
    assert time.monotonic() - started < 8


def test_the_label_filter_compares_names_in_nfc(use_app) -> None:
    use_app(MemoryStore())
    post({"ModelName": "m", "Tag": [{"Key": "city", "Value": unicodedata.normalize("NFC", "café")}]})
    result = invoke({"httpMethod": "GET", "path": "/api/v1/models", "headers": {},
                     "queryParameters": {"Label": unicodedata.normalize("NFD", "café")}})
    assert json.loads(result["body"])["TotalCount"] == 1
