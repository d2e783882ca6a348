"""How 1.6 handlers call services: domain refusals become OCPP CALLERRORs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ocpp.exceptions import PropertyConstraintViolationError

from csms.events import call_service
from stations.errors import InvalidValue

T = TypeVar("T")


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call_service``, with values the domain cannot read answered as
    PropertyConstraintViolation (anything unexpected stays an InternalError,
    logged with its traceback by the ocpp library)."""
    try:
        return await call_service(fn, *args, **kwargs)
    except InvalidValue as error:
        raise PropertyConstraintViolationError(description=str(error)) from None
