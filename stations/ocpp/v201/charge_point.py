"""The OCPP 2.0.1 CSMS ChargePoint, assembled from the handler families (one per functional block)."""

from __future__ import annotations

from ocpp.v201 import ChargePoint as BaseChargePoint
from ocpp.v201 import call

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
