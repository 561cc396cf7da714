"""MLflow's client against this registry's server and against `mlflow server` (SQLite) on the same models: the
import of MLflow's registry into ours (its rate), then search by name and by tag, get, create version and set
alias, timed in pairs against both servers."""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import Figure, median
from .workload import REPO

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from .harness import Harness

VERSIONS = 3
TEAMS = ("vision", "search", "ads", "speech", "platform")
DOMAINS = ("cv", "nlp", "audio", "multimodal")
OPERATIONS = ("search by name", "search by tag", "get", "create version", "set alias")


def name(i: int) -> str:
    """The i-th seeded model's name (bench/mlflow_seed.py)."""
    return f"model-{i:05d}-{DOMAINS[i % 4]}-{TEAMS[i % 5]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("MLFLOW_") and k not in ("MODEL_STORE", "ACCESS_KEYS", "NOTIFICATIONS")}


@contextlib.contextmanager
def _process(command: list[str], log: Path, ready: Callable[[], str | None], timeout: float = 120) -> Iterator[str]:
    """A server process until the block ends; yields its URL once `ready` finds it."""
    with open(log, "wb") as out:
        child = subprocess.Popen(command, cwd=REPO, env={**_env(), "PYTHONPATH": str(REPO)}, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + timeout
        while (url := ready()) is None:
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        child.terminate()
        child.wait(30)


def _healthy(url: str) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                return url if answer.status == 200 else None
        except OSError:
            return None
    return check


def _listening(log: Path) -> Callable[[], str | None]:
    def check() -> str | None:
        found = re.search(r"listening on (\S+) ", log.read_text()) if log.exists() else None
        return found.group(1) if found else None
    return check


def _names(found: Any) -> list[str]:
    return [model.name for model in found]


def _steps(r: int, models: int) -> dict[str, Callable[[MlflowClient], object]]:
    """Round r: each asks for something else."""
    return {
        "search by name": lambda c: c.search_registered_models(filter_string=f"name LIKE '%-0{r % 10}1%'", max_results=100),
        "search by tag": lambda c: c.search_registered_models(filter_string=f"tags.team = '{TEAMS[r % 5]}'", max_results=100),
        "get": lambda c: c.get_registered_model(name((r * 37) % models)),
        "create version": lambda c: c.create_model_version(name((r * 11) % models), f"s3://bench-models/new/{r}"),
        "set alias": lambda c: c.set_registered_model_alias(name((r * 7) % models), "bench", str(1 + r % VERSIONS)),
    }


def run(harness: Harness, models: int, quick: bool, mlflow_python: Path) -> list[Figure]:
    from mlflow import MlflowClient

    work = harness.scratch / "mlflow-server"
    work.mkdir(parents=True, exist_ok=True)
    database, store = work / "mlflow.db", work / "store"
    subprocess.run([str(mlflow_python), str(REPO / "bench" / "mlflow_seed.py"), str(database), str(models), str(VERSIONS)],
                   check=True, capture_output=True, timeout=1800)
    mlflow = str(mlflow_python.parent / "mlflow")
    theirs_url = f"http://127.0.0.1:{_free_port()}"
    with _process([mlflow, "server", "--backend-store-uri", f"sqlite:///{database}", "--default-artifact-root",
                   (work / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", theirs_url.rsplit(":", 1)[1]],
                  work / "mlflow.log", _healthy(theirs_url)) as theirs_url:
        # The import: MLflow's registry read through its REST API, written through our registry.
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sys; from handler.entry.importer import Source; "
                                  "s = Source(sys.argv[1]); s.models(); s.all_versions()", theirs_url],
                                 cwd=REPO, env=_env(), check=True, capture_output=True, timeout=1800)
        read_seconds = time.perf_counter() - started
        started = time.perf_counter()
        imported = subprocess.run([sys.executable, "-m", "handler", "import-mlflow", "--from", theirs_url, "--to", store.as_uri(),
                                   "--json"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=3600)
        import_seconds = time.perf_counter() - started
        summary = json.loads(imported.stdout)
        if imported.returncode != 0 or summary["Created"] != {"models": models, "versions": models * VERSIONS, "aliases": models}:
            raise RuntimeError(f"the import did not copy everything: {imported.stdout[-2000:]} {imported.stderr[-2000:]}")

        log = work / "ours.log"
        with _process([sys.executable, "-m", "handler", "serve", "--port", "0", "--store", store.as_uri()], log,
                      _listening(log)) as ours_url:
            clients = {side: MlflowClient(tracking_uri=url, registry_uri=url) for side, url in (("ours", ours_url), ("theirs", theirs_url))}
            times: dict[str, dict[str, list[float]]] = {op: {"ours": [], "theirs": []} for op in OPERATIONS}
            rounds = 5 if quick else 20
            for r in range(rounds):
                steps = _steps(r, models)
                for op, step in steps.items():
                    answers = {}
                    for side in (("ours", "theirs") if r % 2 else ("theirs", "ours")):  # alternate who goes first
                        begun = time.perf_counter()
                        answers[side] = step(clients[side])
                        times[op][side].append((time.perf_counter() - begun) * 1e3)
                    if op.startswith("search") and _names(answers["ours"]) != _names(answers["theirs"]):
                        raise RuntimeError(f"{op}, round {r}: our server answered {_names(answers['ours'])[:5]}..., "
                                           f"mlflow server {_names(answers['theirs'])[:5]}...")
    version = subprocess.run([str(mlflow_python), "-c", "import mlflow; print(mlflow.__version__)"], capture_output=True,
                             text=True, check=True).stdout.strip()
    figures = [Figure(f"mlflow_server.{op.replace(' ', '_')}", f"MLflow client: {op} ({models:,} models, our server, file store)",
                      median(t["ours"]), "ms", median(t["theirs"]), f"mlflow server {version}, SQLite", max_ratio=0.5,
                      paired_ratio=median([a / b for a, b in zip(t["ours"], t["theirs"]) if b]))
               for op, t in times.items()]
    versions = models * VERSIONS
    figures.append(Figure("mlflow_server.import_rate", f"import-mlflow: {models:,} models x {VERSIONS} versions and an alias each",
                          models / import_seconds, "models/s", models / read_seconds, "reading the same registry alone (models/s)",
                          detail={"seconds": round(import_seconds, 1), "versions_per_second": round(versions / import_seconds, 1),
                                  "commits_per_second": round((2 * models + versions) / import_seconds, 1),
                                  "read_seconds": round(read_seconds, 1)}))
    return figures
