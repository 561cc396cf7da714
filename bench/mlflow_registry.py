"""MLflow's model registry (SQLite, in-process) doing what bench/catalog.py's file_client does; run by
`make bench` with the Python of bench/.mlflow-venv, never imported by the project.

    python mlflow_registry.py MODELS ROUNDS WORKDIR   ->  a JSON line of median milliseconds per operation
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

DOMAINS = ("cv", "nlp", "audio", "multimodal")
TEAMS = ("vision", "search", "ads", "speech", "platform")


def steps(client: MlflowClient, r: int, names: list[str], page_through: Callable[[], None]) -> dict[str, Callable[[], object]]:
    """Round r: each searches for something else, as in bench/catalog.py."""
    return {
        "name substring": lambda: client.search_registered_models(filter_string=f"name LIKE '%-0{r % 10}1%'", max_results=100),
        "tag": lambda: client.search_registered_models(filter_string=f"tags.team = '{TEAMS[r % 5]}'", max_results=100),
        "ordered top 10": lambda: client.search_registered_models(
            filter_string=f"tags.domain = '{DOMAINS[r % 4]}'", order_by=["last_updated_timestamp DESC"], max_results=10),
        "paging through all": page_through,
        "get one": lambda: client.get_registered_model(names[r % len(names)]),
        "create one": lambda: client.create_registered_model(f"compare-{r}", tags={"k": "v"}),
    }


def main(models: int, rounds: int, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir / 'registry.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for i in range(models):  # the same models as bench/catalog.py's seed
        client.create_registered_model(
            f"model-{i:05d}-{DOMAINS[i % 4]}-{TEAMS[i % 5]}", description="a model seeded for the benchmark",
            tags={"team": TEAMS[i % 5], "stage": ("dev", "prod")[i % 2], "domain": DOMAINS[i % 4]})
    names = [m.name for m in client.search_registered_models(max_results=100, order_by=["name ASC"])]

    def page_through() -> None:
        token = None
        while True:
            page = client.search_registered_models(max_results=100, order_by=["name ASC"], page_token=token)
            token = page.token
            if not token:
                return

    times: dict[str, list[float]] = {}
    for r in range(rounds):
        for name, step in steps(client, r, names, page_through).items():
            started = time.perf_counter()
            step()
            times.setdefault(name, []).append((time.perf_counter() - started) * 1e3)
    print(json.dumps({"version": mlflow.__version__, "times": {k: statistics.median(v) for k, v in times.items()}}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
