"""Adapters: every invocation shape FC delivers, turned into Requests for the core and back.

    API Gateway / HTTP trigger v1  ->  one Request, answered with the gateway's response struct
    EventBridge, MNS, direct       ->  a CreateModel Request per registration, answered with its body
    batch (a JSON array)           ->  one result per item
    OSS trigger                    ->  each object under registrations/ read and registered; the
                                       outcome written under registration-results/
    timer trigger                  ->  the sweep of leftovers (registry/upkeep.py); the `deliveries` timer
                                       (payload "deliveries"): change events out, for every workspace
    OSS trigger on catalog/        ->  change events out for the workspaces whose log grew (notify/)
Sources that FC retries (everything but HTTP) raise when a registration failed transiently, so the
event is delivered again (safe: a repeated registration finds its model); a registration that can
never succeed is answered and logged, not raised.
"""
from __future__ import annotations

import base64
import concurrent.futures
import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote

from ..api.app import App
from ..api.http import Caller, Request, Response, new_request_id, where
from ..api.registration import REGISTRATION
from ..api.routes import CREATE_MODEL
from ..api.routing import MODELS_PATH
from ..catalog.keys import CATALOG
from ..errors import ApiError, InternalError, InvalidParameter, InvalidRegistration, ServiceUnavailable
from ..notify.delivery import Deliverer
from ..registry.records import record_json
from ..rules.jsontext import compact
from ..stores.base import InvalidKey, NotFound, Store, Unavailable, check_key, deadline

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # events in one batch (a JSON array); what the time left cannot finish is delivered again
WORKERS = 16  # registrations of one invocation in flight at once
FIRST_ESTIMATE = 1.0  # seconds an item is assumed to need until one has finished
now = time.monotonic  # the clock items are timed with, the one stores.base.deadline() counts on
REGISTRATIONS = "registrations/"
RESULTS = "registration-results/"
JSON_HEADERS = {"content-type": "application/json"}


class RetryLater(RuntimeError):
    """Raised to make FC deliver an event again after a transient failure."""


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}


def _is_base64(event: dict[str, Any]) -> bool:
    return event.get("isBase64Encoded") in (True, "true", "True")  # docs show both spellings


def _body_bytes(body: Any) -> bytes:
    return body.encode("utf-8", "surrogatepass") if isinstance(body, str) else b""


def _query(params: Any) -> list[tuple[str, str]]:
    """A gateway's decoded query parameters as pairs; a repeated parameter may come as a list of values."""
    if not isinstance(params, dict):
        return []
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((str(name), "" if item is None else str(item)))
    return pairs


def apigw_request(event: dict[str, Any]) -> Request:
    return Request(
        method=str(event.get("httpMethod", "")).upper(), path=str(event.get("path", "")),
        body=_body_bytes(event.get("body")), body_base64=_is_base64(event),
        headers=_lower(event.get("headers")), query=_query(event.get("queryParameters")),
        raw_query=event.get("rawQueryString") if isinstance(event.get("rawQueryString"), str) else None,
    )


def http_v1_request(event: dict[str, Any]) -> Request:
    return Request(
        method=_text(_dig(event, "requestContext", "http", "method")).upper(), path=str(event.get("rawPath", "")),
        body=_body_bytes(event.get("body")), body_base64=_is_base64(event),
        headers=_lower(event.get("headers")), query=_query(event.get("queryParameters")),
    )


def gateway_response(response: Response) -> str:
    """The struct API Gateway and HTTP triggers require; anything else becomes their 503."""
    if response.content is not None:  # a console file, perhaps compressed: bytes the struct carries as base64
        return json.dumps({"isBase64Encoded": True, "statusCode": response.status, "headers": response.all_headers(),
                           "body": base64.b64encode(response.content).decode()})
    return json.dumps({"isBase64Encoded": False, "statusCode": response.status, "headers": response.all_headers(),
                       "body": response.json()})


def create_request(body: Any) -> Request:
    """A CreateModel Request for a payload: JSON text (sent on exactly as it came), or a value."""
    if isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode("utf-8", "surrogatepass")  # a lone surrogate is the core's to refuse
    else:
        data = compact(body).encode("utf-8", "surrogatepass")
    return Request("POST", MODELS_PATH, data, headers=JSON_HEADERS)


# Where each message source keeps the CreateModel body: (recogniser, payload), checked in order.
# A shape is recognised by several keys with the right types, so that a request body which merely
# contains one such key (and so is invalid) is answered as the body it is.
def _has(event: dict[str, Any], **types: type) -> bool:
    return all(isinstance(event.get(key), kind) for key, kind in types.items())


def _cloud_event(e: dict[str, Any]) -> bool:
    return _has(e, specversion=str, id=str, source=str, type=str)


PAYLOADS: list[tuple[Callable[[dict[str, Any]], bool], Callable[[dict[str, Any]], Any]]] = [
    # MNS queue through EventBridge: the message is a JSON string in data.messageBody
    (lambda e: _cloud_event(e) and _has(e, data=dict) and "messageBody" in e["data"], lambda e: e["data"]["messageBody"]),
    (_cloud_event, lambda e: e.get("data")),                                                     # EventBridge
    (lambda e: _has(e, TopicOwner=str, TopicName=str, MessageId=str, Message=str), lambda e: e["Message"]),  # MNS topic, JSON
    (lambda e: set(e) == {"body", "attrs"} and _has(e, attrs=dict), lambda e: e["body"]),      # MNS topic, STREAM + attributes
]


def _envelope(raw: bytes | str) -> Any:
    """The event's JSON, only to recognise its shape (None if it is not JSON). The request body it
    carries is checked strictly by the core, from the exact text it arrived as."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


DELIVERY_BUDGET = 25.0  # seconds a delivery invocation spends when FC tells no timeout


def handle_event(app: App, raw: bytes | str, caller: Caller, deliveries: Callable[[], Deliverer | None] | None = None) -> str:
    """Answer one FC invocation; returns the text FC hands back to the invoker."""
    event = _envelope(raw)
    if isinstance(event, dict):
        if _is_oss_event(event):
            grown = _logs_grown(app.registry.store, event["events"])
            if grown is not None:
                return _deliver(deliveries, grown)
        if _has(event, triggerTime=str, triggerName=str) and event.get("payload") == "deliveries":
            return _deliver(deliveries, None)
        if _has(event, httpMethod=str, path=str):
            return gateway_response(app.handle(apigw_request(event), caller))
        if event.get("version") == "v1" and _has(event, rawPath=str, requestContext=dict):
            return gateway_response(app.handle(http_v1_request(event), caller))
        if _is_oss_event(event):
            return _finish(_each(event["events"], lambda record: _register_object(app, record, caller)))
        if _has(event, triggerTime=str, triggerName=str):  # FC's timer trigger: the registry's upkeep
            summary = app.sweep()
            log.info(compact({"Operation": "Sweep", **summary, "Removed": len(summary["Removed"])}))
            return json.dumps(summary)
    if isinstance(event, list):
        if len(event) > MAX_BATCH:  # answered, not raised: delivering it again could only fail again
            error = InvalidParameter(f"a batch holds at most {MAX_BATCH} events; this one holds {len(event)}")
            log.warning(compact({**error.body(new_request_id()), "Operation": "Batch", "Status": error.status}))
            return json.dumps(error.body(new_request_id()))
        return _finish(_each(event, lambda item: _handle_message(app, item, None, caller)))
    return _finish([_handle_message(app, event, raw, caller)], single=True)


Outcome = tuple[Response, dict[str, Any]]
T = TypeVar("T")


def _each(items: Sequence[T], work: Callable[[T], Outcome], workers: int | None = None) -> list[Outcome]:
    """work(item) for each item, `workers` (WORKERS) at a time, each in a copy of the caller's context
    (its time budget). An item is started only while the invocation's time left (stores.base.deadline())
    covers the longest an item has taken so far; the others are answered 503, not started, so that the
    source delivers the event again (where the items done before are repeats, one read each)."""
    results: list[Outcome | None] = [None] * len(items)
    ends = deadline()
    pending = iter(range(len(items)))
    longest = [FIRST_ESTIMATE]
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                if ends is not None and ends - now() < longest[0]:
                    return
                index = next(pending, None)
            if index is None:
                return
            started = now()
            results[index] = contextvars.copy_context().run(work, items[index])
            with lock:
                longest[0] = max(longest[0], now() - started)

    count = min(workers or WORKERS, len(items))
    if count <= 1:
        run()
    else:
        with concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix="batch") as pool:
            for running in [pool.submit(run) for _ in range(count)]:
                running.result()
    skipped = [i for i, result in enumerate(results) if result is None]
    if skipped:
        log.warning(compact({"Operation": "Batch", "Items": len(items), "NotStarted": len(skipped),
                             "Why": "too little of the invocation's time left"}))
    return [result if result is not None else _not_started() for result in results]


def _not_started() -> Outcome:
    body = ServiceUnavailable("not started: the invocation had too little time left for it; the event is delivered "
                              "again").body(new_request_id())
    return Response(503, body), body


def _handle_message(app: App, message: Any, text: bytes | str | None, caller: Caller) -> Outcome:
    """Register the request one message carries; `text` is the message as it arrived, if known."""
    if isinstance(message, str):  # a batch item sent as escaped JSON
        text, message = message, _envelope(message)
    if isinstance(message, dict):
        for matches, payload in PAYLOADS:
            if matches(message):
                text, message = None, payload(message)
                break
    request = create_request(message if text is None else text)
    response = app.handle(request, caller, REGISTRATION if _carries_version(request.body) else CREATE_MODEL)
    return response, response.body


def _carries_version(body: bytes) -> bool:
    """A registration whose body has a `Version` object adds a version (the core checks the body again, strictly)."""
    if b'"Version"' not in body:
        return False
    value = _envelope(body)
    return isinstance(value, dict) and "Version" in value


def _finish(results: list[Outcome], single: bool = False) -> str:
    """Every item has been tried; now raise if any may succeed on redelivery."""
    failed = [r.body["RequestId"] for r, _ in results if r.retryable]
    if failed:
        raise RetryLater(f"{len(failed)} of {len(results)} registrations failed transiently ({', '.join(failed)}); deliver again")
    bodies = [body for _, body in results]
    return json.dumps(bodies[0] if single else bodies, ensure_ascii=False)


def _is_oss_event(event: dict[str, Any]) -> bool:
    records = event.get("events")
    return isinstance(records, list) and bool(records) and all(isinstance(r, dict) and "oss" in r for r in records)


def _register_object(app: App, record: dict[str, Any], caller: Caller) -> tuple[Response, dict[str, Any]]:
    try:
        return _register(app, record, caller)
    except Exception as e:  # noqa: BLE001 - as in App.handle: a bug is logged by kind and place only
        log.error("unexpected %s in %s", type(e).__name__, where(e))
        body = InternalError("the registration failed unexpectedly").body(new_request_id())
        return Response(500, body), body


def _register(app: App, record: dict[str, Any], caller: Caller) -> tuple[Response, dict[str, Any]]:
    """Register the CreateModel request held by an uploaded object and record the outcome beside it."""
    store = app.registry.store
    bucket, raw_key = _text(_dig(record, "oss", "bucket", "name")), _text(_dig(record, "oss", "object", "key"))
    outcome: dict[str, Any] = {"Object": raw_key[:1024]}
    try:
        key = _registration_key(store, bucket, raw_key)
        size = _dig(record, "oss", "object", "size")
        if isinstance(size, int) and size > app.max_body_bytes:
            request = Request("POST", MODELS_PATH, headers=JSON_HEADERS, declared_size=size)  # never read: 413
        else:  # whatever the event says, read no more than one byte past the limit (enough to answer 413)
            request = Request("POST", MODELS_PATH, store.get_head(key, app.max_body_bytes + 1), headers=JSON_HEADERS)
    except (InvalidKey, NotFound) as e:
        return _failed(InvalidRegistration(_why(e)), outcome)
    except Unavailable as e:  # any other store error is unexpected: _register_object answers it
        log.error("storage unavailable: %s", e.cause)
        return _failed(ServiceUnavailable("could not read the registration"), outcome)
    response = app.handle(request, caller, REGISTRATION if _carries_version(request.body) else CREATE_MODEL)
    outcome.update(Status=response.status, **response.body)
    if not response.retryable:
        try:
            store.put(RESULTS + key[len(REGISTRATIONS):], record_json(outcome))
        except Unavailable as e:  # deliver again: registering twice is safe
            log.error("storage unavailable: %s", e.cause)
            return _failed(ServiceUnavailable("could not record the outcome"), outcome, response.body["RequestId"])
    return response, outcome


def _failed(error: ApiError, outcome: dict[str, Any], request_id: str | None = None) -> tuple[Response, dict[str, Any]]:
    body = error.body(request_id or new_request_id())
    if error.status < 500:
        log.warning(compact({**body, **outcome, "Operation": "RegisterObject", "Status": error.status}))
    return Response(error.status, body), {**outcome, **body}


def _dig(value: Any, *path: str) -> Any:
    """value[path[0]][path[1]]..., or None where the event has no such field."""
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _registration_key(store: Store, bucket: str, object_key: str) -> str:
    """The store key of an uploaded registration; keys may arrive URL-encoded."""
    for candidate in dict.fromkeys([object_key, unquote(object_key)]):
        key = store.locate(bucket, candidate)
        if key and key.startswith(REGISTRATIONS) and key.endswith(".json"):
            try:
                return check_key(key)
            except InvalidKey:
                continue
    raise InvalidKey(f"not a registration object of this store: names must be {REGISTRATIONS}<letters, digits, . _ - =>.json")


def _why(error: Exception) -> str:
    if isinstance(error, NotFound):
        return "the registration object no longer exists"
    return str(error)


def _logs_grown(store: Store, records: list[dict[str, Any]]) -> list[str] | None:
    """The workspaces whose log an OSS event's objects extend, if every object is under catalog/ (the trigger on the
    log), else None (registrations)."""
    grown: list[str] = []
    for record in records:
        bucket, raw_key = _text(_dig(record, "oss", "bucket", "name")), _text(_dig(record, "oss", "object", "key"))
        key = store.locate(bucket, unquote(raw_key)) or ""
        if not key.startswith(CATALOG):
            return None
        parts = key.split("/")
        if len(parts) == 4 and parts[2] == "log" and parts[1] not in grown:
            grown.append(parts[1])
    return grown


def _deliver(deliveries: Callable[[], Deliverer | None] | None, only: list[str] | None) -> str:
    """Deliver change events (of these workspaces, or all) within the invocation's budget; retries due before it ends
    are made here, later ones by the next invocation (the one-minute timer at the latest)."""
    deliverer = deliveries() if deliveries is not None else None
    if deliverer is None:
        return json.dumps({"Delivered": 0, "Rules": 0})
    ends = deadline()
    left = ends - time.monotonic() if ends is not None else DELIVERY_BUDGET
    count = deliverer.run_until(time.time() + left, only)
    log.info(compact({"Operation": "Deliver", "Delivered": count, "Workspaces": only if only is not None else "*"}))
    return json.dumps({"Delivered": count, "Rules": len(deliverer.book.rules())})
