"""The child side of the bench's protocol on stdout: `CHECKPOINT <name>` (then wait for `GO` on stdin, so the
parent can read the server's counters at that point) and finally `RESULT <json>`."""
from __future__ import annotations

import sys
from collections.abc import Callable

Checkpoint = Callable[[str], None]


def checkpoint(name: str) -> None:
    print(f"CHECKPOINT {name}", flush=True)
    if sys.stdin.readline().strip() != "GO":
        raise SystemExit("the bench went away")
