"""OSS credentials outside FC, as a user gets them: the function's command line in a process of its own (the
default chain reads its environment once), signing for the loopback OSS, which logs what each request carried."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from testing.fake_oss import FakeOss

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "[default]\ntype = access_key\naccess_key_id = profile-key-id\naccess_key_secret = profile-secret\n"


def register(oss: FakeOss, tmp_path: Path, *code: str, unset: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m handler invoke` of a CreateModel event on an oss:// store (or `python -c *code`), in a process
    whose home is tmp_path and whose environment has no ALIBABA_CLOUD_ACCESS_KEY_* variables but those of env."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_ACCESS_KEY") and k not in unset}
    base.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path), MODEL_STORE=f"oss://{oss.bucket}/registry/",
                OSS_ENDPOINT=oss.endpoint, **env)
    command = ["-c", *code] if code else ["-m", "handler", "invoke", "-"]
    return subprocess.run([sys.executable, *command], input='{"ModelName": "signed"}', capture_output=True, text=True,
                          cwd=ROOT, env=base, timeout=60)


def authorizations(oss: FakeOss) -> set[str]:
    return {request.headers.get("authorization", "") for request in oss.log}


def test_a_credentials_profile_signs_for_the_store_outside_fc(oss: FakeOss, tmp_path: Path) -> None:
    profile = tmp_path / "credentials.ini"
    profile.write_text(PROFILE)
    result = register(oss, tmp_path, ALIBABA_CLOUD_CREDENTIALS_FILE=str(profile))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ModelId"].startswith("model-")
    assert oss.log and all(auth.startswith("OSS profile-key-id:") for auth in authorizations(oss)), authorizations(oss)


def test_the_profile_in_the_home_directory_is_found(oss: FakeOss, tmp_path: Path) -> None:
    (tmp_path / ".alibabacloud").mkdir()
    (tmp_path / ".alibabacloud" / "credentials.ini").write_text(PROFILE)
    result = register(oss, tmp_path, unset=("ALIBABA_CLOUD_CREDENTIALS_FILE",))
    assert result.returncode == 0, result.stderr
    assert oss.log and all(auth.startswith("OSS profile-key-id:") for auth in authorizations(oss))


def test_the_variables_come_before_the_chain(oss: FakeOss, tmp_path: Path) -> None:
    profile = tmp_path / "credentials.ini"
    profile.write_text(PROFILE)
    result = register(oss, tmp_path, ALIBABA_CLOUD_CREDENTIALS_FILE=str(profile),
                      ALIBABA_CLOUD_ACCESS_KEY_ID="env-key-id", ALIBABA_CLOUD_ACCESS_KEY_SECRET="env-secret")
    assert result.returncode == 0, result.stderr
    assert oss.log and all(auth.startswith("OSS env-key-id:") for auth in authorizations(oss))


def test_no_credentials_anywhere_fails_closed_with_one_line_and_sends_nothing(oss: FakeOss, tmp_path: Path) -> None:
    result = register(oss, tmp_path)  # the tests' environment: no metadata service, no CLI profile, an empty profile file
    assert result.returncode == 1  # FC would deliver it again
    assert "no OSS credentials" in result.stderr and "default credential chain" in result.stderr
    assert "Traceback" not in result.stderr and "profile" not in result.stderr.lower()
    assert oss.log == []


FC_INVOCATION = """
import json, sys
from types import SimpleNamespace
from handler.entry import fc
keys = ("STS.context-key-id", "context-secret", "context-token") if sys.argv[1] == "fc" else ("", "", "")
credentials = SimpleNamespace(access_key_id=keys[0], access_key_secret=keys[1], security_token=keys[2])
context = SimpleNamespace(request_id="1-test", account_id="1234567890", credentials=credentials)
print(json.loads(fc.handler(b'{"ModelName": "' + sys.argv[1].encode() + b'"}', context))["ModelId"])
print("alibabacloud_credentials" in sys.modules)
"""  # FC's context as the function reads it; with empty keys, as outside FC


def test_on_fc_the_context_signs_and_the_chain_is_never_imported(oss: FakeOss, tmp_path: Path) -> None:
    profile = tmp_path / "credentials.ini"
    profile.write_text(PROFILE)
    on_fc = register(oss, tmp_path, FC_INVOCATION, "fc", ALIBABA_CLOUD_CREDENTIALS_FILE=str(profile))
    assert on_fc.returncode == 0, on_fc.stderr
    assert on_fc.stdout.splitlines()[1] == "False"  # a cold start does not pay for the chain's import
    assert oss.log and all(auth.startswith("OSS STS.context-key-id:") for auth in authorizations(oss))
    assert {request.headers.get("x-oss-security-token") for request in oss.log} == {"context-token"}
    oss.reset()
    elsewhere = register(oss, tmp_path, FC_INVOCATION, "no-context", ALIBABA_CLOUD_CREDENTIALS_FILE=str(profile))
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert elsewhere.stdout.splitlines()[1] == "True"
    assert oss.log and all(auth.startswith("OSS profile-key-id:") for auth in authorizations(oss))
