"""The NOTIFICATIONS document: which events go where, read strictly (a rule with a typo is refused whole, never
half-applied), re-read at most a minute later, its secrets never logged."""
from __future__ import annotations

import fnmatch
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..stores.base import NotFound, Unavailable
from .events import EVENT_NAMES

log = logging.getLogger(__name__)

RELOAD_EVERY = 60.0  # seconds an instance trusts its copy of the rules
RETRY_AFTER = 5.0  # seconds before reading an unusable or unreachable document again
MIN_SECRET = 16
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
CLOUD_DOMAIN = ".aliyuncs.com"  # where a cloud target's Endpoint is, unless the rule allows its private network
_CLOUD_NAMES = {"EventBusName": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,126}"),
                "TopicName": re.compile(r"[A-Za-z][A-Za-z0-9-]{0,255}"),
                "Source": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")}
_RULE_FIELDS = {"Name", "Events", "Workspaces", "Models", "AllowPrivateNetwork", "Target"}
_TARGETS: dict[str, tuple[set[str], set[str]]] = {  # target kind: (required fields, optional fields)
    "Webhook": ({"Url", "Secret"}, set()),
    "EventBridge": ({"EventBusName", "Endpoint"}, {"Source"}),
    "MNS": ({"Endpoint", "TopicName"}, set()),
}


class BadRules(ValueError):
    """What is wrong with a NOTIFICATIONS document, said without its secrets."""


@dataclass(frozen=True)
class Rule:
    """One rule: the events, workspaces and model names it matches, and its target (kind and settings)."""

    name: str
    events: tuple[str, ...]
    workspaces: tuple[str, ...]
    models: tuple[str, ...]
    allow_private: bool
    kind: str  # Webhook, EventBridge, MNS
    target: dict[str, Any] = field(repr=False, hash=False, compare=False)  # holds the secret: never in a repr

    def __repr__(self) -> str:
        return f"Rule(name={self.name!r}, kind={self.kind!r}, target=***)"

    def covers(self, workspace_id: str) -> bool:
        return "*" in self.workspaces or workspace_id in self.workspaces

    def matches(self, event: dict[str, Any]) -> bool:
        name = event["type"].rpartition(".")[2]
        if "*" not in self.events and name not in self.events:
            return False
        return not self.models or any(fnmatch.fnmatchcase(event["data"].get("ModelName", ""), m) for m in self.models)


def parse_rules(data: bytes) -> list[Rule]:
    """{"Rules": [{"Name", "Events", "Workspaces", "Models"?, "AllowPrivateNetwork"?, "Target": {kind: {...}}}]}."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise BadRules("the document is not JSON") from None
    if not isinstance(document, dict) or set(document) != {"Rules"} or not isinstance(document["Rules"], list):
        raise BadRules('the document is not {"Rules": [...]}')
    rules: list[Rule] = []
    for number, item in enumerate(document["Rules"], 1):
        rules.append(_rule(item, number))
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise BadRules("two rules have one name")
    return rules


def _rule(item: Any, number: int) -> Rule:
    where = f"rule {number}"
    if not isinstance(item, dict):
        raise BadRules(f"{where} is not an object")
    name = item.get("Name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRules(f"{where}: Name must be 1 to 64 letters, digits, '_' or '-'")
    where = f"rule {name}"
    unknown = set(item) - _RULE_FIELDS
    if unknown:
        raise BadRules(f"{where}: unknown field {sorted(unknown)[0][:64]!r}")
    events, workspaces, models = item.get("Events"), item.get("Workspaces"), item.get("Models", [])
    for what, value in (("Events", events), ("Workspaces", workspaces), ("Models", models)):
        if not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            raise BadRules(f"{where}: {what} must be a list of text")
    if not events or not workspaces:
        raise BadRules(f"{where}: Events and Workspaces must name at least one (or '*')")
    wrong = [e for e in events if e != "*" and e not in EVENT_NAMES]
    if wrong:
        raise BadRules(f"{where}: no event is called {wrong[0][:64]!r} (known: {', '.join(EVENT_NAMES)}, or *)")
    allow = item.get("AllowPrivateNetwork", False)
    if not isinstance(allow, bool):
        raise BadRules(f"{where}: AllowPrivateNetwork must be true or false")
    target = item.get("Target")
    if not isinstance(target, dict) or len(target) != 1 or next(iter(target)) not in _TARGETS:
        raise BadRules(f"{where}: Target must hold exactly one of {', '.join(_TARGETS)}")
    kind, settings = next(iter(target.items()))
    required, optional = _TARGETS[kind]
    if not isinstance(settings, dict) or not required <= set(settings) or set(settings) - required - optional:
        also = f" (and {', '.join(sorted(optional))})" if optional else ""
        raise BadRules(f"{where}: {kind} takes {', '.join(sorted(required))}{also}")
    if not all(isinstance(v, str) and v for v in settings.values()):
        raise BadRules(f"{where}: the fields of {kind} are text")
    if kind == "Webhook":
        _check_webhook(where, settings, allow)
    else:
        _check_cloud(where, kind, settings, allow)
    return Rule(name, tuple(events), tuple(workspaces), tuple(models), allow, kind, dict(settings))


def _check_webhook(where: str, settings: dict[str, str], allow_private: bool) -> None:
    url = settings["Url"]
    scheme = url.partition("://")[0].lower()
    if scheme != "https" and not (scheme == "http" and allow_private):
        raise BadRules(f"{where}: a webhook Url is https:// (plain http:// only with AllowPrivateNetwork)")
    if len(settings["Secret"]) < MIN_SECRET:
        raise BadRules(f"{where}: the webhook's Secret is shorter than {MIN_SECRET} characters")


def _check_cloud(where: str, kind: str, settings: dict[str, str], allow_private: bool) -> None:
    """A cloud target is sent the function's credentials (its STS token travels in a header): its Endpoint is an
    https:// host under aliyuncs.com, or, with AllowPrivateNetwork, any host of the rule's own private network."""
    for field_name, pattern in _CLOUD_NAMES.items():
        if field_name in settings and not pattern.fullmatch(settings[field_name]):
            raise BadRules(f"{where}: {kind}'s {field_name} is not a valid name")
    parts = urlsplit(settings["Endpoint"])
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        parts.port  # noqa: B018 - read for its check: a port that is no number raises
    except ValueError:
        host = ""
    if (not host or parts.path not in ("", "/") or parts.query or parts.username
            or scheme != "https" and not (scheme == "http" and allow_private)):
        raise BadRules(f"{where}: {kind}'s Endpoint is https://HOST (plain http:// only with AllowPrivateNetwork)")
    if not host.endswith(CLOUD_DOMAIN) and not allow_private:
        raise BadRules(f"{where}: {kind}'s Endpoint is a host under {CLOUD_DOMAIN[1:]} (another only with "
                       "AllowPrivateNetwork, and then only on a private network)")


class RuleBook:
    """The rules, read from where NOTIFICATIONS says, kept for RELOAD_EVERY seconds. An unusable document
    delivers nothing (the cursors stay where they are, so nothing is lost) and is read again a few seconds later."""

    def __init__(self, load: Callable[[], bytes], now: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._now = now
        self._rules: list[Rule] = []
        self.problem = ""  # why the document is unusable, "" when it is fine
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def rules(self) -> list[Rule]:
        with self._lock:
            if self._now() - self._loaded_at > RELOAD_EVERY:
                self._reload()
            return list(self._rules)

    def _reload(self) -> None:
        try:
            self._rules, self.problem = parse_rules(self._load()), ""
        except BadRules as e:
            self.problem = str(e)
            log.warning("the notifications document is unusable (%s): no events are delivered until it is fixed", self.problem)
            self._rules = []
            self._loaded_at = self._now() - RELOAD_EVERY + RETRY_AFTER
            return
        except NotFound:  # not written yet: no rules, quietly (a deployment starts without one)
            self._rules, self.problem = [], "the document does not exist"
        except Unavailable:
            self._loaded_at = self._now() - RELOAD_EVERY + RETRY_AFTER  # keep what was read before
            return
        self._loaded_at = self._now()
