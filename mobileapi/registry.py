"""The mobile API's action registry: each action declares its schema and scope.

The dispatcher (the consumer) looks actions up here, checks authentication
and scope, validates params against the schema and maps errors to codes in
one place; handlers receive valid params only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from mobileapi.errors import BadRequest

Handler = Callable[[Any, dict[str, Any]], Awaitable[Any]]


def _is_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


# JSON Schema counts 5.0 as an integer; Python does not (a slice with 5.0 is a
# TypeError): integer parameters are integers.
Validator = validators.extend(
    Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer)
)
MESSAGE_LIMIT = 160


def _oversized(schema: dict[str, Any], value: Any, path: str) -> str | None:
    """The first array, string or object beyond its schema's size, checked before
    anything is validated item by item (150,000 items cost 620 ms that way)."""
    if isinstance(value, (list, str)):
        bound = schema.get("maxItems" if isinstance(value, list) else "maxLength")
        if bound is not None and len(value) > bound:
            unit = "items" if isinstance(value, list) else "characters"
            return f"{path}: must have at most {bound} {unit}"
        item_schema = schema.get("items")
        if isinstance(value, list) and isinstance(item_schema, dict):
            for n, item in enumerate(value):
                problem = _oversized(item_schema, item, f"{path}.{n}")
                if problem:
                    return problem
    elif isinstance(value, dict):
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            unknown = [name for name in value if name not in properties]
            if len(unknown) > 3:  # a few: jsonschema's own message names them
                shown = ", ".join(repr(name[:32]) for name in unknown[:3])
                return f"{path}: unknown properties {shown} and {len(unknown) - 3} more"
        for name, member in value.items():
            if name in properties:
                problem = _oversized(properties[name], member, f"{path}.{name}")
                if problem:
                    return problem
    return None


def _describe(error: ValidationError) -> str:
    """jsonschema's message where it is short; else one that does not quote the value."""
    where = ".".join(["params", *(str(part) for part in error.absolute_path)])
    if len(error.message) <= 100:
        return f"{where}: {error.message}"
    expected = error.validator_value
    if error.validator == "type":
        kinds = " or ".join(expected) if isinstance(expected, list) else expected
        text = f"must be of type {kinds}"
    elif error.validator in ("minimum", "maximum"):
        text = f"must be {'at least' if error.validator == 'minimum' else 'at most'} {expected}"
    elif error.validator in ("minLength", "maxLength", "minItems", "maxItems"):
        bound = cast(str, error.validator)  # one of the four names just tested
        unit = "characters" if bound.endswith("Length") else "items"
        text = f"must have {'at least' if bound.startswith('min') else 'at most'} {expected} {unit}"
    elif error.validator == "pattern":
        text = f"must match {expected}"
    elif error.validator == "enum" and isinstance(expected, list):
        text = f"must be one of {', '.join(map(str, expected))}"
    else:  # required, additionalProperties, ...: messages that quote names, not values
        text = error.message
    return f"{where}: {text}"[:MESSAGE_LIMIT]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    handler: Handler
    validator: Any  # a Validator
    scope: str | None
    auth: bool
    detached: bool  # runs in its own task (waits on a charger): the connection keeps serving
    # Documentation only (docs/mobile-api.md §4 is generated from these: manage.py mobile_reference).
    summary: str = ""
    result: str = ""  # what the result holds
    errors: tuple[tuple[int, str], ...] = ()  # (code, message) the handler itself may answer
    dialects: str = ""  # how the two dialects' results differ, if they do

    def check_params(self, params: Any) -> dict[str, Any]:
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise BadRequest("params must be an object")
        problem = _oversized(self.validator.schema, params, "params")
        if problem:
            raise BadRequest(problem[:MESSAGE_LIMIT])
        error = best_match(self.validator.iter_errors(params))
        if error is not None:
            raise BadRequest(_describe(error))
        return params


ACTIONS: dict[str, ActionSpec] = {}


def action(
    name: str,
    *,
    params: dict[str, Any] | None = None,
    scope: str | None = None,
    auth: bool = True,
    detached: bool = False,
    summary: str = "",
    result: str = "",
    errors: tuple[tuple[int, str], ...] = (),
    dialects: str = "",
) -> Callable[[Handler], Handler]:
    """Register an action handler ``async def handler(conn, params) -> result``.

    ``summary``, ``result``, ``errors`` and ``dialects`` only document it: the
    reference (docs/mobile-api.md §4) is generated from them and the schema, and
    tests/test_reference.py fails until it is regenerated. The errors the
    dispatcher answers (400 invalid params, 401, 403 missing scope) are derived
    from the schema, ``auth`` and ``scope``; list only the handler's own.
    """
    schema = {"type": "object", "additionalProperties": False, "properties": {}, **(params or {})}
    Validator.check_schema(schema)

    def register(handler: Handler) -> Handler:
        if name in ACTIONS:
            raise ValueError(f"action {name} registered twice")
        ACTIONS[name] = ActionSpec(
            name, handler, Validator(schema), scope, auth, detached, summary, result, tuple(errors), dialects
        )
        return handler

    return register


# Schema pieces shared by actions.
STATION_ID = {"type": "string", "minLength": 1, "maxLength": 64}
CONNECTOR_ID = {"type": "integer", "minimum": 1}
# Integer in /ws, string in /mobile-client: both are accepted everywhere.
TRANSACTION_ID = {"type": ["integer", "string"], "pattern": "^[0-9]{1,18}$", "minimum": 1}


def limit(default: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
