"""Shared fixtures: apps over each store, FC contexts, the loopback OSS server."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.api.app import App
from handler.entry import fc
from handler.entry.local import LocalServer
from handler.registry.models import Registry
from handler.stores.base import Store
from handler.stores.file import FileStore
from handler.stores.memory import MemoryStore
from testing.fake_oss import FakeOss

# The default credential chain (the fallback of an OSS store without credentials) never leaves this machine in a
# test nor reads its owner's files: no ECS metadata request, no CLI profile, a profile file only where a test names one.
os.environ.update(ALIBABA_CLOUD_ECS_METADATA_DISABLED="true", ALIBABA_CLOUD_CLI_PROFILE_DISABLED="true",
                  ALIBABA_CLOUD_CREDENTIALS_FILE=os.devnull)

EVENTS = Path(__file__).parent / "events"


class FakeCredentials:
    def __init__(self, key_id: str = "STS.test-key-id", secret: str = "test-secret", token: str = "test-token") -> None:
        self.access_key_id, self.access_key_secret, self.security_token = key_id, secret, token


class FakeContext:
    """The attributes of FC's Python context that the function reads."""

    def __init__(self, account_id: str | None = "1234567890", credentials: FakeCredentials | None = None) -> None:
        self.request_id = "1-test"
        self.account_id = account_id
        self.credentials = credentials or FakeCredentials()


def event_bytes(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


def invoke(event: Any, context: Any = None) -> Any:
    """Send an event through the real FC entry point and decode what it returns."""
    raw = event if isinstance(event, bytes) else json.dumps(event).encode()
    return json.loads(fc.handler(raw, context or FakeContext()))


@contextlib.contextmanager
def local_api(max_body_bytes: int = 1 << 20) -> Iterator[LocalServer]:
    """The local server over real HTTP, in a thread; it answers with whatever app is installed."""
    server = LocalServer(("127.0.0.1", 0), fc.get_app, max_body_bytes)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def fake_oss() -> Iterator[FakeOss]:
    with FakeOss() as server:
        yield server


@pytest.fixture
def oss(fake_oss: FakeOss) -> FakeOss:
    fake_oss.reset()
    return fake_oss


def make_oss_store(server: FakeOss, prefix: str = "registry/", **options: Any) -> Store:
    from handler.stores.credentials import Credentials
    from handler.stores.oss import OssStore

    return OssStore(server.bucket, prefix, endpoint=server.endpoint,
                    credentials=lambda: Credentials("test-key-id", "test-secret", None), **options)


@pytest.fixture(params=["memory", "file", "oss"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Each store in turn: the contract every store must keep."""
    if request.param == "memory":
        return MemoryStore()
    if request.param == "file":
        return FileStore(tmp_path / "store")
    server = request.getfixturevalue("oss")
    return make_oss_store(server)


@pytest.fixture
def use_app() -> Iterator[Callable[[Store], App]]:
    """Install an App over a given store as the function's app for one test."""
    installed: list[App] = []

    def install(store: Store, **options: Any) -> App:
        app = App(Registry(store), default_workspace=options.pop("default_workspace", "default"), **options)
        fc.set_app(app)
        installed.append(app)
        return app

    yield install
    for app in installed:  # no checkpoint still being written into the next test's storage
        app.registry.settle()
    fc.set_app(None)


@pytest.fixture
def memory_app(use_app: Callable[..., App]) -> App:
    return use_app(MemoryStore())


@pytest.fixture
def sdk(any_store: Store, use_app: Callable[..., App]) -> Iterator[Any]:
    """PAI's official SDK client, unmodified, talking to the local server over real HTTP, on each store."""
    from alibabacloud_aiworkspace20210204.client import Client
    from alibabacloud_tea_openapi import models as open_api

    use_app(any_store)
    with local_api() as server:
        host, port = server.server_address[:2]
        yield Client(open_api.Config(access_key_id="ak", access_key_secret="sk", endpoint=f"{host}:{port}", protocol="http"))


def sdk_raises(code: str, status: int, action: Callable[[], Any]) -> str:
    """The SDK raises ClientException with this Code and status; its message."""
    from alibabacloud_tea_openapi.exceptions import ClientException

    with pytest.raises(ClientException) as caught:
        action()
    assert (caught.value.code, caught.value.status_code) == (code, status), caught.value.message
    return str(caught.value.message)


def raw_exchange(server: LocalServer, data: bytes, close_sending: bool = True, wait: float = 5.0) -> bytes:
    """Send raw bytes to the local server and collect everything it answers until it closes or goes quiet."""
    sock = socket.create_connection(server.server_address[:2], timeout=wait)
    received = b""
    try:
        try:
            sock.sendall(data)
            if close_sending:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may have answered and closed before hearing everything: read what it said
        while chunk := sock.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        sock.close()
    return received
