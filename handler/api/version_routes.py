"""The version operations, one function each, and their routes."""
from __future__ import annotations

from typing import Any

from .. import errors
from ..registry.listing import VersionQuery
from ..registry.records import canonical_approval
from .call import Call
from .model_routes import FOUND, GROWS, MODEL_PATH, WRITES, label_keys
from .routing import Route

VERSIONS_PATH = MODEL_PATH + "/versions"
VERSION_PATH = VERSIONS_PATH + "/{VersionName}"


def create_model_version(call: Call) -> dict[str, Any]:
    name, _ = call.versions.create(call.params["ModelId"], call.body(), call.caller.owner_id)
    call.facts["VersionName"] = name
    return {"VersionName": name}


def list_model_versions(call: Call) -> dict[str, Any]:
    params = call.query()
    if "ApprovalStatus" in params:
        params["ApprovalStatus"] = canonical_approval(params["ApprovalStatus"])
    query = VersionQuery.parse(params)
    versions, total = call.versions.list_versions(call.params["ModelId"], query)
    return {"Versions": versions, "TotalCount": total, **({"Truncated": True} if query.cut_short(len(versions), total) else {})}


def get_model_version(call: Call) -> dict[str, Any]:
    return call.versions.get(call.params["ModelId"], call.params["VersionName"])


def update_model_version(call: Call) -> dict[str, Any]:
    call.versions.update(call.params["ModelId"], call.params["VersionName"], call.body())
    return {}


def delete_model_version(call: Call) -> dict[str, Any]:
    call.versions.delete(call.params["ModelId"], call.params["VersionName"])
    return {}


def create_model_version_labels(call: Call) -> dict[str, Any]:
    call.versions.add_labels(call.params["ModelId"], call.params["VersionName"], call.body()["Labels"])
    return {}


def delete_model_version_labels(call: Call) -> dict[str, Any]:
    call.versions.remove_labels(call.params["ModelId"], call.params["VersionName"], label_keys(call))
    return {}


NO_VERSION = (*FOUND, errors.VersionNotFound)

ROUTES = (
    Route("POST", VERSIONS_PATH, "CreateModelVersion", create_model_version, "Add a version to a model",
          "create-model-version-response.json", body="create-model-version-request.json",
          errors=(*FOUND, errors.VersionNameConflict, *GROWS), writes=True),
    Route("GET", VERSIONS_PATH, "ListModelVersions", list_model_versions, "List a model's versions",
          "list-model-versions-response.json", query="list-model-versions-query.json", errors=FOUND),
    Route("GET", VERSION_PATH, "GetModelVersion", get_model_version, "Get a version", "get-model-version-response.json",
          errors=NO_VERSION),
    Route("PUT", VERSION_PATH, "UpdateModelVersion", update_model_version, "Update a version's fields (approve, reject)",
          "empty-response.json", body="update-model-version-request.json", errors=(*NO_VERSION, errors.ApprovalFinal, *GROWS),
          writes=True),
    Route("DELETE", VERSION_PATH, "DeleteModelVersion", delete_model_version, "Delete a version", "empty-response.json",
          errors=(*NO_VERSION, *WRITES), writes=True),
    Route("POST", VERSION_PATH + "/labels", "CreateModelVersionLabels", create_model_version_labels,
          "Add or replace a version's labels", "empty-response.json", body="model-labels-request.json",
          errors=(*NO_VERSION, *GROWS), writes=True),
    Route("DELETE", VERSION_PATH + "/labels", "DeleteModelVersionLabels", delete_model_version_labels,
          "Remove a version's labels by key", "empty-response.json", query="delete-labels-query.json",
          errors=(*NO_VERSION, *WRITES), writes=True),
)
