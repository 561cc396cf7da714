"""Warm latency of CreateModel through `handler`, beside the least work the same create needs."""
from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .report import Figure, median
from .workload import WORKSPACE, FcContext, oss_location, percentile, request_body

if TYPE_CHECKING:
    from .harness import Harness
    from .protocol import Checkpoint

Timed = Callable[[bytes, int], None]  # (request body, call number) -> None


def _interleaved(function: Timed, baseline: Timed, tag: str, rounds: int, per_round: int, warmup: int) -> dict[str, Any]:
    """Alternate one function call and one baseline call, so drift and noise hit both alike.
    Every call gets a request with a unique ModelName, so each is a real create."""
    for i in range(warmup):
        function(request_body(f"{tag}-warm-{i}"), -i - 1)
        baseline(request_body(f"{tag}-warm-base-{i}"), -i - 1)
    rounds_p50: dict[str, list[float]] = {"function": [], "baseline": []}
    pooled: dict[str, list[float]] = {"function": [], "baseline": []}
    clock = time.perf_counter
    for r in range(rounds):
        bodies = [request_body(f"{tag}-{r}-{i}") for i in range(per_round)]
        base_bodies = [request_body(f"{tag}-base-{r}-{i}") for i in range(per_round)]
        times: dict[str, list[float]] = {"function": [], "baseline": []}
        for i in range(per_round):
            started = clock()
            function(bodies[i], i)
            middle = clock()
            baseline(base_bodies[i], i)
            times["function"].append((middle - started) * 1e3)
            times["baseline"].append((clock() - middle) * 1e3)
        for side, samples in times.items():
            rounds_p50[side].append(percentile(samples, 0.50))
            pooled[side] += samples
    # p50: the median of each round's p50; p99: over every call (a round is too short for its own p99).
    return {**{side: {"p50_rounds": rounds_p50[side], "p50": median(rounds_p50[side]),
                      "p99": percentile(pooled[side], 0.99)} for side in pooled},
            "calls": rounds * per_round}


def _handler_call(context: FcContext) -> Timed:
    from handler.entry import fc

    def call(body: bytes, _: int) -> None:
        reply = fc.handler(body, context)
        if '"ModelId"' not in reply:
            raise RuntimeError(f"create failed: {reply}")

    return call


def memory_client(params: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    """Child: the handler over the memory store vs parse + the same compiled validator + serialise + dict."""
    from handler.entry import fc
    from handler.rules.validation import validator

    context = FcContext()
    fc.initializer(context)  # MODEL_STORE=memory://
    compiled = validator("create-model-request.json")
    table: dict[str, bytes] = {}

    def inline(body: bytes, _: int) -> None:
        document = json.loads(body)
        if not compiled.is_valid(document):
            raise RuntimeError("invalid request")
        table[document["ModelName"]] = json.dumps(document, separators=(",", ":")).encode()
        json.dumps({"ModelId": document["ModelName"]})

    return _interleaved(_handler_call(context), inline, "mem", params["rounds"], params["per_round"], params["warmup"])


def bare_bucket(context: FcContext) -> tuple[Any, str]:
    """A reused oss2.Bucket with the store's settings (its own long-lived Session, no CRC check, no
    proxy scan, the same timeouts and auth), and the store's key prefix."""
    import oss2

    from handler.config import Settings

    endpoint, bucket_name, prefix = oss_location()
    session = oss2.Session(pool_size=Settings.from_env().oss_pool_size)
    session.session.trust_env = False
    credentials = context.credentials
    auth = oss2.StsAuth(credentials.access_key_id, credentials.access_key_secret, credentials.security_token)
    return oss2.Bucket(auth, endpoint, bucket_name, session=session, connect_timeout=(2.0, 6.0), enable_crc=False), prefix


def sample_record(context: FcContext) -> bytes:
    """The bytes the registry stores for a typical request."""
    from handler.registry import records

    normal = records.normalized_request(json.loads(request_body("bare-put-model")), WORKSPACE)
    return records.record_json(records.build_record(normal, records.new_model_id(), time.time(), context.account_id))


def oss_client(params: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    """Child: the handler over OSS vs one put_object of the same record bytes on a reused Bucket."""
    from handler.entry import fc

    context = FcContext()
    fc.initializer(context)
    bucket, prefix = bare_bucket(context)
    record = sample_record(context)
    keys = (f"{prefix}bare-put/{n}.json" for n in itertools.count())

    def bare_put(_: bytes, __: int) -> None:
        bucket.put_object(next(keys), record)

    checkpoint("start")
    result = _interleaved(_handler_call(context), bare_put, "oss", params["rounds"], params["per_round"], params["warmup"])
    checkpoint("end")
    return {**result, "record_bytes": len(record)}


def _figures(key: str, label: str, baseline_label: str, result: dict[str, Any], max_ratio: float,
             **detail: Any) -> list[Figure]:
    function, baseline = result["function"], result["baseline"]
    return [
        Figure(f"{key}.p50", f"{label} p50", function["p50"], "ms", baseline["p50"], baseline_label + " p50",
               max_ratio=max_ratio, detail={"rounds_p50": function["p50_rounds"],
                                            "baseline_rounds_p50": baseline["p50_rounds"], "calls": result["calls"], **detail}),
        Figure(f"{key}.p99", f"{label} p99", function["p99"], "ms", baseline["p99"], baseline_label + " p99"),
    ]


def run(harness: Harness, rounds: int, per_round: int, rtt_ms: float) -> list[Figure]:
    params = {"rounds": rounds, "per_round": per_round, "warmup": 100}
    result, _ = harness.run_worker("warm-memory", params, store_url="memory://")
    figures = _figures("warm.memory", "Warm create, memory store", "inline pipeline", result, 2.0)
    for rtt in sorted({0.0, rtt_ms}):
        harness.reset(rtt)
        # With a round trip to wait for, each create takes longer: fewer of them keep the run short.
        scale = 1 if rtt == 0 else max(1, round(rtt))
        oss_params = {"rounds": rounds, "per_round": max(40, per_round // (5 * scale)), "warmup": 30}
        result, marks = harness.run_worker("warm-oss", oss_params)
        logged = harness.requests_between(marks["start"], marks["end"])
        creates = result["calls"] + oss_params["warmup"]
        requests = len(logged) - creates  # minus one bare put per create
        label = "loopback" if rtt == 0 else f"{rtt:g} ms RTT"
        figures += _figures(f"warm.oss_rtt{rtt:g}ms", f"Warm create, OSS store ({label})", "1 bare put_object", result,
                            2.2, rtt_ms=rtt, oss_requests_per_create=requests / creates, record_bytes=result["record_bytes"])
    return figures
