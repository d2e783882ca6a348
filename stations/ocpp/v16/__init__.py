"""OCPP 1.6J: the central-system ChargePoint and its handlers, one module per action family."""

from stations.ocpp.v16.charge_point import ChargePoint16

SUBPROTOCOL = "ocpp1.6"

__all__ = ["ChargePoint16", "SUBPROTOCOL"]
