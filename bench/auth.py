"""Signed requests: the CPU verification adds on a warm instance, beside the unsigned path, and the replay guard's storage cost."""
from __future__ import annotations

import hashlib
import json
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

from alibabacloud_openapi_util.client import Client as SdkUtil

from handler.api.app import App
from handler.api.http import Request
from handler.config import Settings
from handler.entry.compose import build_app

from .report import Figure, median

KEY, SECRET = "bench", "bench-secret-long-enough"


def signed(method: str, path: str, body: bytes = b"") -> dict[str, str]:
    """The headers PAI's SDK sends, signed by the SDK's own ACS3 code."""
    headers = {"host": "registry.example.com", "x-acs-action": "Action", "x-acs-version": "2021-02-04",
               "accept": "application/json", "x-acs-date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "x-acs-signature-nonce": uuid.uuid4().hex, "x-acs-content-sha256": hashlib.sha256(body).hexdigest()}
    if body:
        headers["content-type"] = "application/json; charset=utf-8"
    request = SimpleNamespace(method=method, pathname=path, headers=headers, query={})
    headers["authorization"] = SdkUtil.get_authorization(request, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"], KEY, SECRET)
    return headers


def cpu_ms(app: App, requests: list[Request]) -> list[float]:
    """CPU milliseconds of each request through the whole core (routing, checks, the operation, the answer)."""
    spent = []
    for request in requests:
        started = time.thread_time()
        response = app.handle(request)
        spent.append((time.thread_time() - started) * 1e3)
        assert response.status == 200, response.body
    return spent


def run(rounds: int, per_round: int) -> list[Figure]:
    with tempfile.TemporaryDirectory() as directory:
        keys = Path(directory) / "access-keys.json"
        keys.write_text(json.dumps({"AccessKeys": [{"AccessKeyId": KEY, "AccessKeySecret": SECRET}]}))
        plain = build_app(Settings.from_env({"MODEL_STORE": "memory://"}))
        guarded = build_app(Settings.from_env({"MODEL_STORE": "memory://", "ACCESS_KEYS": f"file://{keys}"}))
        body = json.dumps({"ModelName": "bench"}).encode()
        ids = [app.handle(Request("POST", "/api/v1/models", body, headers=signed("POST", "/api/v1/models", body)))
               .body["ModelId"] for app in (plain, guarded)]
        path = {plain: f"/api/v1/models/{ids[0]}", guarded: f"/api/v1/models/{ids[1]}"}
        update = json.dumps({"ModelDescription": "bench"}).encode()

        def reads(app: App, sign: bool) -> list[Request]:
            return [Request("GET", path[app], headers=signed("GET", path[app]) if sign else {}) for _ in range(per_round)]

        def writes(app: App, sign: bool) -> list[Request]:
            return [Request("PUT", path[app], update, headers=signed("PUT", path[app], update) if sign else {})
                    for _ in range(per_round)]

        figures = []
        for kind, make in (("read", reads), ("write", writes)):
            unsigned: list[float] = []
            verified: list[float] = []
            for _ in range(rounds):  # alternate, so that drift of the machine's load hits both alike
                unsigned += cpu_ms(plain, make(plain, False))
                verified += cpu_ms(guarded, make(guarded, True))
            extra = median(verified) - median(unsigned)
            figures.append(Figure(f"auth.verify_cpu_{kind}", f"Verification CPU per {'GetModel' if kind == 'read' else 'UpdateModel'}"
                                  " (signed minus unsigned, warm, memory store)", round(extra, 4), "ms",
                                  round(median(unsigned), 4), "the unsigned request's CPU", max_value=0.2,
                                  detail={"signed_ms": median(verified), "unsigned_ms": median(unsigned)}))
        store = guarded.registry.store
        nonces = store.list("nonces/")
        changing = rounds * per_round + 1  # the updates and the create
        figures.append(Figure("auth.nonce_puts", "Replay guard: objects written per changing request (one create-only PUT)",
                              len(nonces) / changing, "PUTs", 0, "reads write none", max_value=1.0,
                              detail={"bytes_per_nonce": len(store.get(nonces[0])), "swept_after_hours": 2}))
        return figures

