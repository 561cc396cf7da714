"""MLflow's registry REST API over the same models: one function per MLflow call, and their routes (each in
the default workspace and under /workspaces/<WorkspaceId>), with the PAI action a key's policy is checked for."""
from __future__ import annotations

import sys
from typing import Any

from ... import errors
from ...catalog.state import Entry
from ...catalog.workspace import Workspace
from ...errors import InvalidParameter, ModelNameConflict, VersionNotFound
from ...registry import aliases, records
from ...rules import names
from ...rules.validation import validate
from ..call import Call
from ..routing import Route
from . import search, wire

MODEL_KEYS = ("name", "tags")
VERSION_KEYS = ("name", "run_id", "source_path", "version_number", "tags")
# What MLflow orders by, as the catalog's sort fields (models) and as the keys of a version's row (versions).
MODEL_ORDER = {"name": "ModelName", "last_updated_timestamp": "GmtModifiedTime", "timestamp": "GmtModifiedTime",
               "creation_timestamp": "GmtCreateTime"}
VERSION_ORDER = {"name": "name", "last_updated_timestamp": "last_updated_timestamp", "timestamp": "last_updated_timestamp",
                 "creation_timestamp": "creation_timestamp", "version_number": "number"}
_REPEATED = ("order_by", "stages")


# --- what every call needs ---

def params(call: Call) -> dict[str, Any]:
    """A GET's query parameters (order_by repeated), or another method's JSON body, checked against its schema."""
    if call.request.method not in ("GET", "HEAD"):
        return call.body()
    found: dict[str, Any] = {}
    for name, value in call.named_query():
        if name in _REPEATED:
            found.setdefault(name, []).append(value)
        elif name in found:
            raise InvalidParameter(f"query parameter {name[:64]} is given more than once")
        else:
            found[name] = value
    found = names.normalized(found)
    if call.query_schema:
        validate(call.query_schema, found, root="query")
    return found


def workspace(call: Call) -> Workspace:
    """The workspace the path names (or the default one), caught up with every acknowledged commit."""
    named = call.params.get("WorkspaceId")
    if named is not None:
        validate("common.json#/$defs/WorkspaceId", named, root="WorkspaceId")
    found = call.registry.workspace(call.workspace_id(named))
    found.read()
    return found


def model(call: Call, fields: dict[str, Any]) -> tuple[Workspace, Entry]:
    space = workspace(call)
    return space, aliases.named(space, fields["name"])


def version_name(space: Workspace, entry: Entry, number: str) -> str:
    """The VersionName of the model's version with that number; RESOURCE_DOES_NOT_EXIST if none has it."""
    numbers, _ = aliases.numbered(entry.record(), aliases.versions_of(space, entry.id))
    for name, n in numbers.items():
        if str(n) == number:
            return name
    raise VersionNotFound(f"Model Version (name={entry.name[:200]}, version={number[:20]}) not found")


def version_answer(call: Call, entry: Entry, name: str) -> dict[str, Any]:
    return wire.model_version(entry.name, call.versions.get(entry.id, name))


def model_answer(call: Call, model_id: str) -> dict[str, Any]:
    space = call.registry.workspace_of(model_id)
    space.read()
    entry = space.model(model_id)[0]
    if entry is None:
        raise errors.ModelNotFound(f"model {model_id} does not exist")
    return {"registered_model": wire.registered_model(space, entry)}


def checked_labels(tags: Any) -> list[dict[str, str]]:
    """MLflow's tags as labels, each under the rules of PAI's labels."""
    found = wire.labels(tags)
    validate("model-labels-request.json", {"Labels": found})
    return found


def model_request(fields: dict[str, Any]) -> dict[str, Any]:
    """A CreateRegisteredModel's fields (name, description, tags) as PAI's CreateModel request, checked."""
    request = {"ModelName": fields["name"], "Labels": checked_labels(fields.get("tags"))}
    if fields.get("description"):
        request["ModelDescription"] = fields["description"]
    validate("create-model-request.json", request)
    return request


def version_request(fields: dict[str, Any]) -> dict[str, Any]:
    """A CreateModelVersion's fields (source, description, tags, run_id, run_link, and an import's status) as PAI's
    request, checked."""
    validate("common.json#/$defs/SourceUri", fields["source"], root="source")
    request: dict[str, Any] = {"Uri": fields["source"], "Labels": checked_labels(fields.get("tags"))}
    if fields.get("description"):
        request["VersionDescription"] = fields["description"]
    if fields.get("run_id"):
        request.update(SourceType=wire.RUN_SOURCE, SourceId=fields["run_id"])
    if fields.get("run_link"):
        request["ExtraInfo"] = {wire.RUN_LINK: fields["run_link"]}
    if fields.get("status", "READY") != "READY":  # an import's: MLflow's other statuses
        request["ExtraInfo"] = {**request.get("ExtraInfo", {}), wire.STATUS: fields["status"]}
    return request


# --- registered models ---

def create_registered_model(call: Call) -> dict[str, Any]:
    fields = params(call)
    space = workspace(call)
    exists = ModelNameConflict(f"Registered Model (name={fields['name'][:200]}) already exists.")  # MLflow's words
    try:
        model_id, created = call.registry.create(records.normalized_request(model_request(fields), space.id), call.caller.owner_id)
    except ModelNameConflict:
        raise exists from None
    if not created:
        raise exists
    call.facts["ModelId"] = model_id
    return model_answer(call, model_id)


def get_registered_model(call: Call) -> dict[str, Any]:
    space, entry = model(call, params(call))
    return {"registered_model": wire.registered_model(space, entry)}


def rename_registered_model(call: Call) -> dict[str, Any]:
    fields = params(call)
    _, entry = model(call, fields)
    change = {"ModelName": fields["new_name"]}
    validate("update-model-request.json", change)
    call.registry.update(entry.id, change)
    return model_answer(call, entry.id)


def update_registered_model(call: Call) -> dict[str, Any]:
    fields = params(call)
    _, entry = model(call, fields)
    if "description" in fields:
        call.registry.update(entry.id, {"ModelDescription": fields["description"]})
    return model_answer(call, entry.id)


def delete_registered_model(call: Call) -> dict[str, Any]:
    _, entry = model(call, params(call))
    call.registry.delete(entry.id)
    return {}


def search_registered_models(call: Call) -> dict[str, Any]:
    fields = params(call)
    space = workspace(call)
    clauses, leave_out = search.without_prompts(search.parse_filter(fields.get("filter", ""), MODEL_KEYS))
    orders = search.parse_order(fields.get("order_by", []), MODEL_ORDER)
    count = search.max_results(fields.get("max_results"), 100, 1000)
    start = search.offset(fields.get("page_token"))
    selection = search.selection(clauses, orders[0] if orders else None, leave_out)
    if len(orders) > 1 and orders[0].key != "ModelName":  # ties of the first key go by the next ones: sorted here
        matched, total = space.select(selection, 0, sys.maxsize)
        page = search.sort_by(matched, orders, _model_value, lambda e: e.name)[start:start + count]
    else:  # names are unique: no ties after them
        page, total = space.select(selection, start, start + count)
    answer: dict[str, Any] = {"registered_models": [wire.registered_model(space, e) for e in page]}
    if start + count < total:
        answer["next_page_token"] = search.token(start + count)
    return answer


def _model_value(entry: Entry, field: str) -> Any:
    return entry.name if field == "ModelName" else entry.fact(field) or 0


def get_latest_versions(call: Call) -> dict[str, Any]:
    fields = params(call)
    space, entry = model(call, fields)
    stages = [stage.lower() for stage in fields.get("stages", [])]
    latest = space.latest(entry.id)
    if latest is None or (stages and "none" not in stages):
        return {"model_versions": []}
    return {"model_versions": [version_answer(call, entry, latest.name)]}


def set_registered_model_tag(call: Call) -> dict[str, Any]:
    fields = params(call)
    _, entry = model(call, fields)
    call.registry.add_labels(entry.id, checked_labels([{"key": fields["key"], "value": fields.get("value", "")}]))
    return {}


def delete_registered_model_tag(call: Call) -> dict[str, Any]:
    fields = params(call)
    _, entry = model(call, fields)
    call.registry.remove_labels(entry.id, [fields["key"]])
    return {}


def set_alias(call: Call) -> dict[str, Any]:
    fields = params(call)
    space, entry = model(call, fields)
    aliases.Aliases(call.registry).set(entry.id, fields["alias"], version_name(space, entry, fields["version"]))
    return {}


def delete_alias(call: Call) -> dict[str, Any]:
    fields = params(call)
    _, entry = model(call, fields)
    aliases.Aliases(call.registry).remove(entry.id, fields["alias"])
    return {}


def get_version_by_alias(call: Call) -> dict[str, Any]:
    fields = params(call)
    _, entry = model(call, fields)
    held = aliases.aliases_of(entry.record())
    if fields["alias"] not in held:
        raise VersionNotFound(f"Registered model alias {fields['alias'][:64]} not found.")
    return {"model_version": version_answer(call, entry, held[fields["alias"]])}


# --- model versions ---

def create_model_version(call: Call) -> dict[str, Any]:
    fields = params(call)
    _, entry = model(call, fields)
    number = int(fields["version"]) if "version" in fields else None  # an import's, keeping MLflow's numbers
    name, _ = call.versions.create(entry.id, version_request(fields), call.caller.owner_id, number=number)
    call.facts.update(ModelId=entry.id, VersionName=name)
    return {"model_version": version_answer(call, entry, name)}


def get_model_version(call: Call) -> dict[str, Any]:
    fields = params(call)
    space, entry = model(call, fields)
    return {"model_version": version_answer(call, entry, version_name(space, entry, fields["version"]))}


def update_model_version(call: Call) -> dict[str, Any]:
    fields = params(call)
    space, entry = model(call, fields)
    name = version_name(space, entry, fields["version"])
    if "description" in fields:
        call.versions.update(entry.id, name, {"VersionDescription": fields["description"]})
    return {"model_version": version_answer(call, entry, name)}


def delete_model_version(call: Call) -> dict[str, Any]:
    fields = params(call)
    space, entry = model(call, fields)
    call.versions.delete(entry.id, version_name(space, entry, fields["version"]))
    return {}


def get_download_uri(call: Call) -> dict[str, Any]:
    fields = params(call)
    space, entry = model(call, fields)
    return {"artifact_uri": call.versions.get(entry.id, version_name(space, entry, fields["version"])).get("Uri", "")}


def set_model_version_tag(call: Call) -> dict[str, Any]:
    fields = params(call)
    space, entry = model(call, fields)
    labels = checked_labels([{"key": fields["key"], "value": fields.get("value", "")}])
    call.versions.add_labels(entry.id, version_name(space, entry, fields["version"]), labels)
    return {}


def delete_model_version_tag(call: Call) -> dict[str, Any]:
    fields = params(call)
    space, entry = model(call, fields)
    call.versions.remove_labels(entry.id, version_name(space, entry, fields["version"]), [fields["key"]])
    return {}


def search_model_versions(call: Call) -> dict[str, Any]:
    fields = params(call)
    space = workspace(call)
    clauses, leave_out = search.without_prompts(search.parse_filter(fields.get("filter", ""), VERSION_KEYS))
    orders = search.parse_order(fields.get("order_by", []), VERSION_ORDER)
    count = search.max_results(fields.get("max_results"), 10_000, 200_000)
    start = search.offset(fields.get("page_token"))
    candidates, _ = space.select(search.selection([c for c in clauses if c.key == "name"], None, False), 0, sys.maxsize)
    rows: list[dict[str, Any]] = []
    for entry in candidates:
        versions = aliases.versions_of(space, entry.id)
        if not versions:
            continue
        shown = aliases.shown(space, entry, [v.record() for v in versions])
        for record in shown:
            answer = wire.model_version(entry.name, record)
            prompt = leave_out and {"key": search.PROMPT_TAG, "value": "true"} in answer["tags"]
            if not prompt and all(_version_holds(c, answer) for c in clauses if c.key != "name"):
                rows.append({"answer": answer, "name": entry.name, "number": record[aliases.NUMBER],
                             "creation_timestamp": answer["creation_timestamp"],
                             "last_updated_timestamp": answer["last_updated_timestamp"]})
    ordered = search.sort_by(rows, orders, dict.__getitem__, lambda row: (row["name"], -row["number"]))
    page = ordered[start:start + count]
    found: dict[str, Any] = {"model_versions": [row["answer"] for row in page]}
    if start + count < len(ordered):
        found["next_page_token"] = search.token(start + count)
    return found


def _version_holds(clause: search.Clause, answer: dict[str, Any]) -> bool:
    if clause.key.startswith("tags."):
        key = clause.key[5:]
        values = [t["value"] for t in answer["tags"] if t["key"] == key]
        return any(clause.holds(v) for v in values)  # as in MLflow's server, a version without the tag never matches
    actual = {"run_id": answer["run_id"], "source_path": answer["source"], "version_number": answer["version"]}[clause.key]
    return clause.holds(actual)


# --- the routes ---

FOUND = (errors.ModelNotFound,)
NO_VERSION = (errors.ModelNotFound, errors.VersionNotFound)
WRITES = (errors.StoreMisconfigured,)
GROWS = (errors.QuotaExceeded, *WRITES)
MODEL = "mlflow-registered-model-response.json"
VERSION = "mlflow-model-version-response.json"
EMPTY = "empty-response.json"

# (method, path below /api/2.0/mlflow, MLflow's call, PAI action, function, summary, answer, body or query, errors)
_CALLS: tuple[tuple[str, str, str, str, Any, str, str, str | None, tuple[type[errors.ApiError], ...]], ...] = (
    ("POST", "/registered-models/create", "CreateRegisteredModel", "CreateModel", create_registered_model,
     "Create a registered model (a model)", MODEL, "mlflow-create-registered-model-request.json", (errors.ModelNameConflict, *GROWS)),
    ("GET", "/registered-models/get", "GetRegisteredModel", "GetModel", get_registered_model,
     "Get a registered model by name", MODEL, "mlflow-name-query.json", FOUND),
    ("POST", "/registered-models/rename", "RenameRegisteredModel", "UpdateModel", rename_registered_model,
     "Rename a registered model", MODEL, "mlflow-rename-request.json", (*FOUND, errors.ModelNameConflict, *GROWS)),
    ("PATCH", "/registered-models/update", "UpdateRegisteredModel", "UpdateModel", update_registered_model,
     "Change a registered model's description", MODEL, "mlflow-update-registered-model-request.json", (*FOUND, *GROWS)),
    ("DELETE", "/registered-models/delete", "DeleteRegisteredModel", "DeleteModel", delete_registered_model,
     "Delete a registered model and its versions", EMPTY, "mlflow-name-request.json", (*FOUND, *WRITES)),
    ("GET", "/registered-models/search", "SearchRegisteredModels", "ListModels", search_registered_models,
     "Search registered models", "mlflow-search-registered-models-response.json", "mlflow-search-query.json", ()),
    ("POST", "/registered-models/get-latest-versions", "GetLatestVersions", "ListModelVersions", get_latest_versions,
     "The latest version of a registered model", "mlflow-model-versions-response.json", "mlflow-latest-versions-request.json", FOUND),
    ("POST", "/registered-models/set-tag", "SetRegisteredModelTag", "CreateModelLabels", set_registered_model_tag,
     "Set a registered model's tag (a label)", EMPTY, "mlflow-tag-request.json", (*FOUND, *GROWS)),
    ("DELETE", "/registered-models/delete-tag", "DeleteRegisteredModelTag", "DeleteModelLabels", delete_registered_model_tag,
     "Delete a registered model's tag", EMPTY, "mlflow-tag-request.json", (*FOUND, *WRITES)),
    ("POST", "/registered-models/alias", "SetRegisteredModelAlias", "UpdateModel", set_alias,
     "Point an alias at a version (moving it)", EMPTY, "mlflow-set-alias-request.json", (*NO_VERSION, *GROWS)),
    ("DELETE", "/registered-models/alias", "DeleteRegisteredModelAlias", "UpdateModel", delete_alias,
     "Remove an alias", EMPTY, "mlflow-alias-request.json", (*FOUND, *WRITES)),
    ("GET", "/registered-models/alias", "GetModelVersionByAlias", "GetModelVersion", get_version_by_alias,
     "The version an alias names", VERSION, "mlflow-alias-query.json", NO_VERSION),
    ("POST", "/model-versions/create", "CreateModelVersion", "CreateModelVersion", create_model_version,
     "Create a version (the model's next number)", VERSION, "mlflow-create-model-version-request.json", (*FOUND, *GROWS)),
    ("GET", "/model-versions/get", "GetModelVersion", "GetModelVersion", get_model_version,
     "Get a version by number", VERSION, "mlflow-version-query.json", NO_VERSION),
    ("PATCH", "/model-versions/update", "UpdateModelVersion", "UpdateModelVersion", update_model_version,
     "Change a version's description", VERSION, "mlflow-version-request.json", (*NO_VERSION, *GROWS)),
    ("DELETE", "/model-versions/delete", "DeleteModelVersion", "DeleteModelVersion", delete_model_version,
     "Delete a version (and the aliases naming it)", EMPTY, "mlflow-version-request.json", (*NO_VERSION, *WRITES)),
    ("GET", "/model-versions/search", "SearchModelVersions", "ListModelVersions", search_model_versions,
     "Search versions", "mlflow-model-versions-response.json", "mlflow-search-versions-query.json", ()),
    ("GET", "/model-versions/get-download-uri", "GetModelVersionDownloadUri", "GetModelVersion", get_download_uri,
     "Where a version's artifact is", "mlflow-download-uri-response.json", "mlflow-version-query.json", NO_VERSION),
    ("POST", "/model-versions/set-tag", "SetModelVersionTag", "CreateModelVersionLabels", set_model_version_tag,
     "Set a version's tag (a label)", EMPTY, "mlflow-version-tag-request.json", (*NO_VERSION, *GROWS)),
    ("DELETE", "/model-versions/delete-tag", "DeleteModelVersionTag", "DeleteModelVersionLabels", delete_model_version_tag,
     "Delete a version's tag", EMPTY, "mlflow-version-tag-request.json", (*NO_VERSION, *WRITES)),
)


def _routes() -> tuple[Route, ...]:
    found = []
    for prefix, suffix in ((wire.PREFIX, ""), (wire.WORKSPACE_PREFIX, "InWorkspace")):
        for method, path, name, action, function, summary, answer, schema, errs in _CALLS:
            query = schema if method == "GET" else None
            found.append(Route(method, prefix + path, f"Mlflow{name}{suffix}", function, f"MLflow: {summary}", answer,
                               body=None if query else schema, query=query, errors=errs,
                               writes=method != "GET" and name != "GetLatestVersions", action=action))
    return tuple(found)


ROUTES = _routes()
