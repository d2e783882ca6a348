"""The OCPP 2.0.1 CSMS ChargePoint, assembled from the handler families (one per functional block)."""

from __future__ import annotations

from ocpp.exceptions import NotImplementedError, NotSupportedError
from ocpp.v201 import ChargePoint as BaseChargePoint
from ocpp.v201 import call
from ocpp.v201.enums import Action

from stations.ocpp.routing import FastRouting
from stations.ocpp.v201.authorization import AuthorizationHandlers
from stations.ocpp.v201.device_model import DeviceModelHandlers
from stations.ocpp.v201.metering import MeteringHandlers
from stations.ocpp.v201.provisioning import ProvisioningHandlers
from stations.ocpp.v201.security import SecurityHandlers
from stations.ocpp.v201.transactions import TransactionHandlers


class ChargePoint201(
    FastRouting, ProvisioningHandlers, AuthorizationHandlers, TransactionHandlers, MeteringHandlers,
    DeviceModelHandlers, SecurityHandlers, BaseChargePoint,
):
    CALLS = call

    def _refuse_action(self, action: str) -> None:
        """OCPP-J 2.0.1 (part 4, CALLERROR): NotImplemented is an action the receiver does not know;
        NotSupported one it knows but does not take (a CSMS-to-station action, one not handled here).
        The ocpp library answers the other way round."""
        if action in _ACTIONS:
            raise NotSupportedError(details={"cause": f"{action} is not taken by this CSMS"})
        raise NotImplementedError(details={"cause": f"{action} is not an OCPP 2.0.1 action"})


_ACTIONS = frozenset(action.value for action in Action)
