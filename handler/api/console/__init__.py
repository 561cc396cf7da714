"""The web console: a few static files served at /console/, with a Content-Security-Policy that lets them run only themselves."""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ...errors import MethodNotAllowed, PathNotFound
from ..routing import CONSOLE_PATH as PATH

INDEX = "index.html"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".svg": "image/svg+xml"}
FILES = frozenset(p.name for p in Path(__file__).parent.iterdir() if p.suffix in MEDIA_TYPES)
# The page holds an access key: it runs its own files only (no inline script or style, nothing from
# another origin), talks only to its own origin, and may not be framed.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin"}


@dataclass(frozen=True)
class Answer:
    """A console response: status, headers and bytes."""

    status: int
    headers: dict[str, str]
    content: bytes = b""


@dataclass(frozen=True)
class _File:
    content: bytes
    compressed: bytes
    etag: str
    media_type: str


def answer(method: str, path: str, headers: dict[str, str]) -> Answer:
    """The console file a GET or HEAD asks for; /console itself is sent on to the page."""
    if method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"{method[:20]} is not allowed on the console; use GET, HEAD", ("GET", "HEAD"))
    if path == PATH:  # relative, so that it holds behind a gateway's or trigger's path prefix
        return Answer(302, {"Location": "console/" + INDEX, "Cache-Control": "no-cache", "Content-Type": "text/plain; charset=utf-8"})
    name = path[len(PATH) + 1:] or INDEX
    if name not in FILES:
        raise PathNotFound(f"the console has no file {name[:100]}")
    found = _file(name)
    compressed = _accepts_gzip(headers.get("accept-encoding", ""))
    etag = found.etag[:-1] + '-gz"' if compressed else found.etag  # each encoding is a representation of its own
    common = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": etag, "Vary": "Accept-Encoding",
              "Content-Type": found.media_type}
    wanted = {tag.strip().removeprefix("W/") for tag in headers.get("if-none-match", "").split(",")}
    if etag in wanted or "*" in wanted:
        return Answer(304, common)
    if compressed:
        return Answer(200, {**common, "Content-Encoding": "gzip"}, found.compressed)
    return Answer(200, common, found.content)


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether Accept-Encoding admits gzip (by name or `*`) with a weight above zero."""
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding] = weight
    return weights.get("gzip", weights.get("*", 0.0)) > 0


@cache
def _file(name: str) -> _File:
    path = Path(__file__).parent / name
    content = path.read_bytes()
    return _File(content, gzip.compress(content, 9, mtime=0), f'"{hashlib.sha256(content).hexdigest()[:20]}"',
                 MEDIA_TYPES[path.suffix])
