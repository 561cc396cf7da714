"""Event batches within FC's time: a redelivered registration costs one read, items run side by side,
and items the invocation's remaining time cannot see through are left for the redelivery."""
from __future__ import annotations

import json
from typing import Any

import pytest

from handler.api.app import App
from handler.entry import events
from handler.stores.memory import MemoryStore
from testing.fake_oss import FakeOss
from tests.conftest import invoke, make_oss_store


def registration(i: int, model: str = "resnet") -> dict[str, Any]:
    return {"ModelName": model, "Version": {"Uri": f"oss://bucket.endpoint/runs/{i}/model.pt"}}


def versions(app: App) -> dict[str, list[str]]:
    workspace = app.registry.workspace("default")
    workspace.read()
    return workspace.version_names()


def test_a_redelivered_registration_costs_one_read_and_writes_nothing(use_app, oss: FakeOss) -> None:
    app = use_app(make_oss_store(oss))
    first = invoke(registration(1))
    assert set(first) == {"RequestId", "ModelId", "VersionName"}
    invoke(registration(2))  # a new version of a model that exists: no model create (record write, then removal)
    app.registry.settle()  # its record's read after its answer is not the redelivery's
    before = len(oss.log)
    again = invoke(registration(1))
    sent = [(r.method, r.key) for r in oss.log[before:]]
    assert (again["ModelId"], again["VersionName"]) == (first["ModelId"], first["VersionName"])
    assert [method for method, _ in sent] == ["GET"], sent  # the catch-up read of the log's next commit
    assert list(versions(app).values()) == [["0.1.0", "0.2.0"]]


def test_a_registration_into_an_existing_model_writes_no_model_record(use_app, oss: FakeOss) -> None:
    use_app(make_oss_store(oss))
    invoke(registration(1))
    before = len(oss.log)
    invoke(registration(2))
    writes = [(r.method, r.key) for r in oss.log[before:] if r.method in ("PUT", "DELETE", "POST")]
    model_writes = [at for at, (_, key) in enumerate(writes) if key.endswith(".json") and key.count("/") == 2 and "/models/" in key]
    commit = next(at for at, (_, key) in enumerate(writes) if "/log/" in key)
    # No model record created (and removed again) for a model that exists; the one write after the commit is
    # the record's new last version number (MLflow's numbering), beside the version's own record.
    assert all(at > commit and writes[at][0] == "PUT" for at in model_writes) and len(model_writes) <= 1, writes


def test_a_batch_starts_only_what_the_time_left_can_finish_and_the_redelivery_does_the_rest(use_app, monkeypatch) -> None:
    app = use_app(MemoryStore())
    clock = [0.0]
    monkeypatch.setattr(events, "now", lambda: clock[0])
    monkeypatch.setattr(events, "deadline", lambda: 20.0)  # the invocation's budget ends at 20 s on this clock
    monkeypatch.setattr(events, "WORKERS", 1)
    handle = app.handle

    def slow(*args: Any, **kwargs: Any) -> Any:
        clock[0] += 3.0  # each registration takes 3 s
        return handle(*args, **kwargs)

    monkeypatch.setattr(app, "handle", slow)
    batch = [registration(i, model=f"m{i}") for i in range(10)]
    with pytest.raises(events.RetryLater, match="4 of 10"):
        events.handle_event(app, json.dumps(batch), events.Caller(owner_id=None, actor="test"))
    # Started at 0, 3, ..., 15 s: each with at least the longest seen (3 s) left; at 18 s only 2 s were left.
    assert len(versions(app)) == 6
    clock[0] = 0.0
    monkeypatch.setattr(events, "deadline", lambda: None)  # delivered again, with time enough
    answers = json.loads(events.handle_event(app, json.dumps(batch), events.Caller(owner_id=None, actor="test")))
    assert [a["VersionName"] for a in answers] == ["0.1.0"] * 10 and len(versions(app)) == 10


def test_items_not_started_are_answered_503_and_the_event_raised_for_redelivery(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(events, "now", lambda: clock[0])
    monkeypatch.setattr(events, "deadline", lambda: 100.5)  # less than the first guess of an item's time
    done: list[int] = []
    results = events._each([1, 2, 3], lambda item: done.append(item) or events._not_started(), workers=2)
    assert done == [] and [response.status for response, _ in results] == [503] * 3
    assert "not started" in results[0][1]["Message"]
    with pytest.raises(events.RetryLater):
        events._finish(results)


def test_batch_items_run_side_by_side(use_app, monkeypatch) -> None:
    """A batch's items overlap (bounded by WORKERS): their storage waits add up to a fraction of the sum."""
    import threading

    app = use_app(MemoryStore())
    inside, most = [0], [0]
    lock = threading.Lock()
    handle = app.handle

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            threading.Event().wait(0.02)
            return handle(*args, **kwargs)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(app, "handle", counted)
    answers = invoke([registration(i, model=f"m{i % 5}") for i in range(40)])
    assert len(answers) == 40 and all("VersionName" in a for a in answers)
    assert 1 < most[0] <= events.WORKERS
    assert sorted(len(names) for names in versions(app).values()) == [8] * 5


def test_concurrent_lookups_share_one_catch_up_read_per_round() -> None:
    """While one round of lookups is reading, the lookups that arrive wait and are answered by one next round."""
    import threading

    from handler.catalog.draft import Draft
    from handler.catalog.state import State
    from handler.registry.versions import _Lookups

    rounds: list[int] = []
    first_round = threading.Event()
    release = threading.Event()

    class Reading:
        """A workspace whose commits block until released: a slow catch-up read."""

        def commit(self, plan: Any) -> tuple[Any, None]:
            answer = plan(Draft(State()))
            rounds.append(len(answer))
            first_round.set()
            release.wait(10)
            return answer, None

    lookups = _Lookups(Reading())  # type: ignore[arg-type]
    answers: list[Any] = []
    threads = [threading.Thread(target=lambda i=i: answers.append(lookups.find(f"m{i}", "token"))) for i in range(6)]
    threads[0].start()
    assert first_round.wait(10)
    for thread in threads[1:]:
        thread.start()
    while len(lookups._queue) < 5:
        threading.Event().wait(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    assert rounds == [1, 5] and answers == [(None, None)] * 6


def test_a_new_model_s_registration_is_one_commit_of_the_model_and_its_version(use_app, oss: FakeOss) -> None:
    from handler.notify.events import events_of

    app = use_app(make_oss_store(oss))
    before = len(oss.log)
    made = invoke(registration(1, "fresh"))
    app.registry.settle()
    commits = [r.key for r in oss.log[before:] if r.method == "PUT" and "/log/" in r.key]
    assert len(commits) == 1, commits  # the model and its version: one commit, not two
    entry = json.loads(oss.objects[commits[0]])
    names = [event["type"].removeprefix("model-registry.") for event in events_of("default", entry)]
    assert names == ["ModelCreated", "ModelVersionCreated"]  # the record's last number is part of the version's change
    workspace = app.registry.workspace("default")
    committed = workspace.model(made["ModelId"])[0]
    assert committed is not None and committed.record()["LastVersionNumber"] == 1
    assert oss.objects[f"registry/models/{made['ModelId']}.json"] == committed.raw  # written again after the commit


def test_a_registration_whose_model_appeared_after_its_lookup_adds_its_version_there(use_app) -> None:
    app = use_app(MemoryStore())
    versions_api = app.versions
    real = versions_api.registered

    def looked_up_before_the_model_was_made(workspace_id: str, model_name: str, token: str) -> tuple[str | None, str | None]:
        found = real(workspace_id, model_name, token)
        versions_api.registered = real  # type: ignore[method-assign]
        invoke({"ModelName": model_name, "Version": {"Uri": "oss://bucket.endpoint/runs/other/model.pt"}})  # meanwhile
        return found

    versions_api.registered = looked_up_before_the_model_was_made  # type: ignore[method-assign]
    made = invoke(registration(1, "raced"))
    assert list(versions(app).values()) == [["0.1.0", "0.2.0"]]  # one model, both versions
    [model_id] = versions(app)
    assert made["ModelId"] == model_id and made["VersionName"] == "0.2.0"
    assert app.registry.store.list("models/") == [f"models/{model_id}.json", *(
        f"models/{model_id}/versions/{name}.json" for name in ("0.1.0", "0.2.0"))]  # no record of the model not made


def test_a_registration_refused_after_its_model_was_planned_leaves_nothing_its_batch_could_commit(use_app) -> None:
    # One batch (group commit) of two registrations of one new name: the first's model fits the quota, its version
    # does not. The second must create the model itself, not adopt the first's, planned but never committed.
    import threading
    import time

    from handler.catalog import keys
    from handler.notify.events import events_of

    store = MemoryStore()
    app = use_app(store)
    workspace = app.registry.workspace("default")
    workspace.read()
    workspace.max_bytes = 3000
    app.versions.registered = lambda *args: (None, None)  # type: ignore[method-assign]  # both looked up before either
    answers: dict[str, Any] = {}

    def register(tag: str, description: str) -> None:
        answers[tag] = invoke({"ModelName": "quota", "Version": {
            "Uri": f"oss://bucket.endpoint/runs/{tag}/model.pt", "VersionDescription": description}})

    with workspace._commit_lock:  # both queue up, then one commits the batch of both
        for at, (tag, description) in enumerate((("big", "x" * 4000), ("small", "y")), start=1):
            threading.Thread(target=register, args=(tag, description)).start()
            while len(workspace._queue) < at:
                time.sleep(0.01)
    while len(answers) < 2:
        time.sleep(0.01)
    app.registry.settle()
    assert answers["big"]["Code"] == "QuotaExceeded"
    made = answers["small"]
    [commit] = store.list(keys.log_prefix("default"))
    names = [event["type"].removeprefix("model-registry.") for event in events_of("default", json.loads(store.get(commit)))]
    assert names == ["ModelCreated", "ModelVersionCreated"]
    workspace.read()
    assert workspace.version_names() == {made["ModelId"]: ["0.1.0"]}
    committed = workspace.model(made["ModelId"])[0]
    assert committed is not None and store.get(keys.record_key(made["ModelId"])) == committed.raw
    assert store.list("models/") == [f"models/{made['ModelId']}.json", f"models/{made['ModelId']}/versions/0.1.0.json"]
