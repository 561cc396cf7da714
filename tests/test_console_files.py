"""The console's files as every entry point serves them: API Gateway events, FC's HTTP trigger (WSGI) and
the local server; public even where the API requires signatures, never anything but the console's own files."""
from __future__ import annotations

import base64
import gzip
import http.client
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from handler.api import console
from handler.api.app import App
from handler.api.console import fields
from handler.config import Settings
from handler.entry import fc
from handler.entry.compose import build_app
from handler.rules.validation import load_schemas
from tests.conftest import FakeContext, invoke, local_api
from tests.test_auth import signed_app

CONSOLE_DIR = Path(console.__file__).parent
REPO = CONSOLE_DIR.parents[2]
REGENERATE = f"handler/api/console/fields.js is out of date: run `{fields.COMMAND}` and commit it"


def gateway(path: str, method: str = "GET", headers: dict[str, str] | None = None) -> dict[str, Any]:
    return invoke({"path": path, "httpMethod": method, "headers": headers or {}, "queryParameters": {}, "body": "",
                   "isBase64Encoded": False})


def body_of(answer: dict[str, Any]) -> bytes:
    return base64.b64decode(answer["body"]) if answer["isBase64Encoded"] else answer["body"].encode()


def test_api_gateway_serves_the_page_and_its_files_with_their_types_and_policy(memory_app: App) -> None:
    page = gateway("/console/")
    assert page["statusCode"] == 200 and body_of(page) == (CONSOLE_DIR / "index.html").read_bytes()
    assert page["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert page["headers"]["Content-Security-Policy"] == console.POLICY
    assert page["headers"]["X-Frame-Options"] == "DENY" and page["headers"]["X-Content-Type-Options"] == "nosniff"
    for name, media_type in [("console.js", "text/javascript"), ("console.css", "text/css"), ("icon.svg", "image/svg+xml"),
                             ("index.html", "text/html")]:
        answer = gateway(f"/console/{name}")
        assert answer["statusCode"] == 200 and answer["headers"]["Content-Type"].startswith(media_type), name
        assert body_of(answer) == (CONSOLE_DIR / name).read_bytes()
    # Every file the page names is served.
    html = (CONSOLE_DIR / "index.html").read_text()
    scripts = "".join((CONSOLE_DIR / name).read_text() for name in console.FILES if name.endswith(".js"))
    named = set(re.findall(r'(?:src|href)="([\w.-]+)"', html)) | set(re.findall(r'from "\./([\w.-]+)"', scripts))
    assert named and named <= console.FILES


def test_console_redirects_to_its_page_relatively_so_a_path_prefix_holds(memory_app: App) -> None:
    answer = gateway("/console")
    assert answer["statusCode"] == 302 and answer["headers"]["Location"] == "console/index.html"


@pytest.mark.parametrize("path", ["/console/nope.js", "/console/__init__.py", "/console/..%2F__init__.py", "/console/a/b",
                                  "/console/%2e%2e/app.py", "/console/index.html/"])
def test_nothing_but_the_console_files_is_served(memory_app: App, path: str) -> None:
    answer = gateway(path)
    assert answer["statusCode"] == 404 and json.loads(answer["body"])["Code"] == "NotFound"


def test_console_files_are_read_only(memory_app: App) -> None:
    answer = gateway("/console/", "POST")
    assert answer["statusCode"] == 405 and answer["headers"]["Allow"] == "GET, HEAD"


def test_compressed_for_browsers_that_accept_it_and_revalidated_by_etag(memory_app: App) -> None:
    plain = gateway("/console/console.js")
    packed = gateway("/console/console.js", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert packed["headers"]["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain["headers"]
    assert gzip.decompress(body_of(packed)) == body_of(plain) and len(body_of(packed)) < len(body_of(plain))
    etag = plain["headers"]["ETag"]
    assert packed["headers"]["ETag"] != etag  # two representations, two tags
    again = gateway("/console/console.js", headers={"If-None-Match": etag})
    assert again["statusCode"] == 304 and body_of(again) == b""
    assert gateway("/console/console.js", headers={"If-None-Match": '"other"'})["statusCode"] == 200
    assert gateway("/console/console.js", headers={"If-None-Match": "*"})["statusCode"] == 304
    for refused in ("gzip;q=0, identity", "identity", "br", "*;q=0", "gzip;q=0, *"):
        assert "Content-Encoding" not in gateway("/console/console.js", headers={"Accept-Encoding": refused})["headers"], refused
    for accepted in ("gzip;q=0.5", "*", "GZIP"):
        assert gateway("/console/console.js", headers={"Accept-Encoding": accepted})["headers"]["Content-Encoding"] == "gzip", accepted


def test_the_console_is_public_where_the_api_requires_signatures(tmp_path: Path) -> None:
    fc.set_app(signed_app(tmp_path))
    try:
        assert gateway("/console/")["statusCode"] == 200
        assert gateway("/api/v1/models")["statusCode"] == 401
    finally:
        fc.set_app(None)


def test_fc_http_trigger_serves_the_console_with_one_content_type(memory_app: App) -> None:
    seen: dict[str, Any] = {}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/console/index.html", "wsgi.input": io.BytesIO(b""), "fc.context": FakeContext()}
    chunks = fc.wsgi_handler(environ, lambda status, headers: seen.update(status=status, headers=headers))
    names = [name.lower() for name, _ in seen["headers"]]
    assert seen["status"].startswith("200") and names.count("content-type") == 1
    assert dict(seen["headers"])["Content-Type"] == "text/html; charset=utf-8"
    assert b"".join(chunks) == (CONSOLE_DIR / "index.html").read_bytes()
    assert dict(seen["headers"])["Content-Length"] == str(len(b"".join(chunks)))
    environ.update(REQUEST_METHOD="HEAD", **{"wsgi.input": io.BytesIO(b"")})
    head = fc.wsgi_handler(environ, lambda status, headers: seen.update(status=status, headers=headers))
    assert b"".join(head) == b"" and dict(seen["headers"])["Content-Length"] == str(len(b"".join(chunks)))  # no body
    for refused in ({"QUERY_STRING": "Query=%ff"}, {"CONTENT_LENGTH": "5", "wsgi.input": io.BytesIO(b"ab")}):
        environ = {"REQUEST_METHOD": "HEAD", "PATH_INFO": "/api/v1/models", "wsgi.input": io.BytesIO(b""), **refused}
        assert b"".join(fc.wsgi_handler(environ, lambda status, headers: seen.update(status=status))) == b""
        assert seen["status"].startswith("400")


def test_the_local_server_serves_head_and_get(memory_app: App) -> None:
    with local_api() as server:
        host, port = server.server_address[:2]
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request("HEAD", "/console/")
        head = connection.getresponse()
        assert head.status == 200 and head.read() == b"" and head.getheader("Content-Security-Policy") == console.POLICY
        connection.request("GET", "/console/")
        assert connection.getresponse().read() == (CONSOLE_DIR / "index.html").read_bytes()


def test_api_requests_do_not_load_the_console() -> None:
    """The console costs an API cold start nothing: its module is imported on its first request only."""
    code = ("import json, sys; from handler.entry import fc; from tests.conftest import invoke; "
            "invoke({'path': '/api/v1/models', 'httpMethod': 'GET', 'headers': {}, 'queryParameters': {}, 'body': ''}); "
            "print(json.dumps('handler.api.console' in sys.modules))")
    env = {"MODEL_STORE": "memory://", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "false", out.stderr[-2000:]


def test_the_console_is_small_and_fetches_nothing_from_elsewhere() -> None:
    compressed = sum(len(console._file(name).compressed) for name in console.FILES)
    assert compressed < 40_000, f"the console's files are {compressed} bytes compressed"
    for name in console.FILES:
        text = (CONSOLE_DIR / name).read_text()
        assert not re.search(r"""(import|from|url\(|src=|href=)\s*["']?(https?:)?//""", text), name
        assert "@import" not in text, name


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.2:9200"},  # a page elsewhere posting (even with no-cors and no Content-Type)
    {"Origin": "null"},  # a sandboxed page or a file
    {"Origin": "https://127.0.0.1:{port}"},  # the same name and port over another scheme is another origin
    {"Origin": "ftp://127.0.0.1:{port}"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Host": "attacker.example:9000"},  # DNS rebinding: a site's name pointed at 127.0.0.1
    {"Host": "attacker.example@127.0.0.1:9000"},
    {"Sec-Fetch-Site": " cross-site "},
])
def test_the_unsigned_local_server_refuses_other_origins_and_host_names(headers: dict[str, str]) -> None:
    from handler.entry.local import same_origin_only

    app = build_app(Settings.from_env({"MODEL_STORE": "memory://"}))
    app.hooks.append(same_origin_only(loopback=True))
    fc.set_app(app)
    try:
        with local_api() as server:
            host, port = server.server_address[:2]
            connection = http.client.HTTPConnection(host, port, timeout=10)
            sent = {"Host": f"{host}:{port}", **{name: value.replace("{port}", str(port)) for name, value in headers.items()}}
            connection.request("POST", "/api/v1/models", body=b'{"ModelName": "csrf"}', headers=sent)
            answer = connection.getresponse()
            assert answer.status == 403 and json.loads(answer.read())["Code"] == "Forbidden.CrossOrigin"
            # Its own page, curl and the SDKs (no Origin, a loopback Host) are answered.
            connection.request("POST", "/api/v1/models", body=b'{"ModelName": "own"}',
                               headers={"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}",
                                        "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"})
            own = connection.getresponse()
            assert own.status == 200, own.read()
            own.read()
            connection.request("GET", "/api/v1/models", headers={"Host": f"127.0.0.1:{port}"})
            assert [m["ModelName"] for m in json.loads(connection.getresponse().read())["Models"]] == ["own"]  # nothing else written
    finally:
        fc.set_app(None)


def test_every_module_is_preloaded_so_the_page_loads_in_one_round() -> None:
    html = (CONSOLE_DIR / "index.html").read_text()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="([\w.-]+)">', html))
    assert preloaded == {name for name in console.FILES if name.endswith(".js")} - {"console.js"}


def module_imports() -> dict[str, set[str]]:
    """Each console module and the console modules it imports (static `import ... from`, bare and dynamic imports)."""
    found = re.compile(r'\b(?:from|import)\s*\(?\s*["\']\./([\w.-]+\.js)["\']')
    return {path.name: set(found.findall(path.read_text())) for path in CONSOLE_DIR.glob("*.js")}


def test_the_console_modules_import_in_layers_without_a_circle() -> None:
    graph = module_imports()
    assert graph["console.js"] and all(named <= set(graph) for named in graph.values())
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("the console's modules import each other in a circle: " + " -> ".join([*trail[trail.index(name):], name]))
        if name not in done:
            for named in sorted(graph[name]):
                visit(named, [*trail, name])
            done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not any("console.js" in named for named in graph.values()), "a module imports the shell, console.js"


def test_committed_fields_module_is_the_generated_one() -> None:
    assert (CONSOLE_DIR / "fields.js").read_text("utf-8") == fields.render(), REGENERATE


def test_fields_generator_command_prints_the_module() -> None:
    out = subprocess.run([sys.executable, "-m", "handler.api.console.fields"], cwd=REPO, capture_output=True, check=True, timeout=60)
    assert out.stdout.decode("utf-8") == fields.render()
    assert out.stderr == b""


def test_the_edit_form_places_every_field_update_model_accepts() -> None:
    """The edit form offers what fields.js lists; each of them has its label and kind in the form's layout, rather than
    showing as plain text under its name (tests/test_console.py checks the form a browser shows)."""
    script = (CONSOLE_DIR / "model-page.js").read_text()
    layout = re.search(r"^const EDIT_FORM = \[$(.*?)^\];$", script, re.MULTILINE | re.DOTALL)
    assert layout, "model-page.js has no EDIT_FORM"
    placed = set(re.findall(r'\["([A-Za-z]+)", "', layout.group(1)))
    missing = set(load_schemas()["update-model-request.json"]["properties"]) - placed
    assert not missing, f"EDIT_FORM in model-page.js does not place {sorted(missing)}"
    assert 'from "./fields.js"' in script
