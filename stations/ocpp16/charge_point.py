"""The OCPP 1.6 central-system ChargePoint, assembled from the handler families."""

from __future__ import annotations

import json
import logging
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

# The ocpp library names some errors as OCPP 2.0.1 does; 1.6J spells them so.
ERROR_CODES_16 = {"FormatViolation": "FormationViolation", "OccurrenceConstraintViolation": "OccurenceConstraintViolation"}


class ChargePoint16(
    ProvisioningHandlers, AuthorizationHandlers, TransactionHandlers, MeteringHandlers, BaseChargePoint
):
    def __init__(self, station_id: str, connection: Any, registration_status: str) -> None:
        # Calls are bounded by the command service's own deadline (asyncio.wait_for).
        super().__init__(station_id, connection, response_timeout=3600, logger=log)
        self.station_id = station_id
        self.registration_status = registration_status

    async def _send(self, message: str) -> None:
        if message.startswith("[4,"):
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
