"""Change events out, locally: a commit's answer with a delivering rule beside one without (two `handler serve`
processes, timed in pairs by a worker), the lag from a commit's answer to its event's 2xx at a webhook, and events
per second delivered from a backlog to one webhook beside bare POSTs of the same bodies on one connection."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testing.receiver import SECRET, Receiver

from .report import Figure, median
from .workload import REPO, WORKSPACE, percentile

if TYPE_CHECKING:
    from .harness import Harness
    from .protocol import Checkpoint


@contextlib.contextmanager
def served(directory: Path, rules: Path | None) -> Iterator[str]:
    """`python -m handler serve` on a file store of its own (with NOTIFICATIONS when rules is given): its URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("ACCESS_KEYS", "NOTIFICATIONS", "FC_FUNCTION_NAME")}
    env.update(MODEL_STORE=f"file://{directory / 'store'}", DEFAULT_WORKSPACE_ID=WORKSPACE)
    if rules is not None:
        env["NOTIFICATIONS"] = f"file://{rules}"
    log = directory / "server.log"
    directory.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "handler", "serve", "--port", "0"], cwd=REPO, env=env,
                                   stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"listening on (\S+) ", log.read_text())):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bench notify: the server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(10)


def rules_document(path: Path, url: str) -> Path:
    path.write_text(json.dumps({"Rules": [{"Name": "bench", "Events": ["*"], "Workspaces": ["*"], "AllowPrivateNetwork": True,
                                           "Target": {"Webhook": {"Url": url, "Secret": SECRET}}}]}))
    return path


class Client:
    """One kept connection to a local server."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        self.connection.request(method, path, data, {"Content-Type": "application/json"} if data else {})
        response = self.connection.getresponse()
        answer: dict[str, Any] = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"bench notify: {method} {path} answered {response.status}: {answer}")
        return answer


def commits_client(params: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    """Child: UpdateModel on the server without rules and on the one with a delivering rule, in pairs (the order
    alternating), round after round: each side's p50 per round and the median of the pairs' ratios."""
    sides = {side: (Client(params[side]["url"]), f"/api/v1/models/{params[side]['model']}") for side in ("plain", "ruled")}
    for i in range(params["warmup"]):
        for client, path in sides.values():
            client.call("PUT", path, {"ModelDescription": f"warm {i}"})
    rounds: dict[str, list[float]] = {"plain": [], "ruled": []}
    ratios: list[float] = []
    clock = time.perf_counter
    for r in range(params["rounds"]):
        times: dict[str, list[float]] = {"plain": [], "ruled": []}
        for i in range(params["per_round"]):
            order = ("plain", "ruled") if i % 2 == 0 else ("ruled", "plain")
            for side in order:
                client, path = sides[side]
                started = clock()
                client.call("PUT", path, {"ModelDescription": f"round {r} call {i}"})
                times[side].append((clock() - started) * 1e3)
        for side, samples in times.items():
            rounds[side].append(percentile(samples, 0.50))
        ratios.append(rounds["ruled"][-1] / rounds["plain"][-1])
    return {"p50_rounds": rounds, "ratio": median(ratios), "calls": params["rounds"] * params["per_round"]}


def run(harness: Harness, quick: bool) -> list[Figure]:
    figures: list[Figure] = []
    base = harness.scratch / "notify"
    with Receiver() as receiver, served(base / "plain", None) as plain, \
            served(base / "ruled", rules_document(base / "rules.json", receiver.url)) as ruled:
        models = {side: Client(url).call("POST", "/api/v1/models", {"ModelName": f"bench-{side}"})["ModelId"]
                  for side, url in (("plain", plain), ("ruled", ruled))}
        receiver.wait_for(1, timeout=10)  # the rule has seen the workspace: it is delivering
        rounds, per_round = (3, 100) if quick else (7, 300)
        warmup = 50
        params = {"plain": {"url": plain, "model": models["plain"]}, "ruled": {"url": ruled, "model": models["ruled"]},
                  "rounds": rounds, "per_round": per_round, "warmup": warmup}
        result, _ = harness.run_worker("notify-commits", params, store_url="memory://")
        p50 = {side: median(values) for side, values in result["p50_rounds"].items()}
        figures.append(Figure(
            "notify.commit_with_rules.p50", "UpdateModel answer, local server delivering every change to a webhook, p50",
            round(p50["ruled"], 3), "ms", round(p50["plain"], 3), "the same server without rules", max_ratio=1.05,
            paired_ratio=round(result["ratio"], 3), detail={**result, "delivered_meanwhile": len(receiver.events)}))
        receiver.wait_for(1 + warmup + rounds * per_round, timeout=120)  # the timed commits' events are out
        figures.append(lag_figure(ruled, models["ruled"], receiver, 50 if quick else 200))
    figures.append(backlog_figure(harness.scratch / "backlog", 1000 if quick else 10_000))
    return figures


def lag_figure(url: str, model_id: str, receiver: Receiver, commits: int) -> Figure:
    """Commits one at a time, 0.1 s apart: from each answer to its event's 2xx at the receiver (its arrival)."""
    client = Client(url)
    seen = len(receiver.events)
    answered: list[float] = []
    for i in range(commits):
        client.call("PUT", f"/api/v1/models/{model_id}", {"ModelDescription": f"lag {i}"})
        answered.append(time.time())
        time.sleep(0.1)
    events = receiver.wait_for(seen + commits, timeout=60)[seen:]
    if len(events) < commits:
        raise RuntimeError(f"bench notify: {len(events)} of {commits} events arrived")
    lags = [arrived - done for arrived, done in zip(receiver.arrived[seen:seen + commits], answered)]
    return Figure("notify.lag.p50", "Delivery lag, commit answered to the webhook's 2xx (local server, a pass every 0.25 s), p50",
                  round(percentile(lags, 0.5), 3), "s", 0.25, "the delivery loop's pause", max_value=1.0,
                  detail={"p90_s": round(percentile(lags, 0.9), 3), "max_s": round(max(lags), 3), "commits": commits})


def backlog_figure(directory: Path, backlog: int) -> Figure:
    """A backlog of `backlog` commits, delivered to one webhook by one pass of a Deliverer on the file store."""
    from handler.notify.delivery import Deliverer
    from handler.notify.rules import RuleBook
    from handler.notify.webhook import Webhook
    from handler.registry import records
    from handler.registry.models import Registry
    from handler.rules.jsontext import compact
    from handler.stores.documents import document_reader
    from handler.stores.file import FileStore

    directory.mkdir(parents=True, exist_ok=True)
    store = FileStore(directory / "store")
    registry = Registry(store)
    with Receiver() as receiver:
        rules = rules_document(directory / "rules.json", receiver.url)
        deliverer = Deliverer(store, RuleBook(document_reader(f"file://{rules}", "NOTIFICATIONS")))
        model_id = registry.create(records.normalized_request({"ModelName": "backlog"}, WORKSPACE))[0]
        deliverer.run()  # the rule's first sight: it delivers what is committed from here on
        receiver.wait_for(1, timeout=10)
        for i in range(backlog - 1):
            registry.update(model_id, {"ModelDescription": f"backlog {i}"})
        already = len(receiver.events)
        started = time.perf_counter()
        while len(receiver.events) < already + backlog - 1:
            if deliverer.run() == 0:
                time.sleep(0.01)
        seconds = time.perf_counter() - started
        rate = (backlog - 1) / seconds
        # The least work: the same bodies POSTed on one kept connection, signed, without reading the log.
        bodies = [compact(event).encode() for event in receiver.events[already:]]
        hook = Webhook(deliverer.book.rules()[0])
        started = time.perf_counter()
        for body in bodies:
            hook.send(body)
        hook.close()
        bare = len(bodies) / (time.perf_counter() - started)
    return Figure("notify.backlog_rate", f"Events delivered per second from a {backlog:,}-commit backlog to one webhook",
                  round(rate, 1), "events/s", round(bare, 1), "bare signed POSTs on one connection", min_value=200.0,
                  detail={"seconds": round(seconds, 2), "events": backlog - 1})
