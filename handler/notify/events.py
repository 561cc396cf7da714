"""Change events out of the catalog's log: each change of a commit is one CloudEvents 1.0 event, named after what
it did (docs/events.md). The log is the outbox: an event is derived from its entry alone, so it is the same on
every instance and at every redelivery."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..catalog.entry import ALIASES
from ..catalog.state import check_entry, part_of_the_change_before

EVENT_NAMES = ("ModelCreated", "ModelUpdated", "ModelDeleted", "ModelVersionCreated", "ModelVersionUpdated",
               "ModelVersionApprovalStatusChanged", "ModelVersionDeleted")
TYPE_PREFIX = "model-registry."
SOURCE = "/model-registry/workspaces/"


def event_name(change: Mapping[str, Any]) -> str:
    """The event a change is: from its kind and what it replaced (its "Was"). A change written by a registry older
    than events has no "Was": a record whose modified time is its creation time was then created, else updated."""
    was = change.get("Was")
    if "Delete" in change:
        return "ModelDeleted"
    if "DeleteVersion" in change:
        return "ModelVersionDeleted"
    put = change.get("Put") or change["PutVersion"]
    record = put.get("Model") or put["Version"]
    existed = was.get("Existed") if isinstance(was, dict) else record.get("GmtCreateTime") != record.get("GmtModifiedTime")
    if "Put" in change:
        return "ModelUpdated" if existed else "ModelCreated"
    if not existed:
        return "ModelVersionCreated"
    if isinstance(was, dict) and "ApprovalStatus" in was and was["ApprovalStatus"] != record.get("ApprovalStatus"):
        return "ModelVersionApprovalStatusChanged"
    return "ModelVersionUpdated"


def event_id(workspace_id: str, seq: int, index: int) -> str:
    """Stable across redeliveries: the commit and the change's place in it."""
    return f"{workspace_id}/{seq}/{index}"


def events_of(workspace_id: str, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of one log entry, in the order of its changes (checked whole first: CatalogFormatTooNew if this
    registry cannot read it)."""
    seq = entry["Seq"]
    check_entry(entry, seq)
    changes = entry["Changes"]
    parts = [bool(index) and part_of_the_change_before(changes[index - 1], change) for index, change in enumerate(changes)]
    return [_event(workspace_id, seq, index, change, entry, changes[index + 1] if index + 1 < len(changes) and parts[index + 1] else None)
            for index, change in enumerate(changes) if not parts[index]]


def _aliases(put: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where a model's record change set, moved or removed an alias: its aliases after it and before it."""
    if put is None or not isinstance(put.get("Was"), dict) or ALIASES not in put["Was"]:
        return {}
    return {ALIASES: put["Put"]["Model"].get(ALIASES, []), "Previous" + ALIASES: put["Was"][ALIASES]}


def _event(workspace_id: str, seq: int, index: int, change: Mapping[str, Any], entry: Mapping[str, Any],
           part: Mapping[str, Any] | None) -> dict[str, Any]:
    """One change's event; `part` is the model's record change that is part of it (a version's), if any."""
    name = event_name(change)
    found = change.get("Was")
    was: dict[str, Any] = found if isinstance(found, dict) else {}
    at = change.get("At") or entry.get("Time", "")
    data: dict[str, Any] = {"WorkspaceId": workspace_id}
    if "Put" in change:
        record = change["Put"]["Model"]
        data.update(ModelId=record["ModelId"], ModelName=record.get("ModelName", ""))
    elif "Delete" in change:
        data.update(ModelId=change["Delete"], ModelName=was.get("ModelName", ""))
    else:
        version = change.get("PutVersion") or change["DeleteVersion"]
        record = version.get("Version", {})
        data.update(ModelId=version["ModelId"], ModelName=was.get("ModelName", ""),
                    VersionName=record.get("VersionName") or version.get("VersionName"))
        status = record.get("ApprovalStatus") if "PutVersion" in change else was.get("ApprovalStatus")
        if status is not None:
            data["ApprovalStatus"] = status
        if name == "ModelVersionApprovalStatusChanged":
            data["PreviousApprovalStatus"] = was["ApprovalStatus"]
    data.update(_aliases(change if "Put" in change else part))
    data.update(By=change.get("By", "unknown"), At=at, Seq=seq)
    subject = f"models/{data['ModelId']}" + (f"/versions/{data['VersionName']}" if "VersionName" in data else "")
    return {"specversion": "1.0", "id": event_id(workspace_id, seq, index), "source": SOURCE + workspace_id,
            "type": TYPE_PREFIX + name, "subject": subject, "time": at, "datacontenttype": "application/json", "data": data}
