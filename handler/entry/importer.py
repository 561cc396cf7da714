"""`import-mlflow`: copy an MLflow registry, read through MLflow's REST API, into this registry through its
registry layer (validation, catalog, quotas), matching models by name and versions by number, so that a re-run
adds nothing."""
from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..api.mlflow import routes, wire
from ..catalog.state import Entry
from ..catalog.workspace import Workspace
from ..errors import ApiError, ModelNameConflict, VersionNameConflict
from ..registry import aliases, records
from ..registry.models import Registry
from ..registry.versions import Versions

MODELS_PAGE = 1000  # MLflow's largest page of registered models
VERSIONS_PAGE = 10_000
ATTEMPTS = 4  # reads of the source, for a server that is briefly busy (SQLite locked, a restart)
KINDS = ("models", "versions", "aliases")
_ONE = {"models": "model", "versions": "version", "aliases": "alias"}


class SourceError(Exception):
    """The MLflow server could not be read (unreachable, refused, or answered something that is not MLflow)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Source:
    """An MLflow server's registry, read through its REST API, with the credentials MLflow's client takes from the
    environment (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SourceError(f"--from must be an MLflow server's http:// or https:// URL, not {url[:80]!r}")
        self.base = url.rstrip("/") + "/api/2.0/mlflow"
        self.timeout = timeout
        self.headers = {"Accept": "application/json"}
        token, user = os.environ.get("MLFLOW_TRACKING_TOKEN"), os.environ.get("MLFLOW_TRACKING_USERNAME")
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif user:
            pair = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()

    def get(self, path: str, query: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base}/{path}?{urllib.parse.urlencode(query)}"
        for attempt in range(ATTEMPTS):
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=self.headers), timeout=self.timeout) as answer:
                    found = json.loads(answer.read())
                if not isinstance(found, dict):
                    raise SourceError(f"{path} answered something other than a JSON object")
                return found
            except urllib.error.HTTPError as e:
                if e.code < 500 or attempt == ATTEMPTS - 1:
                    raise SourceError(f"{path} answered HTTP {e.code}: {_message(e)}", e.code) from None
            except (urllib.error.URLError, OSError) as e:
                if attempt == ATTEMPTS - 1:
                    raise SourceError(f"cannot reach {self.base}: {getattr(e, 'reason', e)}") from None
            except ValueError:
                raise SourceError(f"{path} answered something other than JSON: is this an MLflow server?") from None
            time.sleep(0.5 * 2 ** attempt)
        raise AssertionError("unreachable")

    def pages(self, path: str, key: str, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a paged search."""
        token = None
        while True:
            page = self.get(path, {**query, **({"page_token": token} if token else {})})
            yield from page.get(key, [])
            token = page.get("next_page_token")
            if not token:
                return

    def models(self) -> list[dict[str, Any]]:
        """Every registered model, with its description, tags and aliases."""
        return list(self.pages("registered-models/search", "registered_models", {"max_results": MODELS_PAGE}))

    def all_versions(self) -> dict[str, list[dict[str, Any]]] | None:
        """Every model version by model name, in a few large pages; None if the server wants a filter."""
        found: dict[str, list[dict[str, Any]]] = {}
        try:
            for version in self.pages("model-versions/search", "model_versions", {"max_results": VERSIONS_PAGE}):
                found.setdefault(version["name"], []).append(version)
        except SourceError as e:
            if e.status == 400:
                return None
            raise
        return found

    def versions(self, name: str) -> list[dict[str, Any]]:
        quoted = name.replace("\\", "\\\\").replace("'", "\\'")
        return list(self.pages("model-versions/search", "model_versions",
                               {"filter": f"name = '{quoted}'", "max_results": VERSIONS_PAGE}))


def _message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read()).get("message", ""))[:200] or error.reason
    except (ValueError, AttributeError, OSError):
        return str(error.reason)[:200]


@dataclass
class Summary:
    """What an import did: per kind, how many were created, were already there, and were refused (with why)."""

    created: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    there: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, what, why)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str, created: bool) -> None:
        with self.lock:
            (self.created if created else self.there)[kind] += 1

    def refuse(self, kind: str, what: str, why: str) -> None:
        with self.lock:
            self.refused.append((kind, what, why))

    def lines(self) -> list[str]:
        out = []
        for kind in KINDS:
            refused = sum(1 for k, _, _ in self.refused if k == kind)
            out.append(f"{kind}: {self.created[kind]} created, {self.there[kind]} already there, {refused} refused")
        out += [f"refused {_ONE[kind]} {what}: {why}" for kind, what, why in sorted(self.refused)]
        return out

    def as_json(self) -> dict[str, Any]:
        return {"Created": self.created, "AlreadyThere": self.there,
                "Refused": [{"Kind": k, "What": w, "Why": y} for k, w, y in sorted(self.refused)]}


class Importer:
    """Copies models (then their versions in number order, then their aliases) into one workspace."""

    def __init__(self, registry: Registry, workspace_id: str, summary: Summary | None = None) -> None:
        self.registry = registry
        self.versions = Versions(registry)
        self.workspace_id = workspace_id
        self.summary = summary or Summary()

    def run(self, source: Source, workers: int = 8, progress: Callable[[int, int], None] | None = None) -> Summary:
        models = source.models()
        every = source.all_versions()
        done = 0
        lock = threading.Lock()

        def one(model: dict[str, Any]) -> None:
            nonlocal done
            found = every.get(model["name"], []) if every is not None else source.versions(model["name"])
            self.model(model, found)
            with lock:
                done += 1
                if progress is not None:
                    progress(done, len(models))

        with ThreadPoolExecutor(max(1, workers)) as pool:
            for _ in pool.map(one, models):  # models are independent: each takes its own commits
                pass
        return self.summary

    def model(self, model: dict[str, Any], versions: list[dict[str, Any]]) -> None:
        """One registered model with its versions and aliases."""
        name = str(model.get("name", ""))
        label = repr(name[:200])
        workspace = self._workspace()
        entry = workspace.named(name)
        if entry is not None:
            self.summary.count("models", False)
        else:
            try:
                request = routes.model_request({**model, "name": name})
                _, created = self.registry.create(records.normalized_request(request, self.workspace_id))
            except ModelNameConflict:  # made meanwhile by someone else: it is there
                created = False
            except ApiError as e:
                self.summary.refuse("models", label, e.message)
                for version in versions:
                    self.summary.refuse("versions", f"{label} {version.get('version')}", "its model was refused")
                for alias in model.get("aliases") or []:
                    self.summary.refuse("aliases", f"{label}@{alias.get('alias')}", "its model was refused")
                return
            self.summary.count("models", created)
            entry = self._workspace().named(name)
            assert entry is not None  # created or found above
        for version in sorted(versions, key=lambda v: int(v.get("version", 0))):
            self._version(entry, label, version)
        self._aliases(entry.id, label, model.get("aliases") or [])

    def _version(self, entry: Entry, label: str, version: dict[str, Any]) -> None:
        number = int(version["version"])
        what = f"{label} {number}"
        workspace = self._workspace()
        current = workspace.model(entry.id)[0]
        if current is None:
            self.summary.refuse("versions", what, "its model was deleted meanwhile")
            return
        numbers, last = aliases.numbered(current.record(), aliases.versions_of(workspace, entry.id))
        if number in numbers.values():
            self.summary.count("versions", False)
            return
        if number <= last:  # numbers are never given twice: this one was given here and deleted since
            self.summary.refuse("versions", what, f"version {number} was deleted here (the model's last number is {last})")
            return
        try:
            self.versions.create(entry.id, self._version_request(version), number=number)
        except VersionNameConflict:  # numbered meanwhile
            self.summary.count("versions", False)
            return
        except ApiError as e:
            self.summary.refuse("versions", what, e.message)
            return
        self.summary.count("versions", True)

    @staticmethod
    def _version_request(version: dict[str, Any]) -> dict[str, Any]:
        request = routes.version_request({"source": "", **version})
        if version.get("status", "READY") != "READY":  # MLflow's other statuses: PENDING_REGISTRATION, FAILED_REGISTRATION
            request["ExtraInfo"] = {**request.get("ExtraInfo", {}), wire.STATUS: str(version["status"])}
        return request

    def _aliases(self, model_id: str, label: str, wanted: list[dict[str, Any]]) -> None:
        workspace = self._workspace()
        entry = workspace.model(model_id)[0]
        if entry is None:
            for alias in wanted:
                self.summary.refuse("aliases", f"{label}@{alias.get('alias')}", "its model was deleted meanwhile")
            return
        numbers, _ = aliases.numbered(entry.record(), aliases.versions_of(workspace, model_id))
        by_number = {str(n): name for name, n in numbers.items()}
        held = aliases.aliases_of(entry.record())
        setter = aliases.Aliases(self.registry)
        for alias in wanted:
            name, number = str(alias.get("alias", "")), str(alias.get("version", ""))
            what = f"{label}@{name[:64]}"
            target = by_number.get(number)
            if target is None:
                self.summary.refuse("aliases", what, f"version {number[:20]} is not here")
            elif name in held:
                if held[name] == target:
                    self.summary.count("aliases", False)
                else:
                    self.summary.refuse("aliases", what, f"already names version {numbers[held[name]]} here")
            else:
                try:
                    setter.set(model_id, name, target)
                except ApiError as e:
                    self.summary.refuse("aliases", what, e.message)
                    continue
                self.summary.count("aliases", True)

    def _workspace(self) -> Workspace:
        workspace = self.registry.workspace(self.workspace_id)
        workspace.read()
        return workspace


def progress_lines(out: TextIO = sys.stderr, every: int = 1000) -> Callable[[int, int], None]:
    """A progress line every `every` models and at the end: done/total, and the rate so far."""
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            rate = done / max(time.monotonic() - started, 1e-9)
            print(f"import-mlflow: {done}/{total} models ({100 * done // max(total, 1)}%, {rate:.0f} models/s)",
                  file=out, flush=True)
    return show
