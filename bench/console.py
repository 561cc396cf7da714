"""The console: what a first visit downloads, what serving a file costs a warm instance, and how long a browser
(headless Chromium, where installed) takes from navigation to a rendered list of models."""
from __future__ import annotations

import json
import sys
import threading

from handler.api import console
from handler.api.http import Request
from handler.config import Settings
from handler.entry import fc
from handler.entry.compose import build_app
from handler.entry.local import LocalServer
from testing.browser import CHROMIUM, CHROMIUM_ARGS

from .auth import cpu_ms
from .report import Figure, median


def run(rounds: int, per_round: int, models: int = 100) -> list[Figure]:
    raw = sum(len(console._file(name).content) for name in console.FILES)
    packed = sum(len(console._file(name).compressed) for name in console.FILES)
    figures = [Figure("console.first_load_bytes", f"console first visit: {len(console.FILES)} files, compressed", packed, "B",
                      raw, "the same files uncompressed", max_value=40_000)]

    app = build_app(Settings.from_env({"MODEL_STORE": "memory://"}))
    get_model = app.handle(Request("POST", "/api/v1/models", b'{"ModelName": "bench"}', headers={"content-type": "application/json"}))
    model_path = f"/api/v1/models/{get_model.body['ModelId']}"
    file_ms: list[float] = []
    api_ms: list[float] = []
    for _ in range(rounds):  # alternate, so that drift of the machine's load hits both alike
        file_ms += cpu_ms(app, [Request("GET", "/console/console.js", headers={"accept-encoding": "gzip"})] * per_round)
        api_ms += cpu_ms(app, [Request("GET", model_path)] * per_round)
    figures.append(Figure("console.file_cpu_ms", "console file, CPU per request (warm, compressed)", median(file_ms), "ms",
                          median(api_ms), "GetModel, CPU per request", max_ratio=1.0))

    chromium = CHROMIUM
    if chromium is None:
        print("bench: console: no chromium, so no page-load figure (apt-get install chromium)", file=sys.stderr)
        return figures
    fc.set_app(app)
    server = LocalServer(("127.0.0.1", 0), fc.get_app, 1 << 20)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        for i in range(models):
            app.handle(Request("POST", "/api/v1/models", json.dumps({"ModelName": f"model-{i:03d}", "Tag": [
                {"Key": "team", "Value": "bench"}]}).encode(), headers={"content-type": "application/json"}))
        page_ms, blank_ms = _page_load_ms(chromium, server.url, rounds * 3)
    finally:
        server.shutdown()
        server.server_close()
        fc.set_app(None)
    figures.append(Figure("console.page_load_ms", f"console, navigation to {models} models listed (20 shown), fresh tab",
                          median(page_ms), "ms", median(blank_ms), "a fresh tab showing one small file", max_value=1000))
    return figures



def _page_load_ms(chromium: str, root: str, visits: int) -> tuple[list[float], list[float]]:
    """Milliseconds from navigation start until the list's rows are on the page, each visit in a fresh context (cold
    cache); and, visit for visit, until a fresh tab has loaded one small file of the same server (the browser's own part)."""
    from playwright.sync_api import sync_playwright

    spent, blank = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for _ in range(visits):
                context = browser.new_context(bypass_csp=True)  # for the measuring script only
                page = context.new_page()
                page.goto(root + "/console/")
                shown = page.wait_for_function("document.querySelector('a.model-link') && performance.now()", polling="raf")
                spent.append(float(shown.json_value()))
                context.close()
                context = browser.new_context(bypass_csp=True)
                page = context.new_page()
                page.goto(root + "/console/icon.svg")
                blank.append(float(page.evaluate("performance.now()")))
                context.close()
        finally:
            browser.close()
    return spent, blank
