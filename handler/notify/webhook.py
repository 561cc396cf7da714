"""A webhook target: HTTPS POST of an event's JSON, signed with the rule's secret, to an address checked after DNS
resolution (loopback, private, link-local and other special addresses refused unless the rule allows them), with a
timeout, following no redirect. Its Endpoint is what every target posts through."""
from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from .rules import Rule

TIMEOUT = 10.0  # seconds a receiver may take to connect, and then between bytes of its answer
SIGNATURE_HEADER = "X-Registry-Signature"


class DeliveryFailed(Exception):
    """Why a target did not take an event, said without its URL's secrets (safe to log and to keep)."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def special(address: str) -> bool:
    """Whether an IP address is one a rule must allow explicitly: loopback, private, link-local, shared, reserved,
    multicast or unspecified (an IPv4 address mapped into IPv6 counts as itself)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified
            or not ip.is_global)


class Endpoint:
    """An HTTP(S) address a target posts to: its host resolved and every address checked (see `allowed`), the
    connection made to the checked address and kept for the events of one delivery run, with a timeout, following no
    redirect."""

    def __init__(self, rule: Rule, url: str, timeout: float = TIMEOUT) -> None:
        self.rule = rule
        self.timeout = timeout
        parts = urlsplit(url)
        self.secure = parts.scheme.lower() == "https"
        if not parts.hostname:
            raise DeliveryFailed(f"rule {rule.name}: the target's address names no host")
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._connection: http.client.HTTPConnection | None = None

    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def allowed(self, addresses: list[str]) -> None:
        """DeliveryFailed unless the rule may reach these addresses: loopback, private and link-local ones only with
        AllowPrivateNetwork."""
        if not self.rule.allow_private and any(special(a) for a in addresses):
            raise DeliveryFailed(f"{self.where()} resolves to a loopback, private or link-local address, which rule "
                                 f"{self.rule.name} does not allow (AllowPrivateNetwork)")

    def _address(self) -> str:
        """The first address the host resolves to, every one of them checked (a name that resolves to a public and
        a private address is refused: which one a connection gets is not ours to choose)."""
        try:
            found = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise DeliveryFailed(f"{self.where()} does not resolve") from None
        addresses = [str(info[4][0]) for info in found]
        if not addresses:
            raise DeliveryFailed(f"{self.where()} does not resolve")
        self.allowed(addresses)
        return addresses[0]

    def _connect(self) -> http.client.HTTPConnection:
        address = self._address()
        if self.secure:
            return _PinnedHttps(self.host, address, self.port, self.timeout)
        return _PinnedHttp(self.host, address, self.port, self.timeout)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST once (a kept connection the server closed meanwhile is opened again, once): the answer's status and
        its first 64 KiB. DeliveryFailed when there is no answer, or the answer is a redirect."""
        for attempt in (1, 2):
            fresh = self._connection is None
            if self._connection is None:
                self._connection = self._connect()
            try:
                self._connection.request("POST", path, body, headers)
                response = self._connection.getresponse()
                data = response.read(64 << 10)
                status = response.status
                if response.will_close:
                    self.close()
                break
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if fresh or attempt == 2 or isinstance(e, TimeoutError):
                    what = "did not answer in time" if isinstance(e, TimeoutError) else f"failed ({type(e).__name__})"
                    raise DeliveryFailed(f"{self.where()} {what}") from None
        if 300 <= status < 400:
            raise DeliveryFailed(f"{self.where()} answered {status}, a redirect, which is not followed")
        return status, data

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Webhook(Endpoint):
    """One rule's webhook."""

    def __init__(self, rule: Rule, timeout: float = TIMEOUT) -> None:
        super().__init__(rule, rule.target["Url"], timeout)

    def send(self, body: bytes) -> None:
        """POST the event; DeliveryFailed unless the receiver answers 2xx."""
        headers = {"Content-Type": "application/cloudevents+json; charset=utf-8",
                   SIGNATURE_HEADER: signature(self.rule.target["Secret"], int(time.time()), body)}
        status, _ = self.post(self.path, body, headers)
        if not 200 <= status < 300:
            raise DeliveryFailed(f"{self.where()} answered {status}")


class _PinnedHttp(http.client.HTTPConnection):
    """A connection to the address that was checked, with the URL's host in its Host header."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHttps(http.client.HTTPSConnection):
    """TLS to the address that was checked, the certificate verified for the URL's host."""

    def __init__(self, host: str, address: str, port: int, timeout: float, context: Any = None) -> None:
        super().__init__(host, port, timeout=timeout, context=context or ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
