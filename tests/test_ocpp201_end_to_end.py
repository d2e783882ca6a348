"""OCPP 2.0.1 end to end, as issue 14's "Done when" puts it: a 2.0.1 charger from the ``ocpp`` library and
the simulator (simulator/v201.py) each complete boot, authorization, a remote-started transaction with meter
values and a remote stop, driven from the mobile API on both endpoints and from the admin's "Act on the
charger" panel; in process (the ``server`` fixture) and across two daphne processes sharing the database and
Redis (the charger on one, the app or the staff member's browser on the other).

Both chargers are real clients over real sockets, with a station password (security profile 1). What each
sent and got is read from its frames (the ocpp library logs every one), what the CSMS made of it from the
database and what the apps were pushed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse
from ocpp.routing import after

from csms.events import call_service
from csms.models import Event
from mobileapi.client import MobileClient
from simulator.connection import ReconnectBackoff
from simulator.v201 import StationState, run_station
from stations import services
from stations.models import (
    Connector,
    IdTag,
    MeterSample,
    RemoteStartRequest,
    Station,
    Tariff,
    Transaction,
    TransactionEvent,
)
from tests.admin_support import make_support
from tests.conftest import REDIS_TEST_URL, eventually
from tests.ocpp201 import Station201, connect201, energy
from tests.test_admin import BrowserSession

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "E2E-DRIVER-1"
GROUP = "E2E-FLEET"
PASSWORD = "e2e-station-password-0123"  # security profile 1 (16 to 40 characters)
PRICE = Decimal("0.10")  # EUR per kWh, the default tariff
LIBRARY_FRAMES = "tests.e2e.frames"
SIMULATOR_FRAMES = "simulator.v201.frames"


# --- What each charger sent and got ------------------------------------------------------------------

class Frames(logging.Handler):
    """Every OCPP frame the chargers sent and received, as the ocpp library logs them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.frames: list[tuple[str, str, list[Any]]] = []  # (station id, "send"|"receive", frame)

    def emit(self, record: logging.LogRecord) -> None:
        direction = {"%s: send %s": "send", "%s: receive message %s": "receive"}.get(str(record.msg))
        if direction is not None:
            station_id, raw = record.args  # type: ignore[misc]
            self.frames.append((str(station_id), direction, json.loads(str(raw))))

    def calls(self, station_id: str, action: str, direction: str = "send") -> list[dict[str, Any]]:
        """The payloads of ``action`` CALLs the station sent (``direction`` "receive": the CSMS sent)."""
        return [f[3] for sid, d, f in self.frames if sid == station_id and d == direction and f[0] == 2 and f[2] == action]

    def exchanges(self, station_id: str, action: str) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(request, the CSMS's answer or None yet) of each ``action`` the station sent."""
        answers = {f[1]: f[2] for sid, d, f in self.frames if sid == station_id and d == "receive" and f[0] == 3}
        return [(f[3], answers.get(f[1])) for sid, d, f in self.frames
                if sid == station_id and d == "send" and f[0] == 2 and f[2] == action]


@pytest.fixture
def frames() -> Iterator[Frames]:
    handler = Frames()
    loggers = [logging.getLogger(name) for name in (LIBRARY_FRAMES, SIMULATOR_FRAMES)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
    yield handler
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


# --- The two chargers --------------------------------------------------------------------------------

class ChargingStation201(Station201):
    """Station201 that charges when asked, as a station with AuthorizeRemoteStart does: RequestStartTransaction
    is authorized (Authorize), then StatusNotification Occupied, TransactionEvent Started (remoteStartId,
    idToken, evse, a Transaction.Begin reading), Updated Charging, and Updated with the energy register every
    ``interval``; RequestStopTransaction of its transaction ends it (Ended, Remote, a Transaction.End reading)."""

    interval = 0.2

    def __init__(self, station_id: str, connection: Any, **kwargs: Any) -> None:
        super().__init__(station_id, connection, **kwargs)
        self.register_wh = 125_000.0
        self.transaction_id: str | None = None
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @after("RequestStartTransaction")
    def start_charging(self, id_token: dict[str, str], remote_start_id: int, evse_id: int | None = None,
                       **extra: Any) -> None:
        self.spawn(self.charge(id_token, remote_start_id, evse_id or 1))

    async def charge(self, id_token: dict[str, str], remote_start_id: int, evse_id: int) -> None:
        authorized = await self.authorize(id_token["id_token"], id_token["type"])
        if authorized.id_token_info["status"] != "Accepted":
            return
        await self.status(evse_id, "Occupied")
        tx_id = self.transaction_id = str(uuid.uuid4())
        self.seq_no = 0
        await self.transaction_event(
            "Started", tx_id, trigger_reason="RemoteStart", evse_id=evse_id, token=id_token["id_token"],
            token_type=id_token["type"], meter_value=[energy(self.register_wh, context="Transaction.Begin")],
            remote_start_id=remote_start_id, charging_state="EVConnected")
        await self.transaction_event("Updated", tx_id, trigger_reason="ChargingStateChanged", evse_id=None,
                                     charging_state="Charging", meter_value=[energy(self.register_wh)])
        while self.transaction_id == tx_id:
            await asyncio.sleep(self.interval)
            if self.transaction_id != tx_id:
                return
            self.register_wh += 275.0
            await self.transaction_event("Updated", tx_id, trigger_reason="MeterValuePeriodic", evse_id=None,
                                         meter_value=[energy(self.register_wh)])

    @after("RequestStopTransaction")
    def stop_charging(self, transaction_id: str, **extra: Any) -> None:
        if transaction_id == self.transaction_id:
            self.transaction_id = None
            self.spawn(self.end(transaction_id))

    async def end(self, tx_id: str) -> None:
        self.register_wh += 40.0
        await self.transaction_event("Ended", tx_id, trigger_reason="RemoteStop", evse_id=None,
                                     meter_value=[energy(self.register_wh, context="Transaction.End")],
                                     stopped_reason="Remote", charging_state="EVConnected")
        await self.status(1, "Available")


class LibraryCharger:
    """The ocpp library's v201 ChargePoint (ChargingStation201) on its socket."""

    station_id = "e2e-lib"

    async def start(self, url: str) -> None:
        ws = await connect201(f"{url}/ocpp", self.station_id, PASSWORD)
        self.cp = ChargingStation201(self.station_id, ws, logger=logging.getLogger(LIBRARY_FRAMES))
        self.task = asyncio.create_task(self.cp.start())
        assert (await self.cp.boot()).status == "Accepted"
        for evse in (1, 2):
            await self.cp.status(evse, "Available")

    async def close(self) -> None:
        for task in [self.task, *self.cp.tasks]:
            task.cancel()
        await self.cp._connection.close()


class SimulatedCharger:
    """The simulator's station, run as ``simulate_charger --ocpp 2.0.1`` runs it; it authorizes remote starts."""

    station_id = "e2e-sim"

    async def start(self, url: str) -> None:
        state = self.state = StationState.new(self.station_id, 2, meter_interval=0.2, password=PASSWORD)
        state.model.get("AuthCtrlr", "AuthorizeRemoteStart").value = "true"
        self.task = asyncio.create_task(run_station(
            f"{url}/ocpp", state, backoff=ReconnectBackoff(minimum=0.05, maximum=0.2)))

        async def online() -> bool:
            return state.online and all(c.sent_status for e in state.evses.values() for c in e.connectors.values())

        await eventually(online, timeout=10)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


CHARGERS: dict[str, type[LibraryCharger | SimulatedCharger]] = {"library": LibraryCharger,
                                                                 "simulator": SimulatedCharger}


async def provision(station_id: str) -> None:
    """What an operator provisions first: the station with its password, the driver's token in a group,
    a default tariff."""
    await call_service(services.provision_station, station_id, accepted=True, password=PASSWORD)
    await IdTag.objects.acreate(id_tag=TOKEN, type="Central", group_id=GROUP)
    await Tariff.objects.acreate(name="Standard", price_per_kwh=PRICE, currency="EUR", is_default=True)


# --- The drivers: the mobile API on each endpoint, the admin ------------------------------------------

def expected_cost(energy_wh: float) -> float:
    return round(energy_wh / 1000 * float(PRICE) + 1e-9, 2)


async def from_mobile(app: MobileClient, station_id: str) -> int:
    """startCharging, the events and meter updates, stopCharging, as for a 1.6 charger; the transaction id."""
    ws = app.dialect == "ws"
    await app.result("subscribe", {"stationId": station_id})
    start = await app.result("startCharging", {"stationId": station_id, "connectorId": 1, "idTag": TOKEN})
    assert start["status"] == ("pending" if ws else "Accepted"), start
    correlation_id = start["correlationId"]
    assert re.fullmatch(rf"corr-\d{{13}}-{station_id}-1", correlation_id), correlation_id
    started = await app.event("transaction.started", correlationId=correlation_id)
    tx_id = app.field(started, "transactionId")
    assert isinstance(tx_id, int) if ws else (isinstance(tx_id, str) and tx_id.isdigit()), tx_id
    assert (app.field(started, "stationId"), app.field(started, "connectorId"), app.field(started, "idTag")) == (
        station_id, 1, TOKEN)
    result = await app.event("remote.start.result", correlationId=correlation_id)
    assert app.field(result, "status") == "Accepted"

    meter_event = "meter.update" if ws else "meter.values.delta"
    # Transaction.Begin, then Charging, then periodic readings: the register grows.
    meter = [await app.event(meter_event, transactionId=tx_id) for _ in range(4)]
    if ws:
        energies = [m["data"]["energy"] for m in meter]
    else:
        assert all(m["unit"] == "Wh" and m["delta"] >= 0 for m in meter), meter
        energies = [m["total"] for m in meter]
    assert energies == sorted(energies) and energies[-1] > energies[0], energies
    status = await app.result("getConnectorStatus", {"stationId": station_id, "connectorId": 1})
    assert (status["status"], status["transactionId"]) == ("Charging", tx_id), status
    assert (await app.result("getStations"))[0]["status"] == "Charging"

    stop = await app.result("stopCharging", {"transactionId": tx_id})
    if ws:
        assert stop["status"] == "pending" and stop["correlationId"].startswith("corr-stop-"), stop
    else:
        assert (stop["status"], stop["transactionId"]) == ("Accepted", tx_id), stop
    stopped = await app.event("transaction.stopped", transactionId=tx_id)
    energy_wh = app.field(stopped, "energy")
    assert app.field(stopped, "reason") == "Remote" and energy_wh > 0, stopped
    assert app.field(stopped, "cost") == expected_cost(energy_wh) and app.field(stopped, "currency") == "EUR"
    assert app.field(stopped, "totalKWh") == round(energy_wh / 1000, 3)
    assert app.field(await app.event("remote.stop.result", transactionId=tx_id), "status") == "Accepted"
    (session, *_) = await app.result("getMySessions")
    assert session["transactionId"] == tx_id and session["status"] == ("completed" if ws else "Completed"), session
    assert session["energy"] == energy_wh and session["cost"] == app.field(stopped, "cost")
    return int(tx_id)


async def from_admin(base: str, station_id: str) -> int:
    """The station page's "Act on the charger" panel: remote start, then remote stop of the transaction."""
    browser = BrowserSession(base.replace("ws://", "http://"))
    await asyncio.to_thread(browser.login, "agent")
    operate = reverse("admin:stations_station_operate", args=[station_id, "remote_start"])
    page = await asyncio.to_thread(browser.open, operate, {"connector": "1", "id_tag": TOKEN})
    assert "RequestStartTransaction on connector 1: the charger answered Accepted" in page, messages(page)

    async def started() -> Transaction | None:
        return await Transaction.objects.filter(station_id=station_id, stopped_at__isnull=True).afirst()

    tx = await eventually(started)

    async def metered() -> bool:
        return await MeterSample.objects.filter(transaction=tx).acount() >= 4  # Begin, Charging, periodic ones

    await eventually(metered)
    station_page = await asyncio.to_thread(browser.open, reverse("admin:stations_station_change", args=[station_id]))
    assert f"Transaction #{tx.pk} started on connector 1, idTag {TOKEN}" in station_page
    operate = reverse("admin:stations_station_operate", args=[station_id, "remote_stop"])
    page = await asyncio.to_thread(browser.open, operate, {"transaction": str(tx.pk)})
    assert f"RequestStopTransaction of transaction {tx.pk}: the charger answered Accepted" in page, messages(page)

    async def stopped() -> Event | None:
        return await Event.objects.filter(kind="transaction.stopped", station_id=station_id).afirst()

    event = await eventually(stopped)
    assert event.data["reason"] == "Remote" and event.actor == "user:agent", (event.data, event.actor)
    assert event.data["cost"] == expected_cost(event.data["energy"])
    started_by = await Event.objects.aget(kind="remote.start.result", station_id=station_id)
    assert started_by.actor == "user:agent" and started_by.data["status"] == "Accepted"
    return tx.pk


def messages(page: str) -> list[str]:
    return re.findall(r'<li class="[a-z]+">([^<]+)</li>', page)


# --- What every run must show ------------------------------------------------------------------------

async def check_the_run(frames: Frames, station_id: str, tx_id: int, correlated: bool) -> None:
    """Boot, authorization, the transaction's events and meter values, the remote start and stop, as the
    charger saw them and as the CSMS stored them."""
    station = await Station.objects.aget(pk=station_id)
    assert (station.ocpp_version, station.registration_status, station.is_online) == ("2.0.1", "Accepted", True)
    ((boot, boot_answer),) = frames.exchanges(station_id, "BootNotification")
    assert boot["reason"] == "PowerUp" and boot_answer is not None and boot_answer["status"] == "Accepted"

    authorizations = frames.exchanges(station_id, "Authorize")
    assert [request["idToken"] for request, _ in authorizations] == [{"idToken": TOKEN, "type": "Central"}]
    info = authorizations[0][1]["idTokenInfo"]  # type: ignore[index]
    assert info["status"] == "Accepted" and info["groupIdToken"] == {"idToken": GROUP, "type": "Central"}, info

    tx = await Transaction.objects.select_related("connector").aget(pk=tx_id)
    assert await Transaction.objects.filter(station_id=station_id).acount() == 1
    (start,) = frames.calls(station_id, "RequestStartTransaction", "receive")
    request = await RemoteStartRequest.objects.aget(transaction=tx)
    assert start == {"idToken": {"idToken": TOKEN, "type": "Central"}, "remoteStartId": request.pk, "evseId": 1}
    assert bool(tx.start_correlation_id) == correlated and tx.start_correlation_id == request.correlation_id
    (stop,) = frames.calls(station_id, "RequestStopTransaction", "receive")
    assert stop == {"transactionId": tx.charger_transaction_id}

    events = [(e, a) for e, a in frames.exchanges(station_id, "TransactionEvent")
              if e["transactionInfo"]["transactionId"] == tx.charger_transaction_id]
    kinds = [e["eventType"] for e, _ in events]
    assert kinds[0] == "Started" and kinds[-1] == "Ended" and kinds.count("Updated") >= 2, kinds
    assert [e["seqNo"] for e, _ in events] == list(range(len(events)))
    first, started_answer = events[0]
    assert first["transactionInfo"]["remoteStartId"] == request.pk and first["triggerReason"] == "RemoteStart"
    assert started_answer is not None and started_answer["idTokenInfo"]["status"] == "Accepted"
    last, ended_answer = events[-1]
    assert last["transactionInfo"]["stoppedReason"] == "Remote" and last["triggerReason"] == "RemoteStop"

    # The CSMS's side: one transaction, every event once and in order, the readings, the price.
    assert (tx.connector.number, tx.id_tag, tx.stop_reason) == (1, TOKEN, "Remote")
    assert tx.stopped_at is not None and tx.meter_stop is not None and tx.energy_wh is not None
    assert tx.energy_wh == tx.meter_stop - tx.meter_start > 0
    assert tx.cost == Decimal(str(expected_cost(tx.energy_wh))) and tx.currency == "EUR"
    assert ended_answer is not None and ended_answer.get("totalCost") == float(tx.cost), ended_answer
    stored = [e async for e in TransactionEvent.objects.filter(transaction=tx).order_by("seq_no")
              .values_list("seq_no", "event_type")]
    assert stored == [(e["seqNo"], e["eventType"]) for e, _ in events]
    assert await MeterSample.objects.filter(transaction=tx).acount() >= 3

    async def available() -> bool:
        connector = await Connector.objects.aget(station_id=station_id, number=1, connector_id=1)
        return connector.status == "Available" and connector.current_transaction_id is None

    await eventually(available)
    kinds_logged = [k async for k in Event.objects.filter(station_id=station_id, kind__in=[
        "station.connected", "transaction.started", "transaction.stopped"]).values_list("kind", flat=True)]
    assert kinds_logged == ["station.connected", "transaction.started", "transaction.stopped"]


DRIVERS = ["/ws", "/mobile-client", "admin"]


async def scenario(frames: Frames, charger_url: str, app_url: str, kind: str, driver: str, api_key: str) -> None:
    """One charger on ``charger_url`` driven from ``app_url``, end to end."""
    charger = CHARGERS[kind]()
    await provision(charger.station_id)
    await sync_to_async(make_support)()
    await charger.start(charger_url)
    app = None
    try:
        if driver == "admin":
            tx_id = await from_admin(app_url, charger.station_id)
        else:
            app = await MobileClient.connect(app_url, driver, api_key)
            tx_id = await from_mobile(app, charger.station_id)
        await check_the_run(frames, charger.station_id, tx_id, correlated=driver != "admin")
    finally:
        if app is not None:
            await app.close()
        await charger.close()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("kind", list(CHARGERS))
async def test_end_to_end_in_process(server, keys, frames, kind, driver):
    await scenario(frames, server, server, kind, driver, keys["full"])


@pytest.mark.redis
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("kind", list(CHARGERS))
async def test_end_to_end_across_two_processes(redis_layer, daphne_process, keys, frames, kind, driver):
    """The charger on process A, the app or the browser on process B: every command crosses Redis to A,
    every push comes back from A."""
    env = {"REDIS_URL": REDIS_TEST_URL, "CHANNEL_PREFIX": redis_layer, "MOBILE_WS_RATE_LIMIT": "1000/1",
           "OCPP_COMMAND_TIMEOUT": "10"}
    url_a, _ = daphne_process(env)
    url_b, _ = daphne_process(env)
    await scenario(frames, url_a, url_b, kind, driver, keys["full"])
