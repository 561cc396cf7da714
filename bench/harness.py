"""The loopback OSS server the bench owns and the child processes it measures against it."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testing.fake_oss import FakeOss, LoggedRequest, delay

from .workload import ACCESS_KEY_ID, ACCESS_KEY_SECRET, REPO, STORE_PREFIX, WORKSPACE

_CLEARED = ("MODEL_STORE", "OSS_ENDPOINT", "OSS_REGION", "OSS_POOL_SIZE", "DEFAULT_WORKSPACE_ID", "MAX_BODY_BYTES",
            "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN",
            "PYTHONDONTWRITEBYTECODE", "PYTHONPATH")


@dataclass(frozen=True)
class Template:
    """The deployment settings the figures are compared with (template.yml, else its documented values)."""

    instance_concurrency: int = 10
    oss_pool_size: int = 20
    memory_mb: int = 512
    malloc_arena_max: int | None = None
    source: str = "defaults"

    @classmethod
    def load(cls, path: Path = REPO / "template.yml") -> Template:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return cls()
        found = {name: re.search(pattern, text) for name, pattern in (
            ("instance_concurrency", r"InstanceConcurrency:\s*(\d+)"),
            ("oss_pool_size", r"OSS_POOL_SIZE:\s*['\"]?(\d+)"),
            ("memory_mb", r"MemorySize:\s*(\d+)"),
            ("malloc_arena_max", r"MALLOC_ARENA_MAX:\s*['\"]?(\d+)"),
        )}
        values = {name: int(match.group(1)) for name, match in found.items() if match}
        return cls(**values, source=path.name) if values else cls()


@dataclass(frozen=True)
class Mark:
    """The server's counters when a child reached a checkpoint."""

    requests: int
    connections: int


class Harness:
    """Owns a FakeOss on 127.0.0.1 and runs children against it with compiled bytecode, like FC's
    shipped .pyc: every child shares one bytecode cache, filled by unmeasured warm-up runs."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.server = FakeOss("bench-bucket")
        self._scratch = tempfile.TemporaryDirectory(prefix="registry-bench-")
        self.scratch = Path(self._scratch.name)

    def __enter__(self) -> Harness:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self._scratch.cleanup()

    @property
    def store_url(self) -> str:
        return f"oss://{self.server.bucket}/{STORE_PREFIX}"

    def env(self, store_url: str, bytecode: bool = True) -> dict[str, str]:
        """A child's environment: FC's variables for the given store, nothing inherited that changes them.
        Without bytecode, the project and its dependencies compile from source at every start, as on FC
        when the package ships no python3.10 .pyc (the standard library keeps its bytecode, as FC's runtime does)."""
        env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
        if not bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(PYTHONPYCACHEPREFIX=str(self.scratch / ("pycache" if bytecode else "stdlib-pycache")),
                   MODEL_STORE=store_url, DEFAULT_WORKSPACE_ID=WORKSPACE, OSS_POOL_SIZE=str(self.template.oss_pool_size))
        if self.template.malloc_arena_max:  # as the template sets it for the function
            env["MALLOC_ARENA_MAX"] = str(self.template.malloc_arena_max)
        if store_url.startswith("oss://"):
            env.update(OSS_ENDPOINT=self.server.endpoint, ALIBABA_CLOUD_ACCESS_KEY_ID=ACCESS_KEY_ID,
                       ALIBABA_CLOUD_ACCESS_KEY_SECRET=ACCESS_KEY_SECRET)
        return env

    def keep_stdlib_bytecode_only(self) -> None:
        """Derive the no-bytecode children's cache from the filled one: the standard library's .pyc only."""
        source, target = self.scratch / "pycache", self.scratch / "stdlib-pycache"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        for tree in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], str(REPO)}:
            shutil.rmtree(target / Path(tree).resolve().relative_to("/"), ignore_errors=True)

    def reset(self, rtt_ms: float = 0.0) -> None:
        """Empty the bucket and its logs; with rtt_ms, every request then waits that long before it is served."""
        self.server.reset()
        if rtt_ms > 0:
            for method in ("PUT", "GET", "HEAD", "DELETE"):
                self.server.inject(method, action=delay(rtt_ms / 1000), times=1 << 40)

    def seed(self, objects: dict[str, bytes]) -> None:
        """Store objects below the bench's store prefix, without requests."""
        for key, data in objects.items():
            self.server.seed(f"{STORE_PREFIX}/{key}", data)

    def mark(self) -> Mark:
        return Mark(len(self.server.log), self.server.connections_opened)

    def requests_between(self, start: Mark, end: Mark) -> list[LoggedRequest]:
        return self.server.log[start.requests:end.requests]

    def run_worker(self, scenario: str, params: dict[str, Any],
                   store_url: str | None = None) -> tuple[dict[str, Any], dict[str, Mark]]:
        """Run `python -m bench.worker` in a fresh process; each checkpoint it reaches records the server's counters."""
        marks: dict[str, Mark] = {}
        result: dict[str, Any] | None = None
        with tempfile.TemporaryFile() as stderr:
            child = subprocess.Popen(
                [sys.executable, "-m", "bench.worker", scenario, json.dumps(params)], cwd=REPO,
                env=self.env(store_url or self.store_url), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, text=True)
            assert child.stdin is not None and child.stdout is not None
            for line in child.stdout:
                if line.startswith("CHECKPOINT "):
                    marks[line.split(None, 1)[1].strip()] = self.mark()
                    child.stdin.write("GO\n")
                    child.stdin.flush()
                elif line.startswith("RESULT "):
                    result = json.loads(line[len("RESULT "):])
            child.stdin.close()
            if child.wait() != 0 or result is None:
                stderr.seek(0)
                raise RuntimeError(f"bench worker {scenario!r} failed:\n{stderr.read().decode(errors='replace')[-4000:]}")
        return result, marks
