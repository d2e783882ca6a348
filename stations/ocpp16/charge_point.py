"""The OCPP 1.6 central-system ChargePoint, assembled from the handler families."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import ocpp.messages
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.v16 import ChargePoint as BaseChargePoint
from ocpp.v16 import call

from stations.ocpp16.authorization import AuthorizationHandlers
from stations.ocpp16.metering import MeteringHandlers
from stations.ocpp16.provisioning import ProvisioningHandlers
from stations.ocpp16.transactions import TransactionHandlers

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

# The ocpp library names some errors as OCPP 2.0.1 does; 1.6J spells them so.
ERROR_CODES_16 = {"FormatViolation": "FormationViolation", "OccurrenceConstraintViolation": "OccurenceConstraintViolation"}


class ChargePoint16(
    ProvisioningHandlers, AuthorizationHandlers, TransactionHandlers, MeteringHandlers, BaseChargePoint
):
    def __init__(self, station_id: str, connection: Any, registration_status: str) -> None:
        # Calls are bounded by the command service's own deadline (asyncio.wait_for).
        super().__init__(station_id, connection, response_timeout=3600, logger=_LibraryLog(log, {}))
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

    async def _send(self, message: str) -> None:
        if message.startswith("[2,"):
            # Calls are sent one at a time (the library's call lock): this is
            # the one whose result we wait for.
            self.call_in_flight = json.loads(message)[1]
        elif message.startswith("[4,"):
            frame = json.loads(message)
            frame[2] = ERROR_CODES_16.get(frame[2], frame[2])
            message = json.dumps(frame)
        await self._connection.send(message)

    @staticmethod
    def build_call(action: str, payload: dict[str, Any]) -> Any:
        """The ocpp library's payload object for a CSMS-initiated action (camelCase in)."""
        return getattr(call, action)(**camel_to_snake_case(payload))

    @classmethod
    async def check_command(cls, action: str, payload: dict[str, Any]) -> None:
        """Raise ValueError if the OCPP 1.6 schema refuses this command payload."""
        try:
            request = cls.build_call(action, payload)
            camel = snake_to_camel_case(remove_nones(serialize_as_dict(request)))
            await ocpp.messages.validate_payload(ocpp.messages.Call("check", action, camel), "1.6")
        except (TypeError, AttributeError) as error:
            raise ValueError(f"{action}: {error}") from None
        except OCPPError as error:
            raise ValueError(f"{action}: {error.description} ({error.details.get('cause', '')})") from None

    @staticmethod
    def answer_payload(result: Any) -> dict[str, Any]:
        """A call result as the camelCase dict the charger sent."""
        return snake_to_camel_case(remove_nones(serialize_as_dict(result)))
