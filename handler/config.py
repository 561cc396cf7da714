"""Configuration from the environment."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_WORKSPACE = "default"
DEFAULT_LOCAL_STORE = "file://./model-store"
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_WORKSPACE_BYTES = 128 << 20


@dataclass(frozen=True)
class Settings:
    """Everything the function reads from its environment."""

    store_url: str
    oss_endpoint: str | None
    oss_region: str | None
    oss_pool_size: int
    default_workspace: str
    max_body_bytes: int
    max_workspace_bytes: int
    access_keys: str | None  # URL of the access keys document: file://PATH or oss://BUCKET/KEY
    require_signatures: bool  # refuse every API request when no keys are configured (on FC)
    notifications: str | None = None  # URL of the rules of change events out: file://PATH or oss://BUCKET/KEY

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            store_url=env.get("MODEL_STORE") or DEFAULT_LOCAL_STORE,
            oss_endpoint=env.get("OSS_ENDPOINT") or None,
            oss_region=env.get("OSS_REGION") or None,
            oss_pool_size=_positive_int(env, "OSS_POOL_SIZE", 16),
            default_workspace=env.get("DEFAULT_WORKSPACE_ID") or DEFAULT_WORKSPACE,
            max_body_bytes=_positive_int(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_workspace_bytes=_positive_int(env, "MAX_WORKSPACE_BYTES", DEFAULT_MAX_WORKSPACE_BYTES),
            access_keys=env.get("ACCESS_KEYS") or None,
            require_signatures=bool(env.get("ACCESS_KEYS")) or bool(env.get("FC_FUNCTION_NAME")),
            notifications=env.get("NOTIFICATIONS") or None,
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise ValueError(f"{name} must be a positive integer")
    return int(text)
