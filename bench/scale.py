"""One workspace of 100,000 models on one instance: resident memory, a checkpoint's peak, the cold first list
against a bare GET of the same bytes, filtered lists that change on every call, and creates with and without
a checkpoint written meanwhile."""
from __future__ import annotations

import concurrent.futures
import gc
import itertools
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from .catalog import DOMAINS, TEAMS, _api, seed_objects
from .report import Figure, median
from .warm import bare_bucket
from .workload import WORKSPACE, FcContext, percentile, rss_kib

if TYPE_CHECKING:
    from .harness import Harness
    from .protocol import Checkpoint


def seeded_at(models: int, seq: int) -> tuple[dict[str, bytes], list[str]]:
    """A workspace of `models` whose checkpoint (in parts, as the registry writes one that large) and hint are at
    commit `seq` (as after that many commits); and the keys of the checkpoint's objects."""
    from handler.catalog import keys, state

    objects = seed_objects(WORKSPACE, models)
    seeded = state.State.from_checkpoint(objects.pop(keys.checkpoint_key(WORKSPACE, 1)))
    seeded.seq = seq
    written = []
    for part, data in state.checkpoint_objects(seeded.frozen()):
        written.append(keys.checkpoint_part_key(WORKSPACE, seq, part) if part else keys.checkpoint_key(WORKSPACE, seq))
        objects[written[-1]] = data
    objects[keys.hint_key(WORKSPACE)] = state.encode({"Seq": seq, "Parts": len(written) - 1})
    objects[_SAME_BYTES] = b"".join(objects[key] for key in written)  # the baseline: the same bytes as one object
    return objects, written


_SAME_BYTES = "bench-baseline/checkpoint-as-one-object"


def _query(r: int) -> dict[str, str]:
    """The r-th of a run of ListModels queries, each unlike the one before (filter, condition and order change)."""
    sort = ("GmtModifiedTime", "ModelName", "ParameterSize", "OrderNumber", "GmtCreateTime")[r % 5]
    words = (*DOMAINS, *TEAMS, f"-{r % 100:02d}")
    return {"Query": words[r % len(words)], "SortBy": sort, "Order": ("ASC", "DESC")[r % 2], "PageSize": "10",
            "Conditions": json.dumps([{"Column": "ParameterSize", "Operator": "LessThan", "Value": str(1000 + 37 * r)}])}


def _peak_while(work: Any) -> tuple[int, Any]:
    """The peak resident set (KiB) sampled every 2 ms while work() runs, and what it returned."""
    peak, done = rss_kib(), threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = work()
    finally:
        done.set()
        sampler.join()
    return max(peak, rss_kib()), result


def read_client(params: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    """Child: a cold first list, then lists whose filter changes on every call, cached repeats, and a checkpoint."""
    from handler.config import Settings
    from handler.entry import fc

    context = FcContext()
    fc.initializer(context)
    app = fc.get_app()
    api = _api(app)
    api("GET", "/api/v1/models", WorkspaceId="bench-small")  # the code a list runs, loaded: what follows is the state
    gc.collect()
    before = rss_kib()
    checkpoint("cold")
    started = time.perf_counter()
    first = api("GET", "/api/v1/models")
    cold_ms = (time.perf_counter() - started) * 1e3
    checkpoint("cold-done")
    gc.collect()
    resident_kib = rss_kib() - before

    bucket, prefix = bare_bucket(context)
    bare_ms, side_by_side_ms = [], []
    with concurrent.futures.ThreadPoolExecutor(Settings.from_env().oss_pool_size) as pool:  # as the store reads them
        for _ in range(3):
            started = time.perf_counter()
            size = len(bucket.get_object(prefix + _SAME_BYTES).read())
            bare_ms.append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            sum(pool.map(lambda key: len(bucket.get_object(prefix + key).read()), params["checkpoint"]))
            side_by_side_ms.append((time.perf_counter() - started) * 1e3)

    uncached, cached = [], []
    for r in range(params["calls"]):
        started = time.perf_counter()
        api("GET", "/api/v1/models", **_query(r))
        uncached.append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        api("GET", "/api/v1/models", **_query(r))  # the same again: the instance kept its answer
        cached.append((time.perf_counter() - started) * 1e3)

    api("POST", "/api/v1/models", {"ModelName": "scale-before-checkpoint"})  # a seq with no checkpoint yet
    workspace = app.registry.workspace(WORKSPACE)
    gc.collect()
    at_rest = rss_kib()

    def write_checkpoint() -> None:
        with workspace._state_lock:
            workspace._start_checkpoint()
        workspace.settle()

    peak_kib, _ = _peak_while(write_checkpoint)
    return {"cold_ms": cold_ms, "bare_ms": median(bare_ms), "side_by_side_ms": median(side_by_side_ms),
            "checkpoint_bytes": size, "total": first["TotalCount"],
            "resident_kib": resident_kib, "process_kib": at_rest, "peak_kib": peak_kib, "before_kib": before,
            "uncached_ms": uncached, "cached_ms": cached}


def write_client(params: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    """Child: `threads` clients creating `creates` models at once; with params["checkpoints"] false, none is written."""
    from handler.catalog import workspace as catalog
    from handler.entry import fc

    if not params["checkpoints"]:
        catalog.MOST_BETWEEN_CHECKPOINTS = 1 << 40
        catalog.CHECKPOINT_BYTES_PER_COMMIT = 1
    fc.initializer(FcContext())
    app = fc.get_app()
    api = _api(app)
    api("GET", "/api/v1/models")  # warm: loaded
    counter = itertools.count()
    checkpoint("creates")
    started = time.perf_counter()

    def worker() -> None:
        while (i := next(counter)) < params["creates"]:
            api("POST", "/api/v1/models", {"ModelName": f"scale-create-{i}", "Domain": "nlp"})

    pool = [threading.Thread(target=worker) for _ in range(params["threads"])]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    seconds = time.perf_counter() - started
    app.registry.workspace(WORKSPACE).settle()
    checkpoint("creates-done")
    workspace = app.registry.workspace(WORKSPACE)
    assert workspace._state is not None
    return {"creates_per_s": params["creates"] / seconds, "interval": catalog.checkpoint_interval(workspace._state)}


def run(harness: Harness, models: int, rtt_ms: float, quick: bool) -> list[Figure]:
    from handler.catalog import workspace as catalog

    creates = 400 if quick else 2000
    seq = catalog.MOST_BETWEEN_CHECKPOINTS - creates // 2  # the creates cross a checkpoint's seq halfway
    objects, checkpoint = seeded_at(models, seq)
    label = f"{models:,} models"

    harness.reset(0)
    harness.seed(objects)
    read, _ = harness.run_worker("scale-read", {"checkpoint": checkpoint, "calls": 30 if quick else 100})
    per_model = read["resident_kib"] * 1024 / models
    uncached, cached = read["uncached_ms"], read["cached_ms"]

    writes: dict[bool, dict[str, Any]] = {}
    uploaded: dict[bool, int] = {}
    for with_checkpoints in (False, True):
        harness.reset(rtt_ms)
        harness.seed(objects)
        result, marks = harness.run_worker("scale-write", {"creates": creates, "threads": harness.template.instance_concurrency,
                                                           "checkpoints": with_checkpoints})
        writes[with_checkpoints] = result
        uploaded[with_checkpoints] = sum(int(r.headers.get("content-length", 0))
                                         for r in harness.requests_between(marks["creates"], marks["creates-done"])
                                         if r.method == "PUT" and "/checkpoints/" in r.key)
    interval = writes[True]["interval"]
    return [
        Figure("scale.resident_per_model", f"Resident memory per model, {label} loaded (RSS growth)", per_model, "B",
               1024, "1 KiB", max_value=1024, detail={"resident_mib": read["resident_kib"] / 1024,
                                                      "process_mib": read["process_kib"] / 1024}),
        Figure("scale.checkpoint_peak", f"Peak while writing a checkpoint of {label}, beyond the process before loading",
               (read["peak_kib"] - read["before_kib"]) / 1024, "MiB", read["resident_kib"] / 1024, "the resident state",
               max_ratio=2, detail={"process_peak_mib": read["peak_kib"] / 1024, "under_256_mib": read["peak_kib"] < 256 << 10}),
        Figure("scale.cold_first_list", f"Cold instance's first ListModels, {label}", read["cold_ms"], "ms", read["bare_ms"],
               "one bare GET of the checkpoint's bytes", max_ratio=3,
               detail={"bare_gets_of_its_objects_side_by_side_ms": read["side_by_side_ms"],
                       "checkpoint_mib": read["checkpoint_bytes"] / 2**20, "total_count": read["total"]}),
        Figure("scale.list_uncached_p50", f"Warm ListModels whose filter, condition and order change on every call, p50, {label}",
               median(uncached), "ms", 10, "target", max_value=10,
               detail={"p99": percentile(uncached, 0.99), "cached_p50": median(cached), "cached_p99": percentile(cached, 0.99)}),
        Figure("scale.list_cached_p50", f"The same ListModels repeated (the instance's kept answer), p50, {label}",
               median(cached), "ms", median(uncached), "uncached p50", detail={"p99": percentile(cached, 0.99)}),
        Figure("scale.create_time_with_checkpoint", f"Time per create, {harness.template.instance_concurrency} clients at once, "
               f"{rtt_ms:g} ms RTT, {label}, a checkpoint written meanwhile", 1000 / writes[True]["creates_per_s"], "ms",
               1000 / writes[False]["creates_per_s"], "the same without checkpoints", max_ratio=1 / 0.95,
               detail={"creates_per_s": writes[True]["creates_per_s"], "without_per_s": writes[False]["creates_per_s"],
                       "creates": creates, "interval": interval}),
        Figure("scale.checkpoint_bytes_per_commit", f"Checkpoint bytes uploaded per commit, {label} (a checkpoint every "
               f"{interval:,} commits)", read["checkpoint_bytes"] / interval / 1024, "KiB", 16, "target", max_value=16,
               detail={"uploaded_during_run_mib": uploaded[True] / 2**20, "creates": creates,
                       "uploaded_without_checkpoints": uploaded[False]}),
    ]
