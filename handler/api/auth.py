"""Signed and scoped access: the SDK's ACS3-HMAC-SHA256 and the older ROA (HMAC-SHA1) signatures
verified, access keys with policies (workspaces, actions) read from ACCESS_KEYS, nonces accepted once.

What each scheme protects: ACS3 covers the method, the path, the query, every header the client
lists in SignedHeaders and the body (its SHA-256, checked against the body). ROA covers the method,
the path, the query, `accept`, `content-md5`, `content-type`, `date` and every `x-acs-*` header, but not
the body unless a `Content-MD5` is sent (it is then checked against the body); the SDKs send none, so
only HTTPS protects it, which is why a key may require ACS3. Its query is signed unencoded, so a
name or value holding `&` or `=` is refused rather than read one of two ways.
"""
from __future__ import annotations

import base64
import contextlib
import email.utils
import fnmatch
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from ..errors import (
    AccessKeyNotFound,
    ApiError,
    ContentHashMismatch,
    InvalidAuthorization,
    InvalidParameter,
    KeysNotConfigured,
    MissingAuthorization,
    NonceUsed,
    SignatureMismatch,
    TimeExpired,
)
from ..rules.times import parse_utc
from ..stores.base import AlreadyExists, Store, Unavailable

SKEW = 15 * 60  # seconds a request's time may differ from the server's
log = logging.getLogger(__name__)
MIN_SECRET = 16  # characters of a secret, at least
RELOAD_EVERY = 60.0  # seconds an instance trusts its copy of the access keys
RETRY_AFTER = 5.0  # seconds before reading the document again when storage did not answer
RETRY_UNUSABLE = 5.0  # seconds before reading an unusable (or missing) document again
_ACS3 = re.compile(r"ACS3-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})")
_ROA = re.compile(r"acs ([^:\s]+):([A-Za-z0-9+/=]{20,})")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class AccessKey:
    """One key of the ACCESS_KEYS document."""

    id: str
    secret: str
    workspaces: tuple[str, ...]
    actions: tuple[str, ...]
    require_acs3: bool = False

    def __repr__(self) -> str:
        return f"AccessKey(id={self.id!r}, secret=***)"

    def may(self, action: str, workspace: str | None) -> bool:
        allowed = any(fnmatch.fnmatchcase(action, pattern) for pattern in self.actions)
        return allowed and (workspace is None or "*" in self.workspaces or workspace in self.workspaces)


class BadKeysDocument(ValueError):
    """What is wrong with an access keys document, said without its secrets."""


def parse_keys(data: bytes) -> dict[str, AccessKey]:
    """The ACCESS_KEYS document: {"AccessKeys": [{"AccessKeyId", "AccessKeySecret", "Workspaces", "Actions"}]}."""
    keys: dict[str, AccessKey] = {}
    for item in json.loads(data)["AccessKeys"]:
        key_id, secret = item["AccessKeyId"], item["AccessKeySecret"]
        workspaces, actions = item.get("Workspaces", ["*"]), item.get("Actions", ["*"])
        require_acs3 = item.get("RequireAcs3", False)
        # Strict: a string where a list belongs ("team-*") would be read as its characters, "*" among them.
        if not (_text(key_id) and _text(secret) and _texts(workspaces) and _texts(actions) and isinstance(require_acs3, bool)):
            raise BadKeysDocument("an access key is not {AccessKeyId, AccessKeySecret: text, Workspaces, Actions: lists of text}")
        if len(secret) < MIN_SECRET:  # a placeholder copied from an example, or a guessable word
            raise BadKeysDocument(f"the secret of access key {key_id[:64]!r} is shorter than {MIN_SECRET} characters")
        if key_id in keys:  # which of the two would win is a guess: the document says two things
            raise BadKeysDocument(f"access key {key_id[:64]!r} appears twice")
        keys[key_id] = AccessKey(key_id, secret, tuple(workspaces), tuple(actions), require_acs3)
    return keys


def _text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _texts(value: object) -> bool:
    return isinstance(value, list) and all(_text(item) for item in value)


class KeyRing:
    """The access keys, read from where ACCESS_KEYS says, trusted for RELOAD_EVERY seconds: a key rotated
    or revoked in the document counts within a minute (and one read), without a redeploy.

    Only the first read is waited for. Later ones run in the background while the keys read before
    keep answering, so a slow read never holds up signed requests; an unusable document (refusing
    everything) is read again after RETRY_UNUSABLE seconds, unreachable storage after RETRY_AFTER."""

    def __init__(self, load: Callable[[], bytes]) -> None:
        self._load = load
        self._keys: dict[str, AccessKey] | None = None
        self._failure = ""  # why there are no keys (the document is unusable)
        self._problem = ""  # the problem last logged
        self._known = False  # a read has ended with keys or with a refusal
        self._next_read = float("-inf")  # time.monotonic() from which the document is read again
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the fields above
        self._first = threading.Lock()  # one first read at a time; the others wait for it

    def get(self, key_id: str) -> AccessKey | None:
        with self._lock:
            known = self._known
            if known and time.monotonic() >= self._next_read and self._reader is None:
                self._reader = threading.Thread(target=self._refresh, name="access-keys", daemon=True)
                self._reader.start()
        if not known:
            with self._first:
                if not self._known:
                    self._read()  # nothing to answer with yet: this request waits (unreachable storage: its 503)
        with self._lock:
            if self._keys is None:
                raise KeysNotConfigured(self._failure)
            return self._keys.get(key_id)

    def settle(self, timeout: float | None = None) -> None:
        """Wait for a background read under way (tests, and before an instance stops)."""
        reader = self._reader
        if reader is not None:
            reader.join(timeout)

    def _refresh(self) -> None:
        try:
            self._read()
        except Unavailable:  # keep the keys read before, and try again in a few seconds
            self._schedule(RETRY_AFTER)
        except Exception as e:  # noqa: BLE001 - a background thread: log by kind, keep the keys, retry soon
            log.error("reading the access keys failed unexpectedly (%s)", type(e).__name__)
            self._schedule(RETRY_AFTER)
        finally:
            with self._lock:
                self._reader = None

    def _read(self) -> None:
        problem = ""  # why the document refuses everything, as logged
        try:
            keys, failure = parse_keys(self._load()), ""
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            why = f" ({e})" if isinstance(e, BadKeysDocument) else " (not JSON of the documented shape)"
            keys, failure = None, "the access keys document is not {\"AccessKeys\": [...]} as documented"
            problem = f"the access keys document is unusable{why}"
        except KeysNotConfigured as e:
            keys, failure, problem = None, e.message, e.message
        with self._lock:
            repeated = problem == self._problem
            self._keys, self._failure, self._problem, self._known = keys, failure, problem, True
            self._next_read = time.monotonic() + (RELOAD_EVERY if keys is not None else RETRY_UNUSABLE)
        if problem and not repeated:  # read every few seconds while unusable: logged once, not each time
            log.warning("%s: every request is refused", problem)

    def _schedule(self, seconds: float) -> None:
        with self._lock:
            self._next_read = time.monotonic() + seconds


def canonical_uri(path: str) -> str:
    """Each segment of the path as sent, decoded and then encoded as the SDK encodes it (RFC 3986)."""
    return "/".join(quote(unquote(segment), safe="~") for segment in (path or "/").split("/"))


def canonical_query(pairs: Sequence[tuple[str, str]]) -> str:
    encoded = sorted((quote(name, safe="~"), quote(value, safe="~")) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def acs3_string_to_sign(method: str, path: str, pairs: Sequence[tuple[str, str]], headers: dict[str, str],
                        signed: list[str], payload_hash: str) -> str:
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    request = f"{method}\n{canonical_uri(path)}\n{canonical_query(pairs)}\n{canonical_headers}\n{';'.join(signed)}\n{payload_hash}"
    return "ACS3-HMAC-SHA256\n" + hashlib.sha256(request.encode()).hexdigest()


def roa_string_to_sign(method: str, path: str, pairs: Sequence[tuple[str, str]], headers: dict[str, str]) -> str:
    head = "\n".join([method, *(headers.get(name, "") for name in ("accept", "content-md5", "content-type", "date"))]) + "\n"
    acs = "".join(f"{name}:{headers[name]}\n" for name in sorted(headers) if name.startswith("x-acs-"))
    resource = unquote(path)
    if pairs:
        resource += "?" + "&".join(name if value == "" else f"{name}={value}" for name, value in sorted(pairs))
    return head + acs + resource


@dataclass(frozen=True)
class Principal:
    """Who a verified request comes from, and the nonce it spends if it is allowed to run."""

    key: AccessKey
    nonce: str = ""
    signed_at: float = 0.0


class Verifier:
    """Checks a request's signature, time and nonce against the key ring; refuses with the SDK's codes."""

    def __init__(self, keys: KeyRing, store: Store, now: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.store = store
        self.now = now

    def verify(self, method: str, path: str, pairs: Sequence[tuple[str, str]], headers: dict[str, str], body: bytes,
               writes: bool) -> Principal:
        authorization = headers.get("authorization", "")
        if not authorization:
            raise MissingAuthorization("this registry requires signed requests: no Authorization header")
        acs3, roa = _ACS3.fullmatch(authorization.strip()), _ROA.fullmatch(authorization.strip())
        if acs3 is None and roa is None:
            raise InvalidAuthorization("Authorization is neither ACS3-HMAC-SHA256 nor an ROA signature")
        key_id = (acs3 or roa).group(1)  # type: ignore[union-attr]
        with _naming(key_id):
            key = self.keys.get(key_id)
            if key is None:
                raise AccessKeyNotFound(f"no access key {key_id[:64]!r}")
            if acs3 is not None:
                moment = self._acs3(key, acs3, method, path, pairs, headers, body, writes)
            else:
                assert roa is not None
                if key.require_acs3:
                    raise InvalidAuthorization("this access key signs with ACS3-HMAC-SHA256 only")
                moment = self._roa(key, roa, method, path, pairs, headers, body)
            nonce = headers.get("x-acs-signature-nonce", "")
            if writes and not nonce:
                raise InvalidAuthorization("a signed request that changes something needs x-acs-signature-nonce")
            return Principal(key, nonce, moment)

    def _acs3(self, key: AccessKey, found: re.Match[str], method: str, path: str, pairs: Sequence[tuple[str, str]],
              headers: dict[str, str], body: bytes, writes: bool) -> float:
        signed = found.group(2).split(";")
        needed = {"x-acs-date", "x-acs-content-sha256"} | ({"x-acs-signature-nonce"} if writes else set())
        if signed != sorted(signed) or not needed <= set(signed):
            raise InvalidAuthorization(f"SignedHeaders must be sorted and include {', '.join(sorted(needed))}")
        if any(name not in headers for name in signed):
            raise InvalidAuthorization("a header named in SignedHeaders is missing")
        payload = headers["x-acs-content-sha256"].strip().lower()
        expected = hmac.new(key.secret.encode(), acs3_string_to_sign(method, path, pairs, headers, signed, payload).encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, found.group(3)):
            raise SignatureMismatch("the signature does not match this request")
        if not hmac.compare_digest(payload, hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256):
            raise ContentHashMismatch("x-acs-content-sha256 is not the SHA-256 of the body")
        return self._fresh(parse_utc(headers["x-acs-date"].strip(), fractions=False))

    def _roa(self, key: AccessKey, found: re.Match[str], method: str, path: str, pairs: Sequence[tuple[str, str]],
             headers: dict[str, str], body: bytes) -> float:
        if "date" not in headers or "x-acs-signature-nonce" not in headers:
            raise InvalidAuthorization("an ROA signature needs the date and x-acs-signature-nonce headers")
        for name, value in pairs:  # the resource joins pairs with & and = unencoded: a=1&b=2 either way
            if any(mark in name + value for mark in "&="):
                raise InvalidParameter(f"query parameter {name[:64]!r}: a name or value holding '&' or '=' signs like "
                                       "two parameters under an ROA signature; sign the request with ACS3-HMAC-SHA256")
        expected = base64.b64encode(hmac.new(key.secret.encode(), roa_string_to_sign(method, path, pairs, headers).encode(),
                                             hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(expected, found.group(2)):
            raise SignatureMismatch("the signature does not match this request")
        md5 = headers.get("content-md5")
        if md5 is not None and not hmac.compare_digest(md5.strip().encode("utf-8", "surrogateescape"),
                                                       base64.b64encode(hashlib.md5(body).digest())):
            raise ContentHashMismatch("Content-MD5 is not the MD5 of the body (base64 of its 16 bytes)")
        try:
            when = email.utils.parsedate_to_datetime(headers["date"])
        except (TypeError, ValueError):
            when = None
        if when is None or when.tzinfo is None:  # no zone: it would be read in the server's own time
            raise InvalidAuthorization("the date header is not an HTTP date like Mon, 30 Nov 2026 10:41:20 GMT")
        return self._fresh(when.timestamp())

    def _fresh(self, moment: float | None) -> float:
        if moment is None:
            raise InvalidAuthorization("the request's time is not a UTC time like 2021-01-21T17:12:35Z")
        if abs(self.now() - moment) > SKEW:
            raise TimeExpired("the request's time is more than 15 minutes from the server's")
        return moment

    def spend(self, principal: Principal) -> None:
        """Record a changing request's nonce, once its policy lets it run, with the store's create-only
        write: the one guard every instance shares, one PUT per changing request. The App runs it beside
        the request's own work, whose commit waits for it (Workspace.commit), so a replay commits nothing.
        It is filed under the hour of the request's own signed time, which a replay carries unchanged, so
        old hours can be swept."""
        hour = time.strftime("%Y%m%d%H", time.gmtime(principal.signed_at))
        digest = hashlib.sha256(f"{principal.key.id}\n{principal.nonce}".encode()).hexdigest()
        try:
            # Bytes of this attempt's own: a store's create is idempotent for equal bytes (a retry of a
            # write whose answer was lost), and a replay must not pass for that.
            self.store.create(f"nonces/{hour}/{digest}", uuid.uuid4().hex.encode())
        except AlreadyExists:
            raise NonceUsed("this signature nonce was used before") from None


    def verify_basic(self, headers: dict[str, str]) -> Principal:
        """HTTP Basic (key ID and secret), as MLflow's clients send it: the key it names, or the refusal."""
        authorization = headers.get("authorization", "").strip()
        if not authorization:
            raise MissingAuthorization("this registry requires credentials: HTTP Basic with an access key ID and secret")
        scheme, _, encoded = authorization.partition(" ")
        try:
            key_id, colon, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            colon = ""
        if scheme.lower() != "basic" or not colon:
            raise InvalidAuthorization("Authorization is not HTTP Basic with an access key ID and secret")
        with _naming(key_id):
            key = self.keys.get(key_id)
            if key is None:
                raise AccessKeyNotFound(f"no access key {key_id[:64]!r}")
            if not hmac.compare_digest(secret.encode(), key.secret.encode()):
                raise SignatureMismatch(f"the secret is not access key {key_id[:64]}'s")
            return Principal(key)

    def sweep(self) -> int:
        """Remove the nonces of hours whose requests are all too old to be accepted again; how many."""
        oldest = time.strftime("%Y%m%d%H", time.gmtime(self.now() - SKEW - 3600))
        stale = [key for key in self.store.list("nonces/") if key.split("/")[1] < oldest]
        self.store.delete_many(stale)
        return len(stale)


@contextlib.contextmanager
def _naming(key_id: str) -> Iterator[None]:
    """A refusal of a request that named an access key names it too, so that the access log shows which key was
    refused (a guessed secret, a retired key still in use); the client's message is unchanged."""
    try:
        yield
    except ApiError as e:
        e.access_key_id = key_id[:64]
        raise
