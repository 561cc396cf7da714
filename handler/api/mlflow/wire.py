"""MLflow's wire format: its paths, its errors (`error_code`, `message`, MLflow's HTTP status), and the
registered models and model versions it answers, made from PAI's records."""
from __future__ import annotations

import re
from typing import Any

from ... import errors
from ...catalog.entry import ALIASES
from ...catalog.state import Entry
from ...catalog.workspace import Workspace
from ...registry import aliases
from ...rules.times import parse_utc
from ..http import Response

PREFIX = "/api/2.0/mlflow"
WORKSPACE_PREFIX = "/workspaces/{WorkspaceId}" + PREFIX
_PATH = re.compile(r"(/workspaces/[^/]+)?/api/2\.0/mlflow/.*")
RUN_SOURCE = "MLflowRun"  # a version's SourceType when MLflow gave its run_id (then its SourceId)
RUN_LINK = "MlflowRunLink"  # in a version's ExtraInfo
STATUS = "MlflowStatus"  # in a version's ExtraInfo, when an import brought a status other than READY

# MLflow's error code and HTTP status for each of ours (mlflow/exceptions.py); others by their status.
_CODES: dict[type[errors.ApiError], tuple[str, int]] = {
    errors.ModelNotFound: ("RESOURCE_DOES_NOT_EXIST", 404),
    errors.VersionNotFound: ("RESOURCE_DOES_NOT_EXIST", 404),
    errors.PathNotFound: ("ENDPOINT_NOT_FOUND", 404),
    errors.ModelNameConflict: ("RESOURCE_ALREADY_EXISTS", 400),
    errors.VersionNameConflict: ("RESOURCE_ALREADY_EXISTS", 400),
    errors.QuotaExceeded: ("RESOURCE_EXHAUSTED", 429),
    errors.MissingAuthorization: ("UNAUTHENTICATED", 401),
    errors.InvalidAuthorization: ("UNAUTHENTICATED", 401),
    errors.AccessKeyNotFound: ("UNAUTHENTICATED", 401),
    errors.SignatureMismatch: ("UNAUTHENTICATED", 401),
    errors.Forbidden: ("PERMISSION_DENIED", 403),
    errors.KeysNotConfigured: ("PERMISSION_DENIED", 403),
    errors.CrossOrigin: ("PERMISSION_DENIED", 403),
}
_BY_STATUS = {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST",
              405: "BAD_REQUEST", 413: "INVALID_PARAMETER_VALUE", 414: "INVALID_PARAMETER_VALUE", 415: "INVALID_PARAMETER_VALUE",
              431: "INVALID_PARAMETER_VALUE", 503: "TEMPORARILY_UNAVAILABLE"}


def is_mlflow(path: str) -> bool:
    """A path of MLflow's REST API (in the default workspace or under /workspaces/<WorkspaceId>)."""
    return _PATH.fullmatch(path) is not None


def error_code(error: errors.ApiError) -> tuple[str, int]:
    """MLflow's error_code and HTTP status for an error."""
    found = _CODES.get(type(error))
    if found is not None:
        return found
    if error.status >= 500:
        return ("TEMPORARILY_UNAVAILABLE", 503) if error.status == 503 else ("INTERNAL_ERROR", 500)
    return _BY_STATUS.get(error.status, "BAD_REQUEST"), error.status


def error_response(error: errors.ApiError, request_id: str) -> Response:
    """An error as MLflow's server answers it, with RequestId, Code and Message beside."""
    code, status = error_code(error)
    return Response(status, {"error_code": code, "message": error.message, **error.body(request_id)}, error.headers())


def millis(text: object) -> int:
    seconds = parse_utc(text)
    return int(seconds * 1000) if seconds is not None else 0


def tags(labels: list[dict[str, str]]) -> list[dict[str, str]]:
    """Labels as MLflow's tags: one per key (the last of a key wins)."""
    return [{"key": k, "value": v} for k, v in {label["Key"]: label["Value"] for label in labels}.items()]


def labels(given: Any) -> list[dict[str, str]]:
    """MLflow's tags as labels."""
    return [{"Key": tag.get("key", ""), "Value": tag.get("value", "")} for tag in given or []]


def model_version(model_name: str, record: dict[str, Any]) -> dict[str, Any]:
    """A version record (as Get and List answer it: with VersionNumber and Aliases) as MLflow's ModelVersion."""
    extra = record.get("ExtraInfo") or {}
    out: dict[str, Any] = {
        "name": model_name, "version": str(record[aliases.NUMBER]),
        "creation_timestamp": millis(record.get("GmtCreateTime")), "last_updated_timestamp": millis(record.get("GmtModifiedTime")),
        "current_stage": "None", "description": record.get("VersionDescription", ""), "source": record.get("Uri", ""),
        "run_id": record.get("SourceId", "") if record.get("SourceType") == RUN_SOURCE else "",
        "status": extra.get(STATUS, "READY"), "tags": tags(record.get("Labels", [])),
    }
    if extra.get(RUN_LINK):
        out["run_link"] = extra[RUN_LINK]
    if record.get(ALIASES):
        out["aliases"] = record[ALIASES]
    return out


def registered_model(workspace: Workspace, entry: Entry, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """A model (its entry, or its record as just answered) as MLflow's RegisteredModel, with its latest version."""
    record = record if record is not None else entry.record()
    out: dict[str, Any] = {
        "name": record["ModelName"], "creation_timestamp": millis(record.get("GmtCreateTime")),
        "last_updated_timestamp": millis(record.get("GmtModifiedTime")), "description": record.get("ModelDescription", ""),
        "tags": tags(record.get("Labels", [])),
    }
    held = aliases.aliases_of(record)
    if held:
        numbers = aliases.numbers(workspace, entry, held.values())
        out["aliases"] = [{"alias": a, "version": str(numbers[v])} for a, v in held.items() if v in numbers]
    latest = workspace.latest(entry.id)
    if latest is not None:
        shown = aliases.shown(workspace, entry, [latest.record()])[0]
        out["latest_versions"] = [model_version(record["ModelName"], shown)]
    return out
