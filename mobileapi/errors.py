"""Errors of the mobile API, each carrying its wire code."""

from __future__ import annotations


class ApiError(Exception):
    code = 500
    default_message = "Internal error"

    def __init__(self, message: str | None = None, **extra: object) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.extra = extra  # more fields of the error object, e.g. retryAfterMs


class BadRequest(ApiError):
    code = 400
    default_message = "Bad request"


class Unauthorized(ApiError):
    code = 401
    default_message = "Not authenticated"


class Forbidden(ApiError):
    code = 403
    default_message = "Forbidden"


class NotFound(ApiError):
    code = 404
    default_message = "Not found"


class Conflict(ApiError):
    code = 409
    default_message = "Conflict"


class TooLarge(ApiError):
    code = 413
    default_message = "Message too large"


class RateLimited(ApiError):
    code = 429
    default_message = "Rate limit exceeded"


class Timeout(ApiError):
    code = 504
    default_message = "Timeout"
