"""The one hierarchy of refusals, each class carrying the code it is answered with.

``code`` is both the HTTP status of the HTTP API and the error code of the
mobile API (the two APIs use the same numbers), so each entry point maps an
error in one place: ``except DomainError`` and answer ``error.code`` with
``error.message``. Kept apart from ``stations.services`` (which re-exports the
common ones) so that the modules services build on, such as
``stations.values``, can raise them too.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A request refused; ``details`` are more fields of the error object a client gets (e.g. retryAfterMs)."""

    code = 400
    default_message = "Bad request"

    def __init__(self, message: str = "", **details: Any) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        self.details = details


class InvalidValue(DomainError):
    """A value that passed the schema but that the domain cannot take (month 13,
    a connectorId no column can hold); OCPP answers PropertyConstraintViolation."""


class Unauthorized(DomainError):
    code = 401
    default_message = "Not authenticated"


class Forbidden(DomainError):
    code = 403
    default_message = "Forbidden"


class NotFound(DomainError):
    code = 404
    default_message = "Not found"


class Conflict(DomainError):
    code = 409
    default_message = "Conflict"


class ChargerError(DomainError):
    """The charger answered a command with an error (an OCPP CALLERROR)."""

    code = 502
    default_message = "The charger answered with an error"


class Unavailable(DomainError):
    """A service the request needs (the message bus) does not answer; retry later."""

    code = 503
    default_message = "Unavailable"


class Timeout(DomainError):
    """The charger did not answer in time."""

    code = 504
    default_message = "Timeout"
