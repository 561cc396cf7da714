"""template.yml, s.yaml, .funignore and .fcignore: what a deployer relies on and no validator checks.

The template is read as data; ROS intrinsics (Ref, Fn::Sub, Fn::GetAtt) are resolved with
the parameters' defaults, a sample bucket and a sample region. s.yaml is read the same way, its
magic variables resolved with a sample environment (section 6). The entry points are imported from a
copy of exactly the files .funignore (and .fcignore, which ships the same) let through, in a fresh interpreter.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from handler.catalog.keys import CATALOG
from handler.config import Settings
from handler.entry.events import REGISTRATIONS, RESULTS
from handler.notify.delivery import DEAD_LETTERS, DELIVERIES
from handler.stores.base import check_prefix

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yml"
SAMPLE = {"BucketName": "example-model-registry", "ALIYUN::Region": "cn-hangzhou", "ALIYUN::AccountId": "1234567890"}
ENTRY_POINT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")
FUNCTION, SERVICE = "Aliyun::Serverless::Function", "Aliyun::Serverless::Service"


class _RosLoader(yaml.SafeLoader):
    """SafeLoader that reads ROS short tags (!Ref, !Sub, !GetAtt ...) as their long forms."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_RosLoader.add_multi_constructor("!", _short_tag)
TPL: dict[str, Any] = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_RosLoader)


def _params() -> dict[str, str]:
    values = {k: v for k, v in SAMPLE.items() if k.startswith("ALIYUN::")}
    for name, spec in TPL.get("Parameters", {}).items():
        values[name] = str(spec["Default"]) if "Default" in spec else SAMPLE[name]
    return values


PARAMS = _params()


NO_VALUE = object()  # what Ref ALIYUN::NoValue resolves to: left out of the list or object it stands in


def resolve(node: Any, params: Mapping[str, str] | None = None, conditions: Mapping[str, Any] | None = None) -> Any:
    """The value ROS would compute for node, given PARAMS or these (Ref, Fn::GetAtt, the string form of Fn::Sub, and
    Fn::If on the template's Conditions)."""
    params = PARAMS if params is None else params
    if isinstance(node, list):
        return [v for v in (resolve(n, params, conditions) for n in node) if v is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if node.get("Ref") == "ALIYUN::NoValue":
        return NO_VALUE
    if "Ref" in node:
        return params[node["Ref"]] if node["Ref"] in params else _attribute(node["Ref"], "Name", params)
    if "Fn::GetAtt" in node:
        return _attribute(*node["Fn::GetAtt"], params)
    if "Fn::Sub" in node:
        def sub(m: re.Match[str]) -> str:
            return params[m.group(1)] if m.group(1) in params else _attribute(*m.group(1).split(".", 1), params)
        return re.sub(r"\$\{([^}]+)\}", sub, node["Fn::Sub"])
    if "Fn::If" in node:
        name, yes, no = node["Fn::If"]
        return resolve(yes if condition(name, params, conditions) else no, params, conditions)
    assert not any(k.startswith("Fn::") for k in node), f"this test cannot resolve {node}"
    return {k: v for k, v in ((k, resolve(v, params, conditions)) for k, v in node.items()) if v is not NO_VALUE}


def condition(name: str, params: Mapping[str, str], conditions: Mapping[str, Any] | None = None) -> bool:
    """A condition of the template (Fn::Not, Fn::Equals, Fn::And, Fn::Or over parameters)."""
    def evaluate(node: Any) -> Any:
        if isinstance(node, dict) and "Fn::Not" in node:
            return not evaluate(node["Fn::Not"][0])
        if isinstance(node, dict) and "Fn::Equals" in node:
            left, right = (evaluate(n) for n in node["Fn::Equals"])
            return left == right
        if isinstance(node, dict) and "Fn::And" in node:
            return all(evaluate(n) for n in node["Fn::And"])
        if isinstance(node, dict) and "Fn::Or" in node:
            return any(evaluate(n) for n in node["Fn::Or"])
        if isinstance(node, dict) and "Ref" in node:
            return params[node["Ref"]]
        assert not isinstance(node, (dict, list)), f"this test cannot evaluate {node}"
        return node
    return bool(evaluate((conditions if conditions is not None else TPL["Conditions"])[name]))


def _attribute(resource: str, attribute: str, params: Mapping[str, str] | None = None) -> str:
    spec = TPL["Resources"][resource]
    assert spec["Type"] == "ALIYUN::OSS::Bucket" and attribute == "Name", f"cannot resolve {resource}.{attribute}"
    return resolve(spec["Properties"]["BucketName"], params)


def services() -> dict[str, dict[str, Any]]:
    return {name: r for name, r in TPL["Resources"].items() if r["Type"] == SERVICE}


def functions() -> dict[str, dict[str, Any]]:
    """Every function by name, with its properties and events resolved."""
    found = {name: {"Properties": resolve(r["Properties"]), "Events": resolve(r.get("Events", {}))}
             for svc in services().values() for name, r in svc.items() if isinstance(r, dict) and r.get("Type") == FUNCTION}
    assert found, "template.yml defines no function"
    return found


def bucket_name() -> str:
    (bucket,) = [r for r in TPL["Resources"].values() if r["Type"] == "ALIYUN::OSS::Bucket"]
    return resolve(bucket["Properties"]["BucketName"])


def code_dir(fn: dict[str, Any]) -> Path:
    return (TEMPLATE.parent / fn["Properties"]["CodeUri"]).resolve()


# --- .funignore: gitignore rules, as Funcraft's `ignore` package applies them --------------------------

def _glob(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i])))
            i += 1
    return "".join(out)


def funignore_rules(directory: Path, name: str = ".funignore") -> list[tuple[bool, bool, re.Pattern[str]]]:
    """(negated, directories only, regex of the relative path) per rule of directory/.funignore (or .fcignore)."""
    path = directory / name
    rules = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.lstrip("!")
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        regex = _glob(line.lstrip("/"))
        rules.append((negated, dir_only, re.compile(regex if anchored else f"(?:.*/)?{regex}")))
    return rules


def ignored(rules: list[tuple[bool, bool, re.Pattern[str]]], relpath: str) -> bool:
    """Whether Funcraft leaves relpath out: the last matching rule decides, an excluded directory excludes all
    below it, and relpath itself is asked about without a trailing '/' (as Funcraft does), so a rule ending in
    '/' only reaches what lies below the directory it names."""
    parts = relpath.split("/")
    for depth in range(1, len(parts) + 1):
        path, is_dir = "/".join(parts[:depth]), depth < len(parts)
        verdict = False
        for negated, dir_only, regex in rules:
            if (is_dir or not dir_only) and regex.fullmatch(path):
                verdict = not negated
        if verdict:
            return True
    return False


def shipped(directory: Path, name: str = ".funignore") -> Iterator[str]:
    """Relative paths of the files Funcraft would upload from directory (or `s`, with name=".fcignore")."""
    rules = funignore_rules(directory, name)
    for top, dirs, files in os.walk(directory):
        rel = Path(top).relative_to(directory).as_posix()
        prefix = "" if rel == "." else rel + "/"
        dirs[:] = [d for d in dirs if not ignored(rules, prefix + d)]
        yield from (prefix + f for f in files if not ignored(rules, prefix + f))


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what Funcraft uploads: the files of the (one) code directory that .funignore keeps."""
    (source,) = {code_dir(fn) for fn in functions().values()}
    target = tmp_path_factory.mktemp("code")
    copy_shipped(source, target)  # vendor/ too, if built: index.py uses it only on FC's interpreter
    return target


def copy_shipped(source: Path, target: Path, vendor: bool = True) -> None:
    for rel in shipped(source):
        if vendor or Path(rel).parts[0] != "vendor":
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, target / rel)


def run_in(directory: Path, script: str, env: Mapping[str, str] | None = None) -> Any:
    """Run script in a fresh interpreter with only directory on sys.path for project code (site-packages stay)."""
    prelude = f"import sys, json; sys.path.insert(0, {str(directory)!r})\n"
    proc = subprocess.run([sys.executable, "-I", "-c", prelude + script], cwd=directory, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- 1. entry points ---------------------------------------------------------------------------------

SIGNATURE_PROBE = """
import importlib, inspect
out = {}
for spec in %s:
    module, name = spec.split(".")
    mod = importlib.import_module(module)
    fn = getattr(mod, name, None)
    params = [p.name for p in inspect.signature(fn).parameters.values()
              if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)] if callable(fn) else None
    out[spec] = {"params": params, "file": getattr(mod, "__file__", None),
                 "handler_pkg": getattr(sys.modules.get("handler"), "__file__", None)}
print(json.dumps(out))
"""


def test_entry_points_are_file_function_and_resolve_in_shipped_code(package: Path) -> None:
    for name, fn in functions().items():
        props = fn["Properties"]
        roles = {"Handler": props["Handler"], **({"Initializer": props["Initializer"]} if "Initializer" in props else {})}
        for spec in roles.values():
            assert ENTRY_POINT.fullmatch(spec), f"{name}: {spec!r} is not FC's documented file.function form"
        found = run_in(package, SIGNATURE_PROBE % json.dumps(sorted(set(roles.values()))))
        for role, spec in roles.items():
            got = found[spec]
            assert got["params"] is not None, f"{name}: {spec} is not a callable in the shipped code"
            for module in (got["file"], got["handler_pkg"]):
                assert Path(module).resolve().is_relative_to(package.resolve()), f"{spec} was imported from {module}"
            if role == "Initializer":
                assert len(got["params"]) == 1, f"{name}: initializer(context) expected, got {got['params']}"
            elif any(ev["Type"] == "HTTP" for ev in fn["Events"].values()):
                assert got["params"] == ["environ", "start_response"], f"{name}: FC 2.0 HTTP functions are WSGI apps"
            else:
                assert len(got["params"]) == 2 and got["params"] != ["environ", "start_response"], \
                    f"{name}: handler(event, context) expected, got {got['params']}"


def test_initializer_builds_the_app_from_the_template_environment(package: Path) -> None:
    """With the environment the template sets, the shipped initializer compiles schemas and opens the store."""
    pytest.importorskip("oss2")  # preinstalled on FC's python3.10; needed here only to build the OSS store
    script = """
import index
from types import SimpleNamespace
creds = SimpleNamespace(access_key_id="AKID", access_key_secret="SECRET", security_token="TOKEN")
index.initializer(SimpleNamespace(credentials=creds, account_id="1234567890", request_id="init"))
from handler.entry.fc import get_app
print(json.dumps(type(get_app().registry.store).__name__))
"""
    for name, fn in functions().items():
        env = {k: str(v) for k, v in fn["Properties"]["EnvironmentVariables"].items()}
        assert run_in(package, script, env) == "OssStore", name


# --- 2. what ships -----------------------------------------------------------------------------------

def test_funignore_ships_the_code_and_nothing_else(package: Path) -> None:
    (source,) = {code_dir(fn) for fn in functions().values()}
    rules = funignore_rules(source)
    for needed in ("index.py", "handler", "schemas"):
        assert (source / needed).exists(), f"{needed} is missing from CodeUri {source}"
        assert not ignored(rules, needed), f".funignore excludes {needed}"
    assert (package / "index.py").is_file()
    for tree in ("handler", "schemas"):
        expected = {p.relative_to(source).as_posix() for p in (source / tree).rglob("*") if p.is_file()}
        assert expected and expected <= {p.relative_to(package).as_posix() for p in (package / tree).rglob("*")}, tree
    for left_out in ("tests/test_template.py", "tests", "bench/run.py", ".ci/run", ".git/HEAD",
                     "README.md", "template.yml", ".funignore"):
        assert ignored(rules, left_out), f".funignore ships {left_out}"


# The interpreter FC runs (CPython 3.10, x86_64 Linux), named as index.py names the one it runs on.
FC_INTERPRETER = "cpython-310-linux-x86_64"
HERE_INTERPRETER = f"{sys.implementation.cache_tag}-{sys.platform}-{os.uname().machine}"
VENDOR_PROBE = """
import os, index
print(json.dumps({"vendored": [p for p in sys.path if "vendor" in p.split(os.sep)], "rpds": sys.modules["rpds"].__file__}))
"""


def test_vendor_is_used_only_by_the_interpreter_it_was_built_for(tmp_path: Path) -> None:
    """`make vendor` builds binaries for FC's python3.10; a test or bench run on another Python importing them
    breaks. Dependencies built for another interpreter, or laid out directly in vendor/ (as builds before the
    interpreter's directory were), stay off sys.path; those built for this one come first, as on FC."""
    (source,) = {code_dir(fn) for fn in functions().values()}
    copy_shipped(source, tmp_path, vendor=False)
    other = FC_INTERPRETER if HERE_INTERPRETER != FC_INTERPRETER else "cpython-311-linux-x86_64"
    for poisoned in (tmp_path / "vendor" / other / "rpds", tmp_path / "vendor" / "rpds"):
        poisoned.mkdir(parents=True)
        (poisoned / "__init__.py").write_text("raise ImportError('rpds built for another interpreter')\n")
    found = run_in(tmp_path, VENDOR_PROBE)
    assert found["vendored"] == [] and "vendor" not in Path(found["rpds"]).parts, found

    ours = tmp_path / "vendor" / HERE_INTERPRETER / "rpds"
    shutil.copytree(Path(found["rpds"]).parent, ours)
    found = run_in(tmp_path, VENDOR_PROBE)
    assert found["vendored"] == [str(ours.parent)] and Path(found["rpds"]).parent == ours, found


def test_make_vendor_builds_for_the_runtime_the_templates_deploy() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"FC_VENDOR := vendor/{FC_INTERPRETER}\n" in makefile
    assert "--python-version 3.10 --platform manylinux2014_x86_64" in makefile and "--implementation cp" in makefile
    for name, fn in functions().items():
        assert fn["Properties"]["Runtime"] == "python3.10", name


# --- 3. environment and the OSS trigger --------------------------------------------------------------

class RecordingEnv(Mapping[str, str]):
    def __init__(self, values: Mapping[str, str]) -> None:
        self.values, self.read = dict(values), set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self.values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def test_every_variable_the_template_sets_is_read_by_the_code() -> None:
    for name, fn in functions().items():
        variables = {k: str(v) for k, v in fn["Properties"]["EnvironmentVariables"].items()}
        env = RecordingEnv(variables)
        settings = Settings.from_env(env)
        runtime = {"MALLOC_ARENA_MAX"}  # read by the C library, not by the code
        assert set(variables) - runtime <= env.read, f"{name} sets variables the code never reads: {set(variables) - env.read}"
        store = urlsplit(variables["MODEL_STORE"])
        assert (store.scheme, store.netloc) == ("oss", bucket_name()), variables["MODEL_STORE"]
        assert settings.store_url == variables["MODEL_STORE"]


WATCHED = {"registrations": REGISTRATIONS, "commits": CATALOG}  # OSS trigger: the prefix below the store's it watches
WRITTEN_BY_TRIGGERS = (RESULTS, DELIVERIES, DEAD_LETTERS)  # what those invocations write: never under a watched prefix


def test_oss_triggers_watch_registrations_and_the_log_and_never_what_they_write() -> None:
    triggers = [(name, trigger, ev["Properties"]) for name, fn in functions().items()
                for trigger, ev in fn["Events"].items() if ev["Type"] == "OSS"]
    assert sorted(t for _, t, _ in triggers) == sorted(WATCHED)
    for name, which, trigger in triggers:
        store = urlsplit(functions()[name]["Properties"]["EnvironmentVariables"]["MODEL_STORE"])
        root = check_prefix(store.path.strip("/") + "/")  # the store prefix OssStore uses
        assert trigger["BucketName"] == store.netloc == bucket_name()
        key = trigger["Filter"]["Key"]
        assert (key["Prefix"], key["Suffix"]) == (root + WATCHED[which], ".json")
        for written in WRITTEN_BY_TRIGGERS:
            assert not (root + written).startswith(key["Prefix"]), f"{written} would re-trigger the function"
        assert trigger["Events"] and all(e.startswith("oss:ObjectCreated:") for e in trigger["Events"])


def test_a_one_minute_timer_delivers_change_events_with_the_rules_document_beside_the_keys() -> None:
    (fn,) = [fn for fn in functions().values() if any(ev["Type"] == "Timer" for ev in fn["Events"].values())]
    timers = {ev["Properties"]["Payload"]: ev["Properties"] for ev in fn["Events"].values() if ev["Type"] == "Timer"}
    assert timers["deliveries"]["CronExpression"] == "@every 1m" and timers["deliveries"]["Enable"] is True
    settings = Settings.from_env({k: str(v) for k, v in fn["Properties"]["EnvironmentVariables"].items()})
    assert settings.notifications and settings.notifications.startswith(f"oss://{bucket_name()}/")


# --- 4. sizing, routing, permissions -----------------------------------------------------------------

def test_runtime_memory_and_connection_pool() -> None:
    for name, fn in functions().items():
        props = fn["Properties"]
        assert props["Runtime"] == "python3.10", name
        assert props["MemorySize"] >= 128 and props["MemorySize"] % 64 == 0, name
        pool = Settings.from_env({k: str(v) for k, v in props["EnvironmentVariables"].items()}).oss_pool_size
        assert pool >= 2 * props.get("InstanceConcurrency", 1), f"{name}: OSS_POOL_SIZE {pool} starves concurrent creates"


def _api_routes() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for r in TPL["Resources"].values() if r["Type"] == "Aliyun::Serverless::Api"
            for path, ops in r["Properties"]["DefinitionBody"].items() for method, op in ops.items()]


def test_the_api_has_every_route_of_the_route_table_and_the_console_and_nothing_else() -> None:
    from handler.api.console import FILES, PATH, answer
    from handler.api.routes import ROUTES

    declared = {(re.sub(r"\[(\w+)\]", r"{\1}", path), method.upper()): op for path, method, op in _api_routes()}
    console = {(PATH, "GET"), (PATH + "/{File}", "GET")}
    assert set(declared) == {(route.path, route.method) for route in ROUTES} | console
    # /console sends the browser to a file that the one-segment parameter route reaches.
    target = answer("GET", PATH, {}).headers["Location"]
    assert "/" not in target.removeprefix("console/") and target.removeprefix("console/") in FILES
    for route in ROUTES:
        op = declared[(route.path, route.method)]
        assert op["x-aliyun-apigateway-api-name"] == route.operation
        params = {p["apiParameterName"] for p in op.get("x-aliyun-apigateway-parameters", []) if p["location"] == "PATH"}
        assert params == set(route.parameters), route.operation


def test_api_routes_go_to_the_event_function_in_passthrough_mode() -> None:
    (svc_name,) = services()
    for path, method, op in _api_routes():
        target = re.fullmatch(r"acs:fc:::services/\$\{(.+)\.Arn\}/functions/\$\{(.+)\.Arn\}/", op["x-aliyun-apigateway-fc"]["arn"])
        assert target and target.group(1) == svc_name, op["x-aliyun-apigateway-fc"]["arn"]
        fn = functions()[target.group(2)]
        assert fn["Properties"]["Handler"] == "index.handler", "API Gateway events need the event handler"
        assert not any(ev["Type"] == "HTTP" for ev in fn["Events"].values())
        assert op["x-aliyun-apigateway-request-config"]["requestMode"] == "PASSTHROUGH", (path, method)


def test_service_policy_names_only_the_store_bucket() -> None:
    bucket = bucket_name()
    for name, svc in services().items():
        policies = resolve(svc["Properties"]["Policies"])
        assert isinstance(policies, list) and all(isinstance(p, dict) for p in policies), "managed policies grant too much"
        statements = [s for p in policies for s in p["Statement"]]
        resources = [r for s in statements for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])]
        assert resources, name
        for arn in resources:
            assert arn == f"acs:oss:*:*:{bucket}" or arn.startswith(f"acs:oss:*:*:{bucket}/"), arn
        actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
        assert actions <= {"oss:PutObject", "oss:GetObject", "oss:DeleteObject", "oss:ListObjects",
                           "oss:GetBucketVersioning"}, actions


EVENTS_ON = {"EventBusName": "model-registry-events", "EventsTopicName": "model-registry-events"}


def _statements(params: Mapping[str, str]) -> list[dict[str, Any]]:
    return [st for svc in services().values() for p in resolve(svc["Properties"]["Policies"], params) for st in p["Statement"]]


def test_the_event_bus_and_topic_are_optional_and_the_function_may_send_only_to_them() -> None:
    """Off by default (nothing created, no permission beyond the store); each named is created, and the function
    may PutEvents to that bus and publish to that topic, nothing else; the outputs are the rules' Targets."""
    conditional = {name: r["Condition"] for name, r in TPL["Resources"].items() if "Condition" in r}
    assert conditional == {"EventBus": "CreateEventBus", "ApprovedVersionsRule": "CreateEventBus",
                           "EventsTopic": "CreateEventsTopic"}
    assert not any(condition(c, PARAMS) for c in set(conditional.values()))
    assert {a for st in _statements(PARAMS) for a in st["Action"]} <= OBJECT_ACTIONS | BUCKET_ACTIONS

    on = {**PARAMS, **EVENTS_ON}
    assert all(condition(c, on) for c in set(conditional.values()))
    region, account = SAMPLE["ALIYUN::Region"], SAMPLE["ALIYUN::AccountId"]
    events = {st["Action"][0]: st["Resource"] for st in _statements(on) if not set(st["Action"]) <= OBJECT_ACTIONS | BUCKET_ACTIONS}
    assert events == {"eventbridge:PutEvents": f"acs:eventbridge:{region}:{account}:eventbus/{EVENTS_ON['EventBusName']}",
                      "mns:PublishMessage": f"acs:mns:{region}:{account}:/topics/{EVENTS_ON['EventsTopicName']}/messages"}
    resources = {name: resolve(TPL["Resources"][name]["Properties"], on) for name in conditional}
    assert resources["EventBus"]["EventBusName"] == resources["ApprovedVersionsRule"]["EventBusName"] == EVENTS_ON["EventBusName"]
    assert resources["EventsTopic"]["TopicName"] == EVENTS_ON["EventsTopicName"]

    # The outputs are Targets a NOTIFICATIONS document accepts, and the sample rule matches what such a rule sends.
    from handler.notify.events import TYPE_PREFIX
    from handler.notify.rules import parse_rules

    outputs = {name: json.loads(resolve(o["Value"], on)) for name, o in TPL["Outputs"].items() if o.get("Condition")}
    assert {name: TPL["Outputs"][name]["Condition"] for name in outputs} == {"EventBridgeTarget": "CreateEventBus",
                                                                             "MnsTarget": "CreateEventsTopic"}
    rules = parse_rules(json.dumps({"Rules": [{"Name": name, "Events": ["*"], "Workspaces": ["*"], "Target": target}
                                              for name, target in outputs.items()]}).encode())
    assert [r.target["Endpoint"] for r in rules] == [f"https://{account}.eventbridge.{region}.aliyuncs.com",
                                                     f"https://{account}.mns.{region}.aliyuncs.com"]
    sample = resources["ApprovedVersionsRule"]
    assert sample["Status"] == "DISABLE", "a sample: enabled by the deployer once its hook exists"
    assert sample["FilterPattern"]["source"] == [rules[0].target["Source"]]
    assert sample["FilterPattern"]["type"] == [TYPE_PREFIX + "ModelVersionApprovalStatusChanged"]


# --- 5. timeouts -------------------------------------------------------------------------------------

def test_api_waits_at_least_as_long_as_the_function_may_run() -> None:
    for path, method, op in _api_routes():
        arn = op["x-aliyun-apigateway-fc"]["arn"]
        fn = functions()[re.search(r"functions/\$\{(.+)\.Arn\}", arn).group(1)]
        assert op["x-aliyun-apigateway-fc"]["timeout"] >= fn["Properties"]["Timeout"] * 1000, (path, method)


def test_the_sdk_reaches_the_function_and_the_function_checks_its_signatures() -> None:
    """PAI's SDKs sign for the function, not for API Gateway's APP auth or FC's FUNCTION auth: both gateways
    must let requests through, and every function must know where its access keys are (else it refuses all)."""
    for path, method, op in _api_routes():
        assert op.get("x-aliyun-apigateway-auth-type") == "ANONYMOUS", (path, method)
    for name, fn in functions().items():
        for event in fn["Events"].values():
            if event["Type"] == "HTTP":
                assert event["Properties"]["AuthType"] == "ANONYMOUS", name
        keys = urlsplit(str(fn["Properties"]["EnvironmentVariables"]["ACCESS_KEYS"]))
        store = urlsplit(str(fn["Properties"]["EnvironmentVariables"]["MODEL_STORE"]))
        assert (keys.scheme, keys.netloc) == ("oss", bucket_name()) and keys.path.startswith(store.path + "/"), name


def test_the_template_outputs_the_api_domain_the_sdk_needs() -> None:
    """The SDK's endpoint is the API Gateway group's domain: the stack gives it, not a console hunt."""
    apis = {name for name, r in TPL["Resources"].items() if r["Type"] == "Aliyun::Serverless::Api"}
    domains = [o["Value"]["Fn::GetAtt"] for o in TPL["Outputs"].values() if isinstance(o["Value"], dict) and "Fn::GetAtt" in o["Value"]]
    assert [attribute for resource, attribute in domains if resource in apis] == ["SubDomain"], domains


# --- 6. s.yaml: the same deployment with Serverless Devs on FC 3.0 (components fc3 and ros) -----------------
# Read as data, its magic variables resolved the way `s` resolves them, for the forms s.yaml uses: env('NAME'[, 'default']),
# config('AccountID'), vars.PATH, resources.NAME.output.KEY, vars.A.concat(vars.B), and `COND ? A : B` on env(...) == '...'.

S_YAML = ROOT / "s.yaml"
S_ENV = {"REGISTRY_BUCKET": "example-model-registry"}
S_SWITCHED_ON = {**S_ENV, "REGISTRY_MNS_TOPIC": "pai-model-registrations", "REGISTRY_DOMAIN": "registry.example.com",
                 "REGISTRY_CERT": "/etc/certs/registry.pem", "REGISTRY_CERT_KEY": "/etc/certs/registry.key"}
S_ACCOUNT = "1234567890"
OBJECT_ACTIONS, BUCKET_ACTIONS = {"oss:PutObject", "oss:GetObject", "oss:DeleteObject"}, {"oss:ListObjects", "oss:GetBucketVersioning"}


class Magic:
    """The values `s` would give s.yaml's ${...} for an environment."""

    def __init__(self, spec: dict[str, Any], env: Mapping[str, str]) -> None:
        self.spec, self.env = spec, env

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(n) for n in node]
        if isinstance(node, dict):
            return {k: self.resolve(v) for k, v in node.items()}
        if not isinstance(node, str):
            return node
        whole = re.fullmatch(r"\$\{([^}]*)\}", node)
        if whole:  # a value that is one expression keeps the expression's type (a list, an object)
            return self.expression(whole.group(1))
        return re.sub(r"\$\{([^}]*)\}", lambda m: str(self.expression(m.group(1))), node)

    def expression(self, text: str) -> Any:
        ternary = re.fullmatch(r"(.+?)\s*==\s*'([^']*)'\s*\?\s*(.+?)\s*:\s*(.+)", text.strip())
        if ternary:
            return self.expression(ternary.group(3) if self.expression(ternary.group(1)) == ternary.group(2) else ternary.group(4))
        env = re.fullmatch(r"env\('(\w+)'(?:,\s*'([^']*)')?\)", text.strip())
        if env:
            if env.group(1) not in self.env and env.group(2) is None:
                raise LookupError(f"env('{env.group(1)}') not found")  # as `s` stops
            return self.env.get(env.group(1), env.group(2))
        if text.strip() == "config('AccountID')":
            return S_ACCOUNT
        concat = re.fullmatch(r"(vars\.[\w.]+)\.concat\((vars\.[\w.]+)\)", text.strip())
        if concat:
            return self.expression(concat.group(1)) + self.expression(concat.group(2))
        path = re.fullmatch(r"(vars|resources)((?:\.[\w-]+)+)", text.strip())
        assert path, f"this test cannot resolve ${{{text}}}"
        node: Any = self.spec[path.group(1)]
        parts = path.group(2).split(".")[1:]
        if path.group(1) == "resources":
            name, output, key = parts
            assert output == "output" and key in self.spec["resources"][name]["props"]["template"]["Outputs"], text
            return f"<{name}.{key}>"
        for part in parts:
            node = node[part]
        return self.resolve(node)


S_SPEC: dict[str, Any] = yaml.safe_load(S_YAML.read_text(encoding="utf-8"))


def s_resources(env: Mapping[str, str] = S_ENV) -> dict[str, dict[str, Any]]:
    """Every resource of s.yaml by name, with its component and resolved props."""
    magic = Magic(S_SPEC, env)
    return {name: {"component": r["component"], "props": magic.resolve(r["props"])} for name, r in S_SPEC["resources"].items()}


def s_function(env: Mapping[str, str] = S_ENV) -> dict[str, Any]:
    (fn,) = [r["props"] for r in s_resources(env).values() if r["component"] == "fc3"]
    return fn


def s_triggers(kind: str, env: Mapping[str, str] = S_ENV) -> list[dict[str, Any]]:
    return [t for t in s_function(env)["triggers"] if t["triggerType"] == kind]


def test_s_yaml_needs_a_bucket_and_names_the_rest() -> None:
    assert S_SPEC["edition"] == "3.0.0" and S_SPEC["access"]
    with pytest.raises(LookupError, match="REGISTRY_BUCKET"):
        s_resources({})
    fn = s_function()
    assert fn["runtime"] == "python3.10" and fn["region"] and fn["functionName"]
    assert (S_YAML.parent / fn["code"]).resolve() == ROOT


def test_s_yaml_ships_what_funignore_ships() -> None:
    """fc3 zips s.yaml's code directory less what .fcignore names; Funcraft read .funignore. Same files."""
    assert sorted(shipped(ROOT, ".fcignore")) == sorted(shipped(ROOT))
    rules = funignore_rules(ROOT, ".fcignore")
    for left_out in ("s.yaml", ".env", "template.yml", "tests", "README.md", ".git/HEAD"):
        assert ignored(rules, left_out), f".fcignore ships {left_out}"


def test_s_yaml_entry_points_resolve_in_shipped_code(package: Path) -> None:
    """FC 3.0 calls handler(event, context) for HTTP requests too, so one function serves every trigger."""
    fn = s_function()
    roles = {"Handler": fn["handler"], "Initializer": fn["instanceLifecycleConfig"]["initializer"]["handler"]}
    for spec in roles.values():
        assert ENTRY_POINT.fullmatch(spec), f"{spec!r} is not FC's documented file.function form"
    found = run_in(package, SIGNATURE_PROBE % json.dumps(sorted(set(roles.values()))))
    assert len(found[roles["Initializer"]]["params"]) == 1, found
    assert len(found[roles["Handler"]]["params"]) == 2 and found[roles["Handler"]]["params"] != ["environ", "start_response"], found
    assert 1 <= fn["instanceLifecycleConfig"]["initializer"]["timeout"] <= 300
    assert fn["memorySize"] >= 128 and fn["memorySize"] % 64 == 0


def test_s_yaml_environment_is_what_the_code_reads() -> None:
    fn = s_function()
    variables = {k: str(v) for k, v in fn["environmentVariables"].items()}
    env = RecordingEnv(variables)
    settings = Settings.from_env(env)
    runtime = {"MALLOC_ARENA_MAX"}  # read by the C library, not by the code
    assert set(variables) - runtime <= env.read, f"s.yaml sets variables the code never reads: {set(variables) - env.read}"
    assert {"MODEL_STORE", "OSS_ENDPOINT", "DEFAULT_WORKSPACE_ID", "ACCESS_KEYS"} <= set(variables)
    template_names = {name for f in functions().values() for name in f["Properties"]["EnvironmentVariables"]}
    assert set(variables) == template_names - {"OSS_POOL_SIZE"}, "FC 3.0 runs one request per instance: the default pool"
    store, keys = urlsplit(settings.store_url), urlsplit(str(settings.access_keys))
    assert (store.scheme, store.netloc) == ("oss", S_ENV["REGISTRY_BUCKET"]) and check_prefix(store.path.strip("/") + "/")
    assert (keys.scheme, keys.netloc) == ("oss", store.netloc) and keys.path.startswith(store.path + "/")
    assert settings.oss_endpoint == f"https://oss-{fn['region']}-internal.aliyuncs.com"


def test_s_yaml_role_reaches_only_the_store() -> None:
    """Object actions only under the store's prefix; listing and the versioning check on the bucket; nothing else."""
    resources = s_resources()
    fn = s_function()
    (role_stack,) = [name for name, r in resources.items() if r["component"] == "ros"]
    assert fn["role"] == f"<{role_stack}.RoleArn>"
    template = resources[role_stack]["props"]["template"]
    assert template["Outputs"]["RoleArn"]["Value"] == {"Fn::GetAtt": ["Role", "Arn"]}
    role = template["Resources"]["Role"]
    assert role["Type"] == "ALIYUN::RAM::Role"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": ["fc.aliyuncs.com"]} and trust["Action"] == "sts:AssumeRole"
    store = urlsplit(fn["environmentVariables"]["MODEL_STORE"])
    bucket, prefix = store.netloc, check_prefix(store.path.strip("/") + "/")
    statements = [s for p in s_role_policies(template) for s in p["PolicyDocument"]["Statement"]]
    granted: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])
        arns = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
        granted |= actions
        if actions & OBJECT_ACTIONS:
            assert all(arn == f"acs:oss:*:*:{bucket}/{prefix}*" for arn in arns), arns
        else:
            assert actions <= BUCKET_ACTIONS and arns == [f"acs:oss:*:*:{bucket}"], statement
    assert granted == OBJECT_ACTIONS | BUCKET_ACTIONS


def s_role_policies(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The role's policies as ROS makes them from the stack's parameters (their defaults) and conditions."""
    params = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
    policies: list[dict[str, Any]] = resolve(template["Resources"]["Role"]["Properties"]["Policies"], params,
                                             template.get("Conditions", {}))
    return policies


def test_s_yaml_event_bus_and_topic_are_behind_switches_and_the_role_reaches_only_them() -> None:
    switched = {**S_ENV, "REGISTRY_EVENT_BUS": "model-registry-events", "REGISTRY_EVENTS_TOPIC": "model-registry-events"}
    for env, on in ((S_ENV, False), (switched, True)):
        (stack,) = [r for r in s_resources(env).values() if r["component"] == "ros"]
        template = stack["props"]["template"]
        params = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
        created = {name for name, r in template["Resources"].items()
                   if "Condition" not in r or condition(r["Condition"], params, template["Conditions"])}
        statements = {st["Action"][0]: st["Resource"] for p in s_role_policies(template) for st in p["PolicyDocument"]["Statement"]
                      if not set(st["Action"]) <= OBJECT_ACTIONS | BUCKET_ACTIONS}
        if not on:
            assert created == {"Role"} and statements == {}
            continue
        region = s_function(env)["region"]
        assert created == {"Role", "EventBus", "ApprovedVersionsRule", "EventsTopic"}
        assert statements == {
            "eventbridge:PutEvents": [f"acs:eventbridge:{region}:{S_ACCOUNT}:eventbus/{env['REGISTRY_EVENT_BUS']}"],
            "mns:PublishMessage": [f"acs:mns:{region}:{S_ACCOUNT}:/topics/{env['REGISTRY_EVENTS_TOPIC']}/messages"]}
        sample = resolve(template["Resources"]["ApprovedVersionsRule"]["Properties"], params, template["Conditions"])
        (ros_sample,) = [r for n, r in TPL["Resources"].items() if n == "ApprovedVersionsRule"]
        assert sample["FilterPattern"] == ros_sample["Properties"]["FilterPattern"] and sample["Status"] == "DISABLE"


def test_s_yaml_http_trigger_and_custom_domain_reach_every_route() -> None:
    from handler.api.console import PATH
    from handler.api.routes import ROUTES

    (http,) = s_triggers("http")
    config = http["triggerConfig"]
    assert config["authType"] == "anonymous", "PAI's SDKs sign for the function, not for FC's own auth"
    wanted = {(route.path, route.method) for route in ROUTES} | {(PATH, "GET"), (PATH + "/{File}", "GET")}
    assert {method for _, method in wanted} <= set(config["methods"])

    assert s_function()["customDomain"] in ({}, None), "the custom domain is optional"
    domain = s_function(S_SWITCHED_ON)["customDomain"]
    assert domain["domainName"] == S_SWITCHED_ON["REGISTRY_DOMAIN"] and "HTTPS" in domain["protocol"].split(",")
    assert (domain["certConfig"]["certificate"], domain["certConfig"]["privateKey"]) == \
        (S_SWITCHED_ON["REGISTRY_CERT"], S_SWITCHED_ON["REGISTRY_CERT_KEY"])
    route = domain["route"]
    assert not route.get("methods"), "every method goes to the function, which answers 405 itself"
    for path, _ in wanted:
        concrete = re.sub(r"\{\w+\}", "x", path)
        assert fnmatch.fnmatchcase(concrete, route["path"]) and not concrete.startswith("/2016-08-15/"), (path, route)


def test_s_yaml_oss_triggers_watch_registrations_and_the_log_and_never_what_they_write() -> None:
    fn = s_function()
    triggers = s_triggers("oss")
    assert sorted(t["triggerName"] for t in triggers) == sorted(WATCHED)
    store = urlsplit(fn["environmentVariables"]["MODEL_STORE"])
    root = check_prefix(store.path.strip("/") + "/")
    for trigger in triggers:
        assert trigger["sourceArn"] == f"acs:oss:{fn['region']}:{S_ACCOUNT}:{store.netloc}"
        key = trigger["triggerConfig"]["filter"]["key"]
        assert (key["prefix"], key["suffix"]) == (root + WATCHED[trigger["triggerName"]], ".json")
        for written in WRITTEN_BY_TRIGGERS:
            assert not (root + written).startswith(key["prefix"]), f"{written} would re-trigger the function"
        events = trigger["triggerConfig"]["events"]
        assert events and all(e.startswith("oss:ObjectCreated:") for e in events)


def test_s_yaml_timers_sweep_daily_and_deliver_every_minute_and_async_retries_are_bounded() -> None:
    timers = {t["triggerConfig"]["payload"]: t["triggerConfig"] for t in s_triggers("timer")}
    assert timers["sweep"]["cronExpression"] == "@every 24h" and timers["sweep"]["enable"] is True
    assert timers["deliveries"]["cronExpression"] == "@every 1m" and timers["deliveries"]["enable"] is True
    assert s_function()["environmentVariables"]["NOTIFICATIONS"].startswith("oss://")
    assert s_function()["asyncInvokeConfig"]["maxAsyncRetryAttempts"] == 3


def test_s_yaml_mns_topic_trigger_is_behind_a_switch() -> None:
    assert s_triggers("mns_topic") == [], "no topic is required"
    fn = s_function(S_SWITCHED_ON)
    (topic,) = [t for t in fn["triggers"] if t["triggerType"] == "mns_topic"]
    assert topic["sourceArn"] == f"acs:mns:{fn['region']}:{S_ACCOUNT}:/topics/{S_SWITCHED_ON['REGISTRY_MNS_TOPIC']}"
    assert topic["triggerConfig"]["notifyContentFormat"] == "JSON"
    names = [t["triggerName"] for t in fn["triggers"]]
    assert len(names) == len(set(names)) and {t["triggerType"] for t in fn["triggers"]} == {"http", "oss", "timer", "mns_topic"}
