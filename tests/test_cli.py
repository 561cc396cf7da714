"""The command line as a user runs it: `python -m handler serve` and `python -m handler invoke`."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import EVENTS

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
