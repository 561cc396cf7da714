"""`import-mlflow`: copy an MLflow registry, read through MLflow's REST API, into this registry (a store, or a running
registry's API: import_targets), matching models by name and versions by number, so that a re-run adds nothing."""
from __future__ import annotations

import base64
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..registry.aliases import number_given_before
from .import_targets import Found, Refused, Target
from .mlflow_http import VERSIONS_PAGE, MlflowHttp, MlflowHttpError, versions_named

MODELS_PAGE = 1000  # MLflow's largest page of registered models
KINDS = ("models", "versions", "aliases")
_ONE = {"models": "model", "versions": "version", "aliases": "alias"}


class Source:
    """An MLflow server's registry, read through its REST API, with the credentials MLflow's client takes from the
    environment (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)."""

    def __init__(self, url: str) -> None:
        token, user = os.environ.get("MLFLOW_TRACKING_TOKEN"), os.environ.get("MLFLOW_TRACKING_USERNAME")
        authorization = None
        if token:
            authorization = f"Bearer {token}"
        elif user:
            authorization = basic(user, os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
        self.http = MlflowHttp(url, authorization)

    def models(self) -> list[dict[str, Any]]:
        """Every registered model, with its description, tags and aliases."""
        return list(self.http.pages("registered-models/search", "registered_models", {"max_results": MODELS_PAGE}))

    def all_versions(self) -> dict[str, list[dict[str, Any]]] | None:
        """Every model version by model name, in a few large pages; None if the server wants a filter."""
        found: dict[str, list[dict[str, Any]]] = {}
        try:
            for version in self.http.pages("model-versions/search", "model_versions", {"max_results": VERSIONS_PAGE}):
                found.setdefault(version["name"], []).append(version)
        except MlflowHttpError as e:
            if e.status == 400:
                return None
            raise
        return found

    def versions(self, name: str) -> list[dict[str, Any]]:
        return list(versions_named(self.http, name))


def basic(user: str, password: str) -> str:
    """An HTTP Basic Authorization header."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


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
    """Copies models (then their versions in number order, then their aliases) into a target."""

    def __init__(self, target: Target, summary: Summary | None = None) -> None:
        self.target = target
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

        if not models and progress is not None:
            progress(0, 0)  # the line at the end, for a registry with nothing to import
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for _ in pool.map(one, models):  # models are independent: each takes its own commits
                pass
        return self.summary

    def model(self, model: dict[str, Any], versions: list[dict[str, Any]]) -> None:
        """One registered model with its versions and aliases."""
        name = str(model.get("name", ""))
        label = repr(name[:200])
        found = self.target.find(name)
        if found is not None:
            self.summary.count("models", False)
        else:
            try:
                self.summary.count("models", self.target.create_model({**model, "name": name}))
            except Refused as e:
                self.summary.refuse("models", label, str(e))
                for version in versions:
                    self.summary.refuse("versions", f"{label} {version.get('version')}", "its model was refused")
                for alias in model.get("aliases") or []:
                    self.summary.refuse("aliases", f"{label}@{alias.get('alias')}", "its model was refused")
                return
            found = self.target.find(name)
        for version in sorted(versions, key=lambda v: int(v.get("version", 0))):
            self._version(name, label, version, found)
        self._aliases(name, label, model.get("aliases") or [], found)

    def _version(self, name: str, label: str, version: dict[str, Any], found: Found | None) -> None:
        number = int(version["version"])
        what = f"{label} {number}"
        if found is None:
            self.summary.refuse("versions", what, "its model was deleted meanwhile")
            return
        if number in found.numbers:
            self.summary.count("versions", False)
            return
        if found.last is not None and number <= found.last:  # numbers are never given twice
            self.summary.refuse("versions", what, number_given_before(number, found.last))
            return
        try:
            self.summary.count("versions", self.target.create_version(name, version, number))
        except Refused as e:
            self.summary.refuse("versions", what, str(e))
            return
        found.numbers.add(number)  # there now: its aliases may name it

    def _aliases(self, name: str, label: str, wanted: list[dict[str, Any]], found: Found | None) -> None:
        """The model's aliases, against what the target had (`found`) and the versions this import added."""
        for alias in wanted:
            alias_name, number = str(alias.get("alias", "")), str(alias.get("version", ""))
            what = f"{label}@{alias_name[:64]}"
            if found is None:
                self.summary.refuse("aliases", what, "its model was deleted meanwhile")
            elif not number.isdigit() or int(number) not in found.numbers:
                self.summary.refuse("aliases", what, f"version {number[:20]} is not here")
            elif alias_name in found.aliases:
                if found.aliases[alias_name] == int(number):
                    self.summary.count("aliases", False)
                else:
                    self.summary.refuse("aliases", what, f"already names version {found.aliases[alias_name]} here")
            else:
                try:
                    self.target.set_alias(name, alias_name, int(number))
                except Refused as e:
                    self.summary.refuse("aliases", what, str(e))
                    continue
                self.summary.count("aliases", True)


def progress_lines(out: TextIO = sys.stderr, every: int = 1000) -> Callable[[int, int], None]:
    """The import's progress: on a terminal, a bar redrawn in place (at most ten times a second) with the rate and
    the time left; elsewhere (a log, CI) a line every `every` models and at the end."""
    started = time.monotonic()
    drawn = 0.0
    bar = out.isatty()

    def show(done: int, total: int) -> None:
        nonlocal drawn
        now = time.monotonic()
        rate = done / max(now - started, 1e-9)
        if bar:
            if now - drawn < 0.1 and done != total:
                return
            drawn = now
            filled = 30 * done // max(total, 1)
            left = f", {(total - done) / rate:.0f} s left" if rate and done != total else ""
            end = "\n" if done == total else ""
            print(f"\rimport-mlflow: [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} models, {rate:.0f}/s{left}\033[K",
                  end=end, file=out, flush=True)
        elif done % every == 0 or done == total:
            print(f"import-mlflow: {done}/{total} models ({100 * done // max(total, 1)}%, {rate:.0f} models/s)",
                  file=out, flush=True)
    return show
