"""The stored records, a model's and a version's: built from requests, changed by updates; ModelIds; the label cap."""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from ..errors import ApprovalFinal, InvalidParameter
from ..rules.jsontext import compact
from ..rules.times import iso_time
from ..rules.validation import load_schemas

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_TIME_DIGITS = 9  # base-36 milliseconds: fixed width until the year 5188, so IDs sort by creation
_RANDOM_DIGITS = 16  # ~83 bits from the OS's CSPRNG: IDs cannot be guessed
MAX_LABELS = 1000  # of a model, and of a version

# Request fields copied into the record as given, in the SDK's order.
COPIED_FIELDS = (
    "ModelName", "ModelDescription", "Origin", "Domain", "Task", "ModelDoc",
    "ModelType", "OrderNumber", "ParameterSize", "ExtraInfo",
)


def new_model_id(now_ms: int | None = None) -> str:
    """`model-` + creation time + randomness, lower-case letters and digits only."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return "model-" + _base36(ms, _TIME_DIGITS) + _base36(secrets.randbelow(36**_RANDOM_DIGITS), _RANDOM_DIGITS)


def created_at(model_id: str) -> float | None:
    """When a ModelId was made (seconds since the epoch), from its leading digits; None if it is not one of ours."""
    digits = model_id.removeprefix("model-")[:_TIME_DIGITS]
    if len(digits) != _TIME_DIGITS or not all(c in _ALPHABET for c in digits):
        return None
    return int(digits, 36) / 1000


def _base36(number: int, width: int) -> str:
    digits = ""
    for _ in range(width):
        number, rest = divmod(number, 36)
        digits = _ALPHABET[rest] + digits
    return digits


def canonical_json(value: Any) -> bytes:
    """Compact UTF-8 JSON with sorted keys: equal values give equal bytes."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def record_json(record: dict[str, Any]) -> bytes:
    """The bytes stored for a record (field order kept for people reading the file)."""
    return compact(record).encode()


def check_label_count(count: int, kind: str) -> None:
    """Refuse a model or version (`kind`) that would have more than MAX_LABELS labels."""
    if count > MAX_LABELS:
        raise InvalidParameter(f"a {kind} has at most {MAX_LABELS} labels; this would make {count}")


def merged_labels(request: dict[str, Any]) -> list[dict[str, str]]:
    """`Tag` and its deprecated spelling `Labels` are one list: Tag first, duplicates dropped."""
    labels: dict[tuple[str, str], dict[str, str]] = {}
    for label in [*request.get("Tag", []), *request.get("Labels", [])]:
        labels.setdefault((label["Key"], label["Value"]), label)
    return list(labels.values())


def normalized_request(request: dict[str, Any], workspace_id: str) -> dict[str, Any]:
    """What a CreateModel request asks for once defaults are applied: two requests asking for the
    same model have equal normalized forms (and so equal fingerprints)."""
    normal = {name: request[name] for name in COPIED_FIELDS if name in request}
    normal["WorkspaceId"] = workspace_id
    normal["Accessibility"] = request.get("Accessibility", "PRIVATE")
    normal["Labels"] = merged_labels(request)
    return normal


def fingerprint(normal: dict[str, Any]) -> str:
    """A digest of a normalized request."""
    return hashlib.sha256(canonical_json(normal)).hexdigest()


def build_record(normal: dict[str, Any], model_id: str, now: float, owner_id: str | None) -> dict[str, Any]:
    """The SDK `Model` shape for a new model."""
    record: dict[str, Any] = {"ModelId": model_id}
    record.update((name, normal[name]) for name in COPIED_FIELDS if name in normal)
    record["WorkspaceId"] = normal["WorkspaceId"]
    record["Accessibility"] = normal["Accessibility"]
    record["Labels"] = normal["Labels"]
    record["Tags"] = normal["Labels"]
    record["GmtCreateTime"] = record["GmtModifiedTime"] = iso_time(now)
    if owner_id:
        record["OwnerId"] = owner_id
    return record


UPDATABLE_FIELDS = tuple(load_schemas()["update-model-request.json"]["properties"])  # what UpdateModel may change


def updated_record(record: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The record with an UpdateModel request's fields replacing its own (ExtraInfo as a whole)."""
    return {**record, **{name: fields[name] for name in UPDATABLE_FIELDS if name in fields}}


def with_labels(record: dict[str, Any], labels: list[dict[str, str]]) -> dict[str, Any]:
    return {**record, "Labels": labels, "Tags": labels}


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal records but for when they were last modified."""
    # Compared as JSON text: in Python 1 == 1.0 == True, in a record they differ.
    return canonical_json({**a, "GmtModifiedTime": None}) == canonical_json({**b, "GmtModifiedTime": None})


def touched(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The record, modified now."""
    return {**record, "GmtModifiedTime": iso_time(time.time() if now is None else now)}


VERSION_FIELDS = (
    "VersionName", "VersionDescription", "Uri", "ApprovalStatus", "FormatType", "FrameworkType", "SourceType", "SourceId",
    "Options", "InferenceSpec", "TrainingSpec", "EvaluationSpec", "CompressionSpec", "DistillationSpec", "Metrics",
    "ExtraInfo",
)
VERSION_UPDATABLE = tuple(load_schemas()["update-model-version-request.json"]["properties"])  # UpdateModelVersion's


APPROVAL_SPELLINGS = {"PENDING": "Pending", "APPROVED": "Approved", "REJECTED": "Rejected"}  # the `pai` SDK's
FINAL_APPROVALS = ("Approved", "Rejected")  # PAI's rule: a decided version's status never changes


def canonical_approval(status: str) -> str:
    """An ApprovalStatus as stored: the `pai` SDK's PENDING, APPROVED, REJECTED as PAI's Pending, Approved, Rejected."""
    return APPROVAL_SPELLINGS.get(status, status)


def normalized_version(request: dict[str, Any]) -> dict[str, Any]:
    """What a CreateModelVersion request asks for once defaults are applied (VersionName aside)."""
    normal = {name: request[name] for name in VERSION_FIELDS if name in request and name != "VersionName"}
    normal["ApprovalStatus"] = canonical_approval(normal.get("ApprovalStatus", "Pending"))
    normal.setdefault("SourceType", "Custom")
    normal["Labels"] = merged_labels({"Labels": request.get("Labels", [])})
    return normal


def build_version(normal: dict[str, Any], name: str, now: float, owner_id: str | None) -> dict[str, Any]:
    """The SDK `ModelVersion` shape for a new version."""
    record: dict[str, Any] = {"VersionName": name}
    record.update((field, normal[field]) for field in VERSION_FIELDS if field in normal and field != "VersionName")
    record["Labels"] = normal["Labels"]
    record["GmtCreateTime"] = record["GmtModifiedTime"] = iso_time(now)
    if owner_id:
        record["OwnerId"] = owner_id
    return record


def updated_version(record: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The record with an UpdateModelVersion request's fields; ApprovalFinal if it would change a decided status."""
    new = {**record, **{name: fields[name] for name in VERSION_UPDATABLE if name in fields}}
    old_status = record.get("ApprovalStatus", "Pending")
    new["ApprovalStatus"] = canonical_approval(new.get("ApprovalStatus", old_status))
    if old_status in FINAL_APPROVALS and new["ApprovalStatus"] != old_status:
        raise ApprovalFinal(f"version {record.get('VersionName')} is {old_status}, which is final: its ApprovalStatus "
                            f"cannot become {new['ApprovalStatus']}")
    return new


def next_version_name(names: list[str]) -> str:
    """After the highest MAJOR.MINOR, the next minor: 0.1.0 first, then 0.2.0, ..."""
    highest = max((tuple(int(part) for part in name.split("_")[0].split(".")) for name in names), default=(0, 0, 0))
    return f"{highest[0]}.{highest[1] + 1}.0"
