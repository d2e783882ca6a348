"""Every charger command a user can send, registered once.

A command has a neutral name, typed version-neutral parameters, the API
scope and the admin permission it needs; each OCPP adapter builds its
payload (``stations/ocpp/<version>/commands.py``). The mobile API, the
admin's "Act on the charger" panel, the HTTP API and ``station_command``
read this table, so a command registered here (with a builder per adapter)
is offered by all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stations.errors import InvalidValue, NotFound

# The API scopes (mobileapi.models.Scope values) and the admin permission a command needs by default: a
# start or stop is a phone app's (write:charging, with its key's idTag and ownership rules); anything else
# changes the charger for every user, so it needs operate:stations, which a phone app's key never has.
WRITE_CHARGING = "write:charging"
OPERATE_STATIONS = "operate:stations"
OPERATE_PERMISSION = "stations.operate_station"


@dataclass(frozen=True)
class Param:
    """One parameter: ``name`` is the admin form's field, ``wire`` (camelCase) the JSON key."""

    name: str
    type: type = str  # int, str, or list (of strings)
    label: str = ""
    required: bool = True
    choices: tuple[str, ...] = ()
    # Also accepted, not listed: another OCPP version's words for the same choices (reset: OnIdle = Soft).
    aliases: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    default: Any = None  # what an optional parameter left out is
    # "connector" or "transaction": the admin offers the station's own (connector 0 if minimum is 0).
    refers_to: str = ""

    @property
    def wire(self) -> str:
        head, *rest = self.name.split("_")
        return head + "".join(part.title() for part in rest)

    def clean(self, value: Any) -> Any:
        """The value checked against the declaration; InvalidValue (400) names what is wrong."""
        if value is None:
            if self.required:
                raise InvalidValue(f"{self.wire} is required")
            return self.default
        if self.type is int:
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidValue(f"{self.wire} must be an integer")
            if self.minimum is not None and value < self.minimum:
                raise InvalidValue(f"{self.wire} must be at least {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise InvalidValue(f"{self.wire} must be at most {self.maximum}")
        elif self.type is list:
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise InvalidValue(f"{self.wire} must be a list of strings")
            for item in value:
                self._check_text(item)
        else:
            if not isinstance(value, str):
                raise InvalidValue(f"{self.wire} must be a string")
            self._check_text(value)
        return value

    def _check_text(self, value: str) -> None:
        if self.max_length is not None and len(value) > self.max_length:
            raise InvalidValue(f"{self.wire} must be at most {self.max_length} characters")
        if self.choices and value not in self.choices and value not in self.aliases:
            raise InvalidValue(f"{self.wire} must be one of {', '.join(self.choices)}")


@dataclass(frozen=True)
class Command:
    name: str
    title: str
    params: tuple[Param, ...] = ()
    scope: str = OPERATE_STATIONS
    permission: str = OPERATE_PERMISSION
    summary: str = ""
    button: str = "Send"

    def validate(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """JSON parameters (by their wire names) as checked values by name; InvalidValue (400) if any is wrong."""
        known = {param.wire for param in self.params}
        if unknown := sorted(set(given) - known):
            raise InvalidValue(f"{self.name} takes no parameter {', '.join(unknown)}"
                               f" (it takes: {', '.join(sorted(known)) or 'none'})")
        return {param.name: param.clean(given.get(param.wire)) for param in self.params}


REGISTRY: dict[str, Command] = {}


def register(command: Command) -> Command:
    if command.name in REGISTRY:
        raise ValueError(f"command {command.name} is registered twice")
    REGISTRY[command.name] = command
    return command


def get(name: str) -> Command:
    command = REGISTRY.get(name)
    if command is None:
        raise NotFound(f"Unknown command {name}")
    return command


CONNECTOR = Param("connector", int, "Connector", minimum=1, maximum=1000, refers_to="connector")
# The connector within an EVSE (2.0.1's connectorId; a 1.6 station has one per connector: 1).
CONNECTOR_ID = Param("connector_id", int, "Connector of the EVSE", required=False, minimum=1, maximum=100)
# 36: a token as 2.0.1 has it; the station's adapter refuses one longer than its version carries (1.6: 20).
ID_TAG = Param("id_tag", str, "idTag", max_length=36)
# 2.0.1's device model names (CiString50); a request's id (the builder makes one when left out).
COMPONENT = Param("component", str, "Component", max_length=50)
VARIABLE = Param("variable", str, "Variable", max_length=50)
REQUEST_ID = Param("request_id", int, "Request id", required=False, minimum=0, maximum=2**31 - 1)
VARIABLE_PARAMS = (
    COMPONENT, VARIABLE,
    Param("component_instance", str, "Component instance", required=False, max_length=50),
    Param("variable_instance", str, "Variable instance", required=False, max_length=50),
    Param("evse", int, "EVSE", required=False, minimum=1, maximum=1000),
    CONNECTOR_ID,
    Param("attribute_type", str, "Attribute", required=False, choices=("Actual", "Target", "MinSet", "MaxSet")),
)

register(Command("remote_start", "Remote start", (CONNECTOR, ID_TAG), scope=WRITE_CHARGING, button="Start",
                 summary="Ask the charger to start a transaction on a connector for an idTag."))
register(Command("remote_stop", "Remote stop",
                 (Param("transaction", int, "Transaction", minimum=1, maximum=2**53, refers_to="transaction"),),
                 scope=WRITE_CHARGING, button="Stop", summary="Ask the charger to stop an active transaction."))
# Soft/Hard are 1.6's words, OnIdle/Immediate 2.0.1's: each adapter maps the other pair (Soft = OnIdle).
register(Command("reset", "Reset", (Param("type", str, "Type", choices=("Soft", "Hard"),
                                          aliases=("OnIdle", "Immediate")),
                                    Param("evse", int, "EVSE", required=False, minimum=1, maximum=1000,
                                          refers_to="connector")),
                 button="Reset",
                 summary="Restart the charger, or one EVSE of a 2.0.1 station (Soft/OnIdle: after ending "
                         "transactions; Hard/Immediate: at once)."))
register(Command("unlock", "Unlock connector", (CONNECTOR, CONNECTOR_ID), button="Unlock",
                 summary="Release the cable locked in a connector."))
register(Command("change_availability", "Change availability",
                 (Param("connector", int, "Connector", minimum=0, maximum=1000, refers_to="connector"),
                  Param("type", str, "Type", choices=("Operative", "Inoperative")), CONNECTOR_ID),
                 button="Change", summary="Take a connector (0: the whole station) in or out of service."))
register(Command("get_configuration", "Read configuration",
                 (Param("keys", list, "Keys", required=False, max_length=50, default=()),),
                 summary="The charger's configuration keys and values (all of them, or the keys named)."))
register(Command("change_configuration", "Change configuration",
                 (Param("key", str, "Key", max_length=50),
                  Param("value", str, "Value", required=False, max_length=500, default="")),
                 button="Change", summary="Set one configuration key."))
register(Command("trigger_message", "Trigger message",
                 (Param("message", str, "Message", required=False, default="StatusNotification",
                        choices=("StatusNotification", "BootNotification", "Heartbeat", "MeterValues",
                                 "FirmwareStatusNotification", "TransactionEvent", "LogStatusNotification")),
                  Param("connector", int, "Connector", required=False, minimum=1, maximum=1000,
                        refers_to="connector")),
                 button="Trigger", summary="Ask the charger to send a message now (for one connector or all)."))
register(Command("clear_cache", "Clear authorization cache", button="Clear",
                 summary="Empty the charger's cache of idTag authorizations."))
register(Command("data_transfer", "Data transfer",
                 (Param("vendor_id", str, "Vendor id", max_length=255),
                  Param("message_id", str, "Message id", required=False, max_length=50),
                  Param("data", str, "Data", required=False, max_length=10000)),
                 summary="A vendor-specific message to the charger."))
# OCPP 2.0.1's device model (a 1.6 station has none: Conflict). The reports come as NotifyReport.
register(Command("get_base_report", "Request a base report",
                 (Param("report_base", str, "Report", choices=("ConfigurationInventory", "FullInventory",
                                                                "SummaryInventory")), REQUEST_ID),
                 button="Request", summary="Ask a 2.0.1 station to report its device model (NotifyReport)."))
register(Command("get_report", "Request a report",
                 (Param("component", str, "Component", required=False, max_length=50),
                  Param("variable", str, "Variable", required=False, max_length=50),
                  Param("criteria", list, "Criteria", required=False, default=(),
                        choices=("Active", "Available", "Enabled", "Problem")), REQUEST_ID),
                 button="Request",
                 summary="Ask a 2.0.1 station to report one component (or variable), or the components meeting "
                         "criteria (Active, Available, Enabled, Problem)."))
register(Command("get_variables", "Read a variable", VARIABLE_PARAMS, button="Read",
                 summary="One variable of a 2.0.1 station's device model."))
register(Command("set_variables", "Set a variable",
                 (*VARIABLE_PARAMS, Param("value", str, "Value", max_length=1000)), button="Set",
                 summary="Set one variable of a 2.0.1 station's device model."))
