"""The OCPP 1.6 central-system ChargePoint, assembled from the handler families."""

from __future__ import annotations

from ocpp.v16 import ChargePoint as BaseChargePoint
from ocpp.v16 import call

from stations.ocpp.routing import FastRouting
from stations.ocpp.v16.authorization import AuthorizationHandlers
from stations.ocpp.v16.metering import MeteringHandlers
from stations.ocpp.v16.provisioning import ProvisioningHandlers
from stations.ocpp.v16.transactions import TransactionHandlers

# The ocpp library names some errors as OCPP 2.0.1 does; 1.6J spells them so (and has no
# MessageTypeNotSupported: an unknown message type is a malformed frame).
ERROR_CODES_16 = {"FormatViolation": "FormationViolation", "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
                  "MessageTypeNotSupported": "FormationViolation"}


class ChargePoint16(
    FastRouting, ProvisioningHandlers, AuthorizationHandlers, TransactionHandlers, MeteringHandlers, BaseChargePoint
):
    CALLS = call
    ERROR_CODES = ERROR_CODES_16
