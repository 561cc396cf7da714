"""Child-process side of the bench: runs one scenario, pausing at checkpoints (protocol.py), and prints its result as JSON."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from . import catalog, notify, scale, scaling, warm
from .protocol import Checkpoint, checkpoint


def main(argv: list[str]) -> int:
    scenarios: dict[str, Callable[[dict[str, Any], Checkpoint], dict[str, Any]]] = {
        "warm-memory": warm.memory_client,
        "warm-oss": warm.oss_client,
        "flat": scaling.flat_client,
        "concurrency": scaling.concurrency_client,
        "catalog-oss": catalog.oss_client,
        "catalog-file": catalog.file_client,
        "scale-read": scale.read_client,
        "scale-write": scale.write_client,
        "notify-commits": notify.commits_client,
    }
    scenario, params = argv[0], json.loads(argv[1])
    result = scenarios[scenario](params, checkpoint)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
