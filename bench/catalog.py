"""The catalog at scale: ListModels and GetModel on a workspace of 10,000 models, storage requests per
operation, cold starts, memory, write throughput, and the same searches in MLflow's registry."""
from __future__ import annotations

import gc
import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .report import Figure, median
from .workload import WORKSPACE, FcContext, percentile, rss_kib

if TYPE_CHECKING:
    from handler.api.app import App

    from .harness import Harness
    from .protocol import Checkpoint

DOMAINS = ("cv", "nlp", "audio", "multimodal")
TEAMS = ("vision", "search", "ads", "speech", "platform")
WRITES = ("create", "update", "labels", "delete")  # the write paths timed one at a time, in this order
WARM_QUERY = {"Query": "nlp", "Conditions": json.dumps([{"Column": "ParameterSize", "Operator": "LessThan", "Value": "5000"}]),
              "SortBy": "GmtModifiedTime", "Order": "DESC", "PageSize": "10"}


def model_fields(i: int) -> dict[str, Any]:
    """The i-th model of a seeded workspace: varied names, domains, labels and numbers."""
    return {"ModelName": f"model-{i:05d}-{DOMAINS[i % 4]}-{TEAMS[i % 5]}", "Domain": DOMAINS[i % 4],
            "Task": f"task-{i % 7}", "OrderNumber": i % 100, "ParameterSize": (i * 7919) % 10_000,
            "Tag": [{"Key": "team", "Value": TEAMS[i % 5]}, {"Key": "stage", "Value": ("dev", "prod")[i % 2]}],
            "ModelDescription": "a model seeded for the benchmark", "ExtraInfo": {"seed": i, "framework": "pytorch"}}


def seed_objects(workspace: str, count: int, versions: int = 0) -> dict[str, bytes]:
    """A workspace of `count` committed models as the catalog stores them: records, commit 1, a checkpoint at 1;
    the first model has `versions` versions (0.1.0, 0.2.0, ...)."""
    from handler.catalog import keys, state
    from handler.registry import records

    now = time.time()
    changes: list[state.Change] = []
    objects: dict[str, bytes] = {}
    for i in range(count):
        normal = records.normalized_request(model_fields(i), workspace)
        model_id = records.new_model_id(int(now * 1000) - count + i)
        record = records.build_record(normal, model_id, now - count + i, None)
        objects[f"models/{model_id}.json"] = records.record_json(record)
        changes.append({"Put": {"Model": record, "Fingerprint": records.fingerprint(normal)}})
        for n in range(versions if i == 0 else 0):
            fields = records.normalized_version({"Uri": f"oss://bench-bucket.oss-cn-hangzhou.aliyuncs.com/m0/{n}", "FormatType": "ONNX",
                                                 "Metrics": {"top1": n / versions}})
            version = records.build_version(fields, f"0.{n + 1}.0", now - versions + n, None)
            objects[f"models/{model_id}/versions/{version['VersionName']}.json"] = records.record_json(version)
            changes.append({"PutVersion": {"ModelId": model_id, "Version": version, "Fingerprint": records.fingerprint(fields),
                                           "Created": n + 1}})
    seeded = state.State().apply(1, changes)
    objects[keys.log_key(workspace, 1)] = state.encode({"Seq": 1, "Txn": "seed", "Time": "", "Changes": changes})
    objects[keys.checkpoint_key(workspace, 1)] = state.checkpoint_of(seeded)
    objects[keys.hint_key(workspace)] = state.encode({"Seq": 1})
    return objects


# --- the child: one instance over the loopback OSS ---------------------------------------------

def _api(app: App) -> Callable[..., dict[str, Any]]:
    from handler.api.http import Request

    def call(method: str, path: str, body: dict[str, Any] | None = None, **query: str) -> dict[str, Any]:
        answer = app.handle(Request(method, path, json.dumps(body).encode() if body is not None else b"",
                                    query=list(query.items())))
        if answer.status != 200:
            raise RuntimeError(f"{method} {path}: {answer.status} {answer.body}")
        return answer.body

    return call


def _timed(function: Callable[[], Any], baseline: Callable[[], Any], calls: int) -> tuple[list[float], list[float]]:
    """Alternate the two, so that drift hits both alike; milliseconds of each call."""
    ours, base = [], []
    for _ in range(calls):
        started = time.perf_counter()
        function()
        middle = time.perf_counter()
        baseline()
        ours.append((middle - started) * 1e3)
        base.append((time.perf_counter() - middle) * 1e3)
    return ours, base


def _raw_get(url: str) -> Callable[[], bytes]:
    """A pre-signed GET over one kept-alive connection: the least a read of one object costs."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    target = parts.path + ("?" + parts.query if parts.query else "")

    def get() -> bytes:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.read()

    return get


def oss_client(params: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    """Child: a cold start, warm reads and writes of one instance, against a workspace of params["models"]."""
    from handler.entry import fc
    from handler.registry.models import Registry

    from .warm import bare_bucket

    context = FcContext()
    fc.initializer(context)
    app = fc.get_app()
    api = _api(app)
    gc.collect()
    rss_before = rss_kib()
    checkpoint("cold")
    started = time.perf_counter()
    first = api("GET", "/api/v1/models", **WARM_QUERY)
    cold_ms = (time.perf_counter() - started) * 1e3
    checkpoint("cold-done")
    gc.collect()
    catalog_kib = rss_kib() - rss_before

    bucket, prefix = bare_bucket(context)
    some_id = first["Models"][0]["ModelId"]
    record_key = f"{prefix}models/{some_id}.json"
    raw = _raw_get(bucket.sign_url("GET", record_key, 3600))
    bare: Callable[[], bytes] = lambda: bucket.get_object(record_key).read()  # noqa: E731
    raw()
    bare()
    calls = params["calls"]
    checkpoint("list")
    list_ms, bare_ms = _timed(lambda: api("GET", "/api/v1/models", **WARM_QUERY), bare, calls)
    checkpoint("list-done")
    raw_ms = [_timed(raw, lambda: None, 1)[0][0] for _ in range(calls)]
    checkpoint("get-known")
    get_ms = _timed(lambda: api("GET", f"/api/v1/models/{some_id}"), lambda: None, calls)[0]
    checkpoint("get-known-done")
    other_ids = [m["ModelId"] for m in api("GET", "/api/v1/models", PageSize="100", PageNumber="3")["Models"]][:10]
    checkpoint("get-new")
    for model_id in other_ids:
        api("GET", f"/api/v1/models/{model_id}")
    checkpoint("get-new-done")

    # Changes made by another instance: each costs this one a read of that commit.
    elsewhere = Registry(app.registry.store)
    for n in range(5):
        elsewhere.update(other_ids[0], {"OrderNumber": 1000 + n})
    elsewhere.settle()  # its writes' own reads after answering are not this reader's
    checkpoint("after-changes")
    api("GET", "/api/v1/models", **WARM_QUERY)
    checkpoint("after-changes-done")

    writes: dict[str, list[float]] = {op: [] for op in WRITES}
    for n in range(params["writes"]):
        for op in WRITES:
            checkpoint(f"{op}-{n}")
            started = time.perf_counter()
            if op == "create":
                model_id = api("POST", "/api/v1/models", {"ModelName": f"bench-write-{n}", "Domain": "cv"})["ModelId"]
            elif op == "update":
                api("PUT", f"/api/v1/models/{model_id}", {"ModelDescription": f"changed {n}"})
            elif op == "labels":
                api("POST", f"/api/v1/models/{model_id}/labels", {"Labels": [{"Key": "stage", "Value": f"v{n}"}]})
            else:
                api("DELETE", f"/api/v1/models/{model_id}")
            writes[op].append((time.perf_counter() - started) * 1e3)
            checkpoint(f"{op}-{n}-done")

    # Versions: the first model has params["versions"] of them.
    versioned = api("GET", "/api/v1/models", SortBy="GmtCreateTime", PageSize="1")["Models"][0]["ModelId"]
    base = f"/api/v1/models/{versioned}/versions"
    api("GET", base)
    checkpoint("versions-list")
    for n in range(10):
        api("GET", base, SortBy="VersionName", Order="DESC", PageSize="10", PageNumber=str(n + 1))
    checkpoint("versions-list-done")
    checkpoint("versioned-get")
    for _ in range(10):
        latest = api("GET", f"/api/v1/models/{versioned}")["LatestVersion"]["VersionName"]
    checkpoint("versioned-get-done")
    version_create_ms = []
    for n in range(params["writes"]):
        checkpoint(f"version-create-{n}")
        started = time.perf_counter()
        created = api("POST", base, {"Uri": f"oss://bench-bucket.oss-cn-hangzhou.aliyuncs.com/m0/new-{n}"})["VersionName"]
        version_create_ms.append((time.perf_counter() - started) * 1e3)
        checkpoint(f"version-create-{n}-done")
    names: list[str] = []

    def version_worker(i: int) -> None:
        names.append(api("POST", base, {"Uri": f"oss://bench-bucket.oss-cn-hangzhou.aliyuncs.com/m0/concurrent-{i}"})["VersionName"])

    pool = [threading.Thread(target=version_worker, args=(i,)) for i in range(10)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()

    # Throughput: InstanceConcurrency clients creating into the same workspace at once, then updating those models.
    threads, creates = params["threads"], params["creates"]
    created_ids: list[str] = []
    checkpoint("throughput")
    seconds = _clients(threads, creates, lambda i: created_ids.append(
        api("POST", "/api/v1/models", {"ModelName": f"bench-concurrent-{i}", "Domain": "nlp"})["ModelId"]))
    checkpoint("throughput-done")
    checkpoint("update-throughput")
    update_seconds = _clients(threads, creates, lambda i: api(
        "PUT", f"/api/v1/models/{created_ids[i]}", {"ModelDescription": f"updated by client call {i}"}))
    checkpoint("update-throughput-done")
    return {"cold_ms": cold_ms, "catalog_mib": catalog_kib / 1024, "total": first["TotalCount"],
            "list_ms": list_ms, "bare_get_ms": bare_ms, "raw_get_ms": raw_ms, "get_ms": get_ms,
            "writes_ms": writes, "creates_per_s": creates / seconds, "updates_per_s": creates / update_seconds, "threads": threads,
            "latest": latest, "created_version": created, "version_create_ms": version_create_ms, "concurrent_versions": names}


def _clients(threads: int, calls: int, call: Callable[[int], Any]) -> float:
    """call(0..calls-1) from `threads` clients at once; seconds taken."""
    counter = itertools.count()

    def worker() -> None:
        while (i := next(counter)) < calls:
            call(i)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started


def run(harness: Harness, models: int, rtt_ms: float, quick: bool) -> list[Figure]:
    from handler.catalog import workspace as catalog

    harness.reset(rtt_ms)
    harness.seed(seed_objects(WORKSPACE, models, versions=1000))
    params = {"calls": 30 if quick else 100, "writes": 5 if quick else 20, "threads": harness.template.instance_concurrency,
              "creates": 100 if quick else 400}
    result, marks = harness.run_worker("catalog-oss", params)

    def requests(name: str) -> list[Any]:
        return harness.requests_between(marks[name], marks[f"{name}-done"])

    def catalog_requests(name: str) -> list[Any]:  # without the baseline's own GETs
        return [r for r in requests(name) if "/catalog/" in r.key]

    log_puts = {name: len([r for r in requests(name) if r.method == "PUT" and "/log/" in r.key])
                for name in ("throughput", "update-throughput")}
    per_op = {op: median(len(requests(f"{op}-{n}")) for n in range(params["writes"])) for op in WRITES}
    version_requests = median(len(requests(f"version-create-{n}")) for n in range(params["writes"]))
    per_op_ms = {op: median(times) for op, times in result["writes_ms"].items()}
    bare = median(result["bare_get_ms"])
    label = f"{models:,} models, {rtt_ms:g} ms RTT"
    figures = [
        Figure("catalog.list_requests", f"Warm ListModels (Query + Conditions + sort), storage requests, {label}",
               len(catalog_requests("list")) / params["calls"], "", 1, "one GET", max_value=2),
        Figure("catalog.list_p50", f"Warm ListModels p50, {label}", median(result["list_ms"]), "ms", bare,
               "one bare oss2 GET p50", max_ratio=1.5,
               detail={"raw_presigned_get_p50": median(result["raw_get_ms"]), "p99": percentile(result["list_ms"], 0.99),
                       "total_count": result["total"]}),
        Figure("catalog.get_requests_known", f"Warm GetModel, storage requests ({label})",
               len(requests("get-known")) / params["calls"], "", 1, "one GET", max_value=2,
               detail={"p50_ms": median(result["get_ms"])}),
        Figure("catalog.get_requests_new", "GetModel of an ID new to the instance, storage requests",
               len(requests("get-new")) / 10, "", 1, "one GET", max_value=2),
        Figure("catalog.requests_per_change_elsewhere", "Warm reader's extra requests per change made elsewhere",
               (len(requests("after-changes")) - 1) / 5, "", 1, "target", max_value=1),
        Figure("catalog.cold_list_requests", f"Cold instance's first ListModels, storage requests ({label})",
               len(requests("cold")), "", catalog.CHECKPOINT_EVERY, "commits between checkpoints", max_value=50,
               detail={"ms": result["cold_ms"]}),
        Figure("catalog.memory", f"Resident memory of the catalog of {models:,} models", result["catalog_mib"], "MiB",
               40, "target", max_value=40),
    ]
    for op in WRITES:
        # Sequential round trips from the time taken (whole RTTs: requests sent side by side share one); the requests in detail.
        figures.append(Figure(f"catalog.{op}_round_trips", f"{op.capitalize()}: sequential storage round trips, nothing conflicting",
                              int(per_op_ms[op] // rtt_ms) if rtt_ms else per_op[op], "", 2, "target", max_value=2,
                              detail={"p50_ms": per_op_ms[op], "requests": per_op[op]}))
    versions = 1000
    figures += [
        Figure("versions.list_requests", f"Warm ListModelVersions of a model with {versions:,} versions, storage requests",
               len(catalog_requests("versions-list")) / 10, "", 1, "one GET", max_value=2),
        Figure("versions.get_model_requests", f"Warm GetModel with its LatestVersion ({versions:,} versions), storage requests",
               len(requests("versioned-get")) / 10, "", 1, "one GET", max_value=2, detail={"latest": result["latest"]}),
        Figure("versions.create_round_trips", "CreateModelVersion without a name: sequential storage round trips",
               int(median(result["version_create_ms"]) // rtt_ms) if rtt_ms else version_requests, "", 2, "target",
               max_value=2, detail={"name": result["created_version"], "requests": version_requests,
                                    "p50_ms": median(result["version_create_ms"])}),
        Figure("versions.concurrent_duplicates", "10 concurrent unnamed CreateModelVersion: names given twice or lost",
               10 - len(set(result["concurrent_versions"])), "", 0, "none", max_value=0,
               detail={"names": result["concurrent_versions"]}),
    ]
    figures.append(Figure("catalog.creates_per_second", f"Creates/s into one workspace, {result['threads']} concurrent clients, "
                          f"{rtt_ms:g} ms RTT", result["creates_per_s"], "/s", 1000 / (2 * rtt_ms),
                          "one client, 2 round trips each", detail={"log_puts": log_puts["throughput"], "creates": params["creates"]}))
    # Updates held to at least 0.8x the rate of creates: as time per call, at most 1.25x a create's.
    figures.append(Figure("catalog.update_time_per_call", f"UpdateModel from {result['threads']} concurrent clients, ms per call "
                          f"(1 / rate), {rtt_ms:g} ms RTT", 1000 / result["updates_per_s"], "ms", 1000 / result["creates_per_s"],
                          "creates, same clients", max_ratio=1.25,
                          detail={"updates_per_s": result["updates_per_s"], "creates_per_s": result["creates_per_s"],
                                  "log_puts": log_puts["update-throughput"], "updates": params["creates"]}))
    return figures


# --- side by side with MLflow's registry, on a local store, warm, in-process --------------------

SEARCHES = ("name substring", "tag", "ordered top 10", "paging through all", "get one", "create one")


def _comparison_steps(api: Callable[..., dict[str, Any]], r: int, ids: list[str], models: int) -> dict[str, Callable[[], Any]]:
    """Round r of the six operations; each round searches for something else, so no answer is reused."""
    return {
        "name substring": lambda: api("GET", "/api/v1/models", ModelName=f"-0{r % 10}1", PageSize="100"),
        "tag": lambda: api("GET", "/api/v1/models", PageSize="100", Tag=json.dumps([{"Key": "team", "Value": TEAMS[r % 5]}])),
        "ordered top 10": lambda: api("GET", "/api/v1/models", SortBy="GmtModifiedTime", Order="DESC", PageSize="10",
                                      Query=DOMAINS[r % 4]),
        "paging through all": lambda: [api("GET", "/api/v1/models", PageSize="100", PageNumber=str(p), SortBy="ModelName")
                                       for p in range(1, models // 100 + 1)],
        "get one": lambda: api("GET", f"/api/v1/models/{ids[r % len(ids)]}"),
        "create one": lambda: api("POST", "/api/v1/models", {"ModelName": f"compare-{r}", "Tag": [{"Key": "k", "Value": "v"}]}),
    }


def file_client(params: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    """Child: the same six operations as mlflow_registry.py, through the function's core on the file store."""
    from handler.entry import fc

    fc.initializer(FcContext())
    api = _api(fc.get_app())
    api("GET", "/api/v1/models")  # warm: the instance has read the workspace once
    ids = [m["ModelId"] for m in api("GET", "/api/v1/models", PageSize="100", PageNumber="7")["Models"]]
    times: dict[str, list[float]] = {name: [] for name in SEARCHES}
    for r in range(params["rounds"]):
        for name, step in _comparison_steps(api, r, ids, params["models"]).items():
            started = time.perf_counter()
            step()
            times[name].append((time.perf_counter() - started) * 1e3)
    return {name: median(samples) for name, samples in times.items()}


def run_mlflow_comparison(harness: Harness, models: int, quick: bool, mlflow_python: Path | None) -> list[Figure]:
    import subprocess

    from .workload import REPO

    store = harness.scratch / "file-store"
    for key, data in seed_objects(WORKSPACE, models).items():
        path = store / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    rounds = 5 if quick else 20
    ours, _ = harness.run_worker("catalog-file", {"rounds": rounds, "models": models}, store_url=f"file://{store}")
    if mlflow_python is None:
        return [Figure(f"compare.{name.replace(' ', '_')}", f"{name.capitalize()}, file store, warm ({models:,} models)",
                       ours[name], "ms", 0, "MLflow not installed (make bench-mlflow)") for name in SEARCHES]
    out = subprocess.run([str(mlflow_python), str(REPO / "bench" / "mlflow_registry.py"), str(models), str(rounds),
                          str(harness.scratch / "mlflow")], capture_output=True, text=True, check=True, timeout=3600)
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    return [Figure(f"compare.{name.replace(' ', '_')}", f"{name.capitalize()}, file store, warm ({models:,} models)",
                   ours[name], "ms", theirs["times"][name], f"MLflow {theirs['version']}, SQLite", max_ratio=0.5)
            for name in SEARCHES]
