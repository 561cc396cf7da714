"""Scaling: requests and latency with many existing models; throughput, connections and memory under concurrency."""
from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .report import Figure
from .warm import bare_bucket, sample_record
from .workload import SMALL_WORKSPACE, WORKSPACE, FcContext, peak_rss_kib, percentile, request_body, rss_kib

if TYPE_CHECKING:
    from .harness import Harness
    from .protocol import Checkpoint


def _create(context: FcContext) -> Callable[[bytes], None]:
    from handler.entry import fc

    def create(body: bytes) -> None:
        reply = fc.handler(body, context)
        if '"ModelId"' not in reply:
            raise RuntimeError(f"create failed: {reply}")

    return create


def _parallel(threads: int, count: int, work: Callable[[int], None]) -> float:
    """Run work(0..count-1) on `threads` threads; seconds taken. Re-raises the first failure."""
    numbers = itertools.count()
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            while (i := next(numbers)) < count and not failures:
                work(i)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            failures.append(e)

    pool = [threading.Thread(target=worker, name=f"bench-{n}") for n in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - started


def flat_client(params: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    """Child: sequential creates, alternating blocks between a workspace holding one model and one
    holding many, so noise hits both alike; a checkpoint before each block lets the parent count requests."""
    from handler.entry import fc

    context = FcContext()
    fc.initializer(context)
    create = _create(context)
    for i in range(params["warmup"]):
        create(request_body(f"flat-warm-{i}", SMALL_WORKSPACE))
    samples: dict[str, list[float]] = {SMALL_WORKSPACE: [], WORKSPACE: []}
    for block in range(params["blocks"]):
        order = (SMALL_WORKSPACE, WORKSPACE) if block % 2 == 0 else (WORKSPACE, SMALL_WORKSPACE)
        for workspace in order:
            checkpoint(f"{block}:{workspace}")
            for i in range(params["per_block"]):
                body = request_body(f"flat-{block}-{i}", workspace)
                started = time.perf_counter()
                create(body)
                samples[workspace].append((time.perf_counter() - started) * 1e3)
    checkpoint("end")
    return {workspace: {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99), "creates": len(times)}
            for workspace, times in samples.items()}


def concurrency_client(params: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    """Child: one instance answering `threads` requests at a time, as FC's InstanceConcurrency does;
    then bare put_object calls from as many threads on one reused Bucket."""
    from handler.entry import fc

    context = FcContext()
    fc.initializer(context)
    rss = {"after_initializer": rss_kib()}
    peak = {"after_initializer": peak_rss_kib()}
    threads, creates = params["threads"], params["creates"]
    create = _create(context)
    _parallel(threads, params["warmup"], lambda i: create(request_body(f"conc-warm-{i}")))
    rss["after_warmup"], peak["after_warmup"] = rss_kib(), peak_rss_kib()
    checkpoint("warm")
    seconds = _parallel(threads, creates, lambda i: create(request_body(f"conc-{i}")))
    rss["after_creates"], peak["after_creates"] = rss_kib(), peak_rss_kib()
    checkpoint("creates")

    bucket, prefix = bare_bucket(context)
    record = sample_record(context)
    bucket.put_object(f"{prefix}bare-put/warm", record)
    put_seconds = _parallel(threads, params["puts"], lambda i: bucket.put_object(f"{prefix}bare-put/{i}.json", record))
    return {"creates": creates, "seconds": seconds, "puts": params["puts"], "put_seconds": put_seconds,
            "rss_kib": rss, "peak_rss_kib": peak}


def _seed_models(harness: Harness, workspace: str, count: int) -> None:
    """`count` committed models in a workspace, written straight into the bucket."""
    from .catalog import seed_objects

    harness.seed(seed_objects(workspace, count))


def run_flat(harness: Harness, existing: int, creates: int) -> list[Figure]:
    """Creates into a workspace of `existing` models vs one of a single model, in the same bucket and process."""
    harness.reset()
    _seed_models(harness, SMALL_WORKSPACE, 1)
    _seed_models(harness, WORKSPACE, existing)
    blocks = 6
    result, marks = harness.run_worker("flat", {"blocks": blocks, "per_block": max(1, creates // blocks), "warmup": 20})
    names = list(marks)  # in the order the child reached them
    methods: dict[str, collections.Counter[str]] = {SMALL_WORKSPACE: collections.Counter(), WORKSPACE: collections.Counter()}
    for name, following in zip(names, names[1:]):
        methods[name.split(":", 1)[1]].update(
            "LIST" if r.query.get("list-type") else r.method
            for r in harness.requests_between(marks[name], marks[following]))
    per_create = {ws: sum(counts.values()) / result[ws]["creates"] for ws, counts in methods.items()}
    few, many = result[SMALL_WORKSPACE], result[WORKSPACE]
    return [
        Figure("scaling.requests_per_create", f"OSS requests per create, {existing:,} models in the workspace",
               per_create[WORKSPACE], "", per_create[SMALL_WORKSPACE], "1 model", max_ratio=1.05,
               detail={"methods_per_create": {ws: {m: n / result[ws]["creates"] for m, n in sorted(counts.items())}
                                              for ws, counts in methods.items()}}),
        Figure("scaling.p50", f"Create p50, {existing:,} models in the workspace (loopback)", many["p50"], "ms",
               few["p50"], "1 model", max_ratio=1.25,
               detail={"p99": many["p99"], "baseline_p99": few["p99"], "creates_each": many["creates"]}),
    ]


def run_concurrency(harness: Harness, creates: int, puts: int, rtt_ms: float) -> list[Figure]:
    template = harness.template
    harness.reset(rtt_ms)
    params = {"threads": template.instance_concurrency, "creates": creates, "warmup": 10 * template.instance_concurrency,
              "puts": puts}
    result, marks = harness.run_worker("concurrency", params)
    requests = len(harness.requests_between(marks["warm"], marks["creates"]))
    connections = marks["creates"].connections  # everything the instance opened, warm-up included
    peak, rss = result["peak_rss_kib"], result["rss_kib"]
    label = f"{template.instance_concurrency} threads, {rtt_ms:g} ms RTT"
    return [
        Figure("concurrency.creates_per_second", f"Creates/s, {label}", creates / result["seconds"], "/s",
               puts / result["put_seconds"], "bare put_object/s, same threads",
               detail={"creates": creates, "seconds": result["seconds"], "requests_per_create": requests / creates}),
        Figure("concurrency.connections", f"TCP connections opened, {creates + params['warmup']:,} creates",
               connections, "", template.oss_pool_size, f"OSS_POOL_SIZE ({template.source})", max_ratio=1.0,
               detail={"threads": template.instance_concurrency}),
        # The instance now holds the workspace's catalog: growth by the catalog's 40 MiB budget, and a
        # checkpoint being written (twice its size), is by design.
        Figure("memory.growth", f"Peak RSS after {creates:,} more creates", peak["after_creates"] / 1024, "MiB",
               peak["after_warmup"] / 1024, f"warm instance: initializer + {params['warmup']} creates",
               max_value=peak["after_warmup"] / 1024 + 60,
               detail={"peak_rss_kib": peak, "rss_kib": rss}),
        Figure("memory.warm_peak_rss", "Peak RSS of a warm instance", peak["after_warmup"] / 1024, "MiB",
               peak["after_initializer"] / 1024, "after imports + initializer",
               detail={"memory_size_mb": template.memory_mb,
                       "growth_since_initializer_percent": 100 * (peak["after_creates"] / peak["after_initializer"] - 1)}),
    ]
