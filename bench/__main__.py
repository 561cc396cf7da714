"""`python -m bench`: cold start, warm latency, scaling, concurrency, memory, signature checks and the console; a table and a JSON file."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import auth, catalog, coldstart, console, events, mlflow_server, notify, scale, scaling, sweep, warm
from .harness import Harness, Template
from .report import Figure, environment, table, write_json
from .workload import REPO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: a smoke test, not figures to quote")
    parser.add_argument("--cold-runs", type=int, default=7, help="cold starts per kind of process (default 7)")
    parser.add_argument("--rtt-ms", type=float, default=10.0,
                        help="round trip the loopback OSS adds to every request, as a stand-in for the network (default 10)")
    parser.add_argument("--models", type=int, default=10_000, help="existing models for the scaling run (default 10000)")
    parser.add_argument("--scale-models", type=int, default=100_000,
                        help="models of the one workspace the scale step loads, lists and checkpoints (default 100000)")
    parser.add_argument("--creates", type=int, default=10_000, help="creates of the concurrency and memory run (default 10000)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "latest.json")
    parser.add_argument("--only", metavar="STEPS",
                        help="comma-separated subset of the steps: cold, warm, models, concurrency, catalog, scale, sweep, "
                             "events, notify, auth, console, compare, mlflow")
    parser.add_argument("--mlflow-python", type=Path, default=REPO / "bench" / ".mlflow-venv" / "bin" / "python",
                        help="a Python with MLflow installed, for the comparison (make bench installs one)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.cold_runs, args.models, args.creates = min(args.cold_runs, 3), min(args.models, 1000), min(args.creates, 1000)
    rounds, per_round = (3, 300) if args.quick else (5, 1000)

    template = Template.load()
    started = time.perf_counter()
    figures: list[Figure] = []
    with Harness(template) as harness:
        steps: list[tuple[str, Callable[[], list[Figure]]]] = [
            ("cold", lambda: coldstart.run(harness, args.cold_runs) + coldstart.run_at_rtt(harness, args.cold_runs, args.rtt_ms)),
            ("warm", lambda: warm.run(harness, rounds, per_round, args.rtt_ms)),
            ("models", lambda: scaling.run_flat(harness, args.models, 100 if args.quick else 300)),
            ("concurrency", lambda: scaling.run_concurrency(harness, args.creates, max(500, args.creates // 4), args.rtt_ms)),
            ("catalog", lambda: catalog.run(harness, args.models, args.rtt_ms, args.quick)),
            ("scale", lambda: scale.run(harness, args.scale_models, args.rtt_ms, args.quick)),
            ("sweep", lambda: sweep.run(harness, args.models, args.rtt_ms)),
            ("events", lambda: events.run(harness, args.rtt_ms, args.quick)),
            ("notify", lambda: notify.run(harness, args.quick)),
            ("auth", lambda: auth.run(rounds, per_round)),
            ("console", lambda: console.run(rounds, per_round)),
            ("compare", lambda: catalog.run_mlflow_comparison(
                harness, args.models, args.quick, args.mlflow_python if args.mlflow_python.exists() else None)),
            ("mlflow", lambda: mlflow_server.run(harness, args.models, args.quick, args.mlflow_python)),
        ]
        chosen = set(args.only.split(",")) if args.only else {name for name, _ in steps}
        unknown = chosen - {name for name, _ in steps}
        if unknown:
            parser.error(f"unknown step(s) for --only: {', '.join(sorted(unknown))}")
        for name, step in steps:
            if name not in chosen:
                continue
            step_started = time.perf_counter()
            print(f"bench: {name}...", file=sys.stderr, flush=True)
            figures += step()
            print(f"bench: {name} took {time.perf_counter() - step_started:.1f} s", file=sys.stderr, flush=True)

    meta = environment({"seconds": round(time.perf_counter() - started, 1), "quick": args.quick,
                        "cold_runs": args.cold_runs, "rtt_ms": args.rtt_ms, "models": args.models,
                        "creates": args.creates, "steps": sorted(chosen), "template": vars(template)})
    print(table(figures))
    print(f"\n{meta['cpus']} CPUs, Python {meta['python']}, commit {meta['commit']}, {meta['seconds']} s; "
          f"template: InstanceConcurrency {template.instance_concurrency}, OSS_POOL_SIZE {template.oss_pool_size}, "
          f"MemorySize {template.memory_mb} ({template.source})")
    write_json(args.output, figures, meta)
    print(f"figures written to {args.output}")
    missed = [f.key for f in figures if f.result == "MISS"]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
