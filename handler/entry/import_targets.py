"""Where `import-mlflow` writes: a registry's store, through the registry layer (`Here`), or a running registry,
through its MLflow API (`Remote`); both validate, commit and number the same way."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..api.mlflow import routes
from ..catalog.state import Entry
from ..catalog.workspace import Workspace
from ..errors import ApiError, ModelNameConflict, VersionNameConflict
from ..registry import aliases, records
from ..registry.models import Registry
from ..registry.versions import Versions
from .mlflow_http import MlflowHttp, MlflowHttpError, versions_named

_EXISTS = "RESOURCE_ALREADY_EXISTS"


@dataclass
class Found:
    """A model as the target has it: its versions' numbers, the last number it gave (None where it does not say:
    it refuses a number given before), and its aliases (alias -> version number)."""

    numbers: set[int]
    last: int | None
    aliases: dict[str, int]


class Refused(Exception):
    """The target refused one write; the message says why (the summary shows it)."""


class Target(Protocol):
    def find(self, name: str) -> Found | None:
        """The model of that name, or None."""

    def create_model(self, model: dict[str, Any]) -> bool:
        """Create a model from MLflow's RegisteredModel (name, description, tags): False if one of that name exists."""

    def create_version(self, name: str, version: dict[str, Any], number: int) -> bool:
        """Create the model's version numbered `number` from MLflow's ModelVersion: False if that number exists."""

    def set_alias(self, name: str, alias: str, number: int) -> None:
        """Point the model's alias at its version of that number."""


class Here:
    """A registry's store, written through the registry layer of this process."""

    def __init__(self, registry: Registry, workspace_id: str) -> None:
        self.registry = registry
        self.versions = Versions(registry)
        self.workspace_id = workspace_id

    def find(self, name: str) -> Found | None:
        workspace = self._workspace()
        entry = workspace.named(name)
        if entry is None:
            return None
        numbers, last = aliases.numbered(entry.record(), aliases.versions_of(workspace, entry.id))
        held = aliases.aliases_of(entry.record())
        return Found(set(numbers.values()), last, {alias: numbers[v] for alias, v in held.items() if v in numbers})

    def create_model(self, model: dict[str, Any]) -> bool:
        try:
            request = routes.model_request(model)
            return self.registry.create(records.normalized_request(request, self.workspace_id))[1]
        except ModelNameConflict:  # made meanwhile by someone else: it is there
            return False
        except ApiError as e:
            raise Refused(e.message) from None

    def create_version(self, name: str, version: dict[str, Any], number: int) -> bool:
        entry = self._entry(name)
        try:
            self.versions.create(entry.id, routes.version_request({"source": "", **version}), number=number)
        except VersionNameConflict:  # numbered meanwhile
            return False
        except ApiError as e:
            raise Refused(e.message) from None
        return True

    def set_alias(self, name: str, alias: str, number: int) -> None:
        entry = self._entry(name)
        numbers, _ = aliases.numbered(entry.record(), aliases.versions_of(self._workspace(), entry.id))
        target = next((v for v, n in numbers.items() if n == number), None)
        if target is None:
            raise Refused(f"version {number} is not here")
        try:
            aliases.Aliases(self.registry).set(entry.id, alias, target)
        except ApiError as e:
            raise Refused(e.message) from None

    def _entry(self, name: str) -> Entry:
        entry = self._workspace().named(name)
        if entry is None:
            raise Refused("its model was deleted meanwhile")
        return entry

    def _workspace(self) -> Workspace:
        workspace = self.registry.workspace(self.workspace_id)
        workspace.read()
        return workspace


class Remote:
    """A running registry, written through its MLflow API (under /workspaces/<WorkspaceId> for a workspace other
    than its default), which numbers a version as the import asks (`version`, a field only this registry reads)."""

    def __init__(self, url: str, workspace_id: str | None, authorization: str | None) -> None:
        base = url.rstrip("/") + (f"/workspaces/{workspace_id}" if workspace_id else "")
        self.http = MlflowHttp(base, authorization, what="--to")

    def find(self, name: str) -> Found | None:
        try:
            model = self.http.call("GET", "registered-models/get", {"name": name})["registered_model"]
        except MlflowHttpError as e:
            if e.status == 404 and not e.no_api:
                return None
            raise
        return Found({int(v["version"]) for v in versions_named(self.http, name)}, None,
                     {a["alias"]: int(a["version"]) for a in model.get("aliases", [])})

    def create_model(self, model: dict[str, Any]) -> bool:
        fields = {key: model[key] for key in ("name", "description", "tags") if model.get(key)}
        return self._write("registered-models/create", fields)

    def create_version(self, name: str, version: dict[str, Any], number: int) -> bool:
        fields = {key: version[key] for key in ("source", "run_id", "run_link", "description", "tags", "status") if version.get(key)}
        return self._write("model-versions/create", {**fields, "name": name, "version": str(number)})

    def set_alias(self, name: str, alias: str, number: int) -> None:
        self._write("registered-models/alias", {"name": name, "alias": alias, "version": str(number)})

    def _write(self, path: str, body: dict[str, Any]) -> bool:
        """True when written, False when it exists; a refusal (4xx) is Refused, the rest stops the import."""
        try:
            self.http.call("POST", path, body=body)
        except MlflowHttpError as e:
            if e.error_code == _EXISTS:
                return False
            if 400 <= e.status < 500 and e.status not in (401, 403) and not e.no_api:  # not allowed: no write would be
                raise Refused(e.reason) from None
            raise
        return True
