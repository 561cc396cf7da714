"""API errors: each carries its HTTP status and the `Code` clients see.

    ApiError
    ├── BadRequest            400 InvalidBody         the body is not a JSON object
    ├── InvalidParameter      400 InvalidParameter    a field breaks a rule of schemas/
    ├── NotFoundError         404 NotFound            no such path (or model)
    ├── MethodNotAllowed      405 MethodNotAllowed    known path, other method
    ├── ModelNameConflict     409 ModelAlreadyExists  the name is taken by a different request
    ├── PayloadTooLarge       413 RequestTooLarge     body over the configured limit
    ├── UnsupportedMediaType  415 UnsupportedMediaType a declared non-JSON Content-Type
    ├── ServiceUnavailable    503 ServiceUnavailable  storage is unreachable (retry later)
    └── InternalError         500 InternalError       anything unexpected (details only in logs)
"""
from __future__ import annotations


class ApiError(Exception):
    """An error answered to the client as {RequestId, Code, Message} with `status`."""

    status = 500
    code = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status, code = 400, "InvalidBody"


class InvalidParameter(ApiError):
    status, code = 400, "InvalidParameter"


class NotFoundError(ApiError):
    status, code = 404, "NotFound"


class MethodNotAllowed(ApiError):
    status, code = 405, "MethodNotAllowed"

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


class ModelNameConflict(ApiError):
    status, code = 409, "ModelAlreadyExists"


class PayloadTooLarge(ApiError):
    status, code = 413, "RequestTooLarge"


class UnsupportedMediaType(ApiError):
    status, code = 415, "UnsupportedMediaType"


class ServiceUnavailable(ApiError):
    status, code = 503, "ServiceUnavailable"


class InternalError(ApiError):
    status, code = 500, "InternalError"
