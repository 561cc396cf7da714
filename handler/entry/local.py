"""The local API: a stdlib HTTP server that builds a Request from each HTTP request, as API Gateway in front
of the function would, and answers with the App's Response.

It frames requests strictly (one Content-Length or chunked, every header line well formed, a body
exactly as long as declared), bounds what a client may hold (a read timeout, a deadline for a whole
request, a number of open connections, of which the one waiting longest for its client gives way to a
new one), and answers what it refuses with the API's JSON errors.
"""
from __future__ import annotations

import email.errors
import errno
import io
import ipaddress
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..api.app import App, Hook
from ..api.http import Request, Response, log_access, new_request_id, where
from ..api.openapi import document_bytes
from ..errors import ApiError, CrossOrigin, MethodNotAllowed, PayloadTooLarge, ServiceUnavailable, protocol_error

OPENAPI_PATH = "/openapi.json"
READ_TIMEOUT = 10.0  # seconds a connection may stay silent (between requests too)
REQUEST_DEADLINE = 30.0  # seconds to send a whole request, headers and body
MAX_CONNECTIONS = 64  # open at once; beyond, the one waiting longest for its client is closed (else 503)
EVICT_WAIT = 2.0  # seconds a new connection waits for the slot of the connection closed for it
_LINE = 65537  # longest chunk-size or trailer line read
_TRAILERS = 100  # trailer lines of a chunked body
_ECHO = 200  # characters of anything a client sent that a message may repeat
_DECIMAL = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110)
# A line without a colon ends the header block for the parser, which would read the rest as the body.
_BROKEN_HEADERS = (email.errors.MissingHeaderBodySeparatorDefect, email.errors.FirstHeaderLineIsContinuationDefect,
                   email.errors.InvalidHeaderDefect)
_SINGLE = ("content-length", "content-type", "transfer-encoding", "host")  # headers a request may carry once
log = logging.getLogger(__name__)


class _Refused(Exception):
    """A request answered by the server itself, without the function; the connection is then closed."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class _DeadlineSocket(io.RawIOBase):
    """A connection's reads, each bounded by the read timeout and by the request's deadline: a client
    that sends a byte now and then cannot hold a connection longer than REQUEST_DEADLINE."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout = self._timeout
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                raise TimeoutError("the request took longer than its deadline")
        self._sock.settimeout(timeout)
        return self._sock.recv_into(buffer)


class _GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"  # so that even an unreadable request line gets a status line
    timeout = READ_TIMEOUT
    server: LocalServer

    def version_string(self) -> str:
        return "pai-model-registry"  # the Server header: no Python version

    def setup(self) -> None:
        super().setup()
        self._reader = _DeadlineSocket(self.connection, float(self.timeout or READ_TIMEOUT))
        self.rfile = io.BufferedReader(self._reader)
        self.waiting_since: float | None = time.monotonic()  # waiting for the client since; None while serving
        self.server.opened(self)

    def handle_one_request(self) -> None:
        # One deadline for the whole request, the wait for its first byte included (which the read
        # timeout bounds anyway): headers and trailers sent a byte at a time are cut off with the body.
        self.waiting_since = time.monotonic()
        self._reader.deadline = self.waiting_since + REQUEST_DEADLINE
        super().handle_one_request()

    def parse_request(self) -> bool:
        self._started = time.monotonic()
        if not super().parse_request():
            return False
        problem = _header_problem(self.headers)
        if problem:
            self.send_error(400, problem)
            return False
        target = urlsplit(self.path)
        if target.scheme or target.netloc:  # absolute form (RFC 9112 3.2.2): the path is what counts
            self.path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        return True

    def _serve(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
            query = parse_qsl(url.query, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            self.close_connection = True
            return self._send_error(protocol_error(400, "the query string is not valid percent-encoded UTF-8"))
        except _Refused as e:
            self.close_connection = True
            return self._send_error(e.error)
        self.waiting_since = None  # the request is whole: from now on the server is the one working
        if url.path == OPENAPI_PATH:  # answered here, as API Gateway would, not by the function
            return self._serve_document()
        request = Request(self.command.upper(), url.path, body, headers={k.lower(): v for k, v in self.headers.items()},
                          query=query, raw_query=url.query)
        response = self.server.current_app().handle(request)
        self._send(response.status, response.all_headers(), response.payload())

    def _serve_document(self) -> None:
        if self.command not in ("GET", "HEAD"):
            return self._send_error(MethodNotAllowed(f"{self.command} is not allowed on {OPENAPI_PATH}; use GET, HEAD",
                                                     ("GET", "HEAD")), log_as="OpenApi")
        response = Response(200, {"RequestId": new_request_id()}, content=document_bytes())
        self._send(200, response.all_headers(), response.payload())
        self._log(response.body["RequestId"], "OpenApi", 200)

    def _read_body(self) -> bytes:
        """The body exactly as declared, or its first limit+1 bytes when it is larger (enough for the
        function to answer 413; the connection is then closed, since the rest is never read)."""
        limit = self.server.max_body_bytes
        codings = self.headers.get_all("Transfer-Encoding") or []
        lengths = [value.strip() for value in self.headers.get_all("Content-Length") or []]
        if codings:
            if [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"] or lengths:
                raise _Refused(protocol_error(400, "only Transfer-Encoding: chunked, without Content-Length, is supported"))
            return self._read_chunked(limit + 1)
        if not lengths:
            return b""
        if len(lengths) != 1 or not _DECIMAL.fullmatch(lengths[0]):
            raise _Refused(protocol_error(400, "Content-Length is not one number"))
        length = int(lengths[0])
        if length > limit:
            self._drain(limit + 1)  # so that closing does not reset a client still sending
            raise _Refused(PayloadTooLarge(f"body is larger than the limit of {limit} bytes"))
        return self._read_exactly(length)

    def _drain(self, most: int) -> None:
        """Read and drop at most `most` bytes the client is sending, for at most a second."""
        ends = time.monotonic() + 1.0
        self._reader.deadline = min(self._reader.deadline or ends, ends)
        while most > 0 and time.monotonic() < ends:
            try:
                chunk = self.rfile.read1(min(most, 1 << 16))
            except (TimeoutError, OSError):
                return
            if not chunk:
                return
            most -= len(chunk)

    def _read_exactly(self, length: int) -> bytes:
        """length bytes of the body, within the request's deadline; a body that ends early is refused."""
        chunks, missing = [], length
        while missing:
            try:
                chunk = self.rfile.read1(min(missing, 1 << 16))
            except TimeoutError:  # the read timeout, or the request's deadline (_DeadlineSocket)
                chunk = b""
            if not chunk:
                raise _Refused(protocol_error(400, f"the body ended after {length - missing} of the {length} bytes declared"))
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(_LINE)
            digits = line.split(b";")[0].strip()
            if not _HEX.fullmatch(digits):
                raise _Refused(protocol_error(400, "malformed chunked body"))
            size = int(digits, 16)
            if size == 0:
                for _ in range(_TRAILERS):
                    if self.rfile.readline(_LINE) in (b"\r\n", b"\n", b""):
                        return bytes(body)
                raise _Refused(protocol_error(400, f"more than {_TRAILERS} trailer lines"))
            if len(body) + size > limit:
                self.close_connection = True
                return bytes(body) + self._read_exactly(limit - len(body))
            body += self._read_exactly(size)
            if self.rfile.readline(_LINE) not in (b"\r\n", b"\n"):
                raise _Refused(protocol_error(400, "malformed chunked body"))

    def _send(self, status: int, headers: Mapping[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_error(self, error: ApiError, log_as: str = "Protocol") -> None:
        response = Response.error(error)
        self.command = getattr(self, "command", None) or ""  # None when the request line was unreadable
        self._send(error.status, response.all_headers(), response.payload())
        self._log(response.body["RequestId"], log_as, error.status)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors (bad request line, oversized headers) in the API's JSON error shape."""
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Error"
        text = message or phrase
        self.close_connection = True
        self._send_error(protocol_error(code, text if len(text) <= _ECHO else text[:_ECHO] + "..."))

    def _log(self, request_id: str, operation: str, status: int) -> None:
        started = getattr(self, "_started", time.monotonic())
        log_access({"RequestId": request_id, "Operation": operation, "Status": status,
                    "DurationMs": round((time.monotonic() - started) * 1000, 2)})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:  # every request is logged as one JSON line
        pass


def same_origin_only(loopback: bool) -> Hook:
    """For the local server without access keys, where nothing else would stop them: refuse what a web page
    of another origin sends (a form or fetch from a site the user visits), and, on loopback, any Host but a
    loopback name (a site whose name was pointed at 127.0.0.1: DNS rebinding)."""

    def check(request: Request) -> None:
        host = request.headers.get("host", "").strip()
        origin = request.headers.get("origin")
        if request.headers.get("sec-fetch-site", "").strip().lower() in ("cross-site", "same-site") or (
                origin is not None and not _is_own_origin(origin, host)):
            raise CrossOrigin(f"a page of another origin ({(origin or 'another site')[:100]}) may not call this registry: "
                              "without access keys it answers only its own pages and other programs")
        if loopback and host and not _is_loopback_name(host):
            raise CrossOrigin(f"Host {host[:100]} is not a loopback name: without access keys this registry answers only "
                              "requests addressed to this machine (127.0.0.1, localhost, [::1])")

    return check


def _is_own_origin(origin: str, host: str) -> bool:
    """Whether a page's Origin is this server's own: http (the local server speaks only plain HTTP) and the
    Host the request was sent to. An https:// page of the same name and port is another origin."""
    found = urlsplit(origin.strip())
    return found.scheme.lower() == "http" and found.netloc.lower() == host.lower() and origin.strip() == f"{found.scheme}://{found.netloc}"


_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


def _is_loopback_name(host: str) -> bool:
    found = _HOST.fullmatch(host)  # a name and a port, nothing else (no user info, path or fragment)
    if found is None:
        return False
    name = found.group(1).strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _header_problem(headers: Any) -> str | None:
    """Why a request's header block cannot be trusted (a line without a colon, a space before one,
    a name given twice that must be one), or None."""
    if any(isinstance(defect, _BROKEN_HEADERS) for defect in headers.defects):
        return "a header line is malformed"
    for name in headers.keys():
        if not _TOKEN.fullmatch(name):
            return "a header name is malformed"
    for name in _SINGLE:
        if len(headers.get_all(name) or []) > 1:
            return f"the {name} header is given more than once"
    return None


class LocalServer(ThreadingHTTPServer):
    """Serves the API on host:port until shut down, one thread per connection, at most MAX_CONNECTIONS.

    At the bound, a new connection takes the place of the one that has waited longest for its client
    (idle between requests, or sending a request slowly): clients that trickle bytes to hold
    connections lose them to everyone else, oldest first. Only when every connection is being served
    (its request whole) is a new one answered 503."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], current_app: Callable[[], App], max_body_bytes: int,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _GatewayHandler)
        self.current_app = current_app  # asked on each request: tests install another App between requests
        self.max_body_bytes = max_body_bytes
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: dict[socket.socket, _GatewayHandler] = {}  # connections past setup, by their socket
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False) and not (self._evict_idlest() and self._slots.acquire(timeout=EVICT_WAIT)):
            _refuse_busy(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.pop(request, None)
            self._slots.release()

    def opened(self, handler: _GatewayHandler) -> None:
        with self._open_lock:
            self._open[handler.connection] = handler

    def _evict_idlest(self) -> bool:
        """Close the connection that has waited longest for its client; False if every one is being served."""
        with self._open_lock:
            waiting = [(h.waiting_since, sock) for sock, h in self._open.items() if h.waiting_since is not None]
            if not waiting:
                return False
            _, idlest = min(waiting, key=lambda pair: pair[0])
            del self._open[idlest]
        try:
            idlest.shutdown(socket.SHUT_RDWR)  # its thread's read ends at once; the thread closes it and frees the slot
        except OSError:
            pass
        log.info("local server: at its connection bound, closed the connection that waited longest for its client")
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed connection in one line, without a traceback: a client gone, or a bug (with its place)."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.warning("local server: connection ended by %s", type(error).__name__)
        else:
            log.error("local server: unexpected %s in %s", type(error).__name__, where(error) if error else "?")

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            conn, addr = super().get_request()
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warning("local server: cannot accept a connection (%s); backing off", errno.errorcode.get(e.errno, e.errno))
                time.sleep(0.1)  # the pending connection stays queued: without a pause, the loop would spin
            raise
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host!s}]:{port}" if ":" in str(host) else f"http://{host!s}:{port}"


def _refuse_busy(connection: socket.socket) -> None:
    """Answer 503 on a connection over the limit, from the accepting thread: briefly, never blocking it."""
    response = Response.error(ServiceUnavailable("the local server has too many open connections; retry later"))
    body = response.payload()
    head = "HTTP/1.1 503 Service Unavailable\r\n" + "".join(f"{k}: {v}\r\n" for k, v in response.all_headers().items())
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    try:
        connection.settimeout(0.5)
        connection.sendall(head.encode() + body)
    except OSError:
        pass
    finally:
        connection.close()
    log_access({"RequestId": response.body["RequestId"], "Operation": "Protocol", "Status": 503})
