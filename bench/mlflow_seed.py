"""A SQLite database of MLflow's registry with MODELS models of VERSIONS versions each (tags, run ids, an alias),
written in bulk through MLflow's own tables; run by `make bench` with the Python of bench/.mlflow-venv, never
imported by the project.

    python mlflow_seed.py DATABASE MODELS VERSIONS
"""
from __future__ import annotations

import sys
import time
import uuid

from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlModelVersionTag,
    SqlRegisteredModel,
    SqlRegisteredModelAlias,
    SqlRegisteredModelTag,
)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

DOMAINS = ("cv", "nlp", "audio", "multimodal")
TEAMS = ("vision", "search", "ads", "speech", "platform")


def name(i: int) -> str:
    """The i-th model's name, as bench/catalog.py names its seeded models."""
    return f"model-{i:05d}-{DOMAINS[i % 4]}-{TEAMS[i % 5]}"


def main(database: str, models: int, versions: int) -> None:
    store = SqlAlchemyStore(f"sqlite:///{database}")  # type: ignore[no-untyped-call]  # creates the tables
    now = int(time.time() * 1000)
    rows: list[object] = []
    for i in range(models):
        model = name(i)
        rows.append(SqlRegisteredModel(name=model, creation_time=now, last_updated_time=now,
                                       description="a model seeded for the benchmark"))
        rows += [SqlRegisteredModelTag(name=model, key=k, value=v)
                 for k, v in (("team", TEAMS[i % 5]), ("stage", ("dev", "prod")[i % 2]), ("domain", DOMAINS[i % 4]))]
        for n in range(1, versions + 1):
            rows.append(SqlModelVersion(name=model, version=n, creation_time=now, last_updated_time=now,
                                        source=f"s3://bench-models/{model}/{n}", run_id=uuid.uuid4().hex,
                                        description=f"version {n}", status="READY", current_stage="None"))
            rows.append(SqlModelVersionTag(name=model, version=n, key="data", value=f"2025-{n:02d}"))
        if versions:
            rows.append(SqlRegisteredModelAlias(name=model, alias="champion", version=versions))
    with store.ManagedSessionMaker() as session:
        session.add_all(rows)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
