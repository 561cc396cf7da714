"""Loopback OSS server (path-style REST subset) for tests and benchmarks, with fault injection."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import re
import socket
import sys
import threading
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

__all__ = ["FakeOss", "Fault", "LoggedRequest", "error", "delay", "drop", "commit_then_drop"]


# --- fault actions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Fault:
    """What to do to a matching request; build one with error(), delay(), drop(), commit_then_drop()."""

    kind: str  # "error" | "delay" | "drop" | "commit_then_drop"
    status: int = 0
    code: str = ""
    seconds: float = 0.0


def error(status: int = 500, code: str = "InternalError") -> Fault:
    """Answer with OSS error XML; the request is not applied."""
    return Fault("error", status=status, code=code)


def delay(seconds: float) -> Fault:
    """Sleep before handling the request normally (it is applied after the sleep)."""
    return Fault("delay", seconds=seconds)


def drop() -> Fault:
    """Close the connection without any response; the request is not applied."""
    return Fault("drop")


def commit_then_drop() -> Fault:
    """Apply the request, then close the connection without a response (a lost reply)."""
    return Fault("commit_then_drop")


@dataclass
class _Rule:
    method: str
    key: str | None
    prefix: str | None
    action: Fault
    times: int

    def matches(self, method: str, key: str) -> bool:
        if self.key is not None:
            return method == self.method and key == self.key
        return method == self.method and key.startswith(self.prefix or "")


# --- state ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoggedRequest:
    method: str
    key: str                   # percent-decoded object key; "" for bucket-level requests
    query: dict[str, str]
    headers: dict[str, str]    # header names lower-cased
    status: int | None         # None when no response was sent (drop, commit_then_drop)
    fault: str | None          # Fault.kind of the rule that fired, None if not faulted


@dataclass(frozen=True)
class _Object:
    data: bytes
    etag: str                  # quoted upper-case hex MD5, as OSS returns it for a simple PUT
    mtime: float
    content_type: str = "application/octet-stream"
    meta: dict[str, str] = field(default_factory=dict)  # x-oss-meta-* headers given at PUT time


@dataclass
class _Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _request_id() -> str:
    return uuid.uuid4().hex[:24].upper()


def _error(status: int, code: str, message: str = "", head: bool = False) -> _Response:
    rid = _request_id()
    xml = ET.Element("Error")
    for tag, text in (("Code", code), ("Message", message or code), ("RequestId", rid)):
        ET.SubElement(xml, tag).text = text
    body = ET.tostring(xml, encoding="utf-8", xml_declaration=True)
    headers = {"Content-Type": "application/xml", "x-oss-request-id": rid}
    if head:  # HEAD replies carry no body: OSS puts the error XML, base64-encoded, in x-oss-err
        headers["x-oss-err"] = base64.b64encode(body).decode("ascii")
        body = b""
    return _Response(status, headers, body)


def _ranged(response: _Response, spec: str) -> _Response:
    """The part of a 200 reply a `Range: bytes=first-last` asks for, as OSS answers it (206)."""
    found = re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip())
    if found is None:
        return response  # OSS ignores a Range it cannot read
    first = int(found.group(1))
    last = min(int(found.group(2)) if found.group(2) else len(response.body) - 1, len(response.body) - 1)
    if first >= len(response.body):
        return _error(416, "InvalidRange", "the range is outside the object")
    part = response.body[first:last + 1]
    headers = {**response.headers, "Content-Range": f"bytes {first}-{last}/{len(response.body)}",
               "Content-Length": str(len(part))}
    return _Response(206, headers, part)


class FakeOss:
    """In-memory OSS bucket served over HTTP on 127.0.0.1, for use with the real oss2 client."""

    def __init__(self, bucket: str = "test-bucket") -> None:
        self.bucket = bucket
        self.endpoint = ""
        self.connections_opened = 0
        self._lock = threading.Lock()
        self._objects: dict[str, _Object] = {}
        self._log: list[LoggedRequest] = []
        self._rules: list[_Rule] = []
        self.versioning: str | None = None  # the bucket's versioning status: None (never set), Enabled, Suspended
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> FakeOss:
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-oss-{self.bucket}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        assert self._thread is not None
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> FakeOss:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # test-facing state
    @property
    def objects(self) -> dict[str, bytes]:
        """A copy of the stored objects, key -> body."""
        with self._lock:
            return {k: o.data for k, o in self._objects.items()}

    @property
    def log(self) -> list[LoggedRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def seed(self, key: str, data: bytes) -> None:
        """Store an object directly, without a request."""
        etag = f'"{hashlib.md5(data).hexdigest().upper()}"'
        with self._lock:
            self._objects[key] = _Object(bytes(data), etag, time.time())

    def reset(self) -> None:
        with self._lock:
            self._objects.clear()
            self._log.clear()
            self._rules.clear()
            self.connections_opened = 0
            self.versioning = None

    def heal(self) -> None:
        """Drop every fault rule not yet used up; objects and the log stay."""
        with self._lock:
            self._rules.clear()

    def inject(self, method: str, key: str | None = None, *, prefix: str | None = None,
               action: Fault, times: int = 1) -> None:
        """Apply `action` to the next `times` requests of `method` on `key` (or keys under `prefix`,
        or any key, bucket-level requests included, when both are None). First matching rule wins."""
        if key is not None and prefix is not None:
            raise ValueError("give key or prefix, not both")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._rules.append(_Rule(method.upper(), key, prefix, action, times))

    # request handling (called from handler threads)
    def _take_fault(self, method: str, key: str) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, key):
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                    return rule.action
        return None

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _count_connection(self) -> None:
        with self._lock:
            self.connections_opened += 1

    def _handle(self, method: str, bucket: str, key: str, query: dict[str, str],
                headers: dict[str, str], body: bytes) -> _Response:
        head = method == "HEAD"
        if bucket != self.bucket:
            return _error(404, "NoSuchBucket", f"bucket {bucket!r} does not exist", head)
        if not key:
            if method == "GET" and query.get("list-type") == "2":
                return self._list_v2(query)
            if method == "GET" and set(query) == {"versioning"}:
                status = f"<Status>{self.versioning}</Status>" if self.versioning else ""
                return _Response(200, {"Content-Type": "application/xml", "x-oss-request-id": _request_id()},
                                 f"<VersioningConfiguration>{status}</VersioningConfiguration>".encode())
            return _error(501, "NotImplemented", f"{method} on the bucket is not supported", head)
        if query:
            return _error(501, "NotImplemented", "sub-resources are not supported", head)
        if len(key.encode("utf-8")) > 1023 or key[0] in "/\\":
            return _error(400, "InvalidObjectName", "the object name is invalid", head)
        if method == "PUT":
            return self._put(key, headers, body)
        if method in ("GET", "HEAD"):
            response = self._get(key, head)
            return _ranged(response, headers["range"]) if "range" in headers and response.status == 200 else response
        if method == "DELETE":
            with self._lock:
                self._objects.pop(key, None)
            return _Response(204, {"x-oss-request-id": _request_id()})
        return _error(501, "NotImplemented", f"{method} is not supported", head)

    def _put(self, key: str, headers: dict[str, str], body: bytes) -> _Response:
        digest = hashlib.md5(body).digest()
        if "content-md5" in headers and headers["content-md5"] != base64.b64encode(digest).decode():
            return _error(400, "InvalidDigest", "the Content-MD5 you specified was invalid")
        meta = {k: v for k, v in headers.items() if k.startswith("x-oss-meta-")}
        obj = _Object(body, f'"{digest.hex().upper()}"', time.time(),
                      headers.get("content-type") or "application/octet-stream", meta)
        with self._lock:  # check-and-store is atomic
            if headers.get("x-oss-forbid-overwrite", "").lower() == "true" and key in self._objects:
                return _error(409, "FileAlreadyExists", "the object you specified already exists")
            self._objects[key] = obj
        return _Response(200, {"ETag": obj.etag, "x-oss-request-id": _request_id()})

    def _get(self, key: str, head: bool) -> _Response:
        with self._lock:
            obj = self._objects.get(key)
        if obj is None:
            return _error(404, "NoSuchKey", "the specified key does not exist", head)
        headers = {**obj.meta, "Content-Type": obj.content_type, "ETag": obj.etag,
                   "Last-Modified": email.utils.formatdate(obj.mtime, usegmt=True),
                   "x-oss-object-type": "Normal", "x-oss-storage-class": "Standard",
                   "x-oss-request-id": _request_id(), "Content-Length": str(len(obj.data))}
        return _Response(200, headers, b"" if head else obj.data)

    def _list_v2(self, q: dict[str, str]) -> _Response:
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        start_after, token = q.get("start-after", ""), q.get("continuation-token", "")
        encoding = q.get("encoding-type", "")
        if encoding not in ("", "url"):
            return _error(400, "InvalidArgument", "encoding-type must be url")
        try:
            max_keys = min(int(q.get("max-keys") or 100), 1000)
        except ValueError:
            return _error(400, "InvalidArgument", "max-keys must be an integer")
        if max_keys < 0:
            return _error(400, "InvalidArgument", "max-keys must not be negative")
        marker = token or start_after  # our continuation token is the last key already listed
        with self._lock:
            # Code-point order of str equals UTF-8 byte order, which is the order OSS lists in.
            keys = sorted(k for k in self._objects if k.startswith(prefix) and k > marker)
            objects = {k: self._objects[k] for k in keys}

        contents: list[str] = []
        prefixes: list[str] = []
        last, truncated = "", False
        for k in keys:
            cut = k.find(delimiter, len(prefix)) if delimiter else -1
            common = k[:cut + len(delimiter)] if cut >= 0 else None
            if common is not None and prefixes and prefixes[-1] == common:
                last = k  # rolled into the common prefix already listed
                continue
            if len(contents) + len(prefixes) >= max_keys:
                truncated = max_keys > 0
                break
            (prefixes if common is not None else contents).append(common or k)
            last = k

        enc = (lambda s: quote(s, safe="")) if encoding == "url" else (lambda s: s)
        root = ET.Element("ListBucketResult")

        def add(parent: ET.Element, tag: str, text: Any) -> None:
            ET.SubElement(parent, tag).text = str(text)

        add(root, "Name", self.bucket)
        add(root, "Prefix", enc(prefix))
        if start_after:
            add(root, "StartAfter", enc(start_after))
        if token:
            add(root, "ContinuationToken", enc(token))
        add(root, "MaxKeys", max_keys)
        add(root, "Delimiter", enc(delimiter))
        if encoding:
            add(root, "EncodingType", encoding)
        add(root, "IsTruncated", "true" if truncated else "false")
        if truncated:
            add(root, "NextContinuationToken", enc(last))
        add(root, "KeyCount", len(contents) + len(prefixes))
        for k in contents:
            obj, node = objects[k], ET.SubElement(root, "Contents")
            add(node, "Key", enc(k))
            add(node, "LastModified", time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(obj.mtime)))
            add(node, "ETag", obj.etag)
            add(node, "Type", "Normal")
            add(node, "Size", len(obj.data))
            add(node, "StorageClass", "Standard")
        for p in prefixes:
            add(ET.SubElement(root, "CommonPrefixes"), "Prefix", enc(p))
        body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        return _Response(200, {"Content-Type": "application/xml", "x-oss-request-id": _request_id()}, body)


# --- HTTP plumbing ----------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # listen backlog; the default 5 drops connections under concurrency

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeOss) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else 40 ms delayed-ACK stalls
        with self._open_lock:
            self._open.add(sock)
        self.fake._count_connection()
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Unblock handler threads still waiting on idle keep-alive connections."""
        with self._open_lock:
            socks = list(self._open)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that went away is not news
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        fake = self.server.fake
        path, _, raw_query = self.path.partition("?")
        bucket, _, raw_key = path.lstrip("/").partition("/")
        method, key = self.command, unquote(raw_key)
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._read_body()

        fault = fake._take_fault(method, key)
        kind = fault.kind if fault else None
        if fault and kind == "delay":
            time.sleep(fault.seconds)
        response: _Response | None = None  # None: close the connection without replying
        if fault and kind == "error":
            response = _error(fault.status, fault.code, head=method == "HEAD")
        elif kind != "drop":
            try:
                response = fake._handle(method, bucket, key, query, headers, body)
            except Exception:  # noqa: BLE001 - a bug in the fake answers 500, as a server would
                traceback.print_exc()
                response = _error(500, "InternalError", "fake_oss bug: " + traceback.format_exc(limit=1))
            if kind == "commit_then_drop":
                response = None

        # Log before replying, so a client that has its answer always finds its request logged.
        status = response.status if response else None
        fake._record(LoggedRequest(method, key, query, headers, status, kind))
        if response is None:
            self.close_connection = True
            return
        self.send_response(response.status)
        response.headers.setdefault("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = do_OPTIONS = do_PATCH = _serve
