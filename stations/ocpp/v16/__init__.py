"""OCPP 1.6J: the central-system ChargePoint and its handlers, one module per action family."""

from ocpp.v16.enums import Action

from stations.ocpp.adapter import Adapter
from stations.ocpp.v16.authorization import ID_TOKEN_LENGTH
from stations.ocpp.v16.charge_point import ERROR_CODES_16, ChargePoint16
from stations.ocpp.v16.commands import COMMANDS, CSMS_ACTIONS, check_raw, configuration, recorded_answer

SUBPROTOCOL = "ocpp1.6"

ADAPTER = Adapter(
    version="1.6",
    subprotocol=SUBPROTOCOL,
    charge_point=ChargePoint16,
    charger_actions=frozenset(action.value for action in Action),
    needs_acceptance=frozenset({"Authorize", "StartTransaction"}),  # refused until Accepted (OCPP 1.6 4.2.1)
    csms_actions=CSMS_ACTIONS,
    commands=COMMANDS,
    token_max_length=ID_TOKEN_LENGTH,
    error_codes=ERROR_CODES_16,
    recorded_answer=recorded_answer,
    configuration=configuration,
    check_raw=check_raw,
)

__all__ = ["ADAPTER", "SUBPROTOCOL", "ChargePoint16"]
