"""The remote-command service over real sockets: every CSMS-initiated command."""

from __future__ import annotations

import asyncio
import time

import pytest
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from csms.models import Event
from simulator.v16 import SimulatedCharger
from stations import commands
from stations.models import Connector, Station, Transaction
from stations.services import Conflict, DomainError, NotFound
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)


class SilentOnReset(SimulatedCharger):
    """Never answers Reset (a charger that hangs), answers everything else."""

    async def route_message(self, raw_msg):
        if '"Reset"' in raw_msg:
            return
        await super().route_message(raw_msg)


class RejectsRemoteStart(SimulatedCharger):
    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, connector_id=None, charging_profile=None):
        return call_result.RemoteStartTransaction(status="Rejected")


async def event(kind: str):
    async def find():
        return await Event.objects.filter(kind=kind).order_by("-seq").afirst()

    return await eventually(find)


async def test_remote_start_and_stop_round_trip(charger_factory):
    await charger_factory("fora072", connectors=2)
    began = time.monotonic()
    status = await commands.remote_start("fora072", 2, "MOBILE_USER", correlation_id="corr-1", actor="user:alice")
    # Well under the timeout: the call is not deadlocked behind its own reply.
    assert status == "Accepted" and time.monotonic() - began < 2
    result = await event("remote.start.result")
    assert result.data == {
        "stationId": "fora072", "connectorId": 2, "idTag": "MOBILE_USER", "correlationId": "corr-1", "status": "Accepted"
    }
    assert result.actor == "user:alice"
    started = await event("transaction.started")
    assert started.data["correlationId"] == "corr-1" and started.data["connectorId"] == 2
    tx_id = started.data["transactionId"]

    async def charging():
        connector = await Connector.objects.aget(station_id="fora072", number=2)
        return connector.status == "Charging" and connector.current_transaction_id == tx_id

    await eventually(charging)
    await eventually(lambda: Event.objects.filter(kind="meter.update").aexists())

    status, stopped_id, station_id = await commands.remote_stop(transaction_id=tx_id, correlation_id="corr-2")
    assert (status, stopped_id, station_id) == ("Accepted", tx_id, "fora072")
    stopped = await event("transaction.stopped")
    assert stopped.data["transactionId"] == tx_id and stopped.data["reason"] == "Remote"
    assert stopped.data["correlationId"] == "corr-2"
    assert stopped.data["energy"] > 0
    assert (await event("remote.stop.result")).data["status"] == "Accepted"
    tx = await Transaction.objects.aget(pk=tx_id)
    assert tx.start_correlation_id == "corr-1" and tx.stopped_at is not None


async def test_remote_stop_by_station_and_connector(charger_factory):
    await charger_factory(connectors=2)
    await commands.remote_start("fora072", 1, "TAG")
    started = await event("transaction.started")
    status, tx_id, _ = await commands.remote_stop(station_id="fora072", connector_id=1)
    assert status == "Accepted" and tx_id == started.data["transactionId"]


async def test_remote_start_preconditions(charger_factory):
    await charger_factory(connectors=2)
    with pytest.raises(NotFound):
        await commands.remote_start("nowhere", 1, "TAG")
    with pytest.raises(NotFound):
        await commands.remote_start("fora072", 9, "TAG")
    await commands.remote_start("fora072", 1, "TAG")
    await event("transaction.started")
    with pytest.raises(Conflict) as busy:
        await commands.remote_start("fora072", 1, "OTHER")
    assert busy.value.code == 409
    with pytest.raises(NotFound):
        await commands.remote_stop(transaction_id=123456)


async def test_remote_start_rejected_by_charger_is_reported(charger_factory):
    await charger_factory(cls=RejectsRemoteStart)
    status = await commands.remote_start("fora072", 1, "TAG", correlation_id="c-rej")
    assert status == "Rejected"
    assert (await event("remote.start.result")).data["status"] == "Rejected"


@pytest.mark.parametrize(
    "action, payload, expected",
    [
        ("Reset", {"type": "Soft"}, {"status": "Accepted"}),
        ("UnlockConnector", {"connectorId": 1}, {"status": "Unlocked"}),
        ("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}, {"status": "Accepted"}),
        ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}, {"status": "Accepted"}),
        ("ChangeConfiguration", {"key": "NumberOfConnectors", "value": "9"}, {"status": "Rejected"}),
        ("ChangeConfiguration", {"key": "Bogus", "value": "1"}, {"status": "NotSupported"}),
        ("ClearCache", {}, {"status": "Accepted"}),
        ("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1}, {"status": "Accepted"}),
        ("GetConfiguration", {"key": ["HeartbeatInterval", "Nope"]},
         {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}], "unknownKey": ["Nope"]}),
    ],
)
async def test_command_round_trip(charger_factory, action, payload, expected):
    await charger_factory(connectors=2)
    assert await commands.send_command("fora072", action, payload) == expected


async def test_change_availability_reaches_the_connector_status(charger_factory):
    await charger_factory(connectors=2)
    await commands.send_command("fora072", "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})

    async def unavailable():
        return (await Connector.objects.aget(station_id="fora072", number=2)).status == "Unavailable"

    await eventually(unavailable)


async def test_concurrent_commands_are_all_answered(charger_factory):
    await charger_factory()
    answers = await asyncio.gather(*(commands.send_command("fora072", "ClearCache") for _ in range(5)))
    assert answers == [{"status": "Accepted"}] * 5


async def test_timeout_when_the_charger_does_not_answer(charger_factory):
    await charger_factory(cls=SilentOnReset)
    began = time.monotonic()
    with pytest.raises(commands.CommandTimeout) as timed_out:
        await commands.send_command("fora072", "Reset", {"type": "Hard"}, timeout=0.5)
    assert timed_out.value.code == 504 and time.monotonic() - began < 2
    # The charger is still usable afterwards.
    assert await commands.send_command("fora072", "ClearCache") == {"status": "Accepted"}


async def test_offline_and_unknown_stations(server):
    await Station.objects.acreate(pk="sleeper")
    with pytest.raises(commands.StationOffline) as offline:
        await commands.send_command("sleeper", "ClearCache")
    assert offline.value.code == 409
    with pytest.raises(NotFound):
        await commands.send_command("ghost", "ClearCache")


async def test_disconnect_while_waiting_answers_at_once(charger_factory):
    charger = await charger_factory(cls=SilentOnReset)
    pending = asyncio.create_task(commands.send_command("fora072", "Reset", {"type": "Soft"}, timeout=20))
    await asyncio.sleep(0.3)
    began = time.monotonic()
    await charger.close()
    with pytest.raises(commands.StationDisconnected):
        await pending
    assert time.monotonic() - began < 2


async def test_schema_invalid_command_is_refused_before_sending(charger_factory):
    await charger_factory()
    with pytest.raises(DomainError) as invalid:
        await commands.send_command("fora072", "Reset", {"type": "Medium"})
    assert invalid.value.code == 400
    with pytest.raises(DomainError):
        await commands.send_command("fora072", "UpdateFirmware", {})


async def test_charger_callerror_is_reported(charger_factory):
    from ocpp.v16 import ChargePoint as BareChargePoint

    class Bare(BareChargePoint):
        def __init__(self, state, connection):
            super().__init__(state.station_id, connection)
            self.state, self.tasks = state, set()

        async def boot(self):
            return None

    await charger_factory(cls=Bare)
    with pytest.raises(commands.CommandFailed) as failed:
        await commands.send_command("fora072", "Reset", {"type": "Soft"})
    assert "NotImplemented" in str(failed.value)
