"""Where the catalog and the record files live below the store's root.

    models/<ModelId>.json                          a model's current record (it leads a ModelId to its workspace)
    models/<ModelId>/versions/<VersionName>.json   a version's current record
    catalog/<W>/log/<seq>.json                     commit seq (20 digits) of workspace W, create-only
    catalog/<W>/checkpoints/<seq>.json             W's whole state at seq, create-only
    catalog/<W>/checkpoint-parts/<seq>/<n>.jsonl   part n of the checkpoint at seq (a large one's records), create-only
    catalog/<W>/segments/<seq>.jsonl               commits seq-31..seq, one per line, as the log holds them, then an
                                                   end line {End: {Lines, Sha256}}: derived
    catalog/<W>/last-checkpoint.json               {"Seq": seq} of a recent checkpoint: a hint, overwritten
"""
from __future__ import annotations

CATALOG = "catalog/"
MODELS = "models/"


def record_key(model_id: str) -> str:
    return f"{MODELS}{model_id}.json"


def version_record_key(model_id: str, name: str) -> str:
    return f"{MODELS}{model_id}/versions/{name}.json"


def versions_prefix(model_id: str) -> str:
    return f"{MODELS}{model_id}/versions/"


def log_prefix(workspace_id: str) -> str:
    return f"{CATALOG}{workspace_id}/log/"


def log_key(workspace_id: str, seq: int) -> str:
    return f"{log_prefix(workspace_id)}{seq:020d}.json"


def checkpoint_key(workspace_id: str, seq: int) -> str:
    return f"{checkpoints_prefix(workspace_id)}{seq:020d}.json"


def hint_key(workspace_id: str) -> str:
    return f"{CATALOG}{workspace_id}/last-checkpoint.json"


def checkpoints_prefix(workspace_id: str) -> str:
    return f"{CATALOG}{workspace_id}/checkpoints/"


def segment_key(workspace_id: str, seq: int) -> str:
    return f"{CATALOG}{workspace_id}/segments/{seq:020d}.jsonl"


def checkpoint_part_key(workspace_id: str, seq: int, part: int) -> str:
    return f"{checkpoint_parts_prefix(workspace_id, seq)}{part:04d}.jsonl"


def checkpoint_parts_prefix(workspace_id: str, seq: int) -> str:
    return f"{all_checkpoint_parts_prefix(workspace_id)}{seq:020d}/"


def all_checkpoint_parts_prefix(workspace_id: str) -> str:
    return f"{CATALOG}{workspace_id}/checkpoint-parts/"


def is_checkpoint_part(key: str) -> bool:
    """Whether a key is a checkpoint's part (catalog/<ws>/checkpoint-parts/<seq>/<n>.jsonl)."""
    workspace, found, rest = key.removeprefix(CATALOG).partition("/checkpoint-parts/")
    return key.startswith(CATALOG) and bool(found) and "/" not in workspace and rest.endswith(".jsonl")
