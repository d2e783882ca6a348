"""A simulated OCPP 1.6J charger, built on the ``ocpp`` library's charge-point client.

It boots, reports its connectors, heartbeats, and answers every command the
CSMS sends the way a real charger does: RemoteStart -> Preparing ->
StartTransaction -> Charging -> MeterValues with rising energy;
RemoteStop -> StopTransaction -> Finishing -> Available. Its state (sessions,
meter registers, unsent messages) outlives a connection, so a reconnecting
simulator behaves as a real one does after a network drop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from dataclasses import dataclass, field
from typing import Any

import websockets
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from simulator.connection import ReconnectBackoff, basic_auth_header, now_iso, open_socket, retry_after

__all__ = ["ChargerState", "ReconnectBackoff", "SimulatedCharger", "basic_auth_header", "connect", "now_iso",
           "retry_after", "run_charger"]

log = logging.getLogger("simulator.v16")
frames_log = logging.getLogger("simulator.v16.frames")  # every frame, at INFO


@dataclass
class Session:
    id_tag: str
    meter_start: int
    started_at: str
    transaction_id: int | None = None


@dataclass
class ConnectorState:
    number: int
    status: str = "Available"
    energy_wh: float = 0.0  # the meter register, never reset
    power_w: float = 0.0
    session: Session | None = None
    meter_task: asyncio.Task | None = None


@dataclass
class ChargerState:
    """Everything a charger remembers across connections."""

    station_id: str
    connectors: dict[int, ConnectorState] = field(default_factory=dict)
    heartbeat_interval: int = 300
    meter_interval: float = 5.0
    max_power_w: float = 22_000.0
    voltage_v: float = 400.0
    configuration: dict[str, tuple[str, bool]] = field(default_factory=dict)

    @classmethod
    def new(cls, station_id: str, connectors: int = 4, meter_interval: float = 5.0) -> ChargerState:
        state = cls(station_id, meter_interval=meter_interval)
        for number in range(1, connectors + 1):
            state.connectors[number] = ConnectorState(number, energy_wh=float(random.randint(1_000_000, 5_000_000)))
        state.configuration = {
            "HeartbeatInterval": (str(state.heartbeat_interval), False),
            "MeterValueSampleInterval": (str(int(meter_interval)), False),
            "NumberOfConnectors": (str(connectors), True),
            "AuthorizeRemoteTxRequests": ("false", False),
            "ChargePointVendor": ("CSMS", True),
        }
        return state


class SimulatedCharger(ChargePoint):
    def __init__(self, state: ChargerState, connection: Any) -> None:
        super().__init__(state.station_id, connection, response_timeout=30, logger=frames_log)
        self.state = state
        self.tasks: set[asyncio.Task] = set()

    # --- Charger-initiated ---------------------------------------------------------

    async def boot(self) -> str:
        response = await self.call(
            call.BootNotification(
                charge_point_vendor="CSMS",
                charge_point_model="Simulator",
                charge_point_serial_number=f"SIM-{self.state.station_id}",
                firmware_version="1.0.0",
            )
        )
        if response.status == "Accepted":
            self.state.heartbeat_interval = response.interval or self.state.heartbeat_interval
            await self.send_status(0, "Available")
            for connector in self.state.connectors.values():
                await self.send_status(connector.number, connector.status)
        return response.status

    async def send_status(self, number: int, status: str) -> None:
        if number:
            self.state.connectors[number].status = status
        await self.call(
            call.StatusNotification(connector_id=number, error_code="NoError", status=status, timestamp=now_iso())
        )

    async def heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.state.heartbeat_interval)
            await self.call(call.Heartbeat())

    def spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def reading(self, connector: ConnectorState, context: str = "Sample.Periodic") -> dict:
        current = connector.power_w / (self.state.voltage_v * 3**0.5) if connector.power_w else 0.0
        return {
            "timestamp": now_iso(),
            "sampledValue": [
                {"value": f"{connector.energy_wh:.0f}", "measurand": "Energy.Active.Import.Register",
                 "unit": "Wh", "context": context},
                {"value": f"{connector.power_w:.0f}", "measurand": "Power.Active.Import", "unit": "W", "context": context},
                {"value": f"{current:.1f}", "measurand": "Current.Import", "unit": "A", "context": context},
                {"value": f"{self.state.voltage_v:.1f}", "measurand": "Voltage", "unit": "V", "context": context},
            ],
        }

    async def start_session(self, connector: ConnectorState, id_tag: str) -> None:
        await self.send_status(connector.number, "Preparing")
        session = Session(id_tag, int(connector.energy_wh), now_iso())
        connector.session = session
        response = await self.call(
            call.StartTransaction(
                connector_id=connector.number, id_tag=id_tag, meter_start=session.meter_start,
                timestamp=session.started_at,
            )
        )
        session.transaction_id = response.transaction_id
        if response.id_tag_info["status"] != "Accepted":
            connector.session = None
            await self.call(
                call.StopTransaction(meter_stop=session.meter_start, timestamp=now_iso(),
                                     transaction_id=session.transaction_id, reason="DeAuthorized")
            )
            await self.send_status(connector.number, "Available")
            return
        connector.power_w = self.state.max_power_w * random.uniform(0.85, 1.0)
        await self.send_status(connector.number, "Charging")
        connector.meter_task = self.spawn(self.meter_forever(connector))

    async def meter_forever(self, connector: ConnectorState) -> None:
        while True:
            await asyncio.sleep(self.state.meter_interval)
            if connector.session is None:  # stop_session cancels this task before it clears the session
                return
            connector.power_w = self.state.max_power_w * random.uniform(0.85, 1.0)
            connector.energy_wh += connector.power_w * self.state.meter_interval / 3600
            await self.call(
                call.MeterValues(
                    connector_id=connector.number,
                    transaction_id=connector.session.transaction_id,
                    meter_value=[self.reading(connector)],
                )
            )

    async def stop_session(self, connector: ConnectorState, reason: str) -> None:
        session = connector.session
        if session is None:
            return
        if connector.meter_task is not None:
            connector.meter_task.cancel()
            connector.meter_task = None
        connector.power_w = 0.0
        await self.send_status(connector.number, "Finishing")
        await self.call(
            call.StopTransaction(
                meter_stop=int(connector.energy_wh), timestamp=now_iso(), transaction_id=session.transaction_id,
                reason=reason, id_tag=session.id_tag,
                transaction_data=[self.reading(connector, "Transaction.End")],
            )
        )
        connector.session = None
        await self.send_status(connector.number, "Available")

    async def drivers_forever(self, every: float) -> None:
        """Local sessions as drivers with RFID cards would start them, about one per
        connector every ``every`` seconds, each lasting one to three times that."""
        while True:
            await asyncio.sleep(every * random.uniform(0.3, 1.0))
            free = [c for c in self.state.connectors.values() if c.status == "Available" and c.session is None]
            if free:
                connector = random.choice(free)
                id_tag = f"DEMO-{random.randint(1, 99):02d}"
                answer = await self.call(call.Authorize(id_tag=id_tag))
                if answer.id_tag_info["status"] == "Accepted":
                    await self.start_session(connector, id_tag)
                    self.spawn(self._finish_later(connector, every * random.uniform(1, 3)))

    async def _finish_later(self, connector: ConnectorState, after: float) -> None:
        await asyncio.sleep(after)
        await self.stop_session(connector, "Local")

    def connector_for_transaction(self, transaction_id: int) -> ConnectorState | None:
        for connector in self.state.connectors.values():
            if connector.session and connector.session.transaction_id == transaction_id:
                return connector
        return None

    # --- CSMS-initiated ------------------------------------------------------------

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, connector_id=None, charging_profile=None):
        if connector_id is None:
            free = [c for c in self.state.connectors.values() if c.status == "Available"]
            connector_id = free[0].number if free else None
        connector = self.state.connectors.get(connector_id)
        if connector is None or connector.session is not None or connector.status not in ("Available", "Preparing"):
            return call_result.RemoteStartTransaction(status="Rejected")
        self._pending_start = (connector, id_tag)
        return call_result.RemoteStartTransaction(status="Accepted")

    @after(Action.remote_start_transaction)
    def after_remote_start(self, **kwargs):
        pending, self._pending_start = getattr(self, "_pending_start", None), None
        if pending:
            self.spawn(self.start_session(*pending))

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id):
        status = "Accepted" if self.connector_for_transaction(transaction_id) else "Rejected"
        return call_result.RemoteStopTransaction(status=status)

    @after(Action.remote_stop_transaction)
    def after_remote_stop(self, transaction_id):
        connector = self.connector_for_transaction(transaction_id)
        if connector:
            self.spawn(self.stop_session(connector, "Remote"))

    @on(Action.reset)
    def on_reset(self, type):
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    def after_reset(self, type):
        async def reset():
            for connector in self.state.connectors.values():
                await self.stop_session(connector, "SoftReset" if type == "Soft" else "HardReset")
            await self.boot()

        self.spawn(reset())

    @on(Action.unlock_connector)
    def on_unlock_connector(self, connector_id):
        if connector_id not in self.state.connectors:
            return call_result.UnlockConnector(status="NotSupported")
        return call_result.UnlockConnector(status="Unlocked")

    @after(Action.unlock_connector)
    def after_unlock_connector(self, connector_id):
        connector = self.state.connectors.get(connector_id)
        if connector and connector.session:
            self.spawn(self.stop_session(connector, "UnlockCommand"))

    @on(Action.change_availability)
    def on_change_availability(self, connector_id, type):
        targets = self._availability_targets(connector_id)
        if targets is None:
            return call_result.ChangeAvailability(status="Rejected")
        busy = any(c.session for c in targets)
        return call_result.ChangeAvailability(status="Scheduled" if busy else "Accepted")

    @after(Action.change_availability)
    def after_change_availability(self, connector_id, type):
        targets = self._availability_targets(connector_id) or []
        status = "Available" if type == "Operative" else "Unavailable"

        async def apply():
            for connector in targets:
                if connector.session is None and connector.status != status:
                    await self.send_status(connector.number, status)

        self.spawn(apply())

    def _availability_targets(self, connector_id: int) -> list[ConnectorState] | None:
        if connector_id == 0:
            return list(self.state.connectors.values())
        connector = self.state.connectors.get(connector_id)
        return [connector] if connector else None

    @on(Action.get_configuration)
    def on_get_configuration(self, key=None):
        wanted = key or list(self.state.configuration)
        known = [
            {"key": name, "readonly": self.state.configuration[name][1], "value": self.state.configuration[name][0]}
            for name in wanted
            if name in self.state.configuration
        ]
        unknown = [name for name in wanted if name not in self.state.configuration]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    def on_change_configuration(self, key, value):
        if key not in self.state.configuration:
            return call_result.ChangeConfiguration(status="NotSupported")
        if self.state.configuration[key][1]:
            return call_result.ChangeConfiguration(status="Rejected")
        self.state.configuration[key] = (value, False)
        if key == "HeartbeatInterval" and value.isdigit():
            self.state.heartbeat_interval = int(value)
        return call_result.ChangeConfiguration(status="Accepted")

    @on(Action.clear_cache)
    def on_clear_cache(self):
        return call_result.ClearCache(status="Accepted")

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message, connector_id=None):
        supported = {"BootNotification", "Heartbeat", "StatusNotification", "MeterValues"}
        return call_result.TriggerMessage(status="Accepted" if requested_message in supported else "NotImplemented")

    @after(Action.trigger_message)
    def after_trigger_message(self, requested_message, connector_id=None):
        self.spawn(self._triggered(requested_message, connector_id))

    async def _triggered(self, requested_message: str, connector_id: int | None) -> None:
        connectors = (
            [self.state.connectors[connector_id]] if connector_id in self.state.connectors
            else list(self.state.connectors.values())
        )
        if requested_message == "BootNotification":
            await self.boot()
        elif requested_message == "Heartbeat":
            await self.call(call.Heartbeat())
        elif requested_message == "StatusNotification":
            for connector in connectors:
                await self.send_status(connector.number, connector.status)
        elif requested_message == "MeterValues":
            for connector in connectors:
                transaction_id = connector.session.transaction_id if connector.session else None
                await self.call(call.MeterValues(connector_id=connector.number, transaction_id=transaction_id,
                                                 meter_value=[self.reading(connector, "Trigger")]))

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id, message_id=None, data=None):
        return call_result.DataTransfer(status="UnknownVendorId")


async def connect(url: str, station_id: str, password: str | None = None, **kwargs: Any):
    """Open an OCPP 1.6 WebSocket to ``<url>/<station_id>`` (``url`` ends with /ocpp)."""
    return await open_socket(url, station_id, "ocpp1.6", password, **kwargs)


async def run_charger(
    url: str, state: ChargerState, password: str | None = None, *, reconnect: bool = True,
    auto_charge: float | None = None, ssl_context: ssl.SSLContext | None = None,
    backoff: ReconnectBackoff | None = None,
) -> None:
    """Connect, boot and serve forever; reconnect with backoff as a real charger does.

    ``ssl_context``: for a wss:// URL whose certificate the system does not trust.
    """
    backoff = backoff or ReconnectBackoff()
    options = {"ssl": ssl_context} if ssl_context is not None else {}
    while True:
        server_wait = None
        try:
            async with await connect(url, state.station_id, password, **options) as ws:
                charger = SimulatedCharger(state, ws)
                serving = asyncio.ensure_future(charger.start())
                status = await charger.boot()
                log.info("%s booted: %s", state.station_id, status)
                backoff.reset()
                heartbeat = asyncio.ensure_future(charger.heartbeat_forever())
                for connector in state.connectors.values():  # sessions survive a reconnect
                    if connector.session and connector.session.transaction_id is not None:
                        connector.meter_task = charger.spawn(charger.meter_forever(connector))
                if auto_charge:
                    charger.spawn(charger.drivers_forever(auto_charge))
                    for connector in state.connectors.values():  # their finish timers died with the socket
                        if connector.session:
                            charger.spawn(charger._finish_later(connector, auto_charge))
                try:
                    await serving
                finally:
                    heartbeat.cancel()
                    serving.cancel()  # when this task is cancelled: its reader goes too
                    for task in list(charger.tasks):
                        task.cancel()
                    for connector in state.connectors.values():
                        connector.meter_task = None
        except (OSError, websockets.WebSocketException) as error:
            server_wait = retry_after(error)
            log.warning("%s connection lost: %s", state.station_id, error)
        if not reconnect:
            return
        await asyncio.sleep(backoff.next_delay(server_wait))
