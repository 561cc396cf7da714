"""A request's body: the bytes as sent (and signed), within the size limit, and the JSON object it carries."""
from __future__ import annotations

import base64
from typing import Any

from ..errors import InvalidBody, PayloadTooLarge, UnsupportedMediaType
from ..rules.jsontext import parse_object
from .http import Request


def raw_body(request: Request, limit: int) -> bytes:
    """The body as sent (and signed): decoded from the gateway's base64, within the size limit."""
    body = request.body
    if request.declared_size is not None and request.declared_size > limit:
        raise too_large(limit)
    if request.body_base64:
        if len(body) > -(-limit // 3) * 4:  # longer than the base64 of any allowed body
            raise too_large(limit)
        try:
            body = base64.b64decode(body, validate=True)
        except ValueError:
            raise InvalidBody("body is marked base64 but is not valid base64") from None
    if len(body) > limit:
        raise too_large(limit)
    return body


def parse_body(request: Request, limit: int) -> dict[str, Any]:
    """The JSON object a request carries, after the media-type and size checks."""
    media_type, *params = request.headers.get("content-type", "").split(";")
    media_type = media_type.strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type {media_type[:100]} is not supported; send application/json")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"charset {value.strip()[:40]} is not supported; JSON is sent in UTF-8")
    return parse_object(raw_body(request, limit))


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"body is larger than the limit of {limit} bytes")
