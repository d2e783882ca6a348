"""A simulated OCPP 2.0.1 charging station, built on the ``ocpp`` library's v201 charge-point client.

It boots (retrying while Pending, as B02 says), reports each EVSE's connectors, heartbeats, keeps a
device model (components and variables with their attributes) that GetBaseReport/GetReport report in
NotifyReport parts and GetVariables/SetVariables read and write, and runs transactions with
TransactionEvent: Started (remoteStartId, idToken, evse, Transaction.Begin readings), Updated every
TxUpdatedInterval (energy, power, current and voltage per phase, SoC; chargingState changes), Ended
(stoppedReason, Transaction.End readings); seqNo counts per transaction from 0.

What it remembers outlives a connection (``StationState``): transactions go on charging while the
socket is down, their TransactionEvents wait in order in an outbox and go out after the reconnect,
those made offline with ``offline: true``. A reconnect after a network drop is not a reboot, so it
sends no BootNotification; a Reset is one (boot reason RemoteReset).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import ssl
import uuid
from collections import deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import websockets
from ocpp.exceptions import OCPPError
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result

from simulator.connection import ReconnectBackoff, open_socket, retry_after

log = logging.getLogger("simulator.v201")
frames_log = logging.getLogger("simulator.v201.frames")  # every frame, at INFO

SUBPROTOCOL = "ocpp2.0.1"
VENDOR_ID = "org.openchargealliance.simulator"  # the DataTransfer vendor it knows
MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage", "SoC")
PHASES = ("L1", "L2", "L3")
BATTERY_WH = 60_000.0


async def connect(url: str, station_id: str, password: str | None = None, **kwargs: Any) -> Any:
    """Open an OCPP 2.0.1 WebSocket to ``<url>/<station_id>`` (``url`` ends with /ocpp)."""
    return await open_socket(url, station_id, SUBPROTOCOL, password, **kwargs)


def _spawn(tasks: set[asyncio.Task], coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task:
    """A task kept in ``tasks`` until done; what it raised is logged (a closed socket only at INFO)."""
    task = asyncio.ensure_future(coroutine)
    tasks.add(task)

    def done(task: asyncio.Task) -> None:
        tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        level = logging.INFO if isinstance(error, websockets.ConnectionClosed | TimeoutError) else logging.WARNING
        log.log(level, "task %s ended: %r", task.get_coro(), error)

    task.add_done_callback(done)
    return task


# --- The device model ---------------------------------------------------------------------------------

@dataclass
class Variable:
    """One variable of one component, with its Actual attribute and characteristics (2.0.1 part 2, 2.2)."""

    component: str
    name: str
    value: str = ""
    mutability: str = "ReadOnly"  # ReadOnly | ReadWrite | WriteOnly
    data_type: str = "string"  # string | integer | decimal | boolean | dateTime | OptionList | MemberList | SequenceList
    instance: str | None = None
    component_instance: str | None = None
    evse: int | None = None
    connector: int | None = None
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: str | None = None
    persistent: bool = True
    constant: bool = False

    @property
    def component_key(self) -> tuple[str, str | None, int | None, int | None]:
        return (self.component, self.component_instance, self.evse, self.connector)

    def component_json(self) -> dict[str, Any]:
        component: dict[str, Any] = {"name": self.component}
        if self.component_instance is not None:
            component["instance"] = self.component_instance
        if self.evse is not None:
            component["evse"] = {"id": self.evse}
            if self.connector is not None:
                component["evse"]["connector_id"] = self.connector
        return component

    def variable_json(self) -> dict[str, Any]:
        return {"name": self.name, **({"instance": self.instance} if self.instance is not None else {})}

    def report(self) -> dict[str, Any]:
        """Its ReportDataType (a WriteOnly variable's value is never reported)."""
        attribute: dict[str, Any] = {"type": "Actual", "mutability": self.mutability, "persistent": self.persistent,
                                     "constant": self.constant}
        if self.mutability != "WriteOnly":
            attribute["value"] = self.value
        characteristics: dict[str, Any] = {"data_type": self.data_type, "supports_monitoring": False}
        for name in ("unit", "min_limit", "max_limit", "values_list"):
            if getattr(self, name) is not None:
                characteristics[name] = getattr(self, name)
        return {"component": self.component_json(), "variable": self.variable_json(),
                "variable_attribute": [attribute], "variable_characteristics": characteristics}

    def refusal(self, value: str) -> str | None:
        """Why ``value`` cannot be set (None: it can)."""
        if self.mutability == "ReadOnly":
            return "ReadOnly"
        allowed = (self.values_list or "").split(",")
        try:
            if self.data_type in ("integer", "decimal"):
                number = int(value) if self.data_type == "integer" else float(value)
                if (self.min_limit is not None and number < self.min_limit) or \
                        (self.max_limit is not None and number > self.max_limit):
                    return "out of range"
            elif self.data_type == "boolean" and value not in ("true", "false"):
                return "not a boolean"
            elif self.data_type == "OptionList" and value not in allowed:
                return "not an option"
            elif self.data_type in ("MemberList", "SequenceList") and not all(
                    member in allowed for member in value.split(",")):
                return "not a member"
        except ValueError:
            return f"not {self.data_type}"
        if self.data_type == "string":
            if self.max_limit is not None and len(value) > self.max_limit:
                return "too long"
            if self.min_limit is not None and len(value) < self.min_limit:
                return "too short"
        return None


def _key(component: dict[str, Any]) -> tuple[str, str | None, int | None, int | None]:
    evse = component.get("evse") or {}
    return (component["name"], component.get("instance"), evse.get("id"), evse.get("connector_id"))


class DeviceModel:
    """The station's components and variables, in report order."""

    def __init__(self, variables: Iterable[Variable]) -> None:
        self.variables: dict[tuple[Any, ...], Variable] = {}
        for variable in variables:
            self.variables[(*variable.component_key, variable.name, variable.instance)] = variable

    def get(self, component: str, name: str, instance: str | None = None, *, evse: int | None = None,
            connector: int | None = None, component_instance: str | None = None) -> Variable:
        return self.variables[(component, component_instance, evse, connector, name, instance)]

    def value(self, component: str, name: str, instance: str | None = None, **where: Any) -> str:
        return self.get(component, name, instance, **where).value

    def find(self, component: dict[str, Any], variable: dict[str, Any]) -> tuple[str, Variable | None]:
        """The variable a GetVariables/SetVariables item names, or why not (UnknownComponent/UnknownVariable)."""
        key = _key(component)
        found = self.variables.get((*key, variable["name"], variable.get("instance")))
        if found is not None:
            return "Accepted", found
        if not any(v.component_key == key for v in self.variables.values()):
            return "UnknownComponent", None
        return "UnknownVariable", None

    def select(self, report_base: str | None = None, component_variable: list[dict[str, Any]] | None = None,
               component_criteria: list[str] | None = None) -> list[Variable]:
        """What a GetBaseReport (``report_base``) or GetReport reports."""
        chosen = list(self.variables.values())
        if report_base == "ConfigurationInventory":
            chosen = [v for v in chosen if v.mutability != "ReadOnly"]
        elif report_base == "SummaryInventory":
            chosen = [v for v in chosen if v.name in ("AvailabilityState", "Available", "Problem")]
        if component_variable:
            def asked(v: Variable) -> bool:
                for item in component_variable:
                    component = item["component"]
                    variable = item.get("variable")
                    evse = component.get("evse")
                    if component["name"] != v.component or component.get("instance", v.component_instance) != \
                            v.component_instance:
                        continue
                    if evse is not None and (evse["id"] != v.evse or
                                             evse.get("connector_id", v.connector) != v.connector):
                        continue
                    if variable is None or (variable["name"] == v.name and
                                            variable.get("instance", v.instance) == v.instance):
                        return True
                return False
            chosen = [v for v in chosen if asked(v)]
        if component_criteria:
            # A component meets a criterion (Active, Available, Enabled, Problem) when its variable of that
            # name is true.
            keep = {v.component_key for v in self.variables.values()
                    if v.name in component_criteria and v.value == "true"}
            chosen = [v for v in chosen if v.component_key in keep]
        return chosen


def device_model(evses: int, connectors_per_evse: int, *, heartbeat_interval: int, meter_interval: float,
                 max_power_w: float, security_profile: int) -> DeviceModel:
    """A realistic device model of an AC station with ``evses`` EVSEs (the controllers part 2 appendix names)."""
    V = Variable
    measurands = ",".join(MEASURANDS)
    variables = [
        V("ChargingStation", "AvailabilityState", "Available", data_type="OptionList",
          values_list="Available,Occupied,Reserved,Unavailable,Faulted"),
        V("ChargingStation", "Available", "true", data_type="boolean"),
        V("ChargingStation", "Model", "Simulator 201", constant=True),
        V("ChargingStation", "VendorName", "CSMS", constant=True),
        V("ChargingStation", "SupplyPhases", "3", data_type="integer", constant=True),
        V("SecurityCtrlr", "BasicAuthPassword", "", mutability="WriteOnly", max_limit=40, min_limit=16),
        V("SecurityCtrlr", "SecurityProfile", str(security_profile), data_type="integer"),
        V("SecurityCtrlr", "Identity", ""),
        V("SecurityCtrlr", "OrganizationName", "CSMS Simulator", mutability="ReadWrite"),
        V("OCPPCommCtrlr", "HeartbeatInterval", str(heartbeat_interval), mutability="ReadWrite",
          data_type="integer", unit="s", min_limit=1),
        V("OCPPCommCtrlr", "MessageTimeout", "30", instance="Default", data_type="integer", unit="s"),
        V("OCPPCommCtrlr", "MessageAttempts", "3", instance="TransactionEvent", mutability="ReadWrite",
          data_type="integer", min_limit=0),
        V("OCPPCommCtrlr", "MessageAttemptInterval", "10", instance="TransactionEvent", mutability="ReadWrite",
          data_type="integer", unit="s", min_limit=0),
        V("OCPPCommCtrlr", "NetworkConfigurationPriority", "1", mutability="ReadWrite", data_type="SequenceList",
          values_list="1,2"),
        V("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", "3", mutability="ReadWrite", data_type="integer"),
        V("OCPPCommCtrlr", "OfflineThreshold", "60", mutability="ReadWrite", data_type="integer", unit="s"),
        V("OCPPCommCtrlr", "RetryBackOffWaitMinimum", "1", mutability="ReadWrite", data_type="integer", unit="s"),
        V("OCPPCommCtrlr", "RetryBackOffRandomRange", "1", mutability="ReadWrite", data_type="integer", unit="s"),
        V("OCPPCommCtrlr", "RetryBackOffRepeatTimes", "6", mutability="ReadWrite", data_type="integer"),
        V("OCPPCommCtrlr", "ResetRetries", "1", mutability="ReadWrite", data_type="integer"),
        V("OCPPCommCtrlr", "WebSocketPingInterval", "0", mutability="ReadWrite", data_type="integer", unit="s"),
        V("OCPPCommCtrlr", "FileTransferProtocols", "HTTPS", data_type="MemberList", values_list="HTTP,HTTPS,FTP"),
        V("TxCtrlr", "EVConnectionTimeOut", "60", mutability="ReadWrite", data_type="integer", unit="s"),
        V("TxCtrlr", "StopTxOnEVSideDisconnect", "true", data_type="boolean"),
        V("TxCtrlr", "StopTxOnInvalidId", "true", mutability="ReadWrite", data_type="boolean"),
        V("TxCtrlr", "TxBeforeAcceptedEnabled", "false", mutability="ReadWrite", data_type="boolean"),
        V("TxCtrlr", "TxStartPoint", "PowerPathClosed", mutability="ReadWrite", data_type="MemberList",
          values_list="ParkingBayOccupancy,EVConnected,Authorized,DataSigned,PowerPathClosed,EnergyTransfer"),
        V("TxCtrlr", "TxStopPoint", "EVConnected,Authorized", mutability="ReadWrite", data_type="MemberList",
          values_list="ParkingBayOccupancy,EVConnected,Authorized,PowerPathClosed,EnergyTransfer"),
        V("SampledDataCtrlr", "Enabled", "true", data_type="boolean"),
        V("SampledDataCtrlr", "TxUpdatedInterval", str(int(meter_interval)), mutability="ReadWrite",
          data_type="integer", unit="s", min_limit=0),
        V("SampledDataCtrlr", "TxUpdatedMeasurands", measurands, mutability="ReadWrite", data_type="MemberList",
          values_list=measurands),
        V("SampledDataCtrlr", "TxStartedMeasurands", "Energy.Active.Import.Register", mutability="ReadWrite",
          data_type="MemberList", values_list=measurands),
        V("SampledDataCtrlr", "TxEndedMeasurands", "Energy.Active.Import.Register", mutability="ReadWrite",
          data_type="MemberList", values_list=measurands),
        V("SampledDataCtrlr", "TxEndedInterval", "0", mutability="ReadWrite", data_type="integer", unit="s"),
        V("AlignedDataCtrlr", "Enabled", "true", data_type="boolean"),
        V("AlignedDataCtrlr", "Interval", "0", mutability="ReadWrite", data_type="integer", unit="s"),
        V("AlignedDataCtrlr", "Measurands", "Energy.Active.Import.Register", mutability="ReadWrite",
          data_type="MemberList", values_list=measurands),
        V("AuthCtrlr", "Enabled", "true", mutability="ReadWrite", data_type="boolean"),
        V("AuthCtrlr", "AuthorizeRemoteStart", "false", mutability="ReadWrite", data_type="boolean"),
        V("AuthCtrlr", "LocalAuthorizeOffline", "true", mutability="ReadWrite", data_type="boolean"),
        V("AuthCtrlr", "LocalPreAuthorize", "false", mutability="ReadWrite", data_type="boolean"),
        V("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "false", mutability="ReadWrite", data_type="boolean"),
        V("AuthCacheCtrlr", "Enabled", "true", mutability="ReadWrite", data_type="boolean"),
        V("AuthCacheCtrlr", "Available", "true", data_type="boolean"),
        V("AuthCacheCtrlr", "LifeTime", "86400", mutability="ReadWrite", data_type="integer", unit="s"),
        V("DeviceDataCtrlr", "ItemsPerMessage", "20", instance="GetReport", data_type="integer"),
        V("DeviceDataCtrlr", "ItemsPerMessage", "20", instance="GetVariables", data_type="integer"),
        V("DeviceDataCtrlr", "ItemsPerMessage", "20", instance="SetVariables", data_type="integer"),
        V("DeviceDataCtrlr", "BytesPerMessage", "65000", instance="GetReport", data_type="integer"),
        V("ClockCtrlr", "DateTime", "", data_type="dateTime"),
        V("ClockCtrlr", "TimeSource", "Heartbeat", mutability="ReadWrite", data_type="SequenceList",
          values_list="Heartbeat,NTP,GPS,RealTimeClock,MobileNetwork,RadioTimeTransmitter"),
    ]
    for evse in range(1, evses + 1):
        variables += [
            V("EVSE", "AvailabilityState", "Available", evse=evse, data_type="OptionList",
              values_list="Available,Occupied,Reserved,Unavailable,Faulted"),
            V("EVSE", "Available", "true", evse=evse, data_type="boolean"),
            V("EVSE", "Power", "0", evse=evse, data_type="decimal", unit="W", max_limit=max_power_w),
            V("EVSE", "SupplyPhases", "3", evse=evse, data_type="integer", constant=True),
        ]
        for connector in range(1, connectors_per_evse + 1):
            variables += [
                V("Connector", "AvailabilityState", "Available", evse=evse, connector=connector,
                  data_type="OptionList", values_list="Available,Occupied,Reserved,Unavailable,Faulted"),
                V("Connector", "Available", "true", evse=evse, connector=connector, data_type="boolean"),
                V("Connector", "ConnectorType", "cType2", evse=evse, connector=connector, constant=True),
                V("Connector", "SupplyPhases", "3", evse=evse, connector=connector, data_type="integer",
                  constant=True),
            ]
    return DeviceModel(variables)


# --- What the station remembers -----------------------------------------------------------------------

@dataclass
class Transaction:
    transaction_id: str
    id_token: dict[str, str] | None
    remote_start_id: int | None = None
    next_seq_no: int = 0  # seqNo counts per transaction from 0 (E01.FR.?: every TransactionEvent)
    charging_state: str = "EVConnected"

    def seq_no(self) -> int:
        seq_no, self.next_seq_no = self.next_seq_no, self.next_seq_no + 1
        return seq_no


@dataclass
class ConnectorState:
    number: int
    operative: bool = True
    plugged: bool = False
    sent_status: str | None = None  # the last StatusNotification sent


@dataclass
class EVSEState:
    id: int
    connectors: dict[int, ConnectorState] = field(default_factory=dict)
    operative: bool = True
    energy_wh: float = 0.0  # the meter register, never reset
    power_w: float = 0.0
    soc: float = 50.0
    transaction: Transaction | None = None
    meter_task: asyncio.Task | None = None
    scheduled_availability: dict[int | None, bool] = field(default_factory=dict)  # connector (None: EVSE) -> operative


@dataclass
class StationState:
    """Everything a station remembers across connections, and what it does without a socket."""

    station_id: str
    evses: dict[int, EVSEState] = field(default_factory=dict)
    password: str | None = None
    heartbeat_interval: int = 300
    meter_interval: float = 5.0
    max_power_w: float = 11_000.0
    voltage_v: float = 230.0
    boot_retry_interval: float = 30.0  # when a Pending/Rejected answer gives no interval
    model: DeviceModel = field(default_factory=lambda: DeviceModel([]))
    operative: bool = True
    scheduled_operative: bool | None = None
    accepted: bool = False  # the last BootNotification was Accepted (false again after a reboot)
    boot_reason: str = "PowerUp"
    reconnect_now: bool = False  # a reboot or a new password: reconnect without the backoff
    reset_scheduled: bool = False  # an OnIdle reset waits for the transactions to end
    clock_offset: float = 0.0  # seconds the CSMS's clock is ahead of ours (set at boot)
    outbox: deque[call.TransactionEvent] = field(default_factory=deque)
    outbox_limit: int = 1000
    outbox_changed: asyncio.Event = field(default_factory=asyncio.Event)
    security_events: list[tuple[str, str]] = field(default_factory=list)  # (type, techInfo) not sent yet
    link: SimulatedStation | None = None  # the connection, while Accepted
    tasks: set[asyncio.Task] = field(default_factory=set)

    @classmethod
    def new(cls, station_id: str, evses: int = 2, meter_interval: float = 5.0, *, connectors_per_evse: int = 1,
            password: str | None = None) -> StationState:
        state = cls(station_id, password=password, meter_interval=meter_interval)
        for number in range(1, evses + 1):
            state.evses[number] = EVSEState(
                number, {c: ConnectorState(c) for c in range(1, connectors_per_evse + 1)},
                energy_wh=float(random.randint(1_000_000, 5_000_000)), soc=random.uniform(20, 60))
        state.model = device_model(evses, connectors_per_evse, heartbeat_interval=state.heartbeat_interval,
                                   meter_interval=meter_interval, max_power_w=state.max_power_w,
                                   security_profile=1)
        return state

    # --- Clock, tasks, sockets ---

    def now(self) -> str:
        moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.clock_offset)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task:
        return _spawn(self.tasks, coroutine)

    @property
    def online(self) -> bool:
        return self.link is not None

    async def send(self, request: Any) -> Any:
        """Send a request now if Accepted and connected; None otherwise (it is not kept)."""
        link = self.link
        if link is None:
            return None
        try:
            return await link.call(request)
        except (websockets.WebSocketException, TimeoutError) as error:
            log.info("%s: %s not sent: %s", self.station_id, type(request).__name__, error)
            return None

    # --- Status and availability ---

    def connector_status(self, evse: EVSEState, connector: ConnectorState) -> str:
        if not (self.operative and evse.operative and connector.operative):
            return "Unavailable"
        return "Occupied" if connector.plugged or evse.transaction else "Available"

    async def send_status(self, evse: EVSEState, connector: ConnectorState, *, always: bool = False) -> None:
        status = self.connector_status(evse, connector)
        self._model_availability()
        if status == connector.sent_status and not always:
            return
        answer = await self.send(call.StatusNotification(timestamp=self.now(), connector_status=status,
                                                         evse_id=evse.id, connector_id=connector.number))
        if answer is not None:
            connector.sent_status = status

    async def send_statuses(self, *, always: bool = False) -> None:
        for evse in self.evses.values():
            for connector in evse.connectors.values():
                await self.send_status(evse, connector, always=always)

    def _model_availability(self) -> None:
        """The device model's AvailabilityState/Available variables follow the live state."""
        variables = self.model.variables
        station_state = "Available" if self.operative else "Unavailable"
        for evse in self.evses.values():
            evse_state = "Available" if self.operative and evse.operative else "Unavailable"
            if evse_state == "Available" and evse.transaction:
                evse_state = "Occupied"
            for connector in evse.connectors.values():
                status = self.connector_status(evse, connector)
                self._set(variables, ("Connector", None, evse.id, connector.number), status)
            self._set(variables, ("EVSE", None, evse.id, None), evse_state)
            power = variables.get(("EVSE", None, evse.id, None, "Power", None))
            if power is not None:
                power.value = f"{evse.power_w:.0f}"
        self._set(variables, ("ChargingStation", None, None, None), station_state)
        clock = variables.get(("ClockCtrlr", None, None, None, "DateTime", None))
        if clock is not None:
            clock.value = self.now()

    @staticmethod
    def _set(variables: dict[tuple[Any, ...], Variable], component: tuple[Any, ...], status: str) -> None:
        if (state := variables.get((*component, "AvailabilityState", None))) is not None:
            state.value = status
        if (available := variables.get((*component, "Available", None))) is not None:
            available.value = "false" if status == "Unavailable" else "true"

    def availability_targets(self, evse: dict[str, Any] | None) -> list[tuple[EVSEState, int | None]] | None:
        """What a ChangeAvailability's evse names: (EVSE, connector or None); [] for the station; None unknown."""
        if evse is None:
            return []
        target = self.evses.get(evse["id"])
        connector = evse.get("connector_id")
        if target is None or (connector is not None and connector not in target.connectors):
            return None
        return [(target, connector)]

    async def apply_availability(self, evse: EVSEState | None, connector: int | None, operative: bool) -> None:
        if evse is None:
            self.operative = operative
        elif connector is None:
            evse.operative = operative
        else:
            evse.connectors[connector].operative = operative
        await self.send_statuses()

    async def apply_scheduled(self) -> None:
        """After a transaction: the availability changes and the reset that waited for it."""
        for evse in self.evses.values():
            if evse.transaction is None and evse.scheduled_availability:
                scheduled, evse.scheduled_availability = evse.scheduled_availability, {}
                for connector, operative in scheduled.items():
                    await self.apply_availability(evse, connector, operative)
        if self.busy():
            return
        if self.scheduled_operative is not None:
            operative, self.scheduled_operative = self.scheduled_operative, None
            await self.apply_availability(None, None, operative)
        if self.reset_scheduled:
            self.reset_scheduled = False
            await self.reboot()

    def busy(self) -> bool:
        return any(evse.transaction for evse in self.evses.values())

    # --- Meter ---

    def sample(self, evse: EVSEState, context: str, measurands: str) -> dict[str, Any]:
        """One meterValue of ``measurands`` (a MemberList's value)."""
        wanted = measurands.split(",")
        current = evse.power_w / (3 * self.voltage_v) if evse.power_w else 0.0
        values: list[dict[str, Any]] = []

        def add(value: float, measurand: str, unit: str, **more: Any) -> None:
            values.append({"value": round(value, 1), "context": context, "measurand": measurand,
                           "unit_of_measure": {"unit": unit}, **more})

        if "Energy.Active.Import.Register" in wanted:  # a register counts whole Wh
            add(int(evse.energy_wh), "Energy.Active.Import.Register", "Wh")
        if "Power.Active.Import" in wanted:
            add(evse.power_w, "Power.Active.Import", "W")
        if "Current.Import" in wanted:
            for phase in PHASES:
                add(current * random.uniform(0.98, 1.02), "Current.Import", "A", phase=phase)
        if "Voltage" in wanted:
            for phase in PHASES:
                add(self.voltage_v + random.uniform(-2, 2), "Voltage", "V", phase=f"{phase}-N")
        if "SoC" in wanted:
            add(evse.soc, "SoC", "Percent", location="EV")
        return {"timestamp": self.now(), "sampled_value": values}

    def advance(self, evse: EVSEState, seconds: float) -> str:
        """Charge for ``seconds``; the charging state after it (the EV takes less above 80 % and none when full)."""
        evse.energy_wh += evse.power_w * seconds / 3600
        evse.soc = min(100.0, evse.soc + evse.power_w * seconds / 3600 / BATTERY_WH * 100)
        if evse.soc >= 100.0:
            evse.power_w = 0.0
            return "SuspendedEV"
        taper = 1.0 if evse.soc < 80 else max(0.1, (100 - evse.soc) / 20)
        evse.power_w = self.max_power_w * random.uniform(0.9, 1.0) * taper
        return "Charging"

    # --- Transactions ---

    def transaction_event(self, evse: EVSEState, event_type: str, trigger_reason: str, *,
                          charging_state: str | None = None, stopped_reason: str | None = None,
                          with_token: bool = False, meter_value: list[dict[str, Any]] | None = None) -> None:
        """Put a TransactionEvent of ``evse``'s transaction in the outbox (sent in order; kept while offline)."""
        tx = evse.transaction
        assert tx is not None
        info: dict[str, Any] = {"transaction_id": tx.transaction_id}
        if charging_state is not None and (charging_state != tx.charging_state or event_type == "Started"):
            tx.charging_state = charging_state
            info["charging_state"] = charging_state
        if stopped_reason is not None:
            info["stopped_reason"] = stopped_reason
        if event_type == "Started" and tx.remote_start_id is not None:
            info["remote_start_id"] = tx.remote_start_id
        event = call.TransactionEvent(
            event_type=event_type, timestamp=self.now(), trigger_reason=trigger_reason, seq_no=tx.seq_no(),
            transaction_info=info, meter_value=meter_value, offline=True if not self.online else None,
            number_of_phases_used=3 if event_type != "Ended" else None,
            evse={"id": evse.id, "connector_id": 1} if event_type == "Started" else None,
            id_token=tx.id_token if with_token and tx.id_token else None,
        )
        self.outbox.append(event)
        if len(self.outbox) > self.outbox_limit:  # a long outage: the oldest periodic readings go first
            for queued in self.outbox:
                if queued.trigger_reason == "MeterValuePeriodic":
                    self.outbox.remove(queued)
                    break
        self.outbox_changed.set()

    def on_transaction_answer(self, event: call.TransactionEvent, answer: Any) -> None:
        """StopTxOnInvalidId: a token the CSMS does not accept ends its transaction (Deauthorized)."""
        info = getattr(answer, "id_token_info", None)
        if not info or info.get("status") == "Accepted" or event.event_type == "Ended":
            return
        for evse in self.evses.values():
            tx = evse.transaction
            if tx and tx.transaction_id == event.transaction_info["transaction_id"]:
                self.spawn(self.stop_transaction(evse, "Deauthorized", "DeAuthorized"))

    def free_evse(self) -> EVSEState | None:
        for evse in self.evses.values():
            if evse.transaction is None and self.connector_status(evse, evse.connectors[1]) == "Available":
                return evse
        return None

    async def start_transaction(self, evse: EVSEState, id_token: dict[str, str], trigger_reason: str, *,
                                remote_start_id: int | None = None) -> None:
        """The driver has plugged in and is authorized (TxStartPoint PowerPathClosed): Started, then Charging."""
        if self.model.value("AuthCtrlr", "AuthorizeRemoteStart") == "true" and remote_start_id is not None:
            answer = await self.send(call.Authorize(id_token=id_token))
            if answer is None or answer.id_token_info.get("status") != "Accepted":
                return
        connector = evse.connectors[1]
        connector.plugged = True
        evse.transaction = Transaction(str(uuid.uuid4()), id_token, remote_start_id)
        await self.send_status(evse, connector)
        begin = self.sample(evse, "Transaction.Begin", self.model.value("SampledDataCtrlr", "TxStartedMeasurands"))
        self.transaction_event(evse, "Started", trigger_reason, charging_state="EVConnected", with_token=True,
                               meter_value=[begin])
        state = self.advance(evse, 0)
        self.transaction_event(evse, "Updated", "ChargingStateChanged", charging_state=state,
                               meter_value=[self.updated_sample(evse, "Sample.Periodic")])
        evse.meter_task = self.spawn(self.meter_forever(evse))

    def updated_sample(self, evse: EVSEState, context: str) -> dict[str, Any]:
        return self.sample(evse, context, self.model.value("SampledDataCtrlr", "TxUpdatedMeasurands"))

    async def meter_forever(self, evse: EVSEState) -> None:
        """Updated every TxUpdatedInterval, also while offline (those wait in the outbox)."""
        while evse.transaction is not None:
            interval = float(self.model.value("SampledDataCtrlr", "TxUpdatedInterval") or 0) or self.meter_interval
            await asyncio.sleep(interval)
            tx = evse.transaction
            if tx is None:
                return
            state = self.advance(evse, interval)
            if state != tx.charging_state:
                self.transaction_event(evse, "Updated", "ChargingStateChanged", charging_state=state,
                                       meter_value=[self.updated_sample(evse, "Sample.Periodic")])
            else:
                self.transaction_event(evse, "Updated", "MeterValuePeriodic",
                                       meter_value=[self.updated_sample(evse, "Sample.Periodic")])

    async def stop_transaction(self, evse: EVSEState, trigger_reason: str, stopped_reason: str, *,
                               unplug: bool = True) -> None:
        """Ended with the Transaction.End reading; the driver unplugs; what waited for it runs."""
        if evse.transaction is None:
            return
        if evse.meter_task is not None and evse.meter_task is not asyncio.current_task():
            evse.meter_task.cancel()
        evse.meter_task = None
        evse.power_w = 0.0
        end = self.sample(evse, "Transaction.End", self.model.value("SampledDataCtrlr", "TxEndedMeasurands"))
        self.transaction_event(evse, "Ended", trigger_reason, charging_state="EVConnected",
                               stopped_reason=stopped_reason, with_token=trigger_reason == "StopAuthorized",
                               meter_value=[end])
        evse.transaction = None
        if unplug:
            evse.connectors[1].plugged = False
        await self.send_status(evse, evse.connectors[1])
        await self.apply_scheduled()

    def transaction(self, transaction_id: str) -> EVSEState | None:
        for evse in self.evses.values():
            if evse.transaction and evse.transaction.transaction_id == transaction_id:
                return evse
        return None

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (a while) until the outbox is sent."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.outbox and self.online and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)

    async def reboot(self) -> None:
        """A reset: the transactions were ended; the outbox goes out first, then it boots again (RemoteReset)."""
        await self.drain()
        self.accepted = False
        self.boot_reason = "RemoteReset"
        self.reconnect_now = True
        for evse in self.evses.values():
            for connector in evse.connectors.values():
                connector.sent_status = None
        link, self.link = self.link, None
        if link is not None:
            await link.close()

    async def clock_aligned_forever(self) -> None:
        """AlignedDataCtrlr.Interval > 0: readings at each multiple of it past midnight (Sample.Clock), in a
        TransactionEvent (MeterValueClock) during a transaction, else in MeterValues (only while online)."""
        while True:
            interval = int(self.model.value("AlignedDataCtrlr", "Interval") or 0)
            if interval <= 0:
                await asyncio.sleep(1)
                continue
            now = dt.datetime.now(dt.UTC).timestamp() + self.clock_offset
            await asyncio.sleep(interval - now % interval)
            measurands = self.model.value("AlignedDataCtrlr", "Measurands")
            for evse in self.evses.values():
                reading = self.sample(evse, "Sample.Clock", measurands)
                if evse.transaction is not None:
                    self.transaction_event(evse, "Updated", "MeterValueClock", meter_value=[reading])
                else:
                    await self.send(call.MeterValues(evse_id=evse.id, meter_value=[reading]))

    async def drivers_forever(self, every: float) -> None:
        """Local sessions as drivers with RFID cards would start them, about one per EVSE every ``every``
        seconds, each lasting one to three times that (only while online: it authorizes them)."""
        while True:
            await asyncio.sleep(every * random.uniform(0.3, 1.0))
            evse = self.free_evse()
            if evse is None or not self.online:
                continue
            token = {"id_token": f"DEMO-{random.randint(1, 99):02d}", "type": "ISO14443"}
            answer = await self.send(call.Authorize(id_token=token))
            if answer is not None and answer.id_token_info.get("status") == "Accepted":
                await self.start_transaction(evse, token, "Authorized")
                self.spawn(self._finish_later(evse, every * random.uniform(1, 3)))

    async def _finish_later(self, evse: EVSEState, after: float) -> None:
        await asyncio.sleep(after)
        if evse.transaction is not None:
            await self.stop_transaction(evse, "StopAuthorized", "Local")


# --- The connection -----------------------------------------------------------------------------------

class SimulatedStation(ChargePoint):
    """One connection of a station: its boot, heartbeat and outbox, and its answers to the CSMS."""

    def __init__(self, state: StationState, connection: Any) -> None:
        super().__init__(state.station_id, connection, response_timeout=30, logger=frames_log)
        self.state = state
        self.registration = ""  # the last BootNotification's status on this connection
        self.boot_wake = asyncio.Event()  # TriggerMessage(BootNotification) while Pending
        self.tasks: set[asyncio.Task] = set()
        # What an answer decided, for its after-hook (the library sends the answer in between).
        self._pending_start: tuple[EVSEState, dict[str, str], int] | None = None
        self._new_password: str | None = None

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task:
        return _spawn(self.tasks, coroutine)

    async def close(self) -> None:
        await self._connection.close()

    # --- Station-initiated ---

    async def boot(self) -> str:
        """BootNotification until Accepted: Pending and Rejected are retried after their interval."""
        state = self.state
        while True:
            self.boot_wake.clear()
            answer = await self.call(call.BootNotification(
                charging_station={"model": "Simulator 201", "vendor_name": "CSMS",
                                  "serial_number": f"SIM-{state.station_id}", "firmware_version": "2.0.1-sim"},
                reason=state.boot_reason))
            self.registration = answer.status if answer is not None else "CALLERROR"
            if answer is not None and answer.status == "Accepted":
                break
            wait = (answer.interval if answer is not None else 0) or state.boot_retry_interval
            log.info("%s boot %s: again in %s s", state.station_id, self.registration, wait)
            try:
                await asyncio.wait_for(self.boot_wake.wait(), wait)
            except TimeoutError:
                pass
        if answer.interval:
            state.heartbeat_interval = answer.interval
            state.model.get("OCPPCommCtrlr", "HeartbeatInterval").value = str(answer.interval)
        # The station sets its clock from the CSMS's (ClockCtrlr.TimeSource Heartbeat).
        csms_time = dt.datetime.fromisoformat(answer.current_time.replace("Z", "+00:00"))
        state.clock_offset = (csms_time - dt.datetime.now(dt.UTC)).total_seconds()
        state.security_events += [
            ("StartupOfTheDevice" if state.boot_reason == "PowerUp" else "ResetOrReboot",
             f"boot reason {state.boot_reason}"),
            ("SettingSystemTime", f"from BootNotification currentTime {answer.current_time}"),
        ]
        state.accepted = True
        state.boot_reason = "PowerUp"  # the next boot, unless a reset says otherwise
        return answer.status

    async def come_online(self) -> None:
        """Boot unless Accepted already (a reconnect is not a reboot), then report and send what waited."""
        state = self.state
        if not state.accepted:
            await self.boot()
        state.link = self
        self.spawn(self.heartbeat_forever())
        self.spawn(self.send_outbox())
        while state.security_events:
            kind, info = state.security_events.pop(0)
            await self.call(call.SecurityEventNotification(type=kind, timestamp=state.now(), tech_info=info))
        await state.send_statuses(always=True)

    async def heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.state.heartbeat_interval)
            await self.call(call.Heartbeat())

    async def send_outbox(self) -> None:
        """The TransactionEvents in order, each until it is answered (a CALLERROR drops it)."""
        outbox = self.state.outbox
        while True:
            while outbox:
                event = outbox[0]
                try:
                    answer = await self.call(event, suppress=False)
                except TimeoutError:
                    continue
                except OCPPError as error:
                    log.warning("%s: TransactionEvent seqNo %s refused: %s", self.id, event.seq_no, error)
                    answer = None
                if outbox and outbox[0] is event:
                    outbox.popleft()
                self.state.on_transaction_answer(event, answer)
            self.state.outbox_changed.clear()
            await self.state.outbox_changed.wait()

    async def data_transfer(self, vendor_id: str, message_id: str | None = None, data: Any = None) -> Any:
        return await self.call(call.DataTransfer(vendor_id=vendor_id, message_id=message_id, data=data))

    # --- CSMS-initiated: provisioning and the device model ---

    @on("GetBaseReport")
    def on_get_base_report(self, request_id: int, report_base: str, **extra: Any) -> call_result.GetBaseReport:
        return call_result.GetBaseReport(status="Accepted")

    @after("GetBaseReport")
    def after_get_base_report(self, request_id: int, report_base: str, **extra: Any) -> None:
        self.state._model_availability()
        self.spawn(self.notify_report(request_id, self.state.model.select(report_base)))

    @on("GetReport")
    def on_get_report(self, request_id: int, component_variable: list[dict[str, Any]] | None = None,
                      component_criteria: list[str] | None = None, **extra: Any) -> call_result.GetReport:
        found = self.state.model.select(None, component_variable, component_criteria)
        return call_result.GetReport(status="Accepted" if found else "EmptyResultSet")

    @after("GetReport")
    def after_get_report(self, request_id: int, component_variable: list[dict[str, Any]] | None = None,
                         component_criteria: list[str] | None = None, **extra: Any) -> None:
        self.state._model_availability()
        found = self.state.model.select(None, component_variable, component_criteria)
        if found:
            self.spawn(self.notify_report(request_id, found))

    async def notify_report(self, request_id: int, variables: list[Variable]) -> None:
        """NotifyReport in parts of DeviceDataCtrlr.ItemsPerMessage[GetReport], tbc on all but the last."""
        size = int(self.state.model.value("DeviceDataCtrlr", "ItemsPerMessage", "GetReport"))
        parts = [variables[start:start + size] for start in range(0, len(variables), size)]
        for seq_no, part in enumerate(parts):
            await self.call(call.NotifyReport(
                request_id=request_id, generated_at=self.state.now(), seq_no=seq_no,
                report_data=[variable.report() for variable in part], tbc=seq_no < len(parts) - 1))

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **extra: Any) -> call_result.GetVariables:
        self.state._model_availability()
        results = []
        for item in get_variable_data:
            status, variable = self.state.model.find(item["component"], item["variable"])
            attribute_type = item.get("attribute_type", "Actual")
            result: dict[str, Any] = {"attribute_status": status, "attribute_type": attribute_type,
                                      "component": item["component"], "variable": item["variable"]}
            if variable is not None:
                if attribute_type != "Actual":
                    result["attribute_status"] = "NotSupportedAttributeType"
                elif variable.mutability == "WriteOnly":
                    result["attribute_status"] = "Rejected"
                else:
                    result["attribute_value"] = variable.value
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **extra: Any) -> call_result.SetVariables:
        results = []
        for item in set_variable_data:
            status, variable = self.state.model.find(item["component"], item["variable"])
            attribute_type = item.get("attribute_type", "Actual")
            result: dict[str, Any] = {"attribute_type": attribute_type, "component": item["component"],
                                      "variable": item["variable"]}
            if variable is not None:
                why = variable.refusal(item["attribute_value"])
                if attribute_type != "Actual":
                    status = "NotSupportedAttributeType"
                elif why is not None:
                    status = "Rejected"
                    result["attribute_status_info"] = {"reason_code": "InvalidValue", "additional_info": why}
                else:
                    self.apply_variable(variable, item["attribute_value"])
            result["attribute_status"] = status
            results.append(result)
        return call_result.SetVariables(set_variable_result=results)

    def apply_variable(self, variable: Variable, value: str) -> None:
        state = self.state
        if (variable.component, variable.name) == ("SecurityCtrlr", "BasicAuthPassword"):
            # A01: answered Accepted, then it reconnects with the new password (after_set_variables).
            self._new_password = value
            return
        variable.value = value
        if (variable.component, variable.name) == ("OCPPCommCtrlr", "HeartbeatInterval"):
            state.heartbeat_interval = int(value)
        elif (variable.component, variable.name) == ("SampledDataCtrlr", "TxUpdatedInterval"):
            state.meter_interval = float(value) or state.meter_interval

    @after("SetVariables")
    def after_set_variables(self, **extra: Any) -> None:
        password, self._new_password = self._new_password, None
        if password is not None:
            async def reconnect() -> None:
                self.state.password = password
                self.state.reconnect_now = True
                self.state.security_events.append(("ReconfigurationOfSecurityParameters", "BasicAuthPassword"))
                self.state.link = None
                await self.close()

            self.state.spawn(reconnect())

    @on("Reset")
    def on_reset(self, type: str, evse_id: int | None = None, **extra: Any) -> call_result.Reset:
        if evse_id is not None and evse_id not in self.state.evses:
            return call_result.Reset(status="Rejected")
        busy = self.state.busy() if evse_id is None else self.state.evses[evse_id].transaction is not None
        return call_result.Reset(status="Scheduled" if type == "OnIdle" and busy else "Accepted")

    @after("Reset")
    def after_reset(self, type: str, evse_id: int | None = None, **extra: Any) -> None:
        state = self.state
        if evse_id is not None and evse_id not in state.evses:
            return

        async def reset() -> None:
            evses = list(state.evses.values()) if evse_id is None else [state.evses[evse_id]]
            if type == "OnIdle" and any(evse.transaction for evse in evses):
                if evse_id is None:
                    state.reset_scheduled = True
                return  # an EVSE's OnIdle reset after its transaction has nothing left to do
            for evse in evses:
                await state.stop_transaction(evse, "ResetCommand", "ImmediateReset", unplug=False)
            if evse_id is None:
                await state.reboot()
            else:
                for connector in evses[0].connectors.values():
                    await state.send_status(evses[0], connector, always=True)

        self.state.spawn(reset())

    # --- CSMS-initiated: transactions ---

    @on("RequestStartTransaction")
    def on_request_start(self, id_token: dict[str, str], remote_start_id: int, evse_id: int | None = None,
                         **extra: Any) -> call_result.RequestStartTransaction:
        evse = self.state.free_evse() if evse_id is None else self.state.evses.get(evse_id)
        if evse is None or evse.transaction is not None or \
                self.state.connector_status(evse, evse.connectors[1]) == "Unavailable":
            return call_result.RequestStartTransaction(status="Rejected")
        self._pending_start = (evse, id_token, remote_start_id)
        return call_result.RequestStartTransaction(status="Accepted")

    @after("RequestStartTransaction")
    def after_request_start(self, **extra: Any) -> None:
        pending, self._pending_start = self._pending_start, None
        if pending:
            evse, id_token, remote_start_id = pending
            self.state.spawn(self.state.start_transaction(evse, id_token, "RemoteStart",
                                                          remote_start_id=remote_start_id))

    @on("RequestStopTransaction")
    def on_request_stop(self, transaction_id: str, **extra: Any) -> call_result.RequestStopTransaction:
        status = "Accepted" if self.state.transaction(transaction_id) else "Rejected"
        return call_result.RequestStopTransaction(status=status)

    @after("RequestStopTransaction")
    def after_request_stop(self, transaction_id: str, **extra: Any) -> None:
        evse = self.state.transaction(transaction_id)
        if evse is not None:
            self.state.spawn(self.state.stop_transaction(evse, "RemoteStop", "Remote"))

    @on("UnlockConnector")
    def on_unlock_connector(self, evse_id: int, connector_id: int, **extra: Any) -> call_result.UnlockConnector:
        evse = self.state.evses.get(evse_id)
        if evse is None or connector_id not in evse.connectors:
            return call_result.UnlockConnector(status="UnknownConnector")
        if evse.transaction is not None:  # F05.FR.02: an authorized transaction keeps its cable locked
            return call_result.UnlockConnector(status="OngoingAuthorizedTransaction")
        return call_result.UnlockConnector(status="Unlocked")

    @after("UnlockConnector")
    def after_unlock_connector(self, evse_id: int, connector_id: int, **extra: Any) -> None:
        evse = self.state.evses.get(evse_id)
        if evse is not None and evse.transaction is None and connector_id in evse.connectors:
            connector = evse.connectors[connector_id]
            if connector.plugged:
                connector.plugged = False
                self.spawn(self.state.send_status(evse, connector))

    # --- CSMS-initiated: availability ---

    @on("ChangeAvailability")
    def on_change_availability(self, operational_status: str, evse: dict[str, Any] | None = None,
                               **extra: Any) -> call_result.ChangeAvailability:
        targets = self.state.availability_targets(evse)
        if targets is None:
            return call_result.ChangeAvailability(status="Rejected")
        busy = self.state.busy() if not targets else targets[0][0].transaction is not None
        # G03.FR.?: a change that would interrupt a transaction waits for its end.
        scheduled = busy and operational_status == "Inoperative"
        return call_result.ChangeAvailability(status="Scheduled" if scheduled else "Accepted")

    @after("ChangeAvailability")
    def after_change_availability(self, operational_status: str, evse: dict[str, Any] | None = None,
                                  **extra: Any) -> None:
        state = self.state
        targets = state.availability_targets(evse)
        if targets is None:
            return
        operative = operational_status == "Operative"
        if not targets:
            if state.busy() and not operative:
                state.scheduled_operative = False
            else:
                state.spawn(state.apply_availability(None, None, operative))
            return
        target, connector = targets[0]
        if target.transaction is not None and not operative:
            target.scheduled_availability[connector] = False
        else:
            state.spawn(state.apply_availability(target, connector, operative))

    # --- CSMS-initiated: the rest ---

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None,
                           **extra: Any) -> call_result.TriggerMessage:
        if requested_message == "BootNotification" and self.registration == "Accepted":
            return call_result.TriggerMessage(status="Rejected")  # F06.FR.17
        if evse is not None and evse.get("id") not in self.state.evses:
            return call_result.TriggerMessage(status="Rejected")
        if requested_message == "TransactionEvent" and not any(e.transaction for e in self._evses(evse)):
            return call_result.TriggerMessage(status="Rejected")
        supported = {"BootNotification", "Heartbeat", "StatusNotification", "MeterValues", "TransactionEvent",
                     "FirmwareStatusNotification", "LogStatusNotification"}
        return call_result.TriggerMessage(status="Accepted" if requested_message in supported else "NotImplemented")

    @after("TriggerMessage")
    def after_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None, **extra: Any) -> None:
        if evse is not None and evse.get("id") not in self.state.evses:
            return
        self.spawn(self._triggered(requested_message, evse))

    def _evses(self, evse: dict[str, Any] | None) -> list[EVSEState]:
        return list(self.state.evses.values()) if evse is None else [self.state.evses[evse["id"]]]

    async def _triggered(self, requested_message: str, evse: dict[str, Any] | None) -> None:
        state = self.state
        if requested_message == "BootNotification":
            if self.registration != "Accepted":
                self.boot_wake.set()  # the boot loop sends it now
        elif requested_message == "Heartbeat":
            await self.call(call.Heartbeat())
        elif requested_message == "StatusNotification":
            for target in self._evses(evse):
                for number, connector in target.connectors.items():
                    if evse is None or evse.get("connector_id") in (None, number):
                        await state.send_status(target, connector, always=True)
        elif requested_message == "MeterValues":
            for target in self._evses(evse):
                await self.call(call.MeterValues(evse_id=target.id,
                                                 meter_value=[state.updated_sample(target, "Trigger")]))
        elif requested_message == "TransactionEvent":
            for target in self._evses(evse):
                if target.transaction is not None:
                    state.transaction_event(target, "Updated", "Trigger",
                                            meter_value=[state.updated_sample(target, "Trigger")])
        elif requested_message == "FirmwareStatusNotification":
            await self.call(call.FirmwareStatusNotification(status="Idle"))
        elif requested_message == "LogStatusNotification":
            await self.call(call.LogStatusNotification(status="Idle"))

    @on("ClearCache")
    def on_clear_cache(self, **extra: Any) -> call_result.ClearCache:
        enabled = self.state.model.value("AuthCacheCtrlr", "Enabled") == "true"
        return call_result.ClearCache(status="Accepted" if enabled else "Rejected")

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, message_id: str | None = None, data: Any = None,
                         **extra: Any) -> call_result.DataTransfer:
        if vendor_id != VENDOR_ID:
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="Accepted", data={"echo": data})


async def run_station(
    url: str, state: StationState, *, reconnect: bool = True, auto_charge: float | None = None,
    ssl_context: ssl.SSLContext | None = None, backoff: ReconnectBackoff | None = None,
) -> None:
    """Connect, boot and serve forever; reconnect with backoff as a real station does (at once after its
    own reboot or password change). The password is ``state.password``.

    ``ssl_context``: for a wss:// URL whose certificate the system does not trust.
    """
    backoff = backoff or ReconnectBackoff()
    options = {"ssl": ssl_context} if ssl_context is not None else {}
    # Profile 1 is basic auth over ws://, 2 the same over TLS (profile 3's client certificate: not simulated).
    state.model.get("SecurityCtrlr", "SecurityProfile").value = "2" if url.startswith("wss://") else "1"
    drivers = state.spawn(state.drivers_forever(auto_charge)) if auto_charge else None
    state.spawn(state.clock_aligned_forever())
    try:
        while True:
            server_wait = None
            state.reconnect_now = False
            try:
                async with await connect(url, state.station_id, state.password, **options) as ws:
                    await _serve(state, SimulatedStation(state, ws), backoff)
            except (OSError, websockets.WebSocketException) as error:
                server_wait = retry_after(error)
                log.warning("%s connection lost: %s", state.station_id, error)
            if state.reconnect_now:
                continue
            if not reconnect:
                return
            await asyncio.sleep(backoff.next_delay(server_wait))
    finally:
        if drivers is not None:
            drivers.cancel()
        for task in list(state.tasks):
            task.cancel()


async def _serve(state: StationState, station: SimulatedStation, backoff: ReconnectBackoff) -> None:
    serving = asyncio.ensure_future(station.start())

    async def online() -> None:
        try:
            await station.come_online()
        except (websockets.WebSocketException, TimeoutError) as error:
            log.warning("%s did not come online: %s", state.station_id, error)
            await station.close()
            return
        log.info("%s online (%s)", state.station_id, station.registration or "reconnected")
        backoff.reset()

    station.spawn(online())
    try:
        await serving
    finally:
        if state.link is station:
            state.link = None
        serving.cancel()
        for task in list(station.tasks):
            task.cancel()
