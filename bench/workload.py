"""What the bench sends and how it measures, shared by the bench and its child processes (stdlib only)."""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKSPACE = "default"  # the workspace requests without WorkspaceId land in
SMALL_WORKSPACE = "bench-small"
STORE_PREFIX = "bench"
ACCOUNT_ID = "1234567890"
# Temporary STS credentials, as FC hands them to the function (the loopback server checks no signature).
ACCESS_KEY_ID, ACCESS_KEY_SECRET, SECURITY_TOKEN = "STS.bench-key-id", "bench-secret", "bench-token"


def request_body(name: str, workspace: str | None = None) -> bytes:
    """A typical CreateModel request (a direct invocation's event is the body itself)."""
    return json.dumps({
        **({"WorkspaceId": workspace} if workspace else {}),
        "ModelName": name,
        "ModelDescription": "ResNet-50 fine-tuned on the product catalogue",
        "Domain": "cv",
        "Task": "image-classification",
        "Origin": "Custom",
        "Accessibility": "PRIVATE",
        "Tag": [{"Key": "team", "Value": "vision"}, {"Key": "stage", "Value": "dev"}],
        "ExtraInfo": {"framework": "pytorch", "epochs": 30},
    }, separators=(",", ":")).encode()


class FcCredentials:
    """`context.credentials` of FC's Python 3.10 runtime."""

    access_key_id = ACCESS_KEY_ID
    access_key_secret = ACCESS_KEY_SECRET
    security_token = SECURITY_TOKEN


class FcContext:
    """The attributes of FC's context that the function reads."""

    request_id = "bench"
    account_id = ACCOUNT_ID
    credentials = FcCredentials()


def rss_kib() -> int:
    """Current resident set size (VmRSS) of this process, in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_kib() -> int:
    """Peak resident set size of this process so far (VmHWM), in KiB. Not getrusage's ru_maxrss, which
    Linux carries across exec: a child would start with the peak of the bench that started it."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least `fraction` of the samples at or below it."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def oss_location() -> tuple[str, str, str]:
    """(endpoint, bucket, key prefix) of the store the child's environment names."""
    bucket, _, prefix = os.environ["MODEL_STORE"].removeprefix("oss://").partition("/")
    return os.environ["OSS_ENDPOINT"], bucket, prefix.strip("/") + "/"
