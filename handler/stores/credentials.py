"""The credentials an OSS store signs with: FC's per-invocation STS keys, else the ALIBABA_CLOUD_* variables, else
the default chain of `alibabacloud-credentials` (a profile file, RRSA's OIDC token, an ECS RAM role)."""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

from .base import Unavailable


class Credentials(NamedTuple):
    """Access key pair and, for STS credentials, the security token."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id!r}, access_key_secret=***, security_token=***)"


class CredentialSource:
    """The newest credentials FC handed over in a context, else the ALIBABA_CLOUD_* variables, else the
    default chain of `alibabacloud-credentials` (read from the process environment and home directory).

    FC's credentials are short-lived STS keys that rotate between invocations, so each
    invocation offers its context and every OSS request asks for the current ones. The chain is
    imported on first need only: on FC the context always has credentials, and a cold start
    does not pay for it.
    """

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self._env = env
        self._from_context: Credentials | None = None
        self._lock = threading.Lock()
        self._chain: Any = None

    def offer(self, context: Any) -> None:
        creds = getattr(context, "credentials", None)
        key_id = getattr(creds, "access_key_id", None)
        secret = getattr(creds, "access_key_secret", None)
        if key_id and secret:
            with self._lock:
                self._from_context = Credentials(key_id, secret, getattr(creds, "security_token", None) or None)

    def __call__(self) -> Credentials:
        with self._lock:
            if self._from_context:
                return self._from_context
        key_id = self._env.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
        secret = self._env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        if key_id and secret:
            return Credentials(key_id, secret, self._env.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None)
        return self._from_chain()

    def _from_chain(self) -> Credentials:
        """The default chain's current credentials (it caches and refreshes them itself)."""
        try:
            with self._lock:
                if self._chain is None:
                    from alibabacloud_credentials.client import Client

                    # Its providers log each failure with a traceback; the one line below says what matters.
                    logging.getLogger("credentials").setLevel(logging.CRITICAL)
                    self._chain = Client()
            found = self._chain.get_credential()
            key_id, secret = found.access_key_id, found.access_key_secret
        except Exception as e:  # noqa: BLE001 - whatever the chain raised, the store has no credentials
            raise Unavailable("no OSS credentials", "no OSS credentials: none in the FC context, the ALIBABA_CLOUD_ACCESS_KEY_* "
                              f"variables or the default credential chain ({type(e).__name__})") from None
        if not key_id or not secret:
            raise Unavailable("no OSS credentials", "no OSS credentials: the default credential chain gave an empty key")
        return Credentials(key_id, secret, found.security_token or None)
