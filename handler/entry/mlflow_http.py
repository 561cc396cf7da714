"""MLflow's registry REST API over HTTP, as `import-mlflow` calls it on both ends: JSON calls with credentials, and a
server that is briefly busy asked again."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

VERSIONS_PAGE = 10_000  # model versions asked for a page
ATTEMPTS = 4  # a server that is briefly busy (SQLite locked, a restart) is asked again, after 0.5, 1 and 2 s


class MlflowHttpError(Exception):
    """A call that failed: the server could not be reached, refused it (`status`, MLflow's `error_code`), or
    answered something that is not MLflow's JSON."""

    def __init__(self, message: str, status: int = 0, error_code: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.reason = reason or message  # the server's own words, where it gave some
        self.no_api = _no_api(status, error_code)


class MlflowHttp:
    """One server's `/api/2.0/mlflow` (its URL as MLflow's tracking URI), called with an Authorization header."""

    def __init__(self, url: str, authorization: str | None, timeout: float = 60.0, what: str = "--from") -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise MlflowHttpError(f"{what} must be an http:// or https:// URL, not {url[:80]!r}")
        self.base = url.rstrip("/") + "/api/2.0/mlflow"
        self.what = what
        self.timeout = timeout
        self.headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if authorization:
            self.headers["Authorization"] = authorization

    def call(self, method: str, path: str, query: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The answer's JSON object. Every call may be sent again: the importer's writes are idempotent (a model or
        numbered version that exists answers RESOURCE_ALREADY_EXISTS, setting an alias twice sets it once)."""
        url = f"{self.base}/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(ATTEMPTS):
            try:
                request = urllib.request.Request(url, data=data, method=method, headers=self.headers)
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    found = json.loads(answer.read())
                if not isinstance(found, dict):
                    raise MlflowHttpError(f"{path} answered something other than a JSON object")
                return found
            except urllib.error.HTTPError as e:
                if e.code < 500 or attempt == ATTEMPTS - 1:
                    message, code = _error(e)
                    hint = f": is {self.what} an MLflow tracking URI (without /api/2.0/mlflow)?" if _no_api(e.code, code) else ""
                    raise MlflowHttpError(f"{self.base}/{path} answered HTTP {e.code}: {message}{hint}", e.code, code, message) from None
            except (urllib.error.URLError, OSError) as e:
                if attempt == ATTEMPTS - 1:
                    raise MlflowHttpError(f"cannot reach {self.base}: {getattr(e, 'reason', e)}") from None
            except ValueError:
                raise MlflowHttpError(f"{path} answered something other than JSON: is this an MLflow server?") from None
            time.sleep(0.5 * 2 ** attempt)
        raise AssertionError("unreachable")

    def pages(self, path: str, key: str, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a paged search."""
        token = None
        while True:
            page = self.call("GET", path, {**query, **({"page_token": token} if token else {})})
            yield from page.get(key, [])
            token = page.get("next_page_token")
            if not token:
                return


def versions_named(http: MlflowHttp, name: str) -> Iterator[dict[str, Any]]:
    """Every version of the registered model of that name (a search by name, paged)."""
    return http.pages("model-versions/search", "model_versions", {"filter": f"name = {quoted(name)}", "max_results": VERSIONS_PAGE})


def quoted(value: str) -> str:
    """A string as a filter_string's quoted value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _no_api(status: int, error_code: str) -> bool:
    """A 404 that is not about a model, version or alias: no MLflow API at that URL (a typo, /api/2.0/mlflow given
    twice). The import stops on it rather than refusing every model."""
    return status == 404 and error_code != "RESOURCE_DOES_NOT_EXIST"


def _error(error: urllib.error.HTTPError) -> tuple[str, str]:
    """MLflow's message and error_code of a refusal (the HTTP reason where the body is not MLflow's)."""
    try:
        found = json.loads(error.read())
        return str(found.get("message", ""))[:200] or str(error.reason), str(found.get("error_code", ""))
    except (ValueError, AttributeError, OSError):
        return str(error.reason)[:200], ""
