"""The local API: a stdlib HTTP server that builds the event API Gateway would send and calls the function's handler."""
from __future__ import annotations

import base64
import json
import logging
import re
import socket
import sys
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .app import where
from .errors import error_json, protocol_error
from .records import new_request_id

Handler = Callable[[bytes, Any], str]
OPENAPI_PATH = "/openapi.json"
_LINE = 65537  # longest chunk-size or trailer line read
_DECIMAL = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
log = logging.getLogger(__name__)


class LocalContext:
    """The part of FC's context the function reads; nothing is known about the caller locally."""

    def __init__(self) -> None:
        self.request_id = str(uuid.uuid4())
        self.account_id = None
        self.credentials = None


class _Unreadable(Exception):
    """The request's framing cannot be trusted: answer 400 and close the connection."""


class _GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"  # so that even an unreadable request line gets a status line
    server: LocalServer

    def _serve(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except _Unreadable as e:
            self.close_connection = True
            return self.send_error(400, str(e))
        if url.path == OPENAPI_PATH and self.command in ("GET", "HEAD"):
            from .openapi import document_bytes  # answered here, as API Gateway would, not by the function

            return self._send(200, {"Content-Type": "application/json; charset=utf-8"}, document_bytes())
        event = {
            "path": url.path, "httpMethod": self.command,
            "headers": {k: v for k, v in self.headers.items()},
            "queryParameters": _multi_dict(parse_qsl(url.query, keep_blank_values=True)), "rawQueryString": url.query,
            "pathParameters": {},
            "body": base64.b64encode(body).decode(), "isBase64Encoded": True,
        }
        result = json.loads(self.server.handler(json.dumps(event).encode(), LocalContext()))
        payload = base64.b64decode(result["body"]) if result.get("isBase64Encoded") else result["body"].encode()
        self._send(result["statusCode"], result.get("headers", {}), payload)

    def _read_body(self) -> bytes:
        """The body, or its first limit+1 bytes (enough for the function to answer 413; the
        connection is then closed, since the rest is never read)."""
        limit = self.server.max_body_bytes + 1
        codings = self.headers.get_all("Transfer-Encoding") or []
        lengths = [value.strip() for value in self.headers.get_all("Content-Length") or []]
        if codings:
            if [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"] or lengths:
                raise _Unreadable("only Transfer-Encoding: chunked, without Content-Length, is supported")
            return self._read_chunked(limit)
        if not lengths:
            return b""
        if len(set(lengths)) != 1 or not _DECIMAL.fullmatch(lengths[0]):
            raise _Unreadable("Content-Length is not one number")
        length = int(lengths[0])
        body = self.rfile.read(min(length, limit))
        if length > len(body):
            self.close_connection = True
        return body

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(_LINE)
            digits = line.split(b";")[0].strip()
            if not _HEX.fullmatch(digits):
                raise _Unreadable("malformed chunked body")
            size = int(digits, 16)
            if size == 0:
                while self.rfile.readline(_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            if len(body) + size > limit:
                self.close_connection = True
                return bytes(body) + self.rfile.read(limit - len(body))
            body += self.rfile.read(size)
            self.rfile.readline(_LINE)

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors (bad request line, oversized headers) in the API's JSON error shape."""
        request_id = new_request_id()
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Error"
        error = protocol_error(code, message or phrase)
        self.close_connection = True
        self.command = getattr(self, "command", None) or ""  # None when the request line was unreadable
        self._send(error.status, {"Content-Type": "application/json; charset=utf-8", "x-acs-request-id": request_id},
                   error_json(request_id, error).encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:  # the function logs every request itself
        pass


def _multi_dict(pairs: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Query pairs as a gateway event carries them: a repeated parameter holds the list of its values."""
    found: dict[str, str | list[str]] = {}
    for name, value in pairs:
        if name not in found:
            found[name] = value
        else:
            previous = found[name]
            found[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
    return found


class LocalServer(ThreadingHTTPServer):
    """Serves the API on host:port until shut down."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Handler, max_body_bytes: int) -> None:
        super().__init__(address, _GatewayHandler)
        self.handler = handler
        self.max_body_bytes = max_body_bytes

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed connection in one line, without a traceback: a client gone, or a bug (with its place)."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.warning("local server: connection ended by %s", type(error).__name__)
        else:
            log.error("local server: unexpected %s in %s", type(error).__name__, where(error) if error else "?")

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"
