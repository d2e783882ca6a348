"""Scale-out, end to end: two real daphne processes sharing the database and Redis,
one of them killed.

A simulated charger is held by process A; mobile apps talk to process B. The
story follows the deployment guide's promise, step by step: a start on B
reaches the charger on A; A's pushes reach B in order; B replays what A
wrote; deactivating a key ends its sessions on both; killing A takes the
station offline for B's apps within the heartbeat window; the charger
reconnecting to B brings it back with no transaction, meter sample or event
lost or duplicated. In CI this runs against the real PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import pytest
from ocpp.v16 import call

from csms.events import call_service
from csms.models import Event
from mobileapi import services as mobile_services
from mobileapi.client import MobileClient
from mobileapi.models import ApiKey
from simulator import v201
from simulator.connection import ReconnectBackoff
from simulator.v16 import ChargerState, SimulatedCharger, connect
from stations.models import MeterSample, Station, Transaction
from tests.conftest import REDIS_TEST_URL, eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

HEARTBEAT_INTERVAL = 10  # what the chargers are told; the window the station must go offline in


def sequence(event: dict) -> int:
    return int(event["eventId"].rsplit("-", 1)[1])


async def attach_charger(url: str, state: ChargerState) -> tuple[SimulatedCharger, asyncio.Task]:
    cp = SimulatedCharger(state, await connect(f"{url}/ocpp", state.station_id))
    task = asyncio.create_task(cp.start())
    await cp.boot()
    return cp, task


def stop_charger_tasks(cp: SimulatedCharger, task: asyncio.Task) -> None:
    task.cancel()
    for t in list(cp.tasks):
        t.cancel()
    for connector in cp.state.connectors.values():
        connector.meter_task = None


class Charger16:
    """The story's charger in OCPP 1.6: simulator/v16's, its tasks stopped while its socket is down."""

    def __init__(self) -> None:
        self.state = ChargerState.new("fora072", 2, meter_interval=0.3)
        self.connector = self.state.connectors[1]
        self.links: list[tuple[SimulatedCharger, asyncio.Task]] = []

    async def attach(self, url: str) -> None:
        self.cp, self.task = await attach_charger(url, self.state)
        self.links.append((self.cp, self.task))

    async def runs(self, tx_id: int) -> bool:
        connector = self.connector
        assert connector.session is not None
        return connector.session.transaction_id == tx_id and connector.meter_task is not None

    async def lost(self) -> None:
        """Its socket dropped with process A."""
        await asyncio.wait_for(self.cp._connection.wait_closed(), 5)  # the charger saw its socket drop
        stop_charger_tasks(self.cp, self.task)

    def measure_offline(self) -> str:
        """The session goes on while offline; a reading taken then (its timestamp)."""
        connector = self.connector
        connector.energy_wh += 1500
        self.offline_reading = self.cp.reading(connector)
        return self.offline_reading["timestamp"]

    async def resend(self, tx_id: int) -> None:
        """After the reconnect: what it is not sure was delivered, twice; then it measures on."""
        cp_b, connector, session = self.cp, self.connector, self.connector.session
        assert session is not None
        again = await cp_b.call(call.StartTransaction(
            connector_id=1, id_tag=session.id_tag, meter_start=session.meter_start, timestamp=session.started_at))
        assert again.transaction_id == tx_id
        for _ in range(2):
            await cp_b.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[self.offline_reading]))
        connector.meter_task = cp_b.spawn(cp_b.meter_forever(connector))

    async def close(self) -> None:
        for cp, task in reversed(self.links):
            stop_charger_tasks(cp, task)
        if len(self.links) > 1:
            await self.cp._connection.close()


class KeptOutbox(deque):
    """A 2.0.1 station's outbox that also keeps every TransactionEvent put in it (to re-send one)."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[Any] = []

    def append(self, event: Any) -> None:
        self.kept.append(event)
        super().append(event)


class Charger201:
    """The story's charger in OCPP 2.0.1: simulator/v201's station. What it remembers outlives the socket:
    its transaction goes on charging while offline, the TransactionEvents wait in its outbox (offline: true)
    and go out in order after the reconnect, which is not a reboot (no BootNotification)."""

    def __init__(self) -> None:
        self.state = v201.StationState.new("fora072", 2, meter_interval=0.3)
        self.state.outbox = self.outbox = KeptOutbox()
        self.evse = self.state.evses[1]
        self.serving: list[asyncio.Task] = []

    async def attach(self, url: str) -> None:
        state = self.state
        ws = await v201.connect(f"{url}/ocpp", state.station_id)
        self.station = v201.SimulatedStation(state, ws)
        for evse in state.evses.values():
            for connector in evse.connectors.values():
                connector.sent_status = None
        self.serving.append(asyncio.create_task(v201._serve(state, self.station, ReconnectBackoff())))

        async def online() -> bool:
            return state.online and all(c.sent_status for e in state.evses.values() for c in e.connectors.values())

        await eventually(online, timeout=10)

    async def runs(self, tx_id: int) -> bool:
        tx, meter_task = self.evse.transaction, self.evse.meter_task
        return bool(tx and meter_task and await Transaction.objects.filter(
            pk=tx_id, charger_transaction_id=tx.transaction_id).aexists())

    async def lost(self) -> None:
        await asyncio.wait_for(self.station._connection.wait_closed(), 5)
        await asyncio.wait(self.serving[-1:], timeout=5)
        assert not self.state.online

    def measure_offline(self) -> str:
        evse, state = self.evse, self.state
        evse.energy_wh += 1500
        reading = state.updated_sample(evse, "Sample.Periodic")
        state.transaction_event(evse, "Updated", "MeterValuePeriodic", meter_value=[reading])
        self.offline_event = self.outbox.kept[-1]
        assert self.offline_event.offline is True
        return reading["timestamp"]

    async def resend(self, tx_id: int) -> None:
        """The outbox went out after the reconnect; a station re-sends what it is not sure was delivered
        (the Started, the offline reading) with the same seqNo: applied once."""
        await self.state.drain()
        assert not self.outbox
        started = self.outbox.kept[0]
        assert (started.event_type, started.seq_no) == ("Started", 0)
        again = await self.station.call(started)
        assert again.id_token_info["status"] == "Accepted"
        for _ in range(2):
            await self.station.call(self.offline_event)
        assert await Transaction.objects.acount() == 1

    async def close(self) -> None:
        for task in [*self.serving, *self.state.tasks]:
            task.cancel()
        await asyncio.gather(*self.serving, return_exceptions=True)


CHARGERS = {"1.6": Charger16, "2.0.1": Charger201}


@pytest.mark.parametrize("ocpp_version", list(CHARGERS))
async def test_two_processes_one_killed(redis_layer, daphne_process, keys, ocpp_version):
    env = {
        "REDIS_URL": REDIS_TEST_URL, "CHANNEL_PREFIX": redis_layer, "MOBILE_WS_RATE_LIMIT": "1000/1",
        "MOBILE_SESSION_CHECK_SECONDS": "1", "OCPP_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
        "OCPP_PRESENCE_SWEEP_SECONDS": "1", "OCPP_PROCESS_TIMEOUT": "3",
    }
    url_a, process_a = daphne_process(env)
    url_b, _ = daphne_process(env)
    charger = CHARGERS[ocpp_version]()
    await charger.attach(url_a)
    ws_app = await MobileClient.connect(url_b, "/ws", keys["full"])
    dart_app = await MobileClient.connect(url_b, "/mobile-client", keys["full"])
    apps = (ws_app, dart_app)
    try:
        for app in apps:
            await app.result("subscribe", {"stationId": "fora072"})

        # startCharging on B starts a transaction on the charger held by A.
        start = await dart_app.result("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": "U1"})
        assert start["status"] == "Accepted"
        started = await ws_app.event("transaction.started", correlationId=start["correlationId"])
        tx_id = ws_app.field(started, "transactionId")
        await dart_app.event("transaction.started", transactionId=str(tx_id))

        async def charger_runs_it():
            return await charger.runs(tx_id)

        await eventually(charger_runs_it)

        # Push events raised on A reach subscribers on B, in order.
        for app in apps:
            name = "meter.update" if app.dialect == "ws" else "meter.values.delta"
            readings = [await app.event(name) for _ in range(3)]
            assert [sequence(e) for e in readings] == sorted(sequence(e) for e in readings)

        # getEventsSince on B sees the events A wrote.
        page = await ws_app.result("getEventsSince", {"eventId": "evt-0-0", "limit": 1000})
        kinds = [e["eventType"] for e in page["events"]]
        assert kinds.index("station.connected") < kinds.index("transaction.started") < kinds.index("meter.update")

        # Deactivating a key ends its sessions on both processes.
        others = [await MobileClient.connect(url, "/ws", keys["other"]) for url in (url_a, url_b)]
        other_key = await ApiKey.objects.aget(name="Other app")
        await call_service(mobile_services.set_key_active, other_key.pk, False)
        for other in others:
            assert (await other.event("session.expired", timeout=5))["data"]["reason"] == "revoked"
            await asyncio.wait_for(other.ws.wait_closed(), 5)
            assert other.ws.close_code == 4003

        # Kill A outright: no disconnect handler runs there.
        process_a.kill()
        killed_at = time.monotonic()
        await charger.lost()
        for app in apps:
            gone = await app.event("station.disconnected", timeout=HEARTBEAT_INTERVAL)
            assert app.field(gone, "stationId") == "fora072"
        offline_after = time.monotonic() - killed_at
        assert offline_after < HEARTBEAT_INTERVAL
        stations = await ws_app.result("getStations")
        assert stations[0]["status"] == "Offline"
        # The session goes on at the charger while it is offline; it measures on.
        offline_ts = charger.measure_offline()

        # The charger reconnects, this time to B: back online, nothing lost or duplicated.
        await charger.attach(url_b)
        for app in apps:
            await app.event("station.connected", timeout=5)
        # A charger re-sends what it is not sure was delivered.
        await charger.resend(tx_id)
        assert (await ws_app.result("getStations"))[0]["status"] == "Charging"
        await ws_app.event("meter.update")

        stop = await dart_app.result("stopCharging", {"transactionId": str(tx_id)})
        assert stop["status"] == "Accepted"
        for app in apps:
            stopped = await app.event("transaction.stopped")
            assert str(app.field(stopped, "transactionId")) == str(tx_id)

        tx = await Transaction.objects.aget()  # the only one
        assert tx.pk == tx_id and tx.stopped_at is not None and tx.energy_wh > 1500
        assert await MeterSample.objects.filter(transaction=tx, timestamp=offline_ts).acount() == 1
        station = await Station.objects.aget(pk="fora072")
        assert station.is_online and station.channel_name.startswith("specific.")
        edges = [
            e async for e in Event.objects.filter(
                kind__in=["station.connected", "station.disconnected", "transaction.started",
                          "transaction.stopped"]).values_list("kind", flat=True)
        ]
        assert edges == ["station.connected", "transaction.started", "station.disconnected", "station.connected",
                         "transaction.stopped"]
        # B replays the whole story, in order, to an app that was not listening.
        page = await dart_app.result("getEventsSince", {"eventId": "evt-0-0", "limit": 1000})
        replayed = [e["event"] for e in page["events"] if e["event"] in set(edges)]  # as pushed
        assert replayed == edges
        seqs = [sequence(e) for e in page["events"]]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        print(f"station offline on B {offline_after:.1f} s after process A was killed")
    finally:
        await charger.close()
        for app in apps:
            await app.close()


async def test_station_held_by_a_dead_process_is_released_by_any_survivor(redis_layer, daphne_process):
    """Only stations of the dead process go offline; the survivor's own stay online."""
    env = {"REDIS_URL": REDIS_TEST_URL, "CHANNEL_PREFIX": redis_layer,
           "OCPP_PRESENCE_SWEEP_SECONDS": "1", "OCPP_PROCESS_TIMEOUT": "3"}
    url_a, process_a = daphne_process(env)
    url_b, _ = daphne_process(env)
    on_a = [await attach_charger(url_a, ChargerState.new(f"a{n}", 1)) for n in range(3)]
    on_b = [await attach_charger(url_b, ChargerState.new(f"b{n}", 1)) for n in range(2)]
    try:
        process_a.kill()

        async def a_offline():
            return not await Station.objects.filter(pk__startswith="a", is_online=True).aexists()

        await eventually(a_offline, timeout=HEARTBEAT_INTERVAL)
        assert await Station.objects.filter(pk__startswith="b", is_online=True).acount() == 2
        assert await Event.objects.filter(kind="station.disconnected").acount() == 3
        for cp, _ in on_b:
            await cp.call(call.Heartbeat())
    finally:
        for cp, task in on_a + on_b:
            stop_charger_tasks(cp, task)
            await cp._connection.close()
