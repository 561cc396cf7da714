"""OssStore against a mocked oss2.Bucket: the exact oss2 calls, retries, error mapping, no leaked secrets."""
from __future__ import annotations

import base64
import hashlib
import inspect
import logging
import traceback
from types import SimpleNamespace

import oss2
import pytest
import requests

from handler.stores import oss
from handler.stores.base import AlreadyExists, InvalidKey, NotFound, StoreError, Unavailable

AK, SK, TOKEN = "AKID-TEST-1234", "SK-SECRET-5678", "STS-TOKEN-9012"
CREDS = oss.Credentials(AK, SK, TOKEN)
ENDPOINT = "https://oss-cn-hangzhou-internal.aliyuncs.com"
BUCKET = "registry-bucket"
REAL_BUCKET = oss2.Bucket
SECRETS = (AK, SK, TOKEN, ENDPOINT, "oss-cn-hangzhou", BUCKET, "REQ-ID-42")


class FakeResponse:
    def __init__(self, status: int, body: bytes):
        self.status = status
        self.headers = {"x-oss-request-id": "REQ-ID-42", "x-oss-security-token": TOKEN,
                        "Authorization": f"OSS {AK}:sig"}
        self._body = body

    def read(self, amt=None):
        return self._body


def oss_error(status: int, code: str) -> oss2.exceptions.OssError:
    """A real oss2 exception as oss2 builds it, with secrets in its headers and message."""
    body = (f"<Error><Code>{code}</Code><Message>key {AK} token {TOKEN}</Message>"
            f"<RequestId>REQ-ID-42</RequestId><HostId>{BUCKET}.{ENDPOINT}</HostId></Error>").encode()
    return oss2.exceptions.make_exception(FakeResponse(status, body if code else b"Bad Gateway"))


def request_error() -> oss2.exceptions.RequestError:
    return oss2.exceptions.RequestError(
        requests.exceptions.ConnectionError(f"refused: {ENDPOINT}/{BUCKET}?security-token={TOKEN}"))


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def obj(data: bytes) -> SimpleNamespace:
    return SimpleNamespace(read=lambda: data)


class Clock:
    """Stands in for the `time` module inside oss.py: sleeping advances the clock."""

    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(mocker):
    from handler.stores import base

    fake = Clock()
    mocker.patch.object(oss, "time", fake)
    mocker.patch.object(base, "time", fake)  # time budgets too, or they depend on the machine's uptime
    return fake


@pytest.fixture
def Bucket(mocker, clock):
    # spec (not autospec: 0.25 s per test on oss2's large class); signatures are checked in `bucket`.
    Bucket = mocker.patch.object(oss.oss2, "Bucket")
    Bucket.return_value = mocker.Mock(spec=REAL_BUCKET)
    Bucket.return_value.get_bucket_versioning.return_value = SimpleNamespace(status=None)  # never had versioning
    return Bucket


@pytest.fixture
def bucket(Bucket):
    yield Bucket.return_value
    for name, args, kwargs in Bucket.return_value.method_calls:  # each call fits oss2's real signature
        inspect.signature(getattr(REAL_BUCKET, name)).bind(None, *args, **kwargs)


@pytest.fixture
def creds(mocker):
    return mocker.Mock(return_value=CREDS)


@pytest.fixture
def store(Bucket, creds):
    return oss.OssStore(BUCKET, "p/", endpoint=ENDPOINT, credentials=creds)


# --- create -----------------------------------------------------------------------------------

def test_create_sends_forbid_overwrite_and_md5_under_prefix(store, bucket, Bucket):
    store.create("models/m1/version.json", b"{}")
    bucket.put_object.assert_called_once_with(
        "p/models/m1/version.json", b"{}",
        headers={"x-oss-forbid-overwrite": "true", "Content-MD5": md5(b"{}")})
    bucket.get_object.assert_not_called()
    (auth, endpoint, name), kwargs = Bucket.call_args
    assert (endpoint, name) == (ENDPOINT, BUCKET)
    assert kwargs == {"session": oss._session(16), "connect_timeout": (2.0, 6.0),
                      "enable_crc": False, "region": None}


def test_create_existing_identical_bytes_succeeds(store, bucket):
    bucket.put_object.side_effect = oss_error(409, "FileAlreadyExists")
    bucket.get_object.return_value = obj(b"same")
    store.create("k", b"same")
    bucket.get_object.assert_called_once_with("p/k")


def test_create_existing_different_bytes_raises_already_exists(store, bucket):
    bucket.put_object.side_effect = oss_error(409, "FileAlreadyExists")
    bucket.get_object.return_value = obj(b"other")
    with pytest.raises(AlreadyExists) as info:
        store.create("k", b"mine")
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert bucket.put_object.call_count == 1


def test_create_retry_after_lost_reply_recognises_own_write(store, bucket, clock):
    bucket.put_object.side_effect = [request_error(), oss_error(409, "FileAlreadyExists")]
    bucket.get_object.return_value = obj(b"mine")
    store.create("k", b"mine")
    assert bucket.put_object.call_count == 2 and len(clock.sleeps) == 1


def test_create_collision_with_vanished_object_puts_again(store, bucket):
    bucket.put_object.side_effect = [oss_error(409, "FileAlreadyExists"), None]
    bucket.get_object.side_effect = oss_error(404, "NoSuchKey")
    store.create("k", b"mine")
    assert bucket.put_object.call_count == 2


def test_other_409_is_not_retried(store, bucket):
    bucket.put_object.side_effect = oss_error(409, "PositionNotEqualToLength")
    with pytest.raises(StoreError) as info:
        store.create("k", b"x")
    assert type(info.value) is StoreError and bucket.put_object.call_count == 1


# --- get / put / delete -------------------------------------------------------------------------

def test_get_returns_bytes(store, bucket):
    bucket.get_object.return_value = obj(b"data")
    assert store.get("a/b") == b"data"
    bucket.get_object.assert_called_once_with("p/a/b")


@pytest.mark.parametrize("code", ["NoSuchKey", ""])
def test_get_missing_raises_not_found(store, bucket, code):
    bucket.get_object.side_effect = oss_error(404, code)
    with pytest.raises(NotFound) as info:
        store.get("a")
    assert info.value.__context__ is None
    assert bucket.get_object.call_count == 1


def test_get_missing_bucket_is_unavailable(store, bucket):
    bucket.get_object.side_effect = oss_error(404, "NoSuchBucket")
    with pytest.raises(Unavailable):
        store.get("a")


def test_get_body_read_failure_is_retried(store, bucket, mocker):
    broken = mocker.Mock(**{"read.side_effect": requests.exceptions.ChunkedEncodingError("cut")})
    bucket.get_object.side_effect = [broken, obj(b"data")]
    assert store.get("a") == b"data"


def test_put_overwrites_with_md5_only(store, bucket):
    store.put("a", b"new")
    bucket.put_object.assert_called_once_with("p/a", b"new", headers={"Content-MD5": md5(b"new")})


def test_delete(store, bucket):
    store.delete("a/b")
    bucket.delete_object.assert_called_once_with("p/a/b")
    bucket.delete_object.side_effect = oss_error(404, "NoSuchKey")
    store.delete("a/b")


# --- retries and error mapping -----------------------------------------------------------------

def test_request_error_then_success_is_retried(store, bucket, clock):
    bucket.put_object.side_effect = [request_error(), None]
    store.put("a", b"x")
    assert bucket.put_object.call_count == 2
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0] <= 0.05


@pytest.mark.parametrize("status,code", [(500, "InternalError"), (503, "ServiceUnavailable"),
                                         (502, ""), (429, "TooManyRequests")])
def test_transient_errors_exhaust_attempts_then_unavailable(store, bucket, clock, mocker, status, code):
    mocker.patch.object(oss, "random").uniform.side_effect = lambda low, high: high
    bucket.get_object.side_effect = oss_error(status, code)
    with pytest.raises(Unavailable):
        store.get("a")
    assert bucket.get_object.call_count == 4
    assert clock.sleeps == [0.05, 0.1, 0.2]


def test_backoff_is_capped(Bucket, bucket, creds, clock, mocker):
    mocker.patch.object(oss, "random").uniform.side_effect = lambda low, high: high
    store = oss.OssStore(BUCKET, endpoint=ENDPOINT, credentials=creds, attempts=8, deadline=60)
    bucket.delete_object.side_effect = oss_error(503, "")
    with pytest.raises(Unavailable):
        store.delete("a")
    assert clock.sleeps == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


@pytest.mark.parametrize("code", ["AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId",
                                  "SecurityTokenExpired"])
def test_auth_failures_are_unavailable_without_retry(store, bucket, clock, code):
    bucket.put_object.side_effect = oss_error(403, code)
    with pytest.raises(Unavailable):
        store.put("a", b"x")
    assert bucket.put_object.call_count == 1 and clock.sleeps == []


def test_other_4xx_is_store_error_without_retry(store, bucket):
    bucket.put_object.side_effect = oss_error(400, "InvalidArgument")
    with pytest.raises(StoreError) as info:
        store.put("a", b"x")
    assert not isinstance(info.value, Unavailable) and bucket.put_object.call_count == 1


def _times_out_after_its_timeouts(Bucket, clock):
    def timed_out(*args, **kwargs):
        clock.now += sum(Bucket.call_args.kwargs["connect_timeout"])  # the try used all its time
        raise request_error()
    return timed_out


def test_no_try_runs_past_the_deadline(store, Bucket, bucket, clock):
    bucket.put_object.side_effect = _times_out_after_its_timeouts(Bucket, clock)
    with pytest.raises(Unavailable):
        store.create("k", b"x")
    # 8 s, 8 s, then a try shrunk to what is left of the 20 s.
    assert bucket.put_object.call_count == 3
    assert Bucket.call_args.kwargs["connect_timeout"] == pytest.approx((1.0, 3.0), abs=0.3)
    assert clock.now - 100.0 <= 20.0


def test_the_request_time_budget_bounds_every_try(store, Bucket, bucket, clock, mocker):
    from handler.stores import base
    from handler.stores.base import time_budget

    mocker.patch.object(base, "time", clock)

    bucket.put_object.side_effect = _times_out_after_its_timeouts(Bucket, clock)
    with time_budget(5.0), pytest.raises(Unavailable):
        store.create("k", b"x")
    assert bucket.put_object.call_count == 1
    assert Bucket.call_args.kwargs["connect_timeout"] == pytest.approx((1.25, 3.75))
    assert clock.now - 100.0 <= 5.0


def test_no_try_starts_when_the_budget_is_spent(store, Bucket, bucket, clock, mocker):
    from handler.stores import base
    from handler.stores.base import time_budget

    mocker.patch.object(base, "time", clock)

    with time_budget(0.1), pytest.raises(Unavailable):
        store.put("k", b"x")
    assert bucket.put_object.call_count == 0


@pytest.mark.parametrize("failure", [lambda: oss_error(503, "ServiceUnavailable"), request_error,
                                     lambda: oss_error(403, "SecurityTokenExpired"),
                                     lambda: oss_error(400, "InvalidArgument")])
def test_errors_leak_no_secrets(store, bucket, caplog, failure):
    bucket.put_object.side_effect = failure()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as info:
        store.create("k", b"x")
    error = info.value
    assert error.__cause__ is None and error.__context__ is None
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for secret in SECRETS:
        assert secret not in text and secret not in repr(error) and secret not in caplog.text
    if isinstance(error, Unavailable):
        assert str(error) == "object storage unavailable"


def test_retries_are_logged_with_op_attempt_and_status(store, bucket, caplog):
    bucket.put_object.side_effect = [oss_error(503, "ServiceUnavailable"), None]
    with caplog.at_level(logging.WARNING, logger=oss.__name__):
        store.put("a", b"x")
    assert [r.getMessage() for r in caplog.records] == [
        "oss put: attempt 1 failed (503 ServiceUnavailable), retrying"]


# --- keys --------------------------------------------------------------------------------------

BAD_KEYS = ["../x", "a//b", "a/\x00", "/a", "a/", "", "a/./b", "x" * 901, "a b", "a\\b"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_rejected_before_any_request(store, Bucket, bucket, creds, key):
    for call in (lambda: store.create(key, b"x"), lambda: store.get(key), lambda: store.put(key, b"x"),
                 lambda: store.delete(key), lambda: store.delete_many(["ok", key])):
        with pytest.raises(InvalidKey):
            call()
    assert Bucket.call_count == 0 and creds.call_count == 0
    assert bucket.method_calls == []


@pytest.mark.parametrize("prefix", ["../", "a//", "a", "/a/", "a/\x00/"])
def test_unsafe_list_prefix_and_store_prefix_rejected(store, bucket, Bucket, creds, prefix):
    with pytest.raises(InvalidKey):
        store.list(prefix)
    with pytest.raises(InvalidKey):
        oss.OssStore(BUCKET, prefix, endpoint=ENDPOINT, credentials=creds)
    assert bucket.method_calls == [] and creds.call_count == 0


def test_unsafe_start_after_rejected(store, bucket):
    with pytest.raises(InvalidKey):
        store.list("", start_after="../x")
    assert bucket.method_calls == []


# --- credentials and Bucket construction --------------------------------------------------------

def test_bucket_rebuilt_only_when_credentials_change(store, Bucket, bucket, creds):
    bucket.get_object.return_value = obj(b"")
    store.get("a")
    store.get("b")
    assert creds.call_count == 2 and Bucket.call_count == 1
    creds.return_value = oss.Credentials(AK, SK, "STS-TOKEN-NEXT")
    store.get("c")
    store.get("d")
    assert Bucket.call_count == 2
    assert Bucket.call_args.args[0]._StsAuth__auth.credentials_provider.get_credentials() \
        .get_security_token() == "STS-TOKEN-NEXT"


def test_sts_auth_with_token_plain_auth_without(Bucket, bucket, creds):
    oss.OssStore(BUCKET, endpoint=ENDPOINT, credentials=creds).delete("a")
    auth = Bucket.call_args.args[0]
    assert isinstance(auth, oss2.StsAuth) and auth.auth_version() == oss2.AUTH_VERSION_1
    creds.return_value = oss.Credentials(AK, SK, None)
    oss.OssStore(BUCKET, endpoint=ENDPOINT, credentials=creds).delete("a")
    assert type(Bucket.call_args.args[0]) is oss2.Auth


def test_region_selects_v4_signing(Bucket, bucket, creds):
    oss.OssStore(BUCKET, endpoint=ENDPOINT, credentials=creds, region="cn-hangzhou").delete("a")
    auth = Bucket.call_args.args[0]
    assert isinstance(auth, oss2.StsAuth) and auth.auth_version() == oss2.AUTH_VERSION_4
    assert Bucket.call_args.kwargs["region"] == "cn-hangzhou"
    creds.return_value = oss.Credentials(AK, SK, None)
    oss.OssStore(BUCKET, endpoint=ENDPOINT, credentials=creds, region="cn-hangzhou").delete("a")
    assert isinstance(Bucket.call_args.args[0], oss2.AuthV4)


def test_one_session_per_pool_size_without_env_proxies(Bucket, creds):
    a = oss.OssStore(BUCKET, endpoint=ENDPOINT, credentials=creds)
    b = oss.OssStore("other-bucket", endpoint=ENDPOINT, credentials=creds)
    c = oss.OssStore(BUCKET, endpoint=ENDPOINT, credentials=creds, pool_size=4)
    assert a._session is b._session is not c._session
    assert a._session.session.trust_env is False


def test_credentials_repr_hides_secret_and_token():
    assert SK not in repr(CREDS) and TOKEN not in repr(CREDS) and AK in repr(CREDS)


def test_oss2_logger_kept_at_warning():
    assert logging.getLogger("oss2").level == logging.WARNING


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"deadline": 5.0}, {"connect_timeout": 0},
                                    {"pool_size": 0}])
def test_bad_settings_rejected(creds, kwargs):
    with pytest.raises(ValueError):
        oss.OssStore(BUCKET, endpoint=ENDPOINT, credentials=creds, **kwargs)


def test_bad_bucket_or_endpoint_rejected_without_echoing_them(creds):
    with pytest.raises(ValueError, match="bucket") as info:
        oss.OssStore("Bad_Bucket", endpoint=ENDPOINT, credentials=creds)
    assert "Bad_Bucket" not in str(info.value)
    with pytest.raises(ValueError, match="endpoint"):
        oss.OssStore(BUCKET, endpoint="https://x/<y>", credentials=creds)


# --- list --------------------------------------------------------------------------------------

def page(keys, token=None):
    return SimpleNamespace(object_list=[SimpleNamespace(key=k) for k in keys],
                           is_truncated=token is not None, next_continuation_token=token)


def test_list_pages_and_strips_prefix(store, bucket, mocker):
    bucket.list_objects_v2.side_effect = [page(["p/m/a", "p/m/b"], "t1"), page(["p/m/c"])]
    assert store.list("m/") == ["m/a", "m/b", "m/c"]
    assert bucket.list_objects_v2.call_args_list == [
        mocker.call(prefix="p/m/", start_after="", max_keys=1000, continuation_token=""),
        mocker.call(prefix="p/m/", start_after="", max_keys=1000, continuation_token="t1")]


def test_list_honours_start_after_and_limit(store, bucket, mocker):
    bucket.list_objects_v2.side_effect = [page(["p/m/c", "p/m/d"], "t1"), page(["p/m/e"], "t2")]
    assert store.list("m/", start_after="m/b", limit=3) == ["m/c", "m/d", "m/e"]
    assert bucket.list_objects_v2.call_args_list == [
        mocker.call(prefix="p/m/", start_after="p/m/b", max_keys=3, continuation_token=""),
        mocker.call(prefix="p/m/", start_after="p/m/b", max_keys=1, continuation_token="t1")]


def test_list_limit_zero_makes_no_request(store, bucket):
    assert store.list("", limit=0) == []
    bucket.list_objects_v2.assert_not_called()


def test_list_without_store_prefix(Bucket, bucket, creds):
    store = oss.OssStore(BUCKET, endpoint=ENDPOINT, credentials=creds)
    bucket.list_objects_v2.return_value = page(["a", "b/c"])
    assert store.list("") == ["a", "b/c"]


def test_list_page_retried(store, bucket):
    bucket.list_objects_v2.side_effect = [request_error(), page(["p/a"])]
    assert store.list("") == ["a"]


def test_overlapped_deletes_keep_the_callers_time_budget(store, bucket):
    from handler.stores import base

    seen = []
    bucket.delete_object.side_effect = lambda *args, **kwargs: seen.append(base.deadline())
    with base.time_budget(30.0):
        store.delete_many(["a", "b", "c"])
    assert len(seen) == 3 and None not in seen


def test_warm_asks_about_versioning_once_and_swallows_failures(store, bucket):
    bucket.get_bucket_versioning.side_effect = request_error()
    store.warm()  # the first write will meet the problem and retry it
    bucket.get_bucket_versioning.side_effect = None
    store.warm()
    store.warm()
    store.create("k", b"x")
    assert bucket.get_bucket_versioning.call_count == 1 + 1  # a failed try, then once for the store


@pytest.mark.parametrize("status", ["Enabled", "Suspended"])
def test_a_versioned_bucket_refuses_every_write_and_still_serves_reads(store, bucket, status):
    from handler.stores.base import Misconfigured

    bucket.get_bucket_versioning.return_value = SimpleNamespace(status=status)
    bucket.get_object.return_value = obj(b"1")
    for write in (lambda: store.create("k", b"x"), lambda: store.put("k", b"x"), lambda: store.delete("k")):
        with pytest.raises(Misconfigured, match=f"versioning is {status}"):
            write()
    assert bucket.put_object.call_count == bucket.delete_object.call_count == 0
    assert store.get("k") == b"1"
