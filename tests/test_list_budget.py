"""A list answer holds a bounded number of bytes, whatever the size of each record, and says when it ended early."""
from __future__ import annotations

import json
from typing import Any

from handler.api.app import App
from handler.api.http import Request
from handler.registry.listing import PAGE_BYTES
from handler.registry.models import Registry
from handler.stores.memory import MemoryStore

EXTRA = 900_000  # bytes of ExtraInfo per model: 67 of them make a 60 MB workspace


def large_app() -> App:
    app = App(Registry(MemoryStore()), default_workspace="default", max_body_bytes=1 << 20)
    for i in range(67):
        body = json.dumps({"ModelName": f"big-{i:02}", "ExtraInfo": {"blob": f"{i:02}" + "x" * EXTRA}}).encode()
        assert app.handle(Request("POST", "/api/v1/models", body)).status == 200
    return app


def get(app: App, path: str, **query: Any) -> tuple[int, dict[str, Any]]:
    response = app.handle(Request("GET", path, query=[(k, str(v)) for k, v in query.items()]))
    payload = response.payload()
    assert len(payload) <= PAGE_BYTES + 64_000, len(payload)  # the records, and a little of the answer's own
    return response.status, json.loads(payload)


def test_a_page_of_large_models_stays_within_the_budget_and_says_it_ended_early() -> None:
    app = large_app()
    status, page = get(app, "/api/v1/models", PageSize=100)
    assert status == 200 and page["TotalCount"] == 67 and page["Truncated"] is True
    assert [m["ModelName"] for m in page["Models"]] == ["big-00", "big-01"]  # whole models, in order, as many as fit
    assert page["Models"][0]["ExtraInfo"]["blob"].startswith("00x")
    names = []  # a smaller PageSize reaches every model
    for number in range(1, 35):
        status, page = get(app, "/api/v1/models", PageSize=2, PageNumber=number)
        assert "Truncated" not in page
        names += [m["ModelName"] for m in page["Models"]]
    assert names == [f"big-{i:02}" for i in range(67)]


def test_a_page_that_fits_carries_no_truncated_field_and_the_first_item_always_comes() -> None:
    app = App(Registry(MemoryStore()), default_workspace="default")
    for i in range(3):
        assert app.handle(Request("POST", "/api/v1/models", json.dumps({"ModelName": f"m{i}"}).encode())).status == 200
    status, page = get(app, "/api/v1/models", PageSize=2, PageNumber=2)
    assert page == {"RequestId": page["RequestId"], "Models": page["Models"], "TotalCount": 3} and len(page["Models"]) == 1


def test_a_page_of_large_versions_stays_within_the_budget() -> None:
    app = App(Registry(MemoryStore()), default_workspace="default", max_body_bytes=1 << 20)
    model_id = app.handle(Request("POST", "/api/v1/models", b'{"ModelName": "versions"}')).body["ModelId"]
    for i in range(5):
        body = json.dumps({"Uri": f"oss://bucket.endpoint/m/{i}", "ExtraInfo": {"blob": "x" * EXTRA}}).encode()
        assert app.handle(Request("POST", f"/api/v1/models/{model_id}/versions", body)).status == 200
    status, page = get(app, f"/api/v1/models/{model_id}/versions", PageSize=10)
    assert status == 200 and page["TotalCount"] == 5 and page["Truncated"] is True and len(page["Versions"]) == 2
