"""The error catalogue: every error a client can see, with its HTTP status, `Code` and meaning.

    ApiError
    ├── InvalidBody           400 InvalidBody             the body is not a JSON object
    ├── InvalidParameter      400 InvalidParameter        a field or query parameter breaks a rule
    ├── InvalidRegistration   400 InvalidRegistration     an uploaded object is not a registration
    ├── MalformedRequest      400 BadRequest              the local server cannot frame the request
    ├── PathNotFound          404 NotFound                no API at this path
    ├── ModelNotFound         404 ModelNotFound           no such model (or it was deleted)
    ├── VersionNotFound       404 ModelVersionNotFound    no such version of the model
    ├── MethodNotAllowed      405 MethodNotAllowed        known path, other method
    ├── ModelNameConflict     409 ModelAlreadyExists      the name is taken in the workspace
    ├── VersionNameConflict   409 ModelVersionAlreadyExists  the version name is taken
    ├── QuotaExceeded         409 QuotaExceeded           the workspace's models would outgrow their memory bound
    ├── ApprovalFinal         409 ApprovalStatusFinal     an Approved or Rejected version's status cannot change
    ├── PayloadTooLarge       413 RequestTooLarge         body over the configured limit
    ├── UriTooLong            414 URITooLong              request line too long (local server)
    ├── UnsupportedMediaType  415 UnsupportedMediaType    a declared non-JSON Content-Type
    ├── HeadersTooLarge       431 RequestHeaderFieldsTooLarge  (local server)
    ├── InternalError         500 InternalError           anything unexpected (details only in logs)
    ├── NotImplementedMethod  501 NotImplemented          an HTTP method no API has (local server)
    ├── ServiceUnavailable    503 ServiceUnavailable      storage is unreachable (retry later)
    ├── StoreMisconfigured    503 StoreMisconfigured      the bucket cannot keep the guarantees (versioning)
    ├── CatalogFormatTooNew   503 CatalogFormatUnsupported  a commit or checkpoint of a newer registry version
    ├── CatalogDamaged        503 CatalogDamaged          the workspace's log has a gap or a broken chain
    ├── VersionNotSupported   505 HTTPVersionNotSupported (local server)
    │   (the request's signature, access key or policy; api/auth.py checks them)
    ├── MissingAuthorization  401 MissingAuthorization
    ├── InvalidAuthorization  400 InvalidAuthorization
    ├── AccessKeyNotFound     404 InvalidAccessKeyId.NotFound
    ├── SignatureMismatch     400 SignatureDoesNotMatch
    ├── ContentHashMismatch   400 InvalidContentSha256
    ├── TimeExpired           400 InvalidTimeStamp.Expired
    ├── NonceUsed             400 SignatureNonceUsed
    ├── Forbidden             403 Forbidden.RAM
    └── KeysNotConfigured     403 Forbidden.AccessKeysNotConfigured

`CATALOGUE` lists them all: the OpenAPI document and the table in docs/api.md are checked against it.
"""
from __future__ import annotations

from typing import Any, ClassVar


class ApiError(Exception):
    """An error answered to the client as {RequestId, Code, Message} with `status`."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "InternalError"
    meaning: ClassVar[str] = "An unexpected failure; details are logged, never sent. Safe to retry."

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.access_key_id: str | None = None  # a refused request's claimed key, for the access log (never sent)

    def body(self, request_id: str) -> dict[str, Any]:
        return {"RequestId": request_id, "Code": self.code, "Message": self.message}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidBody(ApiError):
    status, code = 400, "InvalidBody"
    meaning = "The body is not a JSON object: empty, malformed, not UTF-8, duplicate keys, NaN, too deep, bad base64."


class InvalidParameter(ApiError):
    status, code = 400, "InvalidParameter"
    meaning = "A field or query parameter breaks a rule of schemas/, or is unknown; the message names it."


class InvalidRegistration(ApiError):
    status, code = 400, "InvalidRegistration"
    meaning = "An uploaded object is not a registration of this store, or is gone (OSS uploads only)."


class MalformedRequest(ApiError):
    status, code = 400, "BadRequest"
    meaning = "The local server cannot frame the request (request line, Content-Length, Transfer-Encoding)."


class PathNotFound(ApiError):
    status, code = 404, "NotFound"
    meaning = "No API at this path."


class ModelNotFound(ApiError):
    status, code = 404, "ModelNotFound"
    meaning = "No model has this ModelId (never created, or deleted)."


class VersionNotFound(ApiError):
    status, code = 404, "ModelVersionNotFound"
    meaning = "The model has no version of this name (never created, or deleted)."


class MethodNotAllowed(ApiError):
    status, code = 405, "MethodNotAllowed"
    meaning = "The path exists, but not with this method; the Allow header lists the methods."

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class ModelNameConflict(ApiError):
    status, code = 409, "ModelAlreadyExists"
    meaning = "Another model of this name exists in the workspace (a create with other fields, or a rename)."


class VersionNameConflict(ApiError):
    status, code = 409, "ModelVersionAlreadyExists"
    meaning = "The model has a version of this name, created by a request with other fields."


class QuotaExceeded(ApiError):
    status, code = 409, "QuotaExceeded"
    meaning = "The workspace's models would take more memory than MAX_WORKSPACE_BYTES (what bounds an instance's memory)."


class ApprovalFinal(ApiError):
    status, code = 409, "ApprovalStatusFinal"
    meaning = "The version is Approved or Rejected, which is final (PAI's rule): its ApprovalStatus cannot change."


class PayloadTooLarge(ApiError):
    status, code = 413, "RequestTooLarge"
    meaning = "The body is larger than MAX_BODY_BYTES."


class UriTooLong(ApiError):
    status, code = 414, "URITooLong"
    meaning = "The request line is too long (local server)."


class UnsupportedMediaType(ApiError):
    status, code = 415, "UnsupportedMediaType"
    meaning = "A declared Content-Type that is not JSON."


class HeadersTooLarge(ApiError):
    status, code = 431, "RequestHeaderFieldsTooLarge"
    meaning = "Too many or too long header lines (local server)."


class InternalError(ApiError):
    pass


class NotImplementedMethod(ApiError):
    status, code = 501, "NotImplemented"
    meaning = "An HTTP method that no API has (local server)."


class ServiceUnavailable(ApiError):
    status, code = 503, "ServiceUnavailable"
    meaning = "Model storage is unreachable after bounded retries; retry later."


class StoreMisconfigured(ApiError):
    status, code = 503, "StoreMisconfigured"
    meaning = "The bucket has versioning on, which disables the create-only writes the registry relies on."


class CatalogFormatTooNew(ApiError):
    status, code = 503, "CatalogFormatUnsupported"
    meaning = ("The workspace holds a commit or checkpoint written by a newer version of the registry: this deployment "
               "reads and writes nothing of it until it is upgraded.")


class CatalogDamaged(ApiError):
    status, code = 503, "CatalogDamaged"
    meaning = ("A commit of the workspace's log is missing or was rewritten outside the registry: nothing is written "
               "to the workspace until an operator restores it (docs/catalog.md).")


class VersionNotSupported(ApiError):
    status, code = 505, "HTTPVersionNotSupported"
    meaning = "An HTTP version other than 1.0 or 1.1 (local server)."


class MissingAuthorization(ApiError):
    status, code = 401, "MissingAuthorization"
    meaning = "The request is not signed: no Authorization header (access keys are configured)."


class InvalidAuthorization(ApiError):
    status, code = 400, "InvalidAuthorization"
    meaning = "The Authorization header is not an ACS3-HMAC-SHA256 or ROA signature, or a header it needs is missing."


class AccessKeyNotFound(ApiError):
    status, code = 404, "InvalidAccessKeyId.NotFound"
    meaning = "No access key of this ID (or it was revoked)."


class SignatureMismatch(ApiError):
    status, code = 400, "SignatureDoesNotMatch"
    meaning = "The signature is not the one the key's secret gives for this request."


class ContentHashMismatch(ApiError):
    status, code = 400, "InvalidContentSha256"
    meaning = "x-acs-content-sha256 is not the SHA-256 of the body."


class TimeExpired(ApiError):
    status, code = 400, "InvalidTimeStamp.Expired"
    meaning = "The request's time (x-acs-date or date) is more than 15 minutes from the server's."


class NonceUsed(ApiError):
    status, code = 400, "SignatureNonceUsed"
    meaning = "This signature nonce was used before: a replayed request."


class Forbidden(ApiError):
    status, code = 403, "Forbidden.RAM"
    meaning = "The access key's policy does not allow this action in this workspace."


class CrossOrigin(ApiError):
    status, code = 403, "Forbidden.CrossOrigin"
    meaning = ("The local server without access keys refuses a request from another web origin's page, or (on loopback) "
               "for a host name that is not a loopback name.")


class KeysNotConfigured(ApiError):
    status, code = 403, "Forbidden.AccessKeysNotConfigured"
    meaning = "No usable access keys (on FC without ACCESS_KEYS, or a missing or malformed document): every API request is refused."


CATALOGUE: tuple[type[ApiError], ...] = (
    InvalidBody, InvalidParameter, InvalidRegistration, MalformedRequest, PathNotFound, ModelNotFound, VersionNotFound,
    MethodNotAllowed, ModelNameConflict, VersionNameConflict, QuotaExceeded, ApprovalFinal, PayloadTooLarge, UriTooLong,
    UnsupportedMediaType, HeadersTooLarge, InternalError, NotImplementedMethod, ServiceUnavailable, StoreMisconfigured,
    CatalogFormatTooNew, CatalogDamaged,
    VersionNotSupported, MissingAuthorization, InvalidAuthorization, AccessKeyNotFound, SignatureMismatch,
    ContentHashMismatch, TimeExpired, NonceUsed, Forbidden, KeysNotConfigured, CrossOrigin,
)
PROTOCOL_ERRORS = {cls.status: cls for cls in (MalformedRequest, UriTooLong, HeadersTooLarge, NotImplementedMethod,
                                               VersionNotSupported)}


AUTH_ERRORS: tuple[type[ApiError], ...] = (MissingAuthorization, InvalidAuthorization, AccessKeyNotFound, SignatureMismatch,
                                            ContentHashMismatch, TimeExpired, NonceUsed, Forbidden, KeysNotConfigured)


def protocol_error(status: int, message: str) -> ApiError:
    """The catalogue's error for a status the HTTP layer answers on its own."""
    return PROTOCOL_ERRORS.get(status, MalformedRequest)(message)

