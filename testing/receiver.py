"""A loopback webhook receiver for tests and the bench: it checks each POST's X-Registry-Signature against the secret
(and refuses a bad one with 401), keeps the events it took, and can fail, hang or redirect on demand."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "receiver-secret-0123456789"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """A receiver's check of X-Registry-Signature: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    expected = hmac.new(secret.encode(), f"{parts.get('t', '')}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", "")) and abs(time.time() - int(parts.get("t", "0"))) <= tolerance


class Receiver:
    """An HTTP server on 127.0.0.1; `events` are the CloudEvents it answered 2xx, in arrival order."""

    def __init__(self, secret: str = SECRET, port: int = 0) -> None:
        self.secret = secret
        self.events: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.time() of each event taken
        self.attempts = 0  # POSTs received, answered or not
        self.bad_signatures = 0
        self.fail_next = 0  # answer this many POSTs with 500
        self.hang_next = 0  # leave this many POSTs unanswered for `hang_for` seconds
        self.hang_for = 5.0
        self.redirect: str | None = None  # answer 302 to this location
        self.taken = threading.Condition()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.taken:
                    receiver.attempts += 1
                    hang, fail, redirect = receiver.hang_next > 0, receiver.fail_next > 0, receiver.redirect
                    receiver.hang_next -= hang
                    receiver.fail_next -= fail and not hang
                if hang:
                    time.sleep(receiver.hang_for)
                    self.close_connection = True
                    return
                if redirect:
                    self._answer(302, {"Location": redirect})
                    return
                if fail:
                    self._answer(500)
                    return
                if not verify(receiver.secret, self.headers.get("X-Registry-Signature", ""), body):
                    with receiver.taken:
                        receiver.bad_signatures += 1
                    self._answer(401)
                    return
                with receiver.taken:
                    receiver.events.append(json.loads(body))
                    receiver.arrived.append(time.time())
                    receiver.taken.notify_all()
                self._answer(204)

            def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        """Down: the port refuses connections until start() (on the same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The events once at least `count` have arrived (or what arrived by the timeout)."""
        with self.taken:
            self.taken.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
