"""`python -m handler import-mlflow` against a real `mlflow server` on SQLite, started here and seeded with MLflow's
own client: what arrives, seen through this registry, and a second run that adds nothing.

The server runs from bench/.mlflow-venv (`make bench/.mlflow-venv/.installed`; `make test` builds it). Without it
the tests are skipped with the reason, except in CI (CI=true), where they fail.
"""
from __future__ import annotations

import contextlib
import io
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

import pytest
from mlflow import MlflowClient

from handler.catalog.table import Selection
from handler.entry.importer import progress_lines
from handler.registry import aliases, upkeep
from handler.registry.listing import VersionQuery
from handler.registry.models import Registry
from handler.registry.versions import Versions
from handler.stores.file import FileStore

ROOT = Path(__file__).resolve().parent.parent
MLFLOW = ROOT / "bench" / ".mlflow-venv" / "bin" / "mlflow"

if not MLFLOW.exists():
    reason = f"{MLFLOW.relative_to(ROOT)} is missing (make bench/.mlflow-venv/.installed): the import tests need MLflow's server"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        raise RuntimeError(reason)
    pytest.skip(reason, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on SQLite, on a free port, until the module's tests are done."""
    work = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (work / "server.log").open("wb")
    server = subprocess.Popen(
        [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
         "--default-artifact-root", (work / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=work, env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start:\n" + (work / "server.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def seeded(mlflow_url: str) -> dict[str, str]:
    """Three models: versions with runs, tags and statuses, a deleted version (a gap in the numbers), aliases;
    and a model whose tag this registry refuses. Answers the run ids."""
    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    runs = {key: client.create_run("0").info.run_id for key in ("a", "b", "c")}
    client.create_registered_model("fraud", tags={"team": "risk", "tier": "1"}, description="flags fraud")
    client.create_model_version("fraud", "s3://models/fraud/1", run_id=runs["a"], tags={"data": "2024"}, description="first")
    client.create_model_version("fraud", "s3://models/fraud/2", run_id=runs["b"])
    client.create_model_version("fraud", "s3://models/fraud/3", run_id=runs["c"], tags={"data": "2025"})
    client.delete_model_version("fraud", "2")
    client.set_registered_model_alias("fraud", "champion", "3")
    client.set_registered_model_alias("fraud", "challenger", "1")
    client.create_registered_model("churn")
    client.create_model_version("churn", "s3://models/churn/1")
    client.set_registered_model_alias("churn", "prod", "1")
    client.create_registered_model("empty", description="no versions yet")
    client.create_registered_model("odd-tags", tags={"owners": "ann,bob"})  # "," in a value: refused here
    client.create_model_version("odd-tags", "s3://models/odd/1")
    return runs


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MODEL_STORE", "ACCESS_KEYS", "NOTIFICATIONS") and not k.startswith("REGISTRY_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@contextlib.contextmanager
def registry_server(store: Path, **env: str) -> Iterator[str]:
    """`python -m handler serve` on the store, on a free port, until the block ends: its URL."""
    log = store.parent / f"serve-{store.name}.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "handler", "serve", "--port", "0", "--store", store.as_uri()],
                                  stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=_env(**env))
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"listening on (\S+) ", log.read_text())):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield found.group(1)
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture(params=["store", "api"])
def into(request: pytest.FixtureRequest) -> Iterator[Callable[[Path], str]]:
    """Where --to points: the store itself, or a registry served on it (the import through its MLflow API)."""
    with contextlib.ExitStack() as stack:
        servers: dict[Path, str] = {}

        def to(store: Path) -> str:
            if request.param == "store":
                return store.as_uri()
            if store not in servers:
                servers[store] = stack.enter_context(registry_server(store))
            return servers[store]

        yield to


def run_import(url: str, to: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "handler", "import-mlflow", "--from", url, "--to", to, *extra],
                          capture_output=True, text=True, cwd=ROOT, env=_env(**env), timeout=120)


def test_import_copies_models_versions_and_aliases_and_a_rerun_adds_nothing(mlflow_url: str, seeded: dict[str, str],
                                                                          tmp_path: Path, into: Callable[[Path], str]) -> None:
    store = tmp_path / "store"
    store.mkdir()
    first = run_import(mlflow_url, into(store), "--json")
    assert first.returncode == 1, first.stderr  # one model was refused
    summary = json.loads(first.stdout)
    assert summary["Created"] == {"models": 3, "versions": 3, "aliases": 3}
    assert summary["AlreadyThere"] == {"models": 0, "versions": 0, "aliases": 0}
    refused = {(r["Kind"], r["What"]): r["Why"] for r in summary["Refused"]}
    assert set(refused) == {("models", "'odd-tags'"), ("versions", "'odd-tags' 1")}
    # the rule the value breaks, named as the door it came through names it (Labels here, MLflow's tags through the API)
    assert re.fullmatch(r"(Labels|tags)\[0\]\.(Value|value) must not contain '=' or ','", refused[("models", "'odd-tags'")]), refused
    assert "import-mlflow: 4/4 models" in first.stderr  # the progress line at the end

    registry = Registry(FileStore(store))
    versions = Versions(registry)
    workspace = registry.workspace("default")
    workspace.read()
    fraud = workspace.named("fraud")
    assert fraud is not None and workspace.named("odd-tags") is None
    record = registry.get(fraud.id)
    assert (record["ModelDescription"], sorted((label["Key"], label["Value"]) for label in record["Labels"])) == (
        "flags fraud", [("team", "risk"), ("tier", "1")])
    listed, total = versions.list_versions(fraud.id, VersionQuery.parse({}))
    by_number = {v[aliases.NUMBER]: v for v in listed}
    assert total == 2 and set(by_number) == {1, 3}  # the gap of the deleted version is kept
    one, three = by_number[1], by_number[3]
    assert (one["Uri"], one["SourceType"], one["SourceId"], one["VersionDescription"], one["Labels"]) == (
        "s3://models/fraud/1", "MLflowRun", seeded["a"], "first", [{"Key": "data", "Value": "2024"}])
    assert (three["SourceId"], three.get("Aliases"), one.get("Aliases")) == (seeded["c"], ["champion"], ["challenger"])
    assert aliases.aliases_of(registry.get(fraud.id)) == {"champion": three["VersionName"], "challenger": one["VersionName"]}
    # The next version here takes the number after MLflow's last.
    assert versions.get(fraud.id, versions.create(fraud.id, {"Uri": "s3://models/fraud/4"})[0])[aliases.NUMBER] == 4
    empty = workspace.named("empty")
    assert empty is not None and registry.get(empty.id)["ModelDescription"] == "no versions yet"

    again = run_import(mlflow_url, into(store), "--json")
    summary = json.loads(again.stdout)
    assert summary["Created"] == {"models": 0, "versions": 0, "aliases": 0}
    assert summary["AlreadyThere"] == {"models": 3, "versions": 3, "aliases": 3}
    workspace.read()
    assert workspace.select(Selection(), 0, 10)[1] == 3
    assert versions.list_versions(fraud.id, VersionQuery.parse({}))[1] == 3  # 1, 3 and the one made here


def test_a_version_deleted_here_is_not_brought_back_and_a_moved_alias_is_not_moved(
        mlflow_url: str, seeded: dict[str, str], tmp_path: Path, into: Callable[[Path], str]) -> None:
    store = tmp_path / "store"
    store.mkdir()
    assert run_import(mlflow_url, into(store)).returncode == 1
    registry = Registry(FileStore(store))
    versions = Versions(registry)
    workspace = registry.workspace("default")
    workspace.read()
    fraud = workspace.named("fraud")
    assert fraud is not None
    numbers = {v[aliases.NUMBER]: v["VersionName"] for v in versions.list_versions(fraud.id, VersionQuery.parse({}))[0]}
    aliases.Aliases(registry).set(fraud.id, "champion", numbers[1])  # moved here
    versions.delete(fraud.id, numbers[3])  # deleted here: its alias goes with it... and challenger stays on 1

    again = run_import(mlflow_url, into(store))
    assert again.returncode == 1
    lines = again.stdout.splitlines()
    assert lines[0] == "models: 0 created, 3 already there, 1 refused"
    assert lines[1] == "versions: 0 created, 2 already there, 2 refused"
    assert lines[2] == "aliases: 0 created, 2 already there, 1 refused"
    assert ("refused version 'fraud' 3: version 3 was given before and deleted (the model's last number is 3): "
            "numbers are never given twice") in lines
    assert "refused alias 'fraud'@champion: version 3 is not here" in lines
    workspace.read()
    assert {v[aliases.NUMBER] for v in versions.list_versions(fraud.id, VersionQuery.parse({}))[0]} == {1}


def test_an_unreachable_source_is_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    result = run_import(f"http://127.0.0.1:{free_port()}", (tmp_path / "store").as_uri())
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("import-mlflow: cannot reach http://127.0.0.1:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.json"))


def test_a_url_with_no_mlflow_api_at_either_end_stops_the_import_with_one_line_naming_it(
        mlflow_url: str, seeded: dict[str, str], tmp_path: Path) -> None:
    hint = "is {} an MLflow tracking URI (without /api/2.0/mlflow)?"
    store = tmp_path / "store"
    store.mkdir()
    source = run_import(mlflow_url + "/api/2.0/mlflow", store.as_uri())  # the API's path given as the tracking URI
    last = source.stderr.strip().splitlines()[-1]
    assert source.returncode == 1 and source.stdout == ""
    assert last.startswith(f"import-mlflow: {mlflow_url}/api/2.0/mlflow/api/2.0/mlflow/registered-models/search answered HTTP 404")
    assert last.endswith(hint.format("--from"))
    with registry_server(store) as url:
        for wrong in (url + "/api/2.0/mlflow", url + "/no-such-path"):
            target = run_import(mlflow_url, wrong)  # one line, not every model refused as "Not Found"
            assert target.returncode == 1 and target.stdout == "", target.stdout
            assert target.stderr.strip().splitlines()[-1].endswith(hint.format("--to")), target.stderr
    assert not list(store.rglob("models/*.json"))


def test_through_a_keyed_registry_s_api_the_import_signs_in_with_its_key_and_a_wrong_one_writes_nothing(
        mlflow_url: str, seeded: dict[str, str], tmp_path: Path) -> None:
    keys = tmp_path / "access-keys.json"
    keys.write_text(json.dumps({"AccessKeys": [
        {"AccessKeyId": "importer", "AccessKeySecret": "importer-secret-for-tests"},
        {"AccessKeyId": "reader", "AccessKeySecret": "reader-secret-for-tests", "Actions": ["Get*", "List*"]}]}))
    store = tmp_path / "store"
    store.mkdir()
    with registry_server(store, ACCESS_KEYS=keys.as_uri()) as url:
        for key, secret in (("importer", "a-wrong-secret-for-tests"), ("reader", "reader-secret-for-tests")):
            refused = run_import(mlflow_url, url, REGISTRY_ACCESS_KEY_ID=key, REGISTRY_ACCESS_KEY_SECRET=secret)
            assert refused.returncode == 1
            last = refused.stderr.strip().splitlines()[-1]
            assert last.startswith("import-mlflow: ") and ("HTTP 401" in last or "HTTP 403" in last), refused.stderr
            assert "Traceback" not in refused.stderr and secret not in refused.stderr + refused.stdout
        assert not list(store.rglob("models/*.json"))  # nothing written by a key that may not write

        done = run_import(mlflow_url, url, "--json",
                          REGISTRY_ACCESS_KEY_ID="importer", REGISTRY_ACCESS_KEY_SECRET="importer-secret-for-tests")
    assert json.loads(done.stdout)["Created"] == {"models": 3, "versions": 3, "aliases": 3}
    registry = Registry(FileStore(store))
    workspace = registry.workspace("default")
    workspace.read()
    fraud = workspace.named("fraud")
    assert fraud is not None
    made = upkeep.history(registry, fraud.id)
    assert made and {change["By"] for change in made} == {"importer"}  # every change by the key that imported it


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log, terminal = io.StringIO(), Terminal()
    for out in (log, terminal):
        show = progress_lines(out, every=2)
        for done in range(1, 6):
            show(done, 5)
    assert [line.split(" (")[0] for line in log.getvalue().splitlines()] == [
        "import-mlflow: 2/5 models", "import-mlflow: 4/5 models", "import-mlflow: 5/5 models"]
    drawn = terminal.getvalue()
    assert drawn.startswith("\rimport-mlflow: [") and drawn.endswith("\n") and drawn.count("\n") == 1  # redrawn in place
    assert "[" + "#" * 30 + "] 5/5 models" in drawn.rsplit("\r", 1)[1]


def test_an_empty_source_still_ends_with_its_progress_line(tmp_path: Path) -> None:
    from handler.entry.import_targets import Here
    from handler.entry.importer import Importer

    class Empty:  # an MLflow registry with no model (the summary and the progress line come from the importer alone)
        def models(self) -> list[dict[str, object]]:
            return []

        def all_versions(self) -> dict[str, list[dict[str, object]]]:
            return {}

    log = io.StringIO()
    summary = Importer(Here(Registry(FileStore(tmp_path / "store")), "default")).run(Empty(), progress=progress_lines(log))  # type: ignore[arg-type]
    assert log.getvalue().startswith("import-mlflow: 0/0 models") and summary.lines()[0] == "models: 0 created, 0 already there, 0 refused"
