"""The API's operations, one function each: a routed Call in, the answer's fields out (RequestId is added by the core)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import names, records
from .errors import ModelNotFound
from .listing import Query

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
