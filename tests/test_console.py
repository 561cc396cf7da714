"""The web console in a real browser: headless Chromium (Debian's package) drives `python -m handler serve`
through what a user does: find, inspect, register, edit, label, version, approve and delete models, unsigned
and signed, with the API's errors next to their fields, at desktop and phone width, from the keyboard.

Screenshots go to $CONSOLE_SCREENSHOTS (default .screenshots/). Without Chromium the tests are skipped with
the reason, except in CI (CI=true), where they fail: .ci/run installs it.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from handler.rules.validation import load_schemas
from testing.browser import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS") or ROOT / ".screenshots")
ADMIN = {"AccessKeyId": "console-admin", "AccessKeySecret": "console-admin-secret-0123456789", "Workspaces": ["*"], "Actions": ["*"]}
READER = {"AccessKeyId": "console-reader", "AccessKeySecret": "console-reader-secret-0123456789", "Workspaces": ["*"],
          "Actions": ["Get*", "List*"]}

if CHROMIUM is None:
    reason = "Debian's chromium is not installed (apt-get install chromium): the console's browser tests need it"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        raise RuntimeError(reason + "; .ci/run installs it")
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright  # noqa: E402

expect.set_options(timeout=15_000)


@dataclass
class Served:
    """A `python -m handler serve` process: its API root and the console URL its startup line printed."""

    api: str
    console: str
    store: Path
    log: Path

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api + path, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def create(self, **fields: Any) -> str:
        status, answer = self.call("POST", "/api/v1/models", fields)
        assert status == 200, answer
        return str(answer["ModelId"])


@contextlib.contextmanager
def serve(tmp_path: Path, keys: list[dict[str, Any]] | None = None) -> Iterator[Served]:
    env = {name: value for name, value in os.environ.items() if name not in ("ACCESS_KEYS", "FC_FUNCTION_NAME", "MODEL_STORE")}
    store = tmp_path / "store"
    env["MODEL_STORE"] = f"file://{store}"
    if keys is not None:
        (tmp_path / "keys.json").write_text(json.dumps({"AccessKeys": keys}))
        env["ACCESS_KEYS"] = f"file://{tmp_path / 'keys.json'}"
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "handler", "serve", "--port", "0"], cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"listening on (\S+) .*; console: (\S+)", log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield Served(found.group(1), found.group(2), store, log)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve(tmp_path) as registry:
        yield registry


def open_page(browser: Browser, width: int = 1280, height: int = 900) -> Page:
    """A page in a context of its own (a fresh tab), which records Content-Security-Policy violations and script errors."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US", timezone_id="UTC")
    context.add_init_script("window.__violations = []; document.addEventListener('securitypolicyviolation',"
                            " (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));")
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.errors.append(str(error)))  # type: ignore[attr-defined]
    return page


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    tab = open_page(browser)
    yield tab
    if not tab.is_closed():
        shot(tab, f"{request.node.name}-last")
        violations = tab.evaluate("window.__violations")
        errors = tab.errors  # type: ignore[attr-defined]
        tab.context.close()
        assert violations == [], "the page broke its Content-Security-Policy"
        assert errors == [], "the page's scripts failed"


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"), full_page=True)


def accept_next_dialog(page: Page) -> None:
    page.once("dialog", lambda dialog: dialog.accept())


def field(page: Page, label: str) -> Any:
    return page.get_by_label(label, exact=True)


def error_of(page: Page, label: str) -> Any:
    """The error shown for a field (found when asserted on, so that a page shown again is the one looked at)."""
    return page.locator(".field").filter(has=page.get_by_label(label, exact=True)).locator(".field-error")


# --- the journeys --------------------------------------------------------------------------------------

def test_the_startup_line_prints_the_console_and_an_empty_registry_says_how_to_start(served: Served, page: Page) -> None:
    assert served.console.endswith("/console/")
    page.goto(served.console)
    expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
    expect(page.get_by_text("No models yet.")).to_be_visible()
    expect(page.locator(".empty").get_by_role("link", name="Register a model")).to_be_visible()
    expect(page.locator("#key-state")).to_have_text("Not signed")
    shot(page, "empty")


def test_register_inspect_edit_label_version_approve_and_delete_a_model(served: Served, page: Page) -> None:
    page.goto(served.console)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Register a model").click()
    field(page, "Name *").fill("sentiment-bert")
    field(page, "Description").fill("Classifies reviews")
    field(page, "Domain").fill("nlp")
    field(page, "Task").fill("text-classification")
    field(page, "Parameters (millions)").fill("110")
    field(page, "Labels").fill("team=nlp\nstage=beta")
    field(page, "Extra information").fill('{"dataset": {"name": "imdb", "rows": 50000}, "license": "apache-2.0"}')
    shot(page, "register-form")
    page.get_by_role("button", name="Register model").click()

    expect(page.get_by_role("heading", name="sentiment-bert", level=1)).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Model registered.")).to_be_visible()
    model_id = page.url.rsplit("/", 1)[-1]
    status, model = served.call("GET", f"/api/v1/models/{model_id}")
    assert status == 200
    assert (model["ModelName"], model["Domain"], model["Task"]) == ("sentiment-bert", "nlp", "text-classification")
    assert model["ParameterSize"] == 110
    assert model["Labels"] == [{"Key": "team", "Value": "nlp"}, {"Key": "stage", "Value": "beta"}]
    assert model["ExtraInfo"] == {"dataset": {"name": "imdb", "rows": 50000}, "license": "apache-2.0"}
    fields = page.locator("dl.fields").first
    expect(fields).to_contain_text("Classifies reviews")
    expect(fields).to_contain_text(model_id)
    extra = page.locator("section", has=page.get_by_role("heading", name="Extra information"))
    expect(extra.locator("table.kv th", has_text="dataset")).to_be_visible()
    expect(extra.locator("table.kv td", has_text="imdb").last).to_be_visible()  # nested, as a table: not raw JSON
    expect(extra.locator("pre")).to_have_count(0)

    page.get_by_role("link", name="Edit").click()
    field(page, "Description").fill("Classifies product reviews")
    field(page, "Domain").fill("")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status").filter(has_text="Changes saved.")).to_be_visible()
    expect(fields).to_contain_text("Classifies product reviews")
    model = served.call("GET", f"/api/v1/models/{model_id}")[1]
    assert model["ModelDescription"] == "Classifies product reviews" and model.get("Domain", "") == ""
    assert model["ParameterSize"] == 110 and model["ExtraInfo"]["license"] == "apache-2.0"  # untouched fields kept

    labels = page.locator("section", has=page.get_by_role("heading", name="Labels"))
    labels.get_by_label("Key", exact=True).fill("owner")
    labels.get_by_label("Value", exact=True).fill("alice")
    labels.get_by_role("button", name="Add label").click()
    expect(labels.locator("li.label", has_text="owner")).to_be_visible()
    labels.get_by_role("button", name="Remove label stage").click()
    expect(labels.locator("li.label", has_text="stage")).to_have_count(0)
    assert served.call("GET", f"/api/v1/models/{model_id}")[1]["Labels"] == [
        {"Key": "team", "Value": "nlp"}, {"Key": "owner", "Value": "alice"}]

    expect(page.get_by_text("No versions yet.")).to_be_visible()
    page.get_by_role("link", name="Add a version").first.click()
    field(page, "URI *").fill("oss://models-bucket.oss-cn-hangzhou.aliyuncs.com/sentiment/1/")
    field(page, "Format").fill("SavedModel")
    field(page, "Framework").fill("TensorFlow")
    field(page, "Metrics").fill('{"accuracy": 0.93, "f1": {"macro": 0.91}}')
    field(page, "Labels").fill("run=42")
    field(page, "Source ID").fill("job-7")
    field(page, "Inference spec").fill('{"processor": "tensorflow_cpu_2.8"}')
    shot(page, "version-form")
    page.get_by_role("button", name="Add version").click()
    expect(page.get_by_role("status").filter(has_text="Version 0.1.0 added.")).to_be_visible()
    row = page.locator("table.versions tbody tr:not(.version-details)", has_text="0.1.0")
    expect(row).to_contain_text("SavedModel")
    expect(row).to_contain_text("TensorFlow")
    expect(row.locator("td[data-title=Approval]")).to_have_text("Pending")
    expect(row.locator("td[data-title=Metrics] table.metrics tr", has_text="accuracy")).to_contain_text("0.93")
    expect(row.locator("td[data-title=Metrics] table.metrics tr", has_text="f1.macro")).to_contain_text("0.91")
    expect(page.locator("dl.fields").first).to_contain_text("0.1.0")  # the latest version
    shot(page, "model")

    # Everything else the version holds, and its labels, in its details.
    details = page.locator("tr.version-details")
    expect(details).to_be_hidden()
    row.get_by_role("button", name="Details of version 0.1.0").click()
    expect(details).to_contain_text("job-7")
    expect(details).to_contain_text("tensorflow_cpu_2.8")
    details.get_by_label("Key", exact=True).fill("stage")
    details.get_by_label("Value", exact=True).fill("candidate")
    details.get_by_role("button", name="Add label").click()
    expect(page.get_by_role("status").filter(has_text="Label stage added.")).to_be_visible()
    expect(details).to_be_visible()  # still open after the page shows the change
    expect(details.get_by_label("Key", exact=True)).to_be_focused()  # the user is where they were, not at the top
    details.get_by_role("button", name="Remove label run").click()
    expect(details.locator("li.label")).to_have_text(["stagecandidate×"])
    assert served.call("GET", f"/api/v1/models/{model_id}/versions/0.1.0")[1]["Labels"] == [{"Key": "stage", "Value": "candidate"}]

    row.get_by_role("button", name="Approve version 0.1.0").click()
    expect(row.locator("td[data-title=Approval]")).to_have_text("Approved")
    expect(row.get_by_role("button", name="Details of version 0.1.0")).to_be_focused()
    assert served.call("GET", f"/api/v1/models/{model_id}/versions/0.1.0")[1]["ApprovalStatus"] == "Approved"
    # Approved is final: the page offers neither Approve nor Reject any more, and the API refuses a change.
    expect(row.get_by_role("button", name="Approve version 0.1.0")).to_have_count(0)
    expect(row.get_by_role("button", name="Reject version 0.1.0")).to_have_count(0)
    status, answer = served.call("PUT", f"/api/v1/models/{model_id}/versions/0.1.0", {"ApprovalStatus": "Rejected"})
    assert (status, answer["Code"]) == (409, "ApprovalStatusFinal")

    accept_next_dialog(page)
    row.get_by_role("button", name="Delete version 0.1.0").click()
    expect(page.get_by_text("No versions yet.")).to_be_visible()
    assert served.call("GET", f"/api/v1/models/{model_id}/versions/0.1.0")[0] == 404

    accept_next_dialog(page)
    page.get_by_role("button", name="Delete model").click()
    expect(page.get_by_role("status").filter(has_text="Model sentiment-bert deleted.")).to_be_visible()
    expect(page.get_by_text("No models yet.")).to_be_visible()
    assert served.call("GET", f"/api/v1/models/{model_id}")[0] == 404


def test_a_declined_confirmation_deletes_nothing(served: Served, page: Page) -> None:
    model_id = served.create(ModelName="keep-me")
    page.goto(f"{served.console}#/models/{model_id}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete model").click()
    expect(page.get_by_role("heading", name="keep-me", level=1)).to_be_visible()
    assert served.call("GET", f"/api/v1/models/{model_id}")[0] == 200


def test_search_filters_sort_and_pages(served: Served, page: Page) -> None:
    for i in range(23):
        served.create(ModelName=f"vision-{i:02d}", Domain="cv", Task="detection", Tag=[{"Key": "team", "Value": "eyes"}])
    for i in range(4):
        served.create(ModelName=f"speech-{i}", Domain="audio", Task="asr", Tag=[{"Key": "team", "Value": "ears"}])
    page.goto(served.console)
    expect(page.locator(".count")).to_have_text("27 models")
    expect(page.locator("table.models tbody tr")).to_have_count(20)
    expect(page.get_by_role("navigation", name="Pages")).to_contain_text("Page 1 of 2")
    page.get_by_role("link", name="Next →").click()
    expect(page.locator("table.models tbody tr")).to_have_count(7)
    expect(page.get_by_role("navigation", name="Pages")).to_contain_text("Page 2 of 2")

    field(page, "Search").fill("SPEECH")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".count")).to_have_text("4 models")  # a new search starts on page 1
    field(page, "Sort").focus()
    field(page, "Sort").select_option(label="Name, Z to A")  # applies at once
    expect(page.locator("a.model-link")).to_have_text(["speech-3", "speech-2", "speech-1", "speech-0"])
    expect(field(page, "Sort")).to_be_focused()
    assert "Query=SPEECH" in page.url  # the search is in the address: shareable, and Back returns to it

    field(page, "Search").fill("")
    field(page, "Domain").fill("cv")
    field(page, "Label").fill("eyes")
    field(page, "Sort").select_option(label="Name, A to Z")
    field(page, "Per page").select_option("10")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".count")).to_have_text("23 models")
    expect(page.locator("a.model-link").first).to_have_text("vision-00")
    expect(page.locator("table.models tbody tr")).to_have_count(10)
    expect(page.locator("table.models tbody tr").first.locator("td[data-title='Latest version']")).to_have_text("none")
    expect(page.locator("table.models tbody tr").first.locator("li.label")).to_contain_text("team")

    field(page, "Workspace").fill("bad ws!")
    page.get_by_role("button", name="Search").click()
    expect(error_of(page, "Workspace")).to_contain_text("WorkspaceId must")  # the API's refusal, next to the filter
    field(page, "Workspace").fill("")
    field(page, "Task").fill("asr")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No models match these filters.")).to_be_visible()
    page.get_by_role("link", name="Clear the filters").click()
    expect(page.locator(".count")).to_have_text("27 models")
    page.go_back()
    expect(page.get_by_text("No models match these filters.")).to_be_visible()


def test_the_apis_errors_show_next_to_the_field_they_name_and_nothing_is_written(served: Served, page: Page) -> None:
    served.create(ModelName="taken", Domain="cv")  # the same name with other fields: a conflict, not a retry
    posts: list[Request] = []
    page.on("request", lambda request: posts.append(request) if request.method == "POST" else None)
    page.goto(f"{served.console}#/new")
    page.get_by_role("button", name="Register model").click()  # no name
    expect(error_of(page, "Name *")).to_contain_text("ModelName is required")
    expect(field(page, "Name *")).to_have_attribute("aria-invalid", "true")
    described = (field(page, "Name *").get_attribute("aria-describedby") or "").split()
    assert error_of(page, "Name *").get_attribute("id") in described  # a screen reader reads it with the field
    expect(field(page, "Name *")).to_be_focused()

    field(page, "Name *").fill("taken")
    page.get_by_role("button", name="Register model").click()
    expect(error_of(page, "Name *")).to_contain_text("a model named 'taken' already exists")

    field(page, "Name *").fill("fresh")
    field(page, "Order number").fill("1.5")
    field(page, "Labels").fill("team=nlp\n=empty-key")
    page.get_by_role("button", name="Register model").click()
    expect(error_of(page, "Order number")).to_contain_text("OrderNumber must be an integer")
    expect(error_of(page, "Labels")).to_contain_text("Tag[1].Key must be at least 1 character")
    expect(error_of(page, "Name *")).to_be_hidden()  # the earlier error is gone

    field(page, "Order number").fill("7")
    field(page, "Labels").fill("team=nlp")
    field(page, "Extra information").fill("{not json")
    sent = len(posts)
    page.get_by_role("button", name="Register model").click()
    expect(error_of(page, "Extra information")).to_contain_text("ExtraInfo is not valid JSON")
    assert len(posts) == sent  # told in the browser: nothing sent
    field(page, "Extra information").fill("[1, 2]")
    page.get_by_role("button", name="Register model").click()
    expect(error_of(page, "Extra information")).to_contain_text("ExtraInfo must be an object")
    shot(page, "register-errors")
    assert served.call("GET", "/api/v1/models")[1]["TotalCount"] == 1  # only "taken": every refused attempt wrote nothing

    model_id = served.call("GET", "/api/v1/models")[1]["Models"][0]["ModelId"]
    page.goto(f"{served.console}#/models/{model_id}/versions/new")
    field(page, "URI *").fill("ftp://nowhere/model")
    field(page, "Version").fill("01.0")
    page.get_by_role("button", name="Add version").click()
    expect(error_of(page, "URI *")).to_contain_text("Uri must be")
    expect(error_of(page, "Version")).to_contain_text("VersionName")
    assert served.call("GET", f"/api/v1/models/{model_id}/versions")[1]["TotalCount"] == 0


def test_model_fields_are_shown_as_text_never_as_markup(served: Served, page: Page) -> None:
    hostile = '<img src=x onerror="window.__xss=1">'
    model_id = served.create(ModelName=hostile, ModelDescription="<script>window.__xss=2</script>",
                             ModelDoc="javascript:window.__xss=3", Tag=[{"Key": "<b>bold</b>", "Value": "<i>x</i>"}],
                             ExtraInfo={"<svg onload=window.__xss=4>": "<iframe src=javascript:window.__xss=5>"})
    version = {"Uri": "https://example.com/<img/src=y/onerror=window.__xss=6>",
               "Metrics": {"<b>m</b>": "<img src=z onerror=window.__xss=7>"}}
    assert served.call("POST", f"/api/v1/models/{model_id}/versions", version)[0] == 200
    page.goto(served.console)
    expect(page.locator("a.model-link")).to_have_text(hostile)
    expect(page.locator("li.label").first).to_contain_text("<b>bold</b>")
    page.locator("a.model-link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(hostile)
    expect(page.locator("dl.fields").first).to_contain_text("<script>window.__xss=2</script>")
    expect(page.locator("dl.fields").first).to_contain_text("javascript:window.__xss=3")
    expect(page.locator("dl.fields").first.locator("a[href^='javascript']")).to_have_count(0)  # not a link: only http(s) are
    expect(page.locator("table.kv th").first).to_have_text("<svg onload=window.__xss=4>")
    expect(page.locator("td[data-title=Metrics]")).to_contain_text("<img src=z onerror=window.__xss=7>")
    shot(page, "hostile-names")
    # Nothing that came from the registry became an element: only the page's own icon is an image.
    assert page.evaluate("document.querySelectorAll('img, script:not([src]), iframe, svg, b, i').length") == 1
    assert page.evaluate("window.__xss") is None
    assert page.title().startswith(hostile)  # the title is text too


def test_the_console_is_served_with_a_policy_that_runs_only_its_own_files(served: Served) -> None:
    with urllib.request.urlopen(served.console, timeout=10) as response:
        policy = response.headers["Content-Security-Policy"]
        html = response.read().decode()
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == directives["style-src"] == directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert "unsafe" not in policy and "http" not in policy
    # Nothing inline that the policy would have to allow, and nothing from another origin.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and "<style" not in html and not re.search(r"\son\w+=", html)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    for path in (ROOT / "handler" / "api" / "console").glob("*.js"):
        script = path.read_text()
        assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "eval(" not in script, path.name


def test_signed_session_with_a_key_kept_in_the_tab_and_never_sent(browser: Browser, tmp_path: Path) -> None:
    page = open_page(browser)
    sent: list[str] = []
    page.on("request", lambda request: sent.append(f"{request.url}\n{request.all_headers()}\n{request.post_data or ''}"))
    with serve(tmp_path, [ADMIN, READER]) as registry:
        page.goto(registry.console)
        expect(page.locator("main .alert")).to_contain_text("MissingAuthorization")
        page.get_by_role("button", name="Enter an access key").click()

        def sign_in(key_id: str, secret: str) -> None:
            dialog = page.get_by_role("dialog")
            dialog.get_by_label("Access key ID").fill(key_id)
            dialog.get_by_label("Access key secret").fill(secret)
            dialog.get_by_role("button", name="Use this key").click()

        sign_in(ADMIN["AccessKeyId"], "not-the-secret-at-all-0000")
        expect(page.locator("main .alert")).to_contain_text("SignatureDoesNotMatch")
        expect(page.locator("#key-state")).to_have_text(f"Key {ADMIN['AccessKeyId']} not accepted")
        shot(page, "signed-invalid-key")
        page.get_by_role("button", name="Use another access key").click()
        sign_in("no-such-key", "whatever-secret-0123456789")
        expect(page.locator("main .alert")).to_contain_text("InvalidAccessKeyId.NotFound")

        page.get_by_role("button", name="Use another access key").click()
        sign_in(ADMIN["AccessKeyId"], ADMIN["AccessKeySecret"])
        expect(page.locator("#key-state")).to_have_text(f"Signed with {ADMIN['AccessKeyId']}")
        expect(page.get_by_text("No models yet.")).to_be_visible()
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Register a model").click()
        field(page, "Name *").fill("signed-model")
        field(page, "Labels").fill("über=naïve value & more")
        page.get_by_role("button", name="Register model").click()
        expect(page.get_by_role("heading", name="signed-model", level=1)).to_be_visible()
        model_id = page.url.rsplit("/", 1)[-1]
        page.locator("section", has=page.get_by_role("heading", name="Labels")).get_by_role("button", name="Remove label über").click()
        expect(page.locator("li.label")).to_have_count(0)
        # A query with every character class the signature must encode as the SDK does.
        page.goto(f"{registry.console}#/?Query=" + "a%20b%26c%2Fd%3Fe!'()*~%C3%A9%2B")
        expect(page.get_by_text("No models match these filters.")).to_be_visible()
        shot(page, "signed-session")

        history = subprocess.run([sys.executable, "-m", "handler", "history", model_id, "--store", f"file://{registry.store}"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert [line.split()[1:3] for line in history.stdout.splitlines()[1:]] == [
            [ADMIN["AccessKeyId"], "CreateModel"], [ADMIN["AccessKeyId"], "DeleteModelLabels"]], history.stdout

        # A key whose policy allows reading only: the console shows the API's refusal, and nothing is written.
        page.get_by_role("button", name="Change key").click()
        sign_in(READER["AccessKeyId"], READER["AccessKeySecret"])
        expect(page.locator("a.model-link")).to_have_count(0)
        page.goto(f"{registry.console}#/new")
        field(page, "Name *").fill("not-allowed")
        page.get_by_role("button", name="Register model").click()
        expect(page.locator(".form-alert")).to_contain_text("Forbidden.RAM")
        expect(page.locator(".form-alert")).to_contain_text("may not call CreateModel")

        # The key is in this tab's session only: a new tab is unsigned, and nothing was stored beyond the tab.
        assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []
        other = page.context.new_page()
        other.goto(registry.console)
        expect(other.locator("#key-state")).to_have_text("Not signed")
        expect(other.locator("main .alert")).to_contain_text("MissingAuthorization")
        other.close()
        page.get_by_role("button", name="Forget key").click()
        expect(page.locator("#key-state")).to_have_text("Not signed")
        assert page.evaluate("sessionStorage.length") == 0
    for secret in (ADMIN["AccessKeySecret"], READER["AccessKeySecret"], "not-the-secret-at-all-0000"):
        assert not any(secret in request for request in sent), "a secret left the browser"
    assert any("acs3-hmac-sha256 credential=console-admin" in request.lower() for request in sent)
    assert page.evaluate("window.__violations") == [] and page.errors == []  # type: ignore[attr-defined]
    page.context.close()


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_no_horizontal_scrolling_at_desktop_and_phone_width(served: Served, browser: Browser, width: int, height: int) -> None:
    long = "a-model-name-without-any-space-" * 4
    model_id = served.create(ModelName=long[:127], ModelDescription="word " * 80, Tag=[{"Key": "k" * 60, "Value": "v" * 128}],
                             ExtraInfo={"nested": {"deeper": {"deepest": {"list": list(range(40)), "url": "https://x/" + "y" * 150}}}})
    served.call("POST", f"/api/v1/models/{model_id}/versions", {
        "Uri": "oss://bucket-name.oss-cn-hangzhou.aliyuncs.com/" + "p" * 200, "FormatType": "SavedModel", "FrameworkType": "TensorFlow",
        "Metrics": {"m" * 50: 0.5, "loss": {"train": 0.1, "validation": 0.2}}, "Labels": [{"Key": "stage", "Value": "z" * 120}]})
    for i in range(3):
        served.create(ModelName=f"model-{i}", Tag=[{"Key": "team", "Value": "nlp"}])
    page = open_page(browser, width, height)
    for name, hash_ in [("list", "#/"), ("model", f"#/models/{model_id}"), ("register", "#/new"),
                        ("edit", f"#/models/{model_id}/edit"), ("version", f"#/models/{model_id}/versions/new")]:
        page.goto(f"{served.console}{hash_}")
        expect(page.locator("h1")).to_be_visible()
        page.wait_for_load_state("networkidle")
        shot(page, f"layout-{width}-{name}")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
    assert page.evaluate("window.__violations") == []
    page.context.close()


def test_keyboard_alone_finds_and_opens_a_model(served: Served, page: Page) -> None:
    served.create(ModelName="keyboard-target", Domain="nlp")
    served.create(ModelName="other")
    page.goto(served.console)
    expect(page.locator(".count")).to_have_text("2 models")

    def tab_to(selector: str, key: str = "Tab", most: int = 40) -> None:
        for _ in range(most):
            page.keyboard.press(key)
            if page.evaluate("(s) => document.activeElement.matches(s)", selector):
                outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
                assert outline != "none", f"{selector} has no visible focus"
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("input[name=Query]")
    page.keyboard.type("keyboard")
    page.keyboard.press("Enter")
    expect(page.locator(".count")).to_have_text("1 model")
    tab_to("a.model-link")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="keyboard-target", level=1)).to_be_focused()  # focus follows the page
    tab_to("#key-button", key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()
    expect(page.get_by_label("Access key ID")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()


def test_text_has_readable_contrast(served: Served, page: Page) -> None:
    model_id = served.create(ModelName="contrast", ModelDescription="described", Tag=[{"Key": "team", "Value": "nlp"}])
    served.call("POST", f"/api/v1/models/{model_id}/versions", {"Uri": "https://example.com/m", "Metrics": {"acc": 0.9}})
    served.call("PUT", f"/api/v1/models/{model_id}/versions/0.1.0", {"ApprovalStatus": "Approved"})
    served.call("POST", f"/api/v1/models/{model_id}/versions", {"Uri": "https://example.com/n", "ApprovalStatus": "Rejected"})
    served.call("POST", f"/api/v1/models/{model_id}/versions", {"Uri": "https://example.com/o"})
    for hash_ in ("#/", f"#/models/{model_id}", "#/new"):
        page.goto(f"{served.console}{hash_}")
        expect(page.locator("h1")).to_be_visible()
        page.wait_for_load_state("networkidle")
        if hash_ == "#/new":  # an error state too
            page.get_by_role("button", name="Register model").click()
            expect(page.locator(".field-error:not([hidden])")).to_have_count(1)
        low = page.evaluate(CONTRAST_SCRIPT)
        assert low == [], f"text below WCAG AA contrast on {hash_}: {low}"


# Every visible text node's colour against the background it is painted on (the first opaque one up the tree):
# at least 4.5:1, or 3:1 for large text (24px, or 18.66px bold). Disabled controls are exempt (WCAG 1.4.3).
CONTRAST_SCRIPT = """() => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = (el) => { for (; el; el = el.parentElement) { const c = parse(getComputedStyle(el).backgroundColor);
    if (c.length === 3 || c[3] > 0.99) return c.slice(0, 3); } return [255, 255, 255]; };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el.checkVisibility() || el.closest(':disabled')) continue;
    const style = getComputedStyle(el);
    const a = lum(parse(style.color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < needed) low.push(`${node.textContent.trim().slice(0, 30)}: ${ratio.toFixed(2)}`);
  }
  return low;
}"""


def test_a_slow_request_shows_the_loading_indicator(served: Served, page: Page) -> None:
    served.create(ModelName="slow")
    held: list[Route] = []
    page.route("**/api/v1/models?*", lambda route: held.append(route))
    page.goto(served.console)
    busy = page.locator("#busy")
    expect(busy).to_be_visible()
    expect(busy).to_have_text(re.compile("Loading"))
    shot(page, "loading")
    held[0].continue_()
    page.unroute("**/api/v1/models?*")
    expect(page.locator("a.model-link")).to_have_text("slow")
    expect(busy).to_be_hidden()


def test_an_unreachable_registry_shows_an_error_with_a_retry(served: Served, page: Page) -> None:
    served.create(ModelName="comes-back")
    page.route("**/api/v1/**", lambda route: route.abort())
    page.goto(served.console)
    expect(page.locator("main .alert")).to_contain_text("could not be reached")
    shot(page, "unreachable")
    page.unroute("**/api/v1/**")
    page.get_by_role("button", name="Retry").click()
    expect(page.locator("a.model-link")).to_have_text("comes-back")


def test_a_missing_model_says_so(served: Served, page: Page) -> None:
    page.goto(f"{served.console}#/models/model-doesnotexist0000000000")
    expect(page.locator("main .alert")).to_contain_text("ModelNotFound")
    page.goto(f"{served.console}#/no/such/page")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    page.goto(f"{served.console}#/models/%ZZ")  # not percent-encoded UTF-8
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_the_model_page_shows_who_changed_what_and_when_newest_first(served: Served, page: Page) -> None:
    model_id = served.create(ModelName="audited")
    assert served.call("POST", f"/api/v1/models/{model_id}/labels", {"Labels": [{"Key": "team", "Value": "cv"}]})[0] == 200
    status, created = served.call("POST", f"/api/v1/models/{model_id}/versions", {"Uri": "oss://registry-bucket.oss-cn-hangzhou.aliyuncs.com/models/m/1"})
    assert status == 200, created
    assert served.call("PUT", f"/api/v1/models/{model_id}/versions/{created['VersionName']}", {"ApprovalStatus": "Approved"})[0] == 200
    _, answer = served.call("GET", f"/api/v1/models/{model_id}/history")
    page.goto(f"{served.console}#/models/{model_id}")
    history = page.locator("section", has=page.get_by_role("heading", name="History"))
    rows = history.locator("tbody tr")
    expect(rows).to_have_count(4)
    version = created["VersionName"]
    expect(rows.locator("td[data-title=What]")).to_have_text(
        [f"Changed version {version}", f"Added version {version}", "Added labels", "Created the model"])
    expect(rows.locator("td[data-title=Who]")).to_have_text([c["By"] for c in reversed(answer["Changes"])])
    expect(rows.first.locator("time")).to_have_attribute("datetime", answer["Changes"][-1]["At"])
    expect(history.get_by_role("button", name="Earlier changes")).to_be_hidden()  # the window reached the first commit
    shot(page, "model-history")


def test_aliases_are_set_moved_and_removed_on_the_model_page(served: Served, page: Page) -> None:
    model_id = served.create(ModelName="aliased")
    names = []
    for n in (1, 2):
        status, created = served.call("POST", f"/api/v1/models/{model_id}/versions",
                                      {"Uri": f"oss://registry-bucket.oss-cn-hangzhou.aliyuncs.com/models/m/{n}"})
        assert status == 200, created
        names.append(created["VersionName"])
    page.goto(f"{served.console}#/models/{model_id}")
    section = page.locator("section", has=page.get_by_role("heading", name="Aliases"))
    expect(section.get_by_text("None.")).to_be_visible()

    section.get_by_label("Alias", exact=True).fill("champion")
    section.get_by_label("Version", exact=True).select_option(names[0])
    section.get_by_role("button", name="Set alias").click()
    expect(page.get_by_text(f"Alias champion now names version {names[0]}.")).to_be_visible()
    expect(section.get_by_role("listitem")).to_have_text([f"@champion version {names[0]} Remove"])
    assert served.call("GET", f"/api/v1/models/{model_id}")[1]["Aliases"] == [{"Alias": "champion", "VersionName": names[0]}]

    section.get_by_label("Alias", exact=True).fill("champion")  # the same alias on the other version: moved
    section.get_by_label("Version", exact=True).select_option(names[1])
    section.get_by_role("button", name="Set alias").click()
    expect(section.get_by_role("listitem")).to_have_text([f"@champion version {names[1]} Remove"])
    versions = page.locator("section", has=page.get_by_role("heading", name="Versions"))
    expect(versions.get_by_text("@champion")).to_have_count(1)
    shot(page, "model-aliases")

    section.get_by_label("Alias", exact=True).fill("latest")  # refused by the API: shown next to the field, nothing written
    section.get_by_role("button", name="Set alias").click()
    expect(error_of(page, "Alias")).to_contain_text("neither latest nor v<number>")
    assert served.call("GET", f"/api/v1/models/{model_id}")[1]["Aliases"] == [{"Alias": "champion", "VersionName": names[1]}]

    section.get_by_role("button", name="Remove alias champion").click()
    expect(page.get_by_text("Alias champion removed.")).to_be_visible()
    expect(section.get_by_text("None.")).to_be_visible()
    assert served.call("GET", f"/api/v1/models/{model_id}")[1].get("Aliases", []) == []


def test_a_key_that_may_not_read_the_history_still_sees_the_model(browser: Browser, tmp_path: Path) -> None:
    no_history = {**READER, "AccessKeyId": "console-no-history", "Actions": ["Get*", "ListModels", "ListModelVersions"]}
    page = open_page(browser)
    with serve(tmp_path, [ADMIN, no_history]) as registry:
        page.goto(registry.console)
        page.get_by_role("button", name="Enter an access key").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Access key ID").fill(ADMIN["AccessKeyId"])
        dialog.get_by_label("Access key secret").fill(ADMIN["AccessKeySecret"])
        dialog.get_by_role("button", name="Use this key").click()
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Register a model").click()
        field(page, "Name *").fill("audited")
        page.get_by_role("button", name="Register model").click()
        history = page.locator("section", has=page.get_by_role("heading", name="History"))
        expect(history.locator("td[data-title=Who]")).to_have_text([ADMIN["AccessKeyId"]])
        page.get_by_role("button", name="Change key").click()
        dialog.get_by_label("Access key ID").fill(no_history["AccessKeyId"])
        dialog.get_by_label("Access key secret").fill(no_history["AccessKeySecret"])
        dialog.get_by_role("button", name="Use this key").click()
        expect(page.get_by_role("heading", name="audited", level=1)).to_be_visible()
        expect(history).to_contain_text("may not call ListModelHistory")
        expect(history.locator("tbody tr")).to_have_count(0)
    assert page.evaluate("window.__violations") == [] and page.errors == []  # type: ignore[attr-defined]
    page.context.close()


def test_extra_information_and_large_numbers_keep_every_digit_and_their_order(served: Served, page: Page) -> None:
    extra = {"z": 1, "big": 12345678901234567890, "f": 1.0, "10": "ten", "2": "two"}
    model_id = served.create(ModelName="exact", OrderNumber=9223372036854775807, ExtraInfo=extra)
    served.call("POST", f"/api/v1/models/{model_id}/versions", {"Uri": "https://example.com/m", "Metrics": {"curve": [0.0, 0.5, 1.0]}})
    page.goto(f"{served.console}#/models/{model_id}")
    expect(page.locator("table.metrics td")).to_have_text("[0.0,0.5,1.0]")  # as kept: not 0 and 1, not objects
    expect(page.locator("dl.fields").first).to_contain_text("9223372036854775807")
    expect(page.locator("table.kv td", has_text="12345678901234567890")).to_be_visible()
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit exact", level=1)).to_be_visible()
    text = field(page, "Extra information").input_value()
    assert json.loads(text) == extra and "12345678901234567890" in text and "1.0" in text
    assert [key for key in json.loads(text)] == ["z", "big", "f", "10", "2"]  # as kept, not as the browser orders keys
    field(page, "Extra information").fill(text.rstrip().rstrip("}") + ', "added": true}')
    field(page, "Description").fill("edited")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status").filter(has_text="Changes saved.")).to_be_visible()
    model = served.call("GET", f"/api/v1/models/{model_id}")[1]
    assert list(model["ExtraInfo"].items()) == [*extra.items(), ("added", True)]
    assert isinstance(model["ExtraInfo"]["f"], float) and model["OrderNumber"] == 9223372036854775807

    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit exact", level=1)).to_be_visible()
    field(page, "Order number").fill("")
    page.get_by_role("button", name="Save changes").click()
    expect(error_of(page, "Order number")).to_contain_text("OrderNumber cannot be emptied")


def test_the_edit_form_offers_every_field_update_model_accepts_and_no_other(served: Served, page: Page) -> None:
    model_id = served.create(ModelName="every-field")
    page.goto(f"{served.console}#/models/{model_id}/edit")
    expect(page.get_by_role("heading", name="Edit every-field", level=1)).to_be_visible()
    offered = page.locator("main form").evaluate("(form) => [...form.elements].map((element) => element.name).filter(Boolean)")
    assert sorted(offered) == sorted(load_schemas()["update-model-request.json"]["properties"])


def test_one_submission_sends_one_request_however_often_it_is_pressed(served: Served, page: Page) -> None:
    model_id = served.create(ModelName="pressed")
    held: list[Route] = []
    page.route("**/versions", lambda route: held.append(route) if route.request.method == "POST" else route.continue_())
    page.goto(f"{served.console}#/models/{model_id}/versions/new")
    field(page, "URI *").fill("https://example.com/model")
    field(page, "URI *").press("Enter")
    expect(page.locator("#busy")).to_be_visible()
    for _ in range(3):
        field(page, "URI *").press("Enter")
        page.get_by_role("button", name="Add version").click(force=True)
    page.wait_for_timeout(300)
    assert len(held) == 1
    held[0].continue_()
    expect(page.get_by_role("status").filter(has_text="Version 0.1.0 added.")).to_be_visible()
    page.unroute("**/versions")
    assert served.call("GET", f"/api/v1/models/{model_id}/versions")[1]["TotalCount"] == 1
