"""Event batches at real latency: a 1,000-item EventBridge batch of registrations over the loopback OSS, each
storage request delayed by the RTT, through FC's entry point with its 30 s Timeout; then its redelivery."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

from handler.api.app import App
from handler.entry import events, fc
from handler.registry.models import Registry
from handler.stores.credentials import Credentials
from handler.stores.oss import OssStore

from .harness import Harness
from .report import Figure
from .workload import ACCESS_KEY_ID, ACCESS_KEY_SECRET, STORE_PREFIX, WORKSPACE, FcCredentials

TIMEOUT = 30  # seconds: the function's Timeout in template.yml


def batch(items: int, models: int, first_run: int = 0) -> bytes:
    """EventBridge's batch shape: CloudEvents whose data is a registration (a model and a version of it)."""
    return json.dumps([
        {"specversion": "1.0", "id": f"event-{i}", "source": "acs.oss", "type": "oss:ObjectCreated:PutObject",
         "data": {"ModelName": f"model-{i % models}", "Domain": "cv",
                  "Version": {"Uri": f"oss://bench-bucket.oss-cn-hangzhou.aliyuncs.com/runs/{first_run + i}/model.pt",
                              "Metrics": {"top1": 0.7 + i / 1e5}}}}
        for i in range(items)]).encode()


def deliver(app: App, event: bytes) -> tuple[float, bool]:
    """One invocation as FC makes it (its Timeout bounds the budget): (seconds, whether it asked to be delivered again)."""
    context = SimpleNamespace(account_id="1234567890", credentials=FcCredentials(), request_id="bench",
                              function=SimpleNamespace(timeout=TIMEOUT))
    fc.set_app(app)
    started = time.perf_counter()
    try:
        fc.handler(event, context)
        again = False
    except events.RetryLater:
        again = True
    finally:
        fc.set_app(None)
    return time.perf_counter() - started, again


def run(harness: Harness, rtt_ms: float, quick: bool) -> list[Figure]:
    items, models = (200, 20) if quick else (events.MAX_BATCH, 100)
    figures = []
    for kind, model_count in (("new models", items), ("versions of existing models", models)):
        harness.reset(rtt_ms)
        store = OssStore(harness.server.bucket, f"{STORE_PREFIX}/", endpoint=harness.server.endpoint,
                         credentials=lambda: Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET, None),
                         pool_size=harness.template.oss_pool_size)
        app = App(Registry(store), default_workspace=WORKSPACE)
        event = batch(items, model_count)
        if model_count < items:  # the models exist before the batch: each item adds a version
            deliver(app, batch(model_count, model_count, first_run=items))
        before = len(harness.server.log)
        deliveries: list[float] = []
        again = True
        while again and len(deliveries) < 4:
            seconds, again = deliver(app, event)
            deliveries.append(round(seconds, 2))
        first, first_requests = sum(deliveries), len(harness.server.log) - before
        before = len(harness.server.log)
        repeat, again_after_all = deliver(app, event)
        repeat_requests = len(harness.server.log) - before
        app.registry.settle()  # the reads that confirm record files, before the server is reset or stopped
        workspace = app.registry.workspace(WORKSPACE)
        workspace.read()
        registered = sum(len(names) for names in workspace.version_names().values())
        key = "new" if model_count == items else "versions"
        expected = items if model_count == items else items + model_count
        if registered != expected or again:
            raise RuntimeError(f"bench events: {registered} of {expected} registrations after {len(deliveries)} deliveries")
        detail: dict[str, Any] = {"deliveries_s": deliveries, "registered": registered, "items": items,
                                  "requests": first_requests, "workers": events.WORKERS}
        figures += [
            Figure(f"events.batch_{key}", f"{items:,}-item batch of registrations ({kind}), {rtt_ms:g} ms RTT: "
                   "seconds until every item is registered", round(first, 2), "s", TIMEOUT, "FC's Timeout",
                   max_value=25.0, detail=detail),
            Figure(f"events.redelivery_{key}", f"The same batch delivered again ({kind}), {rtt_ms:g} ms RTT",
                   round(repeat, 2), "s", round(first, 2), "its first delivery", max_value=5.0,
                   detail={"requests": repeat_requests, "requests_per_item": round(repeat_requests / items, 2),
                           "asked_again": again_after_all}),
        ]
    return figures
