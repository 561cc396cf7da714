"""Delivery of change events: per rule and workspace, in commit order, at least once, from the catalog's log (the
outbox) to the rule's target, with a cursor and leases kept in the store by create-only writes.

    deliveries/<rule>/<W>/cursor/<n>.json      {"Seq": s}: every event of W's commits <= s was delivered (or
                                               dead-lettered); n counts the cursor's moves, each a create-only write
    deliveries/<rule>/<W>/claims/<n>-<k>.json  attempt k of delivering after cursor n: {"Owner", "Until", "Done",
                                               "Next", "Failing"?}; created create-only (one winner), then only its
                                               owner rewrites it (progress, back-off)
    dead-letters/<rule>/<W>/<seq>-<i>.json     an event its target refused for DEAD_AFTER seconds: {"Event", "Error", ...}

docs/events.md has the invariants and the crash table."""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..catalog.keys import CATALOG, hint_key, log_key
from ..catalog.workspace import hinted_seq
from ..rules.jsontext import compact
from ..rules.times import parse_utc
from ..stores.base import AlreadyExists, NotFound, Store, StoreError
from .events import events_of
from .rules import Rule, RuleBook
from .webhook import TIMEOUT, DeliveryFailed, Webhook

log = logging.getLogger(__name__)

DELIVERIES = "deliveries/"
DEAD_LETTERS = "dead-letters/"
LEASE = 60.0  # seconds an attempt holds a rule's workspace; it stops sending well before (a send's timeout + margin)
FIRST_RETRY = 2.0  # seconds after a first failure; doubling each time
MAX_BACKOFF = 300.0
DEAD_AFTER = 24 * 3600.0  # seconds an event is retried before it becomes a dead letter and later events go on
WINDOW = 64  # log entries read at once
CLOCK_MARGIN = 5.0  # seconds: instances' clocks differ a little, and a commit's time is cut to the millisecond
START_SCAN = 4096  # commits a rule's first sight of a workspace reads back for those made since the rule was seen
_MARGIN = 5.0


class Target(Protocol):
    def send(self, body: bytes) -> None: ...

    def close(self) -> None: ...


def backoff(attempts: int) -> float:
    """Seconds before retry number `attempts` (1: the first): 2, 4, 8, ... at most MAX_BACKOFF."""
    return float(min(FIRST_RETRY * 2 ** (attempts - 1), MAX_BACKOFF))


def cursor_key(rule: str, workspace_id: str, n: int) -> str:
    return f"{DELIVERIES}{rule}/{workspace_id}/cursor/{n:020d}.json"


def claim_key(rule: str, workspace_id: str, n: int, k: int) -> str:
    return f"{DELIVERIES}{rule}/{workspace_id}/claims/{n:020d}-{k:06d}.json"


def dead_key(rule: str, workspace_id: str, seq: int, index: int) -> str:
    return f"{DEAD_LETTERS}{rule}/{workspace_id}/{seq:020d}-{index:04d}.json"


def _load(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def workspaces(store: Store) -> list[str]:
    """Every workspace with a catalog, one listing request each (a skip past each workspace's keys)."""
    found: list[str] = []
    after = ""
    while True:
        keys = store.list(CATALOG, start_after=after, limit=1)
        if not keys:
            return found
        workspace_id = keys[0][len(CATALOG):].split("/")[0]
        found.append(workspace_id)
        after = f"{CATALOG}{workspace_id}/~"  # past every key of it: they go on in lower-case letters


def log_head(store: Store, workspace_id: str) -> int:
    """The seq of the workspace's newest commit (0: none): from its checkpoint hint, then forward."""
    seq = hinted_seq(store.get_many([hint_key(workspace_id)])[0]) or 0
    while True:
        found = store.get_many([log_key(workspace_id, seq + i) for i in range(1, WINDOW + 1)])
        count = next((i for i, data in enumerate(found) if data is None), len(found))
        seq += count
        if count < len(found):
            return seq


@dataclass
class Position:
    """Where a rule's delivery stands in a workspace, as the store says."""

    n: int  # the cursor's number (0: no cursor yet)
    seq: int  # every commit up to this is delivered
    next: int  # events of commit seq + 1 already delivered
    claim: int  # the newest attempt's number on cursor n (0: none)
    until: float  # that attempt holds the workspace until then (or waits for its retry)
    failing: dict[str, Any] | None
    held_before: bool  # an attempt on the previous cursor still holds it (a redelivery moved the cursor meanwhile)


class Deliverer:
    """Delivers what the rules ask for, from the log, on one instance; any number of instances may run at once."""

    def __init__(self, store: Store, book: RuleBook, timeout: float = TIMEOUT, now: Callable[[], float] = time.time,
                 targets: Callable[[Rule], Target] | None = None, credentials: Any = None) -> None:
        self.store = store
        self.book = book
        self.credentials = credentials  # for cloud targets: a CredentialSource (the function's own)
        self.timeout = timeout
        self.now = now
        self.owner = uuid.uuid4().hex
        self._targets = targets or self._target
        self._since: dict[str, float] = {}

    def _target(self, rule: Rule) -> Target:
        if rule.kind == "Webhook":
            return Webhook(rule, self.timeout)
        from .clouds import target_of  # imported when a rule needs it: the cloud SDKs are not loaded otherwise

        return target_of(rule, self.timeout, self.credentials)

    def run(self, only: list[str] | None = None, deadline: float | None = None) -> int:
        """One pass: every rule over every workspace it covers (or only these); the events delivered."""
        rules = self.book.rules()
        if not rules:
            return 0
        for rule in rules:
            self.since(rule)
        delivered = 0
        known = only if only is not None else workspaces(self.store)
        for rule in rules:
            for workspace_id in known:
                if rule.covers(workspace_id):
                    try:
                        delivered += self.deliver(rule, workspace_id, deadline)
                    except StoreError as e:
                        log.warning("delivery of rule %s in workspace %s stopped: storage failed (%s)", rule.name,
                                    workspace_id, type(e).__name__)
        return delivered

    def run_until(self, deadline: float, only: list[str] | None = None, pause: float = 0.25) -> int:
        """Passes until nothing is left to deliver before the deadline (retries due meanwhile included)."""
        delivered = 0
        while True:
            count = self.run(only, deadline)
            delivered += count
            wait = self.next_due(only)
            if count == 0 and (wait is None or self.now() + wait >= deadline - self.timeout):
                return delivered
            if count == 0:
                time.sleep(max(pause, min(wait or pause, deadline - self.now())))

    def next_due(self, only: list[str] | None = None) -> float | None:
        """Seconds until the soonest retry a rule waits for, or None."""
        soonest: float | None = None
        for rule in self.book.rules():
            for workspace_id in only if only is not None else workspaces(self.store):
                if not rule.covers(workspace_id):
                    continue
                position = self.position(rule.name, workspace_id)
                if position.failing is not None:
                    wait = max(0.0, position.until - self.now())
                    soonest = wait if soonest is None else min(soonest, wait)
        return soonest

    def position(self, rule: str, workspace_id: str) -> Position:
        keys = self.store.list(f"{DELIVERIES}{rule}/{workspace_id}/")
        cursors = sorted(int(k.rpartition("/")[2][:20]) for k in keys if "/cursor/" in k)
        claims = sorted(tuple(int(p) for p in k.rpartition("/")[2][:-5].split("-")) for k in keys if "/claims/" in k)
        if not cursors:
            return Position(0, 0, 0, 0, 0.0, None, False)
        n = cursors[-1]
        seq = int(_load(self.store.get(cursor_key(rule, workspace_id, n)))["Seq"])
        mine = [k for c, k in claims if c == n]
        before = [k for c, k in claims if c == n - 1]
        held_before = False
        if before:
            try:
                held_before = float(_load(self.store.get(claim_key(rule, workspace_id, n - 1, before[-1])))["Until"]) > self.now()
            except NotFound:
                pass
        if not mine:
            return Position(n, seq, 0, 0, 0.0, None, held_before)
        claim = _load(self.store.get(claim_key(rule, workspace_id, n, mine[-1])))
        done, nxt = int(claim["Done"]), int(claim.get("Next", 0))
        if done < seq:
            done, nxt = seq, 0
        return Position(n, done, nxt, mine[-1], float(claim["Until"]), claim.get("Failing"), held_before)

    def deliver(self, rule: Rule, workspace_id: str, deadline: float | None = None) -> int:
        """One attempt on a rule's workspace: claim it, send what follows its cursor in order, move the cursor."""
        position = self.position(rule.name, workspace_id)
        if position.n == 0:  # a rule's first sight of a workspace: it starts at the first commit made since the rule was
            try:
                start = self._start(rule, workspace_id)
                self.store.create(cursor_key(rule.name, workspace_id, 1), compact({"Seq": start}).encode())
            except AlreadyExists:
                pass
            position = self.position(rule.name, workspace_id)
        now = self.now()
        if position.until > now or position.held_before:
            return 0  # another attempt holds it, or a retry is not due yet
        entries = self._entries(workspace_id, position.seq)
        first = next(entries, None)
        if first is None:
            return 0  # nothing new: no write at all
        claim = {"Owner": self.owner, "Until": now + LEASE, "Done": position.seq, "Next": position.next,
                 "Failing": position.failing}
        key = claim_key(rule.name, workspace_id, position.n, position.claim + 1)
        try:
            self.store.create(key, compact(claim).encode())
        except AlreadyExists:
            return 0  # another instance took this attempt
        if position.claim:  # the attempt before is over: only the newest is ever read
            try:
                self.store.delete(claim_key(rule.name, workspace_id, position.n, position.claim))
            except StoreError:
                pass
        target = self._targets(rule)
        try:
            return self._send(rule, workspace_id, position, claim, key, target, _chain(first, entries), deadline)
        finally:
            target.close()

    def since(self, rule: Rule) -> float:
        """When the rule was first seen by any instance (kept in the store, create-only): it delivers what was
        committed from then on."""
        if rule.name not in self._since:
            key = f"{DELIVERIES}{rule.name}/since.json"
            try:
                self.store.create(key, compact({"Time": self.now()}).encode())
            except AlreadyExists:
                pass
            self._since[rule.name] = float(_load(self.store.get(key))["Time"])
        return self._since[rule.name]

    def _start(self, rule: Rule, workspace_id: str) -> int:
        """The seq before the first commit made since the rule was first seen (read back from the log's end, at most
        START_SCAN commits: older ones predate any instance that could have missed them)."""
        since, seq = self.since(rule), log_head(self.store, workspace_id)
        lowest = max(0, seq - START_SCAN)
        while seq > lowest:
            keys = [log_key(workspace_id, s) for s in range(max(lowest + 1, seq - WINDOW + 1), seq + 1)]
            for data in reversed(self.store.get_many(keys)):
                moment = parse_utc(_load(data).get("Time")) if data is not None else None
                if moment is None or moment < since - CLOCK_MARGIN:
                    return seq
                seq -= 1
        return seq

    def _entries(self, workspace_id: str, after: int) -> Iterator[dict[str, Any]]:
        seq = after
        while True:
            found = self.store.get_many([log_key(workspace_id, seq + i) for i in range(1, WINDOW + 1)])
            for data in found:
                if data is None:
                    return
                seq += 1
                yield _load(data)

    def _send(self, rule: Rule, workspace_id: str, position: Position, claim: dict[str, Any], key: str, target: Target,
              entries: Iterator[dict[str, Any]], deadline: float | None) -> int:
        delivered = 0
        failing = claim["Failing"]
        for entry in entries:
            seq = int(entry["Seq"])
            for index, event in enumerate(events_of(workspace_id, entry)):
                if seq == position.seq + 1 and index < position.next or not rule.matches(event):
                    continue
                now = self.now()
                stop = min(claim["Until"], deadline if deadline is not None else claim["Until"])
                if now + self.timeout + _MARGIN > stop:  # out of lease or budget: hand over where it stands
                    self._save(key, claim, Until=now)
                    return delivered
                body = compact(event).encode()
                try:
                    target.send(body)
                except DeliveryFailed as e:
                    same = failing is not None and (failing.get("Seq"), failing.get("Index")) == (seq, index)
                    since = float(failing["Since"]) if same else now
                    attempts = int(failing["Attempts"]) + 1 if same else 1
                    log.warning("rule %s: event %s not delivered (attempt %d): %s", rule.name, event["id"], attempts, e)
                    if now - since < DEAD_AFTER:
                        failing = {"Seq": seq, "Index": index, "Since": since, "Attempts": attempts, "Error": str(e)}
                        self._save(key, claim, Next=index, Failing=failing, Until=now + backoff(attempts))
                        return delivered
                    self._dead_letter(rule.name, workspace_id, seq, index, event, str(e), since, attempts)
                else:
                    delivered += 1
                failing = None
                claim["Next"], claim["Failing"] = index + 1, None
            claim["Done"], claim["Next"] = seq, 0
        self._save(key, claim, Until=0.0)  # ended: a redelivery waiting for this attempt may start
        try:
            self.store.create(cursor_key(rule.name, workspace_id, position.n + 1), compact({"Seq": claim["Done"]}).encode())
        except AlreadyExists:
            return delivered  # a redelivery moved the cursor meanwhile: it goes on from there
        self._tidy(rule.name, workspace_id, position.n + 1)
        return delivered

    def _save(self, key: str, claim: dict[str, Any], **changes: Any) -> None:
        claim.update(changes)
        self.store.put(key, compact(claim).encode())

    def _dead_letter(self, rule: str, workspace_id: str, seq: int, index: int, event: dict[str, Any], error: str, since: float,
                     attempts: int) -> None:
        log.error("rule %s: event %s is a dead letter after %d attempts since %s", rule, event["id"], attempts,
                  time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)))
        letter = {"Event": event, "Error": error, "Since": since, "Attempts": attempts, "At": self.now()}
        try:
            self.store.create(dead_key(rule, workspace_id, seq, index), compact(letter).encode())
        except AlreadyExists:
            pass

    def _tidy(self, rule: str, workspace_id: str, n: int) -> None:
        """Remove claims of older cursors and cursors before n - 1 (best effort: leftovers are only listed)."""
        stale = []
        for key in self.store.list(f"{DELIVERIES}{rule}/{workspace_id}/"):
            name = key.rpartition("/")[2]
            number = int(name[:20])
            if ("/claims/" in key and number < n) or ("/cursor/" in key and number < n - 1):
                stale.append(key)
        try:
            self.store.delete_many(stale)
        except StoreError:
            pass

    def redeliver(self, rule: str, workspace_id: str, from_seq: int) -> int:
        """Move the rule's cursor in a workspace back so that every event from commit from_seq on is sent again (by
        the next delivery pass, after an attempt in flight has ended); the cursor's new number."""
        for _ in range(16):
            position = self.position(rule, workspace_id)
            try:
                self.store.create(cursor_key(rule, workspace_id, position.n + 1), compact({"Seq": max(0, from_seq - 1)}).encode())
                return position.n + 1
            except AlreadyExists:
                continue
        raise StoreError("the cursor kept moving")

    def dead_letters(self, rule: str, workspace_id: str) -> list[str]:
        return self.store.list(f"{DEAD_LETTERS}{rule}/{workspace_id}/")

    def resend_dead_letters(self, rule: Rule, workspace_id: str) -> tuple[int, int]:
        """Send each dead letter of a rule again, removing those delivered: (delivered, still failing)."""
        target = self._targets(rule)
        sent = failed = 0
        try:
            for key in self.dead_letters(rule.name, workspace_id):
                letter = _load(self.store.get(key))
                try:
                    target.send(compact(letter["Event"]).encode())
                except DeliveryFailed as e:
                    log.warning("rule %s: dead letter %s still not delivered: %s", rule.name, letter["Event"]["id"], e)
                    failed += 1
                    continue
                self.store.delete(key)
                sent += 1
        finally:
            target.close()
        return sent, failed

    def status(self) -> list[dict[str, Any]]:
        """Each rule's cursor, lag and dead letters, per workspace it covers."""
        rows = []
        heads: dict[str, int] = {}
        for rule in self.book.rules():
            for workspace_id in workspaces(self.store):
                if not rule.covers(workspace_id):
                    continue
                position = self.position(rule.name, workspace_id)
                head = heads.setdefault(workspace_id, log_head(self.store, workspace_id))
                row: dict[str, Any] = {"Rule": rule.name, "Target": rule.kind, "WorkspaceId": workspace_id,
                                       "Cursor": position.seq if position.n else None, "Head": head,
                                       "Lag": head - position.seq if position.n else None,
                                       "DeadLetters": len(self.dead_letters(rule.name, workspace_id))}
                if position.failing:
                    row["Failing"] = {k: position.failing[k] for k in ("Seq", "Index", "Attempts", "Error")}
                    row["NextAttempt"] = max(0.0, position.until - self.now())
                rows.append(row)
        return rows


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


class Loop:
    """The local server's delivery: a pass every `every` seconds in a thread, until stopped."""

    def __init__(self, deliverer: Deliverer, every: float = 0.25) -> None:
        self.deliverer = deliverer
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deliveries", daemon=True)

    def start(self) -> Loop:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliverer.run()
            except Exception as e:  # noqa: BLE001 - the loop outlives any one pass; the next one tries again
                log.warning("a delivery pass failed: %s", type(e).__name__)
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
