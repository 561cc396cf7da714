"""FakeOss driven by the real oss2 client over loopback HTTP."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator

import oss2
import pytest

from testing.fake_oss import FakeOss, commit_then_drop, delay, drop, error

FORBID = {"x-oss-forbid-overwrite": "true"}


@pytest.fixture
def server() -> Iterator[FakeOss]:
    with FakeOss() as s:
        yield s


def make_bucket(server: FakeOss, auth: oss2.Auth | None = None, **kwargs: object) -> oss2.Bucket:
    session = kwargs.pop("session", None) or oss2.Session()
    session.session.trust_env = False  # never route loopback through a proxy from the environment
    return oss2.Bucket(auth or oss2.Auth("ak", "sk"), server.endpoint, server.bucket, session=session, **kwargs)


@pytest.fixture
def bucket(server: FakeOss) -> oss2.Bucket:
    return make_bucket(server)


# --- basic operations ---------------------------------------------------------------------------

@pytest.mark.parametrize("auth", [oss2.Auth("ak", "sk"), oss2.StsAuth("ak", "sk", "token")], ids=["auth", "sts"])
def test_round_trip(server: FakeOss, auth: oss2.Auth) -> None:
    bucket = make_bucket(server, auth)
    data = b"hello world"
    etag = hashlib.md5(data).hexdigest().upper()

    put = bucket.put_object("dir/obj.json", data, headers={"x-oss-meta-owner": "me"})
    assert (put.status, put.etag) == (200, etag)
    assert put.request_id

    got = bucket.get_object("dir/obj.json")
    assert (got.read(), got.etag, got.content_type) == (data, etag, "application/json")
    assert got.headers["x-oss-meta-owner"] == "me"
    assert abs(got.last_modified - time.time()) < 5

    head = bucket.head_object("dir/obj.json")
    assert (head.content_length, head.etag) == (len(data), etag)
    assert server.objects == {"dir/obj.json": data}

    assert bucket.delete_object("dir/obj.json").status == 204
    assert server.objects == {}
    assert bucket.delete_object("dir/obj.json").status == 204  # deleting a missing key is fine
    if isinstance(auth, oss2.StsAuth):
        assert server.log[0].headers["x-oss-security-token"] == "token"


def test_forbid_overwrite(server: FakeOss, bucket: oss2.Bucket) -> None:
    bucket.put_object("k", b"first", headers=FORBID)
    with pytest.raises(oss2.exceptions.ServerError) as exc:
        bucket.put_object("k", b"second", headers=FORBID)
    assert (exc.value.status, exc.value.code) == (409, "FileAlreadyExists")
    assert exc.value.request_id
    assert server.objects["k"] == b"first"
    bucket.put_object("k", b"third")  # a plain PUT overwrites
    assert server.objects["k"] == b"third"


def test_missing_keys(bucket: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.NoSuchKey) as exc:
        bucket.get_object("missing")
    assert exc.value.status == 404
    with pytest.raises(oss2.exceptions.NotFound) as head_exc:
        bucket.head_object("missing")
    assert head_exc.value.code == "NoSuchKey"  # decoded from the x-oss-err header


def test_content_md5(server: FakeOss, bucket: oss2.Bucket) -> None:
    good = base64.b64encode(hashlib.md5(b"data").digest()).decode()
    bucket.put_object("ok", b"data", headers={"Content-MD5": good})
    with pytest.raises(oss2.exceptions.ServerError) as exc:
        bucket.put_object("bad", b"other", headers={"Content-MD5": good})
    assert (exc.value.status, exc.value.code) == (400, "InvalidDigest")
    assert set(server.objects) == {"ok"}


def test_odd_keys_survive(server: FakeOss, bucket: oss2.Bucket) -> None:
    keys = ["a/b/c", "with space", "plus+sign", "per%cent", "q?uestion#hash", "ünï/中文/🙂", "amp&lt;"]
    for key in keys:
        bucket.put_object(key, key.encode())
    for key in keys:
        assert bucket.get_object(key).read() == key.encode()
    assert sorted(server.objects) == sorted(keys)
    assert [o.key for o in oss2.ObjectIteratorV2(bucket, max_keys=2)] == sorted(keys, key=str.encode)


def test_invalid_names_and_buckets(server: FakeOss, bucket: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.ServerError) as exc:
        bucket.put_object("x" * 1024, b"")
    assert (exc.value.status, exc.value.code) == (400, "InvalidObjectName")
    other = oss2.Bucket(oss2.Auth("ak", "sk"), server.endpoint, "other-bucket")
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        other.get_object("k")
    with pytest.raises(oss2.exceptions.ServerError) as exc:
        bucket.get_bucket_acl()
    assert (exc.value.status, exc.value.code) == (501, "NotImplemented")


# --- listing ------------------------------------------------------------------------------------

def test_list_pages_in_order(server: FakeOss, bucket: oss2.Bucket) -> None:
    for i in reversed(range(12)):
        server.seed(f"p/{i:02d}", b"x" * i)
    server.seed("q/other", b"")

    listed = list(oss2.ObjectIteratorV2(bucket, prefix="p/", max_keys=5))
    assert [o.key for o in listed] == [f"p/{i:02d}" for i in range(12)]
    assert [o.size for o in listed] == list(range(12))
    assert listed[3].etag == hashlib.md5(b"xxx").hexdigest().upper()
    assert listed[0].type == "Normal" and listed[0].storage_class == "Standard"
    lists = [r for r in server.log if r.query.get("list-type") == "2"]
    assert len(lists) == 3 and lists[0].query["max-keys"] == "5"

    after = [o.key for o in oss2.ObjectIteratorV2(bucket, prefix="p/", start_after="p/08", max_keys=2)]
    assert after == ["p/09", "p/10", "p/11"]
    assert [o.key for o in oss2.ObjectIteratorV2(bucket, prefix="nothing/")] == []


def test_list_delimiter(server: FakeOss, bucket: oss2.Bucket) -> None:
    for key in ["a/1", "a/2", "b/x/1", "b/y", "c", "d/1"]:
        server.seed(key, b"")
    entries = list(oss2.ObjectIteratorV2(bucket, delimiter="/", max_keys=2))
    assert [(o.key, o.is_prefix()) for o in entries] == [
        ("a/", True), ("b/", True), ("c", False), ("d/", True)]
    nested = list(oss2.ObjectIteratorV2(bucket, prefix="b/", delimiter="/"))
    assert [o.key for o in nested] == ["b/x/", "b/y"]


# --- faults -------------------------------------------------------------------------------------

def test_error_fault(server: FakeOss, bucket: oss2.Bucket) -> None:
    server.inject("PUT", "k", action=error(503, "ServiceUnavailable"))
    with pytest.raises(oss2.exceptions.ServerError) as exc:
        bucket.put_object("k", b"data")
    assert (exc.value.status, exc.value.code) == (503, "ServiceUnavailable")
    assert server.objects == {}
    bucket.put_object("k", b"data")  # the rule fired once and is gone
    assert server.objects == {"k": b"data"}

    server.inject("HEAD", "k", action=error(500, "InternalError"))
    with pytest.raises(oss2.exceptions.ServerError) as exc:
        bucket.head_object("k")
    assert (exc.value.status, exc.value.code) == (500, "InternalError")


def test_drop_fault(server: FakeOss, bucket: oss2.Bucket) -> None:
    server.inject("PUT", "k", action=drop())
    with pytest.raises(oss2.exceptions.RequestError):
        bucket.put_object("k", b"data")
    assert server.objects == {}
    assert [(r.method, r.status, r.fault) for r in server.log] == [("PUT", None, "drop")]  # no hidden retry
    bucket.put_object("k", b"data")  # the same session recovers
    assert server.objects == {"k": b"data"}


def test_commit_then_drop_fault(server: FakeOss, bucket: oss2.Bucket) -> None:
    server.inject("PUT", "k", action=commit_then_drop())
    with pytest.raises(oss2.exceptions.RequestError):
        bucket.put_object("k", b"data", headers=FORBID)
    assert server.objects == {"k": b"data"}
    # The retry of a lost create-only reply meets its own write; the ETag identifies it.
    with pytest.raises(oss2.exceptions.ServerError) as exc:
        bucket.put_object("k", b"data", headers=FORBID)
    assert exc.value.status == 409
    assert bucket.head_object("k").etag == hashlib.md5(b"data").hexdigest().upper()


def test_delay_fault(server: FakeOss, bucket: oss2.Bucket) -> None:
    server.inject("GET", "k", action=delay(0.1))
    server.seed("k", b"v")
    started = time.monotonic()
    assert bucket.get_object("k").read() == b"v"
    assert time.monotonic() - started >= 0.1

    impatient = make_bucket(server, connect_timeout=0.2)
    server.inject("GET", "k", action=delay(0.4))
    with pytest.raises(oss2.exceptions.RequestError):
        impatient.get_object("k")


def test_rule_matching_and_times(server: FakeOss, bucket: oss2.Bucket) -> None:
    server.inject("put", prefix="tmp/", action=error(500, "InternalError"), times=2)
    bucket.put_object("keep/a", b"")  # other prefix: untouched
    assert bucket.get_object("keep/a").read() == b""  # other method: untouched
    for key in ["tmp/a", "tmp/b"]:
        with pytest.raises(oss2.exceptions.ServerError):
            bucket.put_object(key, b"")
    bucket.put_object("tmp/c", b"")
    assert sorted(server.objects) == ["keep/a", "tmp/c"]

    server.inject("GET", action=error(503, "ServiceUnavailable"))  # any key, bucket-level too
    with pytest.raises(oss2.exceptions.ServerError):
        list(oss2.ObjectIteratorV2(bucket, max_retries=0))
    with pytest.raises(ValueError):
        server.inject("GET", "k", prefix="k", action=drop())


def test_request_log(server: FakeOss, bucket: oss2.Bucket) -> None:
    server.inject("DELETE", "a b", action=error(500, "InternalError"))
    bucket.put_object("a b", b"1")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object("zz")
    with pytest.raises(oss2.exceptions.ServerError):
        bucket.delete_object("a b")
    assert [(r.method, r.key, r.status, r.fault) for r in server.log] == [
        ("PUT", "a b", 200, None), ("GET", "zz", 404, None), ("DELETE", "a b", 500, "error")]
    assert server.log[0].headers["content-length"] == "1"
    assert server.log[0].query == {}


def test_seed_and_reset(server: FakeOss, bucket: oss2.Bucket) -> None:
    server.seed("s", b"seeded")
    assert bucket.get_object("s").read() == b"seeded"
    server.inject("GET", action=drop())
    server.reset()
    assert (server.objects, server.log, server.connections_opened) == ({}, [], 0)
    with pytest.raises(oss2.exceptions.NoSuchKey):  # the drop rule is gone too
        bucket.get_object("s")


# --- concurrency and connections ----------------------------------------------------------------

def test_forbid_overwrite_race(server: FakeOss, bucket: oss2.Bucket) -> None:
    outcomes: list[object] = []
    barrier = threading.Barrier(32)

    def put(i: int) -> None:
        barrier.wait()
        try:
            bucket.put_object("race", str(i).encode(), headers=FORBID)
            outcomes.append("ok")
        except oss2.exceptions.ServerError as e:
            outcomes.append((e.status, e.code))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 1
    assert outcomes.count((409, "FileAlreadyExists")) == 31


def test_shared_session_reuses_connections(server: FakeOss) -> None:
    bucket = make_bucket(server, session=oss2.Session(pool_size=4))
    for i in range(50):
        bucket.put_object(f"k{i}", b"x" * 1024)
    assert len(server.objects) == 50
    assert 1 <= server.connections_opened <= 4
