"""Refusals of the charging domain, each carrying the mobile API's error code.

Kept apart from ``stations.services`` (which re-exports them) so that the
modules services build on, such as ``stations.values``, can raise them too.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses; ``code`` is the mobile API's error code."""

    code = 400


class NotFound(DomainError):
    code = 404


class Conflict(DomainError):
    code = 409


class InvalidValue(DomainError):
    """A value that passed the schema but that the domain cannot take (month 13,
    a connectorId no column can hold); OCPP answers PropertyConstraintViolation."""
