"""The API's operations, one function each: a routed Call in, the answer's fields out (RequestId is added by the core)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import names, records
from .errors import InvalidParameter, ModelNotFound
from .listing import Query, VersionQuery
from .validation import validate

if TYPE_CHECKING:
    from .app import Call


def create_model(call: Call) -> dict[str, Any]:
    fields = call.body()
    normal = records.normalized_request(fields, fields.get("WorkspaceId", call.app.default_workspace))
    model_id, _ = call.registry.create(normal, call.caller.owner_id)
    call.facts["ModelId"] = model_id
    return {"ModelId": model_id}


def list_models(call: Call) -> dict[str, Any]:
    params = call.query()
    workspace_id = params.get("WorkspaceId") or call.app.default_workspace
    models, total = call.registry.list_models(workspace_id, Query.parse(params))
    return {"Models": models, "TotalCount": total}


def get_model(call: Call) -> dict[str, Any]:
    model_id = call.params["ModelId"]
    model = call.registry.get(model_id)
    if model is None:
        raise ModelNotFound(f"model {model_id} does not exist")
    return dict(model)


def update_model(call: Call) -> dict[str, Any]:
    call.registry.update(call.params["ModelId"], call.body())
    return {}


def delete_model(call: Call) -> dict[str, Any]:
    call.registry.delete(call.params["ModelId"])
    return {}


def create_model_labels(call: Call) -> dict[str, Any]:
    call.registry.add_labels(call.params["ModelId"], call.body()["Labels"])
    return {}


def delete_model_labels(call: Call) -> dict[str, Any]:
    keys = [names.nfc(key) for key in call.query()["LabelKeys"].split(",")]
    call.registry.remove_labels(call.params["ModelId"], keys)
    return {}


def create_model_version(call: Call) -> dict[str, Any]:
    name, _ = call.app.versions.create(call.params["ModelId"], call.body(), call.caller.owner_id)
    call.facts["VersionName"] = name
    return {"VersionName": name}


def list_model_versions(call: Call) -> dict[str, Any]:
    versions, total = call.app.versions.list_versions(call.params["ModelId"], VersionQuery.parse(call.query()))
    return {"Versions": versions, "TotalCount": total}


def get_model_version(call: Call) -> dict[str, Any]:
    return call.app.versions.get(call.params["ModelId"], call.params["VersionName"])


def update_model_version(call: Call) -> dict[str, Any]:
    call.app.versions.update(call.params["ModelId"], call.params["VersionName"], call.body())
    return {}


def delete_model_version(call: Call) -> dict[str, Any]:
    call.app.versions.delete(call.params["ModelId"], call.params["VersionName"])
    return {}


def create_model_version_labels(call: Call) -> dict[str, Any]:
    call.app.versions.add_labels(call.params["ModelId"], call.params["VersionName"], call.body()["Labels"])
    return {}


def delete_model_version_labels(call: Call) -> dict[str, Any]:
    keys = [names.nfc(key) for key in call.query()["LabelKeys"].split(",")]
    call.app.versions.remove_labels(call.params["ModelId"], call.params["VersionName"], keys)
    return {}


def register_model_version(call: Call) -> dict[str, Any]:
    """An event's registration: a CreateModel body with a `Version` object. Registers the model if no model
    of that name is in the workspace, then adds the version, once however often the event is delivered."""
    fields = call.body()
    version = fields.pop("Version")
    if not isinstance(version, dict):
        raise InvalidParameter("Version must be an object")
    validate("create-model-request.json", fields)
    version = names.normalized(version)
    try:
        validate("create-model-version-request.json", version)
    except InvalidParameter as e:
        raise InvalidParameter(f"Version: {e.message}") from None
    normal = records.normalized_request(fields, fields.get("WorkspaceId", call.app.default_workspace))
    model_id, _ = call.registry.create(normal, call.caller.owner_id, adopt=True)
    token = records.fingerprint({"ModelName": normal["ModelName"], "Version": version})
    name, _ = call.app.versions.create(model_id, version, call.caller.owner_id, token=token)
    call.facts.update(ModelId=model_id, VersionName=name)
    return {"ModelId": model_id, "VersionName": name}
