"""How handlers of every version call services: domain refusals become OCPP CALLERRORs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ocpp.exceptions import PropertyConstraintViolationError

from csms import groupcommit
from stations.errors import InvalidValue

T = TypeVar("T")


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call_service`` in the next group commit (csms/groupcommit.py: answered once it
    is durable), with values the domain cannot read answered as
    PropertyConstraintViolation (anything unexpected stays an InternalError,
    logged with its traceback by the ocpp library)."""
    try:
        return await groupcommit.call(fn, *args, **kwargs)
    except InvalidValue as error:
        raise PropertyConstraintViolationError(description=str(error)) from None
