"""The sweep over a workspace of seeded models on the loopback OSS: record files checked per second beside reading
them one GET at a time, storage requests per record file, and how many FC invocations a pass of 1M takes."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .catalog import seed_objects
from .report import Figure
from .workload import STORE_PREFIX, WORKSPACE

if TYPE_CHECKING:
    from .harness import Harness

INVOCATION_SECONDS = 25.0  # what a timer invocation has for work: FC's 30 s Timeout, less the sweep's margin


def run(harness: Harness, models: int, rtt_ms: float) -> list[Figure]:
    from handler.registry import upkeep
    from handler.registry.models import Registry
    from handler.stores.credentials import Credentials
    from handler.stores.oss import OssStore

    harness.reset(rtt_ms)
    harness.seed(seed_objects(WORKSPACE, models, versions=100))
    store = OssStore(harness.server.bucket, f"{STORE_PREFIX}/", endpoint=harness.server.endpoint,
                     credentials=lambda: Credentials("bench", "bench", None))
    start = harness.mark()
    started = time.perf_counter()
    summary = upkeep.sweep(Registry(store))  # a cold instance, one whole pass
    seconds = time.perf_counter() - started
    sent = len(harness.requests_between(start, harness.mark()))
    checked = summary["Checked"]
    per_second = checked / seconds
    one_at_a_time = 1000 / rtt_ms if rtt_ms else per_second
    per_invocation = per_second * INVOCATION_SECONDS
    label = f"{models:,} models + 100 versions, {rtt_ms:g} ms RTT"
    return [
        Figure("sweep.seconds_per_1000", f"Sweep: seconds per 1,000 record files checked, {label}", 1000 / per_second, "s",
               1000 / one_at_a_time, "1,000 GETs one at a time", max_ratio=0.25,
               detail={"checked": checked, "seconds": round(seconds, 2), "done": summary["Done"]}),
        Figure("sweep.requests_per_record", f"Sweep: storage requests per record file checked, {label}", sent / checked, "",
               1, "one GET", max_value=1.1, detail={"requests": sent}),
        Figure("sweep.invocations_per_million", "Sweep: FC timer invocations (25 s of work each) for a pass over 1M record files",
               1_000_000 / per_invocation, "", 1_000_000 / (one_at_a_time * INVOCATION_SECONDS), "reading one at a time",
               max_ratio=0.25, detail={"records_per_invocation": round(per_invocation)}),
    ]
