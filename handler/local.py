"""The local API: a stdlib HTTP server that builds the event API Gateway would send and calls the function's handler."""
from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Handler = Callable[[bytes, Any], str]


class LocalContext:
    """The part of FC's context the function reads; nothing is known about the caller locally."""

    def __init__(self) -> None:
        self.request_id = str(uuid.uuid4())
        self.account_id = None
        self.credentials = None


class _GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalServer

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0) if (self.headers.get("Content-Length") or "0").isdigit() else 0
        # Read one byte past the limit at most, so the function can answer 413; the rest is never read.
        body = self.rfile.read(min(length, self.server.max_body_bytes + 1))
        if length > len(body):
            self.close_connection = True
        event = {
            "path": url.path, "httpMethod": self.command,
            "headers": {k: v for k, v in self.headers.items()},
            "queryParameters": dict(parse_qsl(url.query, keep_blank_values=True)), "pathParameters": {},
            "body": base64.b64encode(body).decode(), "isBase64Encoded": True,
        }
        result = json.loads(self.server.handler(json.dumps(event).encode(), LocalContext()))
        payload = base64.b64decode(result["body"]) if result.get("isBase64Encoded") else result["body"].encode()
        self.send_response(result["statusCode"])
        for name, value in result.get("headers", {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:  # the function logs every request itself
        pass


class LocalServer(ThreadingHTTPServer):
    """Serves the API on host:port until shut down."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Handler, max_body_bytes: int) -> None:
        super().__init__(address, _GatewayHandler)
        self.handler = handler
        self.max_body_bytes = max_body_bytes

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"
