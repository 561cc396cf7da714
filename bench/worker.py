"""Child-process side of the bench: runs one scenario, pausing at checkpoints, and prints its result as JSON.

Protocol on stdout: `CHECKPOINT <name>` (then wait for `GO` on stdin, so the parent can read the
server's counters at that point) and finally `RESULT <json>`.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

Checkpoint = Callable[[str], None]


def checkpoint(name: str) -> None:
    print(f"CHECKPOINT {name}", flush=True)
    if sys.stdin.readline().strip() != "GO":
        raise SystemExit("the bench went away")


def main(argv: list[str]) -> int:
    from . import catalog, scaling, warm

    scenarios: dict[str, Callable[[dict[str, Any], Checkpoint], dict[str, Any]]] = {
        "warm-memory": warm.memory_client,
        "warm-oss": warm.oss_client,
        "flat": scaling.flat_client,
        "concurrency": scaling.concurrency_client,
        "catalog-oss": catalog.oss_client,
        "catalog-file": catalog.file_client,
    }
    scenario, params = argv[0], json.loads(argv[1])
    result = scenarios[scenario](params, checkpoint)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
