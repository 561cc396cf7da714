"""The model operations, one function each, and their routes: a routed Call in, the answer's fields out
(RequestId is added by the App)."""
from __future__ import annotations

from typing import Any

from .. import errors
from ..registry import aliases, records, upkeep
from ..registry.listing import Query
from ..rules import names
from ..rules.validation import validate
from .call import Call
from .routing import MODELS_PATH, Route

MODEL_PATH = MODELS_PATH + "/{ModelId}"


def create_model(call: Call) -> dict[str, Any]:
    fields = call.body()
    normal = records.normalized_request(fields, call.workspace_id(fields.get("WorkspaceId")))
    model_id, _ = call.registry.create(normal, call.caller.owner_id)
    call.facts["ModelId"] = model_id
    return {"ModelId": model_id}


def list_models(call: Call) -> dict[str, Any]:
    params = call.query()
    query = Query.parse(params)
    models, total = call.registry.list_models(call.workspace_id(params.get("WorkspaceId")), query)
    return {"Models": models, "TotalCount": total, **({"Truncated": True} if query.cut_short(len(models), total) else {})}


def get_model(call: Call) -> dict[str, Any]:
    return call.registry.get(call.params["ModelId"])


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
    call.registry.remove_labels(call.params["ModelId"], label_keys(call))
    return {}


def label_keys(call: Call) -> list[str]:
    """The LabelKeys query parameter of a label delete, as NFC keys."""
    return [names.nfc(key) for key in call.query()["LabelKeys"].split(",")]


HISTORY_COMMITS = 1000  # commits of the workspace's log one ListModelHistory reads at most


def list_model_history(call: Call) -> dict[str, Any]:
    """The model's changes in a window of at most HISTORY_COMMITS of its workspace's commits: (Since, Until]."""
    params = call.query()
    model_id = call.params["ModelId"]
    head = call.registry.workspace_of(model_id).read()
    until = min(int(params.get("Until", head)), head)
    since = min(int(params.get("Since", max(0, until - HISTORY_COMMITS))), until)
    since = max(since, until - HISTORY_COMMITS)
    try:
        found = upkeep.history(call.registry, model_id, since, until)
    except errors.ModelNotFound:
        found = []  # the model exists (its workspace was found): no change of it in this window
    return {"Changes": found, "Since": since, "Until": until}


def set_model_alias(call: Call) -> dict[str, Any]:
    """Point the alias at a version, moving it if it names another (MLflow's SetRegisteredModelAlias)."""
    validate("common.json#/$defs/Alias", call.params["Alias"], root="Alias")
    aliases.Aliases(call.registry).set(call.params["ModelId"], call.params["Alias"], call.body()["VersionName"])
    return {}


def delete_model_alias(call: Call) -> dict[str, Any]:
    validate("common.json#/$defs/Alias", call.params["Alias"], root="Alias")
    aliases.Aliases(call.registry).remove(call.params["ModelId"], call.params["Alias"])
    return {}


FOUND = (errors.ModelNotFound,)
WRITES = (errors.StoreMisconfigured,)
GROWS = (errors.QuotaExceeded, *WRITES)  # a write that may make a record larger

ROUTES = (
    Route("POST", MODELS_PATH, "CreateModel", create_model, "Create a model", "create-model-response.json",
          body="create-model-request.json", errors=(errors.ModelNameConflict, *GROWS), writes=True),
    Route("GET", MODELS_PATH, "ListModels", list_models, "List and search a workspace's models",
          "list-models-response.json", query="list-models-query.json"),
    Route("GET", MODEL_PATH, "GetModel", get_model, "Get a model", "get-model-response.json", errors=FOUND),
    Route("GET", MODEL_PATH + "/history", "ListModelHistory", list_model_history,
          "List a model's committed changes (who, what, when) from its workspace's log", "list-model-history-response.json",
          query="list-model-history-query.json", errors=FOUND),
    Route("PUT", MODEL_PATH, "UpdateModel", update_model, "Update a model's fields", "empty-response.json",
          body="update-model-request.json", errors=(*FOUND, errors.ModelNameConflict, *GROWS), writes=True),
    Route("DELETE", MODEL_PATH, "DeleteModel", delete_model, "Delete a model", "empty-response.json",
          errors=(*FOUND, *WRITES), writes=True),
    Route("POST", MODEL_PATH + "/labels", "CreateModelLabels", create_model_labels, "Add or replace a model's labels",
          "empty-response.json", body="model-labels-request.json", errors=(*FOUND, *GROWS), writes=True),
    Route("DELETE", MODEL_PATH + "/labels", "DeleteModelLabels", delete_model_labels, "Remove a model's labels by key",
          "empty-response.json", query="delete-labels-query.json", errors=(*FOUND, *WRITES), writes=True),
    # Aliases (docs/mlflow.md#aliases), checked as UpdateModel as MLflow's alias calls are.
    Route("PUT", MODEL_PATH + "/aliases/{Alias}", "SetModelAlias", set_model_alias,
          "Point an alias at a version (moving it)", "empty-response.json", body="set-model-alias-request.json",
          errors=(*FOUND, errors.VersionNotFound, *GROWS), writes=True, action="UpdateModel"),
    Route("DELETE", MODEL_PATH + "/aliases/{Alias}", "DeleteModelAlias", delete_model_alias,
          "Remove an alias (absent: nothing changes)", "empty-response.json", errors=(*FOUND, *WRITES), writes=True,
          action="UpdateModel"),
)
