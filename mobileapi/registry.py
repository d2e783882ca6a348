"""The mobile API's action registry: each action declares its schema and scope.

The dispatcher (the consumer) looks actions up here, checks authentication
and scope, validates params against the schema and maps errors to codes in
one place; handlers receive valid params only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from mobileapi.errors import BadRequest

Handler = Callable[[Any, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    handler: Handler
    validator: Draft202012Validator
    scope: str | None
    auth: bool
    detached: bool  # runs in its own task (waits on a charger): the connection keeps serving

    def check_params(self, params: Any) -> dict[str, Any]:
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise BadRequest("params must be an object")
        error = best_match(self.validator.iter_errors(params))
        if error is not None:
            where = ".".join(str(part) for part in error.absolute_path)
            raise BadRequest(f"params.{where}: {error.message}" if where else f"params: {error.message}")
        return params


ACTIONS: dict[str, ActionSpec] = {}


def action(
    name: str,
    *,
    params: dict[str, Any] | None = None,
    scope: str | None = None,
    auth: bool = True,
    detached: bool = False,
) -> Callable[[Handler], Handler]:
    """Register an action handler ``async def handler(conn, params) -> result``."""
    schema = {"type": "object", "additionalProperties": False, "properties": {}, **(params or {})}
    Draft202012Validator.check_schema(schema)

    def register(handler: Handler) -> Handler:
        if name in ACTIONS:
            raise ValueError(f"action {name} registered twice")
        ACTIONS[name] = ActionSpec(name, handler, Draft202012Validator(schema), scope, auth, detached)
        return handler

    return register


# Schema pieces shared by actions.
STATION_ID = {"type": "string", "minLength": 1, "maxLength": 64}
CONNECTOR_ID = {"type": "integer", "minimum": 1}
# Integer in /ws, string in /mobile-client: both are accepted everywhere.
TRANSACTION_ID = {"type": ["integer", "string"], "pattern": "^[0-9]{1,18}$", "minimum": 1}


def limit(default: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
