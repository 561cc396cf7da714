"""The App an instance runs, composed from its settings: the store, the registry and the access keys."""
from __future__ import annotations

from collections.abc import Callable

from ..api.app import App
from ..api.auth import KeyRing, Verifier
from ..api.routes import ROUTES
from ..config import Settings
from ..errors import KeysNotConfigured
from ..notify.delivery import Deliverer
from ..notify.rules import RuleBook
from ..registry.models import Registry
from ..rules.validation import validator
from ..stores import open_store
from ..stores.base import NotFound, Store
from ..stores.credentials import CredentialSource
from ..stores.documents import document_reader


def build_app(settings: Settings, credentials: CredentialSource | None = None) -> App:
    """An App over the store the settings name, with every schema compiled; OSS signs with `credentials`
    (FC's, offered per invocation), else with the ALIBABA_CLOUD_* variables."""
    credentials = credentials or CredentialSource()
    if not validator("common.json#/$defs/WorkspaceId").is_valid(settings.default_workspace):
        raise ValueError("DEFAULT_WORKSPACE_ID must be 1 to 64 letters, digits, '_' or '-'")
    for route in ROUTES:  # compiled now, once per instance, not on a request
        for schema in (route.body, route.query):
            if schema:
                validator(schema)
    store = open_store(settings.store_url, oss_endpoint=settings.oss_endpoint, oss_region=settings.oss_region,
                       credentials=credentials, pool_size=settings.oss_pool_size)
    verifier = None
    if settings.access_keys:
        verifier = Verifier(KeyRing(keys_loader(settings, credentials)), store)
    return App(Registry(store, settings.max_workspace_bytes), default_workspace=settings.default_workspace,
               max_body_bytes=settings.max_body_bytes, verifier=verifier, require_signatures=settings.require_signatures)


def keys_loader(settings: Settings, credentials: CredentialSource) -> Callable[[], bytes]:
    """Reads the access keys document where ACCESS_KEYS says: a file, or an OSS object read with the function's
    own credentials. A missing or unreadable document refuses every request (KeysNotConfigured), never opens them;
    unreachable storage stays a 503 (retry)."""
    read = document_reader(settings.access_keys or "", "ACCESS_KEYS", _bucket_opener(settings, credentials))

    def keys() -> bytes:
        try:
            return read()
        except NotFound:
            raise KeysNotConfigured("the access keys document cannot be read or does not exist yet") from None
    return keys


def _bucket_opener(settings: Settings, credentials: CredentialSource) -> Callable[[str], Store]:
    """A store on another bucket, with the function's credentials: where a configured document lives."""
    def bucket(name: str) -> Store:
        return open_store(f"oss://{name}/", oss_endpoint=settings.oss_endpoint, oss_region=settings.oss_region,
                          credentials=credentials, pool_size=2)
    return bucket


def build_deliverer(settings: Settings, store: Store, credentials: CredentialSource | None = None) -> Deliverer | None:
    """The delivery of change events over `store`, if NOTIFICATIONS names rules; its document read from a file, or
    from OSS with the function's own credentials (as the access keys are)."""
    if not settings.notifications:
        return None
    credentials = credentials or CredentialSource()

    read = document_reader(settings.notifications, "NOTIFICATIONS", _bucket_opener(settings, credentials))
    return Deliverer(store, RuleBook(read), credentials=credentials)
