"""The command line as a user runs it: `python -m handler serve`, `invoke` and `history`."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from handler.api.app import App
from handler.catalog.keys import log_key
from handler.entry import fc
from handler.registry import records, upkeep
from handler.registry.models import Registry
from handler.stores.base import Store
from handler.stores.file import FileStore
from tests.conftest import EVENTS, local_api

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, stdin: bytes | None = None, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "handler", *args], input=stdin, capture_output=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=60)


def test_invoke_a_file_prints_what_the_function_returns(tmp_path: Path) -> None:
    result = run("invoke", str(EVENTS / "apigw.json"), "--store", f"file://{tmp_path}")
    assert result.returncode == 0, result.stderr
    body = json.loads(json.loads(result.stdout)["body"])
    assert (tmp_path / "models" / f"{body['ModelId']}.json").is_file()
    assert b'"Operation": "CreateModel"' in result.stderr  # the access log line


def test_invoke_reads_standard_input(tmp_path: Path) -> None:
    result = run("invoke", "-", stdin=b'{"ModelName": "from-stdin"}', env={"MODEL_STORE": f"file://{tmp_path}"})
    model_id = json.loads(result.stdout)["ModelId"]
    assert json.loads((tmp_path / "models" / f"{model_id}.json").read_text())["ModelName"] == "from-stdin"


def test_invoke_exits_non_zero_when_fc_would_retry(tmp_path: Path) -> None:
    blocked = tmp_path / "store"
    blocked.write_text("a file where the store directory should be")
    result = run("invoke", "-", stdin=b'{"ModelName": "x"}', env={"MODEL_STORE": f"file://{blocked}"})
    assert result.returncode == 1 and b"deliver again" in result.stderr


def test_serve_answers_curl_and_writes_the_record_under_the_default_store(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MODEL_STORE", None)
    server = subprocess.Popen([sys.executable, "-m", "handler", "serve", "--port", str(port)], cwd=tmp_path, env=env,
                              stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/models"
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1)
            except urllib.error.HTTPError:
                break  # 405 for GET: it is up
            except OSError:
                time.sleep(0.1)
        curl = subprocess.run(["curl", "-s", "-X", "POST", url, "-H", "Content-Type: application/json",
                               "-d", '{"ModelName": "新闻分类", "ModelDescription": "新闻分类。"}'],
                              capture_output=True, timeout=30)
        body = json.loads(curl.stdout)
        record = json.loads((tmp_path / "model-store" / "models" / f"{body['ModelId']}.json").read_text("utf-8"))
        assert (record["ModelName"], record["WorkspaceId"]) == ("新闻分类", "default")
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stderr.close()


def changes_through_the_sdk(store: Store) -> str:
    """A model changed by every kind of operation through PAI's SDK over the local server; its ModelId."""
    from alibabacloud_aiworkspace20210204 import models
    from alibabacloud_aiworkspace20210204.client import Client
    from alibabacloud_tea_openapi import models as open_api

    app = App(Registry(store), default_workspace="default")
    fc.set_app(app)
    try:
        with local_api() as server:
            host, port = server.server_address[:2]
            sdk = Client(open_api.Config(access_key_id="ak", access_key_secret="sk", endpoint=f"{host}:{port}", protocol="http"))
            model_id = str(sdk.create_model(models.CreateModelRequest(model_name="history")).body.model_id)
            sdk.update_model(model_id, models.UpdateModelRequest(domain="cv"))
            sdk.create_model_labels(model_id, models.CreateModelLabelsRequest(labels=[models.Label(key="k", value="v")]))
            sdk.delete_model_labels(model_id, models.DeleteModelLabelsRequest(label_keys="k"))
            version = sdk.create_model_version(model_id, models.CreateModelVersionRequest(uri="oss://bucket/m/1")).body.version_name
            sdk.create_model_version_labels(model_id, version, models.CreateModelVersionLabelsRequest(
                labels=[models.Label(key="stage", value="dev")]))
            sdk.create_model_version_labels(model_id, version, models.CreateModelVersionLabelsRequest(
                labels=[models.Label(key="stage", value="prod")]))  # a label's value replaced is a label change too
            sdk.delete_model_version_labels(model_id, version, models.DeleteModelVersionLabelsRequest(label_keys="stage"))
            sdk.update_model_version(model_id, version, models.UpdateModelVersionRequest(approval_status="Approved"))
            sdk.delete_model_version(model_id, version, models.DeleteModelVersionRequest())
    finally:
        app.registry.settle()
        fc.set_app(None)
    return model_id


HISTORY = ["CreateModel", "UpdateModel", "CreateModelLabels", "DeleteModelLabels", "CreateModelVersion",
           "CreateModelVersionLabels", "CreateModelVersionLabels", "DeleteModelVersionLabels", "UpdateModelVersion",
           "DeleteModelVersion"]


def test_history_names_every_change_under_a_header_and_as_json_lines(tmp_path: Path) -> None:
    model_id = changes_through_the_sdk(FileStore(str(tmp_path)))
    result = run("history", model_id, "--store", f"file://{tmp_path}")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.decode().splitlines()
    assert header.split() == ["SEQ", "BY", "OPERATION", "AT", "VERSION"]
    assert [line.split()[2] for line in lines] == HISTORY
    assert lines[4].endswith(" 0.1.0") and lines[0].split()[3].endswith("Z")

    as_json = run("history", model_id, "--json", "--store", f"file://{tmp_path}")
    changes = [json.loads(line) for line in as_json.stdout.decode().splitlines()]
    assert [c["Operation"] for c in changes] == HISTORY
    assert [sorted(c) for c in changes[3:5]] == [["At", "By", "Operation", "Seq"], ["At", "By", "Operation", "Seq", "VersionName"]]
    assert [c["Seq"] for c in changes] == sorted(c["Seq"] for c in changes)

    since = changes[3]["Seq"]  # the model's last label change: what follows starts with the version's create
    later = run("history", model_id, "--json", "--since", str(since), "--store", f"file://{tmp_path}")
    assert [json.loads(line)["Operation"] for line in later.stdout.decode().splitlines()] == HISTORY[4:]


def test_history_reads_only_the_commits_after_since(tmp_path: Path) -> None:
    read: list[str] = []

    class Counting(FileStore):
        def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
            read.extend(keys)
            return super().get_many(keys)

    store = Counting(str(tmp_path))
    model_id = changes_through_the_sdk(store)
    registry = Registry(store)
    read.clear()
    everything = upkeep.history(registry, model_id)
    assert len(read) == len({c["Seq"] for c in everything})  # one read per commit: the model's are all there is
    read.clear()
    since = everything[-3]["Seq"]
    assert [c["Operation"] for c in upkeep.history(registry, model_id, since)] == HISTORY[-2:]
    assert read == [log_key("default", seq) for seq in (since + 1, since + 2)]


def test_history_of_an_unknown_model_says_so_and_exits_1(tmp_path: Path) -> None:
    changes_through_the_sdk(FileStore(str(tmp_path)))  # a store with a log, of another model
    result = run("history", "model-0mwzucaay85n5ozwwrlzptxp6", "--store", f"file://{tmp_path}")
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr.decode().strip() == ("cannot read the history of model-0mwzucaay85n5ozwwrlzptxp6: "
                                              "model model-0mwzucaay85n5ozwwrlzptxp6 has no committed change in this store")
    not_an_id = run("history", "../models", "--store", f"file://{tmp_path}")
    assert (not_an_id.returncode, not_an_id.stderr.decode().strip()) == (1, "cannot read the history of ../models: "
                                                                            "'../models' is not a ModelId")
    assert run("history", "x", "--since", "-1", "--store", f"file://{tmp_path}").returncode == 2  # a usage mistake


def test_deliveries_shows_a_rule_not_started_yet_with_dashes(tmp_path: Path) -> None:
    Registry(FileStore(tmp_path / "store")).create(records.normalized_request({"ModelName": "before-the-rule"}, "default"))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"Rules": [{"Name": "hook", "Events": ["*"], "Workspaces": ["*"], "AllowPrivateNetwork": True,
                                            "Target": {"Webhook": {"Url": "http://127.0.0.1:9/hook", "Secret": "s" * 16}}}]}))
    result = run("deliveries", env={"MODEL_STORE": f"file://{tmp_path / 'store'}", "NOTIFICATIONS": f"file://{rules}"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == ["RULE WORKSPACE CURSOR HEAD LAG DEAD-LETTERS FAILING", "hook default - 1 - 0 -"]


def test_import_mlflow_names_a_to_that_is_neither_a_store_nor_a_url_and_a_workers_below_one(tmp_path: Path) -> None:
    for extra, expected in ((("--to", str(tmp_path)), "import-mlflow: error: --to must be a store (file://PATH or "
                             "oss://BUCKET/PREFIX) or a running registry's http:// or https:// URL, not "),
                            (("--to", "memory://"), "not 'memory://'"),  # it would vanish with the command
                            (("--workers", "0"), "import-mlflow: error: --workers must be at least 1, not 0")):
        result = run("import-mlflow", "--from", "http://127.0.0.1:9", *extra, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr.decode(), result.stderr
        assert not any(tmp_path.iterdir())  # refused before anything is read or written
