"""Refusals of the mobile API's own transport (the envelope, its size, its rate).

They belong to the one hierarchy of ``stations.errors``, so the consumer maps
every refusal, the domain's and these, in one place: ``error.code`` and
``error.message`` (with ``error.details``) become the error object.
"""

from __future__ import annotations

from stations.errors import DomainError


class BadRequest(DomainError):
    """A request the envelope or an action's schema refuses."""


class TooLarge(DomainError):
    code = 413
    default_message = "Message too large"


class RateLimited(DomainError):
    code = 429
    default_message = "Rate limit exceeded"
