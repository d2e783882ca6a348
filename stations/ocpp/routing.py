"""The per-message path every version's central-system ChargePoint shares (issue 12).

The library's own route_message/_handle_call cost more per message than the
framework under them (py-spy, back-to-back calls): it parses the frame a
second time, validates with jsonschema (101 us for a two-sample MeterValues),
calls inspect.signature on the handler, and converts keys with regular
expressions. ``FastRouting.handle_frame`` takes the frame the consumer already
parsed and does the same steps with those costs cached; what it answers and
logs is the library's, byte for byte. A version's ChargePoint is this mixin,
its handler families and the library's ChargePoint of that version
(``stations/ocpp/v16/charge_point.py``, ``stations/ocpp/v201/charge_point.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import json
import logging
import sys
from types import ModuleType
from typing import Any, ClassVar

import jsonschema_rs
import ocpp.messages
from ocpp.charge_point import (
    _raise_key_error,
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import OccurrenceConstraintViolationError, OCPPError, ProtocolError
from ocpp.messages import Call, CallError, CallResult
from ocpp.routing import create_route_map

from csms.queues import InputQueue

# Validate in the event loop rather than a thread-pool hop per message: the
# schemas are small and the hop costs more than the validation (measured ~15%).
ocpp.messages.ASYNC_VALIDATION = False

log = logging.getLogger("stations.ocpp")


class _LibraryLog(logging.LoggerAdapter):
    """The ocpp library's logger: bounded lines, and no traceback for OCPP errors.

    The library logs every refused frame with ``logger.exception`` and the whole
    message (measured: 100 schema-invalid 250 KB frames wrote 125 MB of log in
    3.4 s). Those errors are expected and answered; we log them on one line
    ourselves. Tracebacks stay for everything else.
    """

    LIMIT = 300

    def log(self, level: int, msg: Any, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        if len(text) > self.LIMIT:
            text = f"{text[:self.LIMIT]}… ({len(text)} chars)"
        error = sys.exc_info()[1] if exc_info is True else exc_info
        if isinstance(error, OCPPError):
            level, exc_info = min(level, logging.INFO), None
        self.logger.log(level, "%s", text, exc_info=exc_info, **kwargs)


# Actions the library validates with Decimal floats (1.6's multipleOf 0.1): left to it.
_DECIMAL_SCHEMAS = frozenset({("1.6", 2, "SetChargingProfile"), ("1.6", 2, "RemoteStartTransaction"),
                              ("1.6", 3, "GetCompositeSchedule")})
_NOT_COMPILED = object()
_fast_validators: dict[tuple[str, int, str], Any] = {}
_ENCODER = ocpp.messages._DecimalEncoder(separators=(",", ":"))  # what Call/CallResult.to_json use


def _fast_validator(version: str, message_type: int, action: str) -> Any:
    """A compiled (Rust) validator of the library's own schema, or None to leave it to the library."""
    if (version, message_type, action) in _DECIMAL_SCHEMAS:
        return None
    try:
        schema = ocpp.messages.get_validator(message_type, action, version).schema
        return jsonschema_rs.Draft4Validator(schema, validate_formats=False)
    except (OSError, ValueError, jsonschema_rs.ValidationError):
        return None


def validate(message: Call | CallResult, version: str) -> None:
    """``ocpp.messages.validate_payload``, with the common case compiled.

    A payload the compiled schema accepts is valid; anything else goes to the
    library's jsonschema validation, which raises the CALLERROR it always did
    (so refusals read exactly as before) or accepts it if it disagrees.
    """
    key = (version, message.message_type_id, message.action)
    fast = _fast_validators.get(key, _NOT_COMPILED)
    if fast is _NOT_COMPILED:
        if len(_fast_validators) < 512:  # actions with a schema: bounded, but an action name is the charger's
            fast = _fast_validators[key] = _fast_validator(*key)
        else:
            fast = None
    if fast is not None:
        try:
            if fast.is_valid(message.payload):
                return
        except Exception:  # noqa: BLE001 - a value it cannot take (the library decides)
            pass
    try:
        ocpp.messages._validate_payload(message, version)
    except ProtocolError as error:
        if version == "1.6":
            raise
        # OCPP-J 2.0.1: a required field missing is OccurrenceConstraintViolation (the library answers
        # ProtocolError, 1.6J's word for an incomplete payload).
        raise OccurrenceConstraintViolationError(description=error.description, details=error.details) from None


@functools.lru_cache(maxsize=2048)
def _snake_key(key: str) -> str:
    return next(iter(camel_to_snake_case({key: None})))


@functools.lru_cache(maxsize=2048)
def _camel_key(key: str) -> str:
    return next(iter(snake_to_camel_case({key: None})))


def _snake(data: Any) -> Any:
    """``camel_to_snake_case`` with each key converted once per process."""
    if isinstance(data, dict):
        return {_snake_key(key): _snake(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_snake(value) for value in data]
    return data


class _Unusual(Exception):
    """A result holding something the library serialises in its own way (a tuple, a set)."""


def _camel(value: Any) -> Any:
    # snake_to_camel_case(remove_nones(serialize_as_dict(...))) in one pass.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_camel_key(field.name): _camel(item) for field in dataclasses.fields(value)
                if (item := getattr(value, field.name)) is not None}
    if isinstance(value, dict):
        return {_camel_key(key) if isinstance(key, str) else key: _camel(item)
                for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_camel(item) for item in value if item is not None]
    if isinstance(value, (tuple, set, frozenset)):
        raise _Unusual
    return value


def result_payload(result: Any) -> Any:
    """A handler's call_result as the camelCase payload the library would send."""
    try:
        return _camel(result)
    except _Unusual:
        return snake_to_camel_case(remove_nones(serialize_as_dict(result)))


_takes_unique_id: dict[Any, bool] = {}


def _wants_unique_id(handler: Any) -> bool:
    """Whether a handler declares ``call_unique_id`` (the library asks inspect on every message)."""
    function = getattr(handler, "__func__", handler)
    wants = _takes_unique_id.get(function)
    if wants is None:
        wants = _takes_unique_id[function] = "call_unique_id" in inspect.signature(handler).parameters
    return wants


def message_of(frame: list) -> Call | CallResult | CallError:
    """``ocpp.messages.unpack`` of a frame already parsed (and checked to be [2|3|4, id, ...])."""
    cls = {2: Call, 3: CallResult, 4: CallError}[frame[0]]
    try:
        return cls(*frame[1:])
    except TypeError:
        raise ProtocolError(details={"cause": "Message is missing elements."}) from None


LIBRARY_LOG = _LibraryLog(log, {})


@functools.cache
def _class_routes(cls: type) -> dict[str, Any]:
    """The library's route map of a ChargePoint class, its handlers as plain functions
    (``FastRouting._handle_call`` passes the instance)."""
    return create_route_map(cls)


class FastRouting:
    """Put before the library's ChargePoint of the version (which gives ``_ocpp_version``)."""

    # The library's call payload classes of the version (ocpp.v16.call, ocpp.v201.call).
    CALLS: ClassVar[ModuleType]
    # The library's error codes (OCPP 2.0.1 spellings) as this version spells them.
    ERROR_CODES: ClassVar[dict[str, str]] = {}

    _ocpp_version: str
    _connection: Any
    logger: Any

    def __init__(self, station_id: str, connection: Any, registration_status: str) -> None:
        # Calls are bounded by the command service's own deadline (asyncio.wait_for).
        super().__init__(station_id, connection, response_timeout=3600, logger=LIBRARY_LOG)  # type: ignore[call-arg]
        # Per connection, the library keeps an asyncio.Queue (3.3 KB empty) and its own
        # route map of bound methods (2.6 KB); one charger needs neither: a lean queue
        # (the library only uses put_nowait and get) and one map per class.
        self._response_queue = InputQueue()
        # A class is hashable; mypy takes the untyped base's __hash__ for the class's own.
        self.route_map = _class_routes(type(self))  # type: ignore[arg-type]
        self.station_id = station_id
        self.registration_status = registration_status
        self.call_in_flight: str | None = None  # unique id of our CALL awaiting its result

    def expects_result(self, unique_id: str) -> bool:
        """Whether a CALLRESULT/CALLERROR with this id answers our call in flight.

        Anything else is dropped by the consumer: the library would queue it,
        and the next call would then read through the whole queue (recursively:
        20,000 bogus results broke the next RemoteStart with RecursionError).
        """
        if unique_id != self.call_in_flight:
            return False
        self.call_in_flight = None
        return True

    async def handle_frame(self, frame: list, text: str) -> None:
        """``route_message`` for a frame the consumer has parsed and checked (``text`` is the frame)."""
        try:
            msg = message_of(frame)
        except OCPPError as error:
            self.logger.exception("Unable to parse message: '%s', it doesn't seem to be valid OCPP: %s",
                                  text, error)
            return
        if msg.message_type_id != 2:
            self._response_queue.put_nowait(msg)
            return
        try:
            await self._handle_call(msg)
        except OCPPError as error:
            self.logger.exception("Error while handling request '%s'", msg)
            await self._send(msg.create_call_error(error).to_json())

    async def _handle_call(self, msg: Call) -> Any:
        # The library's ChargePoint._handle_call (ocpp 2.1.0) step by step, with
        # the validators compiled, handler signatures and key spellings cached.
        handlers = self.route_map.get(msg.action)
        if handlers is None:
            self._refuse_action(msg.action)
            return None
        validating = not handlers.get("_skip_schema_validation", False)
        if validating:
            validate(msg, self._ocpp_version)
        snake_case_payload = _snake(msg.payload)
        handler = handlers.get("_on_action")
        if handler is None:
            self._refuse_action(msg.action)
        try:
            if _wants_unique_id(handler):
                response = handler(self, **snake_case_payload, call_unique_id=msg.unique_id)
            else:
                response = handler(self, **snake_case_payload)
            if inspect.isawaitable(response):
                response = await response
        except Exception as error:
            self.logger.exception("Error while handling request '%s'", msg)
            await self._send(msg.create_call_error(error).to_json())
            return None
        result = msg.create_call_result(result_payload(response))
        if validating:
            validate(result, self._ocpp_version)
        await self._send(_ENCODER.encode([3, result.unique_id, result.payload]))
        after = handlers.get("_after_action")
        if after is not None:
            if _wants_unique_id(after):
                response = after(self, **snake_case_payload, call_unique_id=msg.unique_id)
            else:
                response = after(self, **snake_case_payload)
            if inspect.isawaitable(response):
                asyncio.ensure_future(response)
        return response

    def _refuse_action(self, action: str) -> None:
        """Raise the CALLERROR of an action this CSMS has no handler for (the library's choice of code)."""
        _raise_key_error(action, self._ocpp_version)

    async def _send(self, message: str) -> None:
        if message.startswith("[2,"):
            # Calls are sent one at a time (the library's call lock): this is
            # the one whose result we wait for.
            self.call_in_flight = json.loads(message)[1]
        elif message.startswith("[4,") and self.ERROR_CODES:
            frame = json.loads(message)
            frame[2] = self.ERROR_CODES.get(frame[2], frame[2])
            message = json.dumps(frame)
        await self._connection.send(message)

    @classmethod
    def build_call(cls, action: str, payload: dict[str, Any]) -> Any:
        """The ocpp library's payload object for a CSMS-initiated action (camelCase in)."""
        return getattr(cls.CALLS, action)(**camel_to_snake_case(payload))

    @classmethod
    async def check_command(cls, action: str, payload: dict[str, Any]) -> None:
        """Raise ValueError if the version's schema refuses this command payload."""
        try:
            request = cls.build_call(action, payload)
            camel = snake_to_camel_case(remove_nones(serialize_as_dict(request)))
            await ocpp.messages.validate_payload(ocpp.messages.Call("check", action, camel), cls._ocpp_version)
        except (TypeError, AttributeError) as error:
            raise ValueError(f"{action}: {error}") from None
        except OCPPError as error:
            raise ValueError(f"{action}: {error.description} ({error.details.get('cause', '')})") from None

    @staticmethod
    def answer_payload(result: Any) -> dict[str, Any]:
        """A call result as the camelCase dict the charger sent."""
        return snake_to_camel_case(remove_nones(serialize_as_dict(result)))
