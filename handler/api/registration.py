"""RegisterModelVersion: an event's registration of a model (if new) and a version of it, exactly once."""
from __future__ import annotations

from typing import Any

from .. import errors
from ..errors import InvalidParameter
from ..registry import records
from ..rules import names
from ..rules.validation import validate
from .call import Call
from .routing import Route


def register_model_version(call: Call) -> dict[str, Any]:
    """A CreateModel body with a `Version` object. Registers the model if no model of that name is in the
    workspace, then adds the version, once however often the event is delivered."""
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
    normal = records.normalized_request(fields, call.workspace_id(fields.get("WorkspaceId")))
    token = records.fingerprint({"ModelName": normal["ModelName"], "Version": version})
    # Looked up first: a redelivered registration is answered for one read, writing nothing; a new
    # version of a model that exists skips the model's create (its record write and removal).
    model_id, name = call.versions.registered(normal["WorkspaceId"], normal["ModelName"], token)
    if name is None and model_id is not None:
        try:
            name, _ = call.versions.create(model_id, version, call.caller.owner_id, token=token)
        except errors.ModelNotFound:  # deleted since the lookup: register it anew, as if it had not been there
            model_id = None
    if model_id is None:  # the model and its version in one commit
        model_id, name = call.versions.register(normal, version, call.caller.owner_id, token)
    call.facts.update(ModelId=model_id, VersionName=name)
    return {"ModelId": model_id, "VersionName": name}


# Reached by events only: no HTTP path, so not in the OpenAPI document.
REGISTRATION = Route("POST", "/registrations", "RegisterModelVersion", register_model_version,
                     "Register a model (if new) and a version of it, from an event", "create-model-version-response.json",
                     errors=(errors.ModelNameConflict, errors.VersionNameConflict, errors.QuotaExceeded), writes=True)
