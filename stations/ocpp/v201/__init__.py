"""OCPP 2.0.1: the CSMS ChargePoint and its handlers, one module per functional block of the specification."""

from ocpp.v201.enums import Action

from stations.ocpp.adapter import Adapter
from stations.ocpp.v201.charge_point import ChargePoint201
from stations.ocpp.v201.commands import COMMANDS, CSMS_ACTIONS, check_raw, configuration, recorded_answer

SUBPROTOCOL = "ocpp2.0.1"

# What a station may send before it is Accepted (B02/B03): its boot, and what answers the CSMS's own
# requests while it provisions a Pending station (reports, status, events); the rest is SecurityError.
BEFORE_ACCEPTANCE = frozenset({
    "BootNotification", "Heartbeat", "StatusNotification", "NotifyReport", "NotifyEvent",
    "SecurityEventNotification", "FirmwareStatusNotification", "LogStatusNotification",
    "NotifyMonitoringReport",
})
# A Rejected station sends nothing but its next boot (B03).
WHILE_REJECTED = frozenset({"BootNotification"})
CHARGER_ACTIONS = frozenset(action.value for action in Action)

ADAPTER = Adapter(
    version="2.0.1",
    subprotocol=SUBPROTOCOL,
    charge_point=ChargePoint201,
    charger_actions=CHARGER_ACTIONS,
    needs_acceptance=CHARGER_ACTIONS - BEFORE_ACCEPTANCE,
    while_rejected=WHILE_REJECTED,
    # OCPP-J 2.0.1: a frame that is no valid RPC request (1.6J: ProtocolError).
    error_codes={"ProtocolError": "RpcFrameworkError"},
    csms_actions=CSMS_ACTIONS,
    commands=COMMANDS,
    token_max_length=36,
    recorded_answer=recorded_answer,
    configuration=configuration,
    check_raw=check_raw,
)

__all__ = ["ADAPTER", "SUBPROTOCOL", "ChargePoint201"]
