"""Cold start: a fresh process from exec to its first CreateModel response, against a bare minimum."""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import Figure, median
from .workload import ACCESS_KEY_ID, ACCESS_KEY_SECRET, ACCOUNT_ID, REPO, SECURITY_TOKEN, request_body

if TYPE_CHECKING:
    from .harness import Harness

# Each child prints one JSON line the moment it has its answer; the parent times exec -> that line.
# They import nothing of the bench: only what FC itself would load. BODY and TOKEN are prepended.
_CONTEXT = f"""
class Credentials:
    access_key_id, access_key_secret, security_token = {ACCESS_KEY_ID!r}, {ACCESS_KEY_SECRET!r}, {SECURITY_TOKEN!r}
class Context:
    request_id, account_id, credentials = "cold", {ACCOUNT_ID!r}, Credentials()
"""

# As index.py does: dependencies shipped for this very interpreter (after `make vendor`) come first.
_VENDOR = """
import os, sys
vendor = os.path.join("vendor", f"{sys.implementation.cache_tag}-{sys.platform}-{os.uname().machine}")
if os.path.isdir(vendor):
    sys.path.insert(0, os.path.abspath(vendor))
"""

_REPORT = """
import json, resource
print(json.dumps({
    "ok": ok, "import_ms": (imported - started) * 1e3, "initializer_ms": (initialized - imported) * 1e3,
    "first_request_ms": (answered - initialized) * 1e3, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "oss_modules": sorted(m for m in ("oss2", "requests", "urllib3", "aliyunsdkcore", "Crypto") if m in sys.modules),
}), flush=True)
"""

# FC's sequence for an instance: load index.py, run the initializer, then the first event.
FUNCTION = """
import time
started = time.perf_counter()
import sys
import index
imported = time.perf_counter()
""" + _CONTEXT + """
index.initializer(Context())
initialized = time.perf_counter()
reply = index.handler(BODY, Context())
answered = time.perf_counter()
ok = '"ModelId"' in reply
""" + _REPORT

# The least a process must do to store one model in OSS: import the libraries that path needs
# (oss2 to write, jsonschema to validate) and make one put_object, with the store's lean settings.
BARE_OSS = """
import time
started = time.perf_counter()
""" + _VENDOR + """
import jsonschema, oss2
imported = initialized = time.perf_counter()
session = oss2.Session(pool_size=int(os.environ["OSS_POOL_SIZE"]))
session.session.trust_env = False
bucket_name, _, prefix = os.environ["MODEL_STORE"].removeprefix("oss://").partition("/")
auth = oss2.StsAuth(os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"], os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], TOKEN)
bucket = oss2.Bucket(auth, os.environ["OSS_ENDPOINT"], bucket_name, session=session, enable_crc=False)
ok = bucket.put_object(prefix + "/cold-baseline/%d.json" % time.time_ns(), BODY).status == 200
answered = time.perf_counter()
""" + _REPORT

# The least a process must do to store one model in a file: import jsonschema, write one file.
BARE_FILE = """
import time
started = time.perf_counter()
""" + _VENDOR + """
import jsonschema
imported = initialized = time.perf_counter()
with open(os.path.join(os.environ["MODEL_STORE"].removeprefix("file://"), "%d.json" % time.time_ns()), "wb") as f:
    ok = f.write(BODY) == len(BODY)
answered = time.perf_counter()
""" + _REPORT


def _launch(harness: Harness, code: str, store_url: str, bytecode: bool = True) -> dict[str, Any]:
    """Run one child; time exec -> its answer line (and -> exit), and the CPU time it used."""
    body = request_body(f"cold-{time.time_ns()}")
    program = f"BODY = {body!r}\nTOKEN = {SECURITY_TOKEN!r}\n" + code
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", program], cwd=REPO,
                             env=harness.env(store_url, bytecode), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = child.stdout.readline() if child.stdout else ""
    answered = time.perf_counter()
    _, errors = child.communicate()
    exited = time.perf_counter()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1e3
    if child.returncode != 0 or not line:
        raise RuntimeError(f"cold-start child failed:\n{errors[-4000:]}")
    report = json.loads(line)
    if not report["ok"]:
        raise RuntimeError(f"cold-start child did not store its model: {line}")
    return {**report, "response_ms": (answered - started) * 1e3, "exit_ms": (exited - started) * 1e3, "cpu_ms": cpu_ms}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("response_ms", "exit_ms", "cpu_ms", "import_ms", "initializer_ms", "first_request_ms", "peak_rss_kib")
    return {"runs": len(runs), **{f"median_{k}": round(median(r[k] for r in runs), 2) for k in keys if k in runs[0]},
            "response_ms": [round(r["response_ms"], 1) for r in runs]}


def run_at_rtt(harness: Harness, runs: int, rtt_ms: float) -> list[Figure]:
    """Cold starts of the OSS kinds again, with every request delayed by rtt_ms (after one unmeasured round)."""
    harness.reset(rtt_ms)
    results: dict[str, list[dict[str, Any]]] = {"oss": [], "bare_oss": []}
    for round_ in range(runs + 1):
        for kind, code in (("oss", FUNCTION), ("bare_oss", BARE_OSS)):
            outcome = _launch(harness, code, harness.store_url, True)
            if round_:
                results[kind].append(outcome)
    harness.reset()
    ratio = median(a["response_ms"] / b["response_ms"] for a, b in zip(results["oss"], results["bare_oss"]))
    return [Figure("coldstart.oss_rtt", f"Cold start to first response, OSS store, {rtt_ms:g} ms RTT",
                   median(r["response_ms"] for r in results["oss"]), "ms",
                   median(r["response_ms"] for r in results["bare_oss"]), "import oss2+jsonschema, 1 put_object",
                   max_ratio=1.15, paired_ratio=ratio,
                   detail={"function": _summary(results["oss"]), "baseline": _summary(results["bare_oss"])})]


def run(harness: Harness, runs: int) -> list[Figure]:
    """Start each kind of process once per round, `runs` rounds, after one unmeasured round that fills
    the bytecode and page caches; medians, and ratios paired by round. The slow no-.pyc kind runs
    in the first few rounds only."""
    harness.reset()
    files = Path(tempfile.mkdtemp(prefix="file-store-", dir=harness.scratch))
    kinds = {  # kind: (program, store URL (None: a new file store per run), bytecode cache, measured runs)
        "oss": (FUNCTION, harness.store_url, True, runs),
        "bare_oss": (BARE_OSS, harness.store_url, True, runs),
        "file": (FUNCTION, None, True, runs),
        "bare_file": (BARE_FILE, f"file://{files}", True, runs),
        "oss_source": (FUNCTION, harness.store_url, False, min(runs, 3)),
    }
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for round_ in range(runs + 1):
        for kind, (code, url, bytecode, measured) in kinds.items():
            if round_ > measured or (round_ == 0 and not bytecode):
                continue
            # Each function run gets an empty file store, as a new instance would see.
            store_url = url or f"file://{tempfile.mkdtemp(prefix='file-store-', dir=harness.scratch)}"
            outcome = _launch(harness, code, store_url, bytecode)
            if round_:
                results[kind].append(outcome)
        if round_ == 0:
            harness.keep_stdlib_bytecode_only()

    def response(kind: str) -> float:
        return median(r["response_ms"] for r in results[kind])

    def paired(kind: str, baseline: str) -> float:
        """Median over rounds of kind/baseline, each pair started back to back."""
        return median(a["response_ms"] / b["response_ms"] for a, b in zip(results[kind], results[baseline]))

    oss_imported = sum(bool(r["oss_modules"]) for r in results["file"])
    return [
        Figure("coldstart.oss", "Cold start to first response, OSS store", response("oss"), "ms",
               response("bare_oss"), "import oss2+jsonschema, 1 put_object", max_ratio=1.15,
               paired_ratio=paired("oss", "bare_oss"),
               detail={"function": _summary(results["oss"]), "baseline": _summary(results["bare_oss"])}),
        Figure("coldstart.oss_source", "Cold start, OSS store, code and deps without .pyc", response("oss_source"), "ms",
               response("oss"), "same with .pyc", paired_ratio=paired("oss_source", "oss"),
               detail={"function": _summary(results["oss_source"])}),
        Figure("coldstart.file", "Cold start to first response, file store", response("file"), "ms",
               response("bare_file"), "import jsonschema, 1 file write", paired_ratio=paired("file", "bare_file"),
               detail={"function": _summary(results["file"]), "baseline": _summary(results["bare_file"])}),
        Figure("memory.cold_peak_rss", "Peak RSS of a cold OSS instance after its first response",
               median(r["peak_rss_kib"] for r in results["oss"]) / 1024, "MiB",
               median(r["peak_rss_kib"] for r in results["bare_oss"]) / 1024, "bare OSS process above"),
        Figure("coldstart.file_imports_oss", "File-store runs that imported an OSS library", oss_imported, "",
               0, "bare file process", max_value=0,
               detail={"modules_seen": sorted({m for r in results["file"] for m in r["oss_modules"]}), "runs": runs}),
    ]
