"""The API's errors: a small class tree, each class fixing its HTTP status.

Resources and validation raise these; the error handlers render every one as
``{"error": "<what to fix>"}``. Werkzeug's own HTTP errors (unknown route, wrong
method, body over ``MAX_CONTENT_LENGTH``) are converted to the same shape.
"""

from __future__ import annotations

import orjson
from werkzeug.exceptions import HTTPException

from api.responses import JSON_TYPE, EncodedJSON


class ApiError(HTTPException):
    """Base class: an error whose JSON body tells the client what to fix."""

    code = 500
    description = "internal error"
    retry_after: int | None = None

    def __init__(self, message: str | None = None):
        super().__init__(description=message or self.description)

    def get_body(self, environ=None, scope=None) -> bytes:  # noqa: D102 (werkzeug API)
        return error_body(self.description)

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:  # noqa: D102
        return [("Content-Type", JSON_TYPE), *self.extra_headers()]

    def extra_headers(self) -> list[tuple[str, str]]:
        """The headers this error sends besides its Content-Type."""
        return [] if self.retry_after is None else [("Retry-After", str(self.retry_after))]

    def get_response(self, environ=None, scope=None) -> EncodedJSON:  # noqa: D102 (werkzeug API)
        # werkzeug's would build its Response at its full cost (see api/responses.py),
        # for each request shed under overload too.
        return EncodedJSON(self.get_body(), status=self.code, headers=self.extra_headers())


class InvalidInput(ApiError):
    """400: the body cannot be turned into the model's inputs."""

    code = 400
    description = "invalid request body"


class Unauthorized(ApiError):
    """401: no API key, or not sent as ``Authorization: Bearer <key>``."""

    code = 401
    description = "an API key is needed"

    def extra_headers(self) -> list[tuple[str, str]]:  # noqa: D102
        return [*super().extra_headers(), ("WWW-Authenticate", 'Bearer realm="keras-fleet"')]


class Forbidden(ApiError):
    """403: an API key was sent but it is not valid."""

    code = 403
    description = "the API key is not valid"


class ModelNotFound(ApiError):
    """404: no served model (or version) has that name, or the path does not exist."""

    code = 404
    description = "not found"


class MethodNotAllowed(ApiError):
    """405: the path exists but not with this HTTP method; ``Allow`` lists the ones it takes."""

    code = 405
    description = "method not allowed"

    def __init__(self, allowed: list[str] | None = None):
        self.allowed = sorted(allowed or [])
        message = f"method not allowed here; use {', '.join(self.allowed)}" if self.allowed else None
        super().__init__(message)

    def extra_headers(self) -> list[tuple[str, str]]:  # noqa: D102
        headers = super().extra_headers()
        if self.allowed:
            headers.append(("Allow", ", ".join(self.allowed)))
        return headers


class PayloadTooLarge(ApiError):
    """413: the body is over the configured size limit."""

    code = 413
    description = "request body is too large"


class UnsupportedMediaType(ApiError):
    """415: the body's Content-Type is not one the endpoint reads."""

    code = 415
    description = "unsupported Content-Type"


class ModelNotReady(ApiError):
    """503: the model is not loaded and warmed in this worker yet."""

    code = 503
    description = "model is not ready yet; retry shortly"
    retry_after = 1


class ServerOverloaded(ApiError):
    """503: this worker cannot answer before the request's deadline; retry (another instance)."""

    code = 503
    description = "the server is at capacity; retry shortly"
    retry_after = 1


class InternalError(ApiError):
    """500: a fault of the server, never of the client's input."""

    code = 500
    description = "internal server error; the request id identifies it in the logs"


def error_body(message: str) -> bytes:
    """Return the JSON body every error uses."""
    return orjson.dumps({"error": message})


def from_http_exception(exc: HTTPException, max_body_bytes: int | None = None) -> ApiError:
    """Convert a werkzeug HTTP error (raised before our code runs) into the API's error."""
    if isinstance(exc, ApiError):
        return exc
    if exc.code == 404:
        return ModelNotFound("no such path; GET /v1/models/<name>/metadata describes the served model")
    if exc.code == 405:
        return MethodNotAllowed(list(getattr(exc, "valid_methods", None) or []))
    if exc.code == 413:
        limit = f" of {max_body_bytes} bytes" if max_body_bytes else ""
        return PayloadTooLarge(f"request body is over the limit{limit}; send fewer instances per request")
    if exc.code == 415:
        return UnsupportedMediaType()
    if exc.code == 400:
        return InvalidInput(exc.description)
    converted = ApiError(exc.description)
    converted.code = exc.code or 500
    return converted
