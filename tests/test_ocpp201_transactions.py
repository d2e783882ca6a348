"""OCPP 2.0.1 block E (TransactionEvent Started/Updated/Ended) and the idTokenInfo of C in its answers, with
the ocpp library's v201 ChargePoint as the station over a real socket (tests/ocpp201.py). Named after the
OCTT 2.0.1 CSMS test cases (TC_E_..._CSMS) where one applies; the mobile API sees the same events as for 1.6."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from ocpp.v201 import call

from csms.events import call_service
from csms.models import Event
from stations import services
from stations.errors import Conflict
from stations.models import Connector, IdTag, Tariff, Transaction, TransactionEvent
from tests.conftest import eventually
from tests.ocpp201 import Station201, energy

pytestmark = pytest.mark.django_db(transaction=True)

TOP_LEVEL = ("offline", "number_of_phases_used", "reservation_id", "cable_max_current")


class TxStation(Station201):
    """Station201 whose transaction_event also sends the request's own fields (offline, numberOfPhasesUsed)."""

    async def transaction_event(
        self, event_type: str, transaction_id: str, *, trigger_reason: str = "Authorized",
        seq_no: int | None = None, timestamp: str | None = None, evse_id: int | None = 1,
        token: str | None = None, meter_value: list[dict[str, Any]] | None = None, **info: Any,
    ) -> Any:
        if seq_no is None:
            seq_no, self.seq_no = self.seq_no, self.seq_no + 1
        extra = {name: info.pop(name) for name in TOP_LEVEL if name in info}
        if evse_id is not None:
            extra["evse"] = {"id": evse_id, "connector_id": 1}
        if token is not None:
            extra["id_token"] = {"id_token": token, "type": "Central"}
        if meter_value is not None:
            extra["meter_value"] = meter_value
        return await self.call(call.TransactionEvent(
            event_type=event_type, timestamp=timestamp or at(0), trigger_reason=trigger_reason, seq_no=seq_no,
            transaction_info={"transaction_id": transaction_id, **info}, **extra))


@pytest.fixture
def station(station201):
    """``station201`` with TxStation as the station."""
    return lambda station_id, **kwargs: station201(station_id, cls=TxStation, **kwargs)


def at(seconds: float) -> str:
    """A charger time ``seconds`` from now (negative: in the past)."""
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def kinds(kind: str, station_id: str) -> list[dict]:
    return [event.data async for event in Event.objects.filter(kind=kind, station_id=station_id).order_by("seq")]


async def tx_of(station_id: str, charger_id: str) -> Transaction:
    return await Transaction.objects.select_related("connector").aget(station_id=station_id,
                                                                      charger_transaction_id=charger_id)


@pytest.fixture
async def priced(transactional_db):
    await Tariff.objects.acreate(name="Std", price_per_kwh=Decimal("0.30"), is_default=True)
    await IdTag.objects.acreate(id_tag="TOKEN-A", type="Central", group_id="FAMILY")
    await IdTag.objects.acreate(id_tag="TOKEN-B", type="Central", group_id="FAMILY")
    await IdTag.objects.acreate(id_tag="BLOCKED", type="Central", status="Blocked")


async def test_tc_e_04_authorization_first_start_update_end_priced(station, priced, mobile):
    app = await mobile("/ws")
    await app.result("subscribe", {"events": ["all"]})
    cp = await station("e04")
    assert (await cp.authorize("TOKEN-A")).id_token_info["status"] == "Accepted"
    started = await cp.transaction_event("Started", "tx-1", token="TOKEN-A", charging_state="Charging",
                                         meter_value=[energy(1000, at(-60), "Transaction.Begin")],
                                         timestamp=at(-60))
    assert started.id_token_info == {"status": "Accepted", "group_id_token": {"id_token": "FAMILY", "type": "Central"}}
    assert started.total_cost is None
    tx = await tx_of("e04", "tx-1")
    assert (tx.id_tag, tx.meter_start, tx.charging_state, tx.last_seq_no, tx.connector.number) == (
        "TOKEN-A", 1000, "Charging", 0, 1)
    event = await app.event("transaction.started")
    assert app.field(event, "transactionId") == tx.pk and app.field(event, "meterStart") == 1000
    assert (await Connector.objects.aget(station_id="e04", number=1)).status == "Charging"

    await cp.transaction_event("Updated", "tx-1", trigger_reason="MeterValuePeriodic",
                               meter_value=[energy(3000, at(-30))], timestamp=at(-30))
    update = await app.event("meter.update", energy=2000)
    assert (app.field(update, "transactionId"), app.field(update, "energy")) == (tx.pk, 2000)

    ended = await cp.transaction_event("Ended", "tx-1", trigger_reason="StopAuthorized", token="TOKEN-A",
                                       stopped_reason="Local",
                                       meter_value=[energy(11000, at(0), "Transaction.End")])
    assert ended.total_cost == 3.0  # 10 kWh at 0.30
    assert ended.id_token_info["status"] == "Accepted"
    stopped = await app.event("transaction.stopped")
    assert (app.field(stopped, "transactionId"), app.field(stopped, "energy"), app.field(stopped, "cost"),
            app.field(stopped, "reason")) == (tx.pk, 10000, 3.0, "Local")
    tx = await tx_of("e04", "tx-1")
    assert (tx.meter_stop, tx.energy_wh, tx.cost, tx.stop_reason) == (11000, 10000, Decimal("3.00"), "Local")
    assert [e.event_type async for e in TransactionEvent.objects.filter(transaction=tx)] == [
        "Started", "Updated", "Ended"]
    assert (await Connector.objects.aget(station_id="e04", number=1)).current_transaction_id is None


async def test_tc_e_03_cable_plugin_first_token_later(station, priced):
    cp = await station("e03")
    await cp.transaction_event("Started", "tx-c", trigger_reason="CablePluggedIn", charging_state="EVConnected",
                               meter_value=[energy(500)])
    tx = await tx_of("e03", "tx-c")
    assert tx.id_tag == "" and tx.is_active
    assert (await Connector.objects.aget(station_id="e03", number=1)).status == "Occupied"
    assert await kinds("transaction.started", "e03") == []  # no token yet: nobody's session
    answer = await cp.transaction_event("Updated", "tx-c", trigger_reason="Authorized", token="TOKEN-A")
    assert answer.id_token_info["status"] == "Accepted"
    await cp.transaction_event("Updated", "tx-c", trigger_reason="ChargingStateChanged", charging_state="Charging")
    [started] = await kinds("transaction.started", "e03")
    assert (started["idTag"], started["meterStart"]) == ("TOKEN-A", 500)
    assert (await Connector.objects.aget(station_id="e03", number=1)).status == "Charging"
    assert [e["status"] for e in await kinds("connector.status.changed", "e03")][-2:] == ["Occupied", "Charging"]


async def test_tc_e_38_suspended_ev_shown_on_the_connector(station, priced):
    cp = await station("e38")
    await cp.transaction_event("Started", "tx-s", token="TOKEN-A", charging_state="Charging")
    await cp.transaction_event("Updated", "tx-s", trigger_reason="ChargingStateChanged", charging_state="SuspendedEV")
    assert (await Connector.objects.aget(station_id="e38", number=1)).status == "SuspendedEV"
    assert (await tx_of("e38", "tx-s")).charging_state == "SuspendedEV"


async def test_retried_event_same_seq_no_is_answered_not_applied_twice(station, priced):
    cp = await station("retry")
    await cp.transaction_event("Started", "tx-r", token="TOKEN-A", seq_no=0, meter_value=[energy(100, at(-20))])
    reading = [energy(900, at(-10))]
    for _ in range(3):  # the charger did not see the answer: the same message again, same seqNo
        await cp.transaction_event("Updated", "tx-r", trigger_reason="MeterValuePeriodic", seq_no=1,
                                   meter_value=reading)
    tx = await tx_of("retry", "tx-r")
    assert await TransactionEvent.objects.filter(transaction=tx).acount() == 2
    assert await tx.meter_samples.acount() == 2
    assert len(await kinds("meter.update", "retry")) == 2  # the Started's reading and the first Updated's
    started = call.TransactionEvent(event_type="Started", timestamp=at(-20), trigger_reason="Authorized", seq_no=0,
                                    transaction_info={"transaction_id": "tx-r"}, evse={"id": 1},
                                    id_token={"id_token": "TOKEN-A", "type": "Central"})
    again = await cp.call(started)  # a Started replayed after a reconnect: no second transaction
    assert again.id_token_info["status"] == "Accepted"
    assert await Transaction.objects.filter(station_id="retry").acount() == 1
    assert len(await kinds("transaction.started", "retry")) == 1


async def test_out_of_order_seq_no_stored_in_order_latest_state_kept(station, priced):
    cp = await station("order")
    await cp.transaction_event("Started", "tx-o", token="TOKEN-A", seq_no=0, charging_state="Charging",
                               meter_value=[energy(100, at(-9))])
    await cp.transaction_event("Updated", "tx-o", trigger_reason="ChargingStateChanged", seq_no=2,
                               charging_state="SuspendedEVSE", meter_value=[energy(300, at(-1))])
    await cp.transaction_event("Updated", "tx-o", trigger_reason="ChargingStateChanged", seq_no=1,
                               charging_state="Charging", meter_value=[energy(200, at(-5))], offline=True)
    tx = await tx_of("order", "tx-o")
    events = [(e.seq_no, e.charging_state, e.offline) async for e in TransactionEvent.objects.filter(transaction=tx)]
    assert events == [(0, "Charging", False), (1, "Charging", True), (2, "SuspendedEVSE", False)]
    assert (tx.last_seq_no, tx.charging_state) == (2, "SuspendedEVSE")  # the late one changes no state
    assert (await Connector.objects.aget(station_id="order", number=1)).status == "SuspendedEVSE"
    assert [s.energy_wh async for s in tx.meter_samples.order_by("timestamp")] == [100, 200, 300]


async def test_tc_e_16_offline_transaction_unknown_id_ended_first(station, priced):
    """E12/E13: the charger queued a whole transaction while offline; its Started was lost, the Ended comes
    first: the transaction is created and closed, announced once each."""
    cp = await station("offline")
    ended = await cp.transaction_event(
        "Ended", "tx-off", trigger_reason="EVCommunicationLost", seq_no=3, offline=True, token="TOKEN-A",
        timestamp=at(-100), stopped_reason="EVDisconnected", number_of_phases_used=3,
        meter_value=[energy(5000, at(-400), "Transaction.Begin"), energy(7000, at(-100), "Transaction.End")])
    assert ended.total_cost == 0.6
    tx = await tx_of("offline", "tx-off")
    assert (tx.meter_start, tx.meter_stop, tx.stop_reason, tx.id_tag) == (5000, 7000, "EVDisconnected", "TOKEN-A")
    event = await TransactionEvent.objects.aget(transaction=tx)
    assert (event.offline, event.number_of_phases_used, event.stopped_reason) == (True, 3, "EVDisconnected")
    assert len(await kinds("transaction.started", "offline")) == 1
    assert len(await kinds("transaction.stopped", "offline")) == 1
    # The Started and an Updated arrive late: stored in order, the transaction stays closed.
    await cp.transaction_event("Started", "tx-off", seq_no=0, token="TOKEN-A", offline=True, timestamp=at(-400))
    await cp.transaction_event("Updated", "tx-off", trigger_reason="ChargingStateChanged", seq_no=1, offline=True,
                               charging_state="Charging", timestamp=at(-300))
    tx = await tx_of("offline", "tx-off")
    assert tx.stopped_at is not None and tx.meter_stop == 7000
    assert [e.seq_no async for e in TransactionEvent.objects.filter(transaction=tx)] == [0, 1, 3]
    assert len(await kinds("transaction.stopped", "offline")) == 1
    assert await Transaction.objects.filter(station_id="offline").acount() == 1


async def test_event_after_ended_does_not_reopen(station, priced):
    cp = await station("after")
    await cp.transaction_event("Started", "tx-a", token="TOKEN-A", meter_value=[energy(0, at(-10))])
    await cp.transaction_event("Ended", "tx-a", trigger_reason="RemoteStop", stopped_reason="Remote",
                               meter_value=[energy(100, at(-5))])
    await cp.transaction_event("Updated", "tx-a", trigger_reason="MeterValuePeriodic", charging_state="Charging",
                               meter_value=[energy(150, at(-1))])
    tx = await tx_of("after", "tx-a")
    assert tx.stopped_at is not None and tx.stop_reason == "Remote" and tx.meter_stop == 100
    connector = await Connector.objects.aget(station_id="after", number=1)
    assert connector.current_transaction_id is None and connector.status != "Charging"
    second = await cp.transaction_event("Ended", "tx-a", trigger_reason="RemoteStop", stopped_reason="Other")
    assert second.total_cost == 0.03
    assert (await tx_of("after", "tx-a")).stop_reason == "Remote"
    assert len(await kinds("transaction.stopped", "after")) == 1


@pytest.mark.parametrize(("stopped_reason", "reason"), [
    (None, "Local"), ("Remote", "Remote"), ("ImmediateReset", "HardReset"), ("EVDisconnected", "EVDisconnected"),
    ("DeAuthorized", "DeAuthorized"), ("SOCLimitReached", "SOCLimitReached"),
])
async def test_stopped_reason_is_the_mobile_reason(station, priced, stopped_reason, reason):
    cp = await station("why")
    await cp.transaction_event("Started", "tx-w", token="TOKEN-A")
    info = {"stopped_reason": stopped_reason} if stopped_reason else {}
    await cp.transaction_event("Ended", "tx-w", trigger_reason="StopAuthorized", **info)
    [stopped] = await kinds("transaction.stopped", "why")
    assert stopped["reason"] == reason
    event = await TransactionEvent.objects.aget(transaction__charger_transaction_id="tx-w", event_type="Ended")
    assert event.stopped_reason == (stopped_reason or "")


async def test_tc_c_group_token_of_the_same_group_stops(station, priced):
    """C09: a token of the transaction's group stops it; the answer carries the group."""
    cp = await station("group")
    await cp.transaction_event("Started", "tx-g", token="TOKEN-A", meter_value=[energy(0, at(-5))])
    ended = await cp.transaction_event("Ended", "tx-g", trigger_reason="StopAuthorized", token="TOKEN-B",
                                       meter_value=[energy(10, at(0))])
    assert ended.id_token_info == {"status": "Accepted", "group_id_token": {"id_token": "FAMILY", "type": "Central"}}
    tx = await tx_of("group", "tx-g")
    assert tx.stopped_at is not None and tx.id_tag == "TOKEN-A"  # still the starter's session


async def test_tc_e_blocked_token_answered_invalid_status(station, priced):
    cp = await station("blocked")
    started = await cp.transaction_event("Started", "tx-b", token="BLOCKED")
    assert started.id_token_info["status"] == "Blocked"
    ended = await cp.transaction_event("Ended", "tx-b", trigger_reason="Deauthorized", stopped_reason="DeAuthorized")
    assert ended.id_token_info is None and ended.total_cost == 0.0
    assert (await tx_of("blocked", "tx-b")).stop_reason == "DeAuthorized"


async def test_new_start_on_busy_evse_closes_the_old_one(station, priced):
    cp = await station("busy")
    await cp.transaction_event("Started", "tx-1", token="TOKEN-A", seq_no=0)
    await cp.transaction_event("Started", "tx-2", token="TOKEN-A", seq_no=0)
    old, new = await tx_of("busy", "tx-1"), await tx_of("busy", "tx-2")
    assert old.stop_reason == "Other" and new.is_active
    assert (await Connector.objects.aget(station_id="busy", number=1)).current_transaction_id == new.pk


async def test_tc_f_remote_start_id_claims_the_request(station, priced):
    """F01/F02: RequestStartTransaction's remoteStartId is the RemoteStartRequest's pk; the Started naming
    it carries the mobile request's correlationId and its starter."""
    from stations.actors import Actor

    cp = await station("remote")
    await cp.status(1, "Available")
    actor = Actor.parse("apikey:1", "App")
    remote_start_id = await call_service(services.prepare_remote_start, "remote", 1, "TOKEN-A",
                                         correlation_id="corr-1", actor=actor)
    assert isinstance(remote_start_id, int)
    await cp.transaction_event("Started", "tx-rs", trigger_reason="RemoteStart", token="TOKEN-A",
                               remote_start_id=remote_start_id)
    [started] = await kinds("transaction.started", "remote")
    assert started["correlationId"] == "corr-1"
    tx = await tx_of("remote", "tx-rs")
    assert (tx.started_by, tx.start_correlation_id) == ("apikey:1", "corr-1")
    event = await Event.objects.aget(kind="transaction.started", station_id="remote")
    assert event.actor == "apikey:1"


async def test_remote_start_id_in_updated_after_cable_first(station, priced):
    cp = await station("remote2")
    await cp.status(1, "Available")
    await cp.transaction_event("Started", "tx-c", trigger_reason="CablePluggedIn", charging_state="EVConnected")
    # The driver plugged in first: the transaction waits for a token, and the app's remote start gives it.
    remote_start_id = await call_service(services.prepare_remote_start, "remote2", 1, "TOKEN-A",
                                         correlation_id="corr-2")
    await cp.transaction_event("Updated", "tx-c", trigger_reason="RemoteStart", token="TOKEN-A",
                               remote_start_id=remote_start_id)
    [started] = await kinds("transaction.started", "remote2")
    assert (started["correlationId"], started["idTag"]) == ("corr-2", "TOKEN-A")
    with pytest.raises(Conflict):  # now it is someone's session: busy
        await call_service(services.prepare_remote_start, "remote2", 1, "TOKEN-B")


async def _reconnect(station, station_id: str, reason: str) -> Station201:
    cp = await station(station_id, boot=False)
    await cp.boot(reason=reason)
    return cp


async def test_tc_b_reboot_closes_open_transactions_queued_ended_corrects(station, priced):
    """A 2.0.1 station ends its transactions at a reboot; one whose Ended never comes is closed by the
    boot in the new connection (PowerUp: PowerLoss), at its newest reading. The queued Ended that then
    arrives gives the charger's own stop values, without a second transaction.stopped."""
    cp = await station("reboot")
    await cp.transaction_event("Started", "tx-p", token="TOKEN-A", meter_value=[energy(1000, at(-120))],
                               timestamp=at(-120))
    await cp.transaction_event("Updated", "tx-p", trigger_reason="MeterValuePeriodic",
                               meter_value=[energy(4000, at(-60))], timestamp=at(-60))
    await cp._connection.close()
    await eventually(lambda: _offline("reboot"))
    cp = await _reconnect(station, "reboot", "PowerUp")
    tx = await tx_of("reboot", "tx-p")
    assert (tx.stop_reason, tx.meter_stop, tx.energy_wh, tx.cost) == ("PowerLoss", 4000, 3000, Decimal("0.90"))
    [stopped] = await kinds("transaction.stopped", "reboot")
    assert stopped["reason"] == "PowerLoss"
    assert (await Connector.objects.aget(station_id="reboot", number=1)).current_transaction_id is None
    ended = await cp.transaction_event("Ended", "tx-p", trigger_reason="AbnormalCondition", seq_no=2,
                                       stopped_reason="PowerLoss", timestamp=at(-50),
                                       meter_value=[energy(5000, at(-50), "Transaction.End")])
    assert ended.total_cost == 1.2
    tx = await tx_of("reboot", "tx-p")
    assert (tx.meter_stop, tx.energy_wh, tx.cost, tx.stop_reason) == (5000, 4000, Decimal("1.20"), "PowerLoss")
    assert len(await kinds("transaction.stopped", "reboot")) == 1
    assert await Transaction.objects.filter(station_id="reboot").acount() == 1


async def _offline(station_id: str) -> bool:
    from stations.models import Station

    return not (await Station.objects.aget(pk=station_id)).is_online


async def test_triggered_or_repeated_boot_closes_nothing(station, priced):
    cp = await station("keep")
    await cp.transaction_event("Started", "tx-k", token="TOKEN-A")
    await cp.boot(reason="Triggered")  # TriggerMessage(BootNotification)
    await cp.boot(reason="PowerUp")  # a second boot in the same connection (a Pending station retries)
    assert (await tx_of("keep", "tx-k")).is_active


async def test_remote_reset_reboot_closes_with_hard_reset(station, priced):
    cp = await station("reset")
    await cp.transaction_event("Started", "tx-h", token="TOKEN-A", meter_value=[energy(10, at(-5))])
    await cp._connection.close()
    await eventually(lambda: _offline("reset"))
    await _reconnect(station, "reset", "RemoteReset")
    tx = await tx_of("reset", "tx-h")
    assert (tx.stop_reason, tx.meter_stop) == ("HardReset", 10)


async def test_invalid_seq_no_refused_before_anything_is_written(station, priced):
    from ocpp.exceptions import FormatViolationError, PropertyConstraintViolationError, TypeConstraintViolationError

    cp = await station("bad")
    with pytest.raises((PropertyConstraintViolationError, FormatViolationError, TypeConstraintViolationError)):
        await cp.call(call.TransactionEvent(
            event_type="Started", timestamp="not a time", trigger_reason="Authorized", seq_no=0,
            transaction_info={"transaction_id": "tx-x"}, evse={"id": 1}), suppress=False)
    assert not await Transaction.objects.filter(station_id="bad").aexists()
    # A negative seqNo (no seqNo column takes it): that one error, nothing written.
    with pytest.raises(PropertyConstraintViolationError, match="seqNo -1 is out of range"):
        await cp.call(call.TransactionEvent(
            event_type="Started", timestamp=at(0), trigger_reason="Authorized", seq_no=-1,
            transaction_info={"transaction_id": "tx-y"}, evse={"id": 1}), suppress=False)
    assert not await Transaction.objects.filter(station_id="bad").aexists()
    await asyncio.sleep(0)


async def test_many_stations_updates_share_a_group_commit(station, priced, monkeypatch):
    """Updated with one reading from many stations at once (transaction_event.many): each stored once, in
    its transaction, with its seqNo; an Ended and a re-sent Updated in the same burst take the full path.
    The later Updated name no EVSE (only the first event must): found by the transaction's id."""
    from stations.services import transaction_events

    batches: list[int] = []  # how many connectors each batched lock query took (the hot path ran)
    lock_many = transaction_events._lock_many_for_events

    def counted(keys, unnamed):
        batches.append(len(keys))
        return lock_many(keys, unnamed)

    monkeypatch.setattr(transaction_events, "_lock_many_for_events", counted)
    stations = [await station(f"burst{n}") for n in range(6)]
    for cp in stations:
        await cp.transaction_event("Started", "tx", token="TOKEN-A", seq_no=0, meter_value=[energy(100, at(-60))])
    first = {"timestamp": at(0), "meter_value": [energy(150, at(-39))]}  # round 1, re-sent as it was in round 2
    for round_no in (1, 2):
        reading = [energy(100 + 50 * round_no, at(-40 + round_no))] if round_no == 2 else first["meter_value"]
        stamp = at(0) if round_no == 2 else first["timestamp"]
        await asyncio.gather(
            *(cp.transaction_event("Updated", "tx", trigger_reason="MeterValuePeriodic", seq_no=round_no,
                                   evse_id=None, timestamp=stamp, meter_value=reading, time_spent_charging=30)
              for cp in stations[:-1]),
            stations[-1].transaction_event("Ended", "tx", trigger_reason="StopAuthorized", seq_no=round_no,
                                           meter_value=reading) if round_no == 1 else
            stations[0].transaction_event("Updated", "tx", trigger_reason="MeterValuePeriodic", seq_no=1,
                                          evse_id=None, time_spent_charging=30, **first),
        )
    assert max(batches) >= 2
    for n in range(5):
        tx = await tx_of(f"burst{n}", "tx")
        assert tx.last_seq_no == 2 and tx.is_active
        assert [e.seq_no async for e in TransactionEvent.objects.filter(transaction=tx)] == [0, 1, 2]
        assert [s.energy_wh async for s in tx.meter_samples.order_by("timestamp")] == [100, 150, 200]
        assert [e["energy"] for e in await kinds("meter.update", f"burst{n}")] == [0, 50, 100]
    ended = await tx_of("burst5", "tx")
    assert ended.stopped_at is not None and ended.meter_stop == 150


async def test_no_tariff_no_total_cost(station):
    cp = await station("free")
    await cp.transaction_event("Started", "tx-f", token="ANY", meter_value=[energy(0, at(-5))])
    ended = await cp.transaction_event("Ended", "tx-f", trigger_reason="StopAuthorized",
                                       meter_value=[energy(10, at(0))])
    assert ended.total_cost is None  # not priced: absent, which the specification does not read as free
    assert (await tx_of("free", "tx-f")).energy_wh == 10


async def test_superseded_transaction_late_ended_gives_the_charger_values(station, priced):
    cp = await station("late")
    await cp.transaction_event("Started", "tx-1", token="TOKEN-A", seq_no=0, meter_value=[energy(0, at(-60))])
    await cp.transaction_event("Started", "tx-2", token="TOKEN-A", seq_no=0, meter_value=[energy(900, at(-30))])
    assert (await tx_of("late", "tx-1")).stop_reason == "Other"
    await cp.transaction_event("Ended", "tx-1", trigger_reason="EVCommunicationLost", seq_no=1,
                               stopped_reason="EVDisconnected", timestamp=at(-40),
                               meter_value=[energy(800, at(-40), "Transaction.End")])
    old = await tx_of("late", "tx-1")
    assert (old.stop_reason, old.meter_stop, old.energy_wh) == ("EVDisconnected", 800, 800)
    assert len(await kinds("transaction.stopped", "late")) == 1
    assert (await tx_of("late", "tx-2")).is_active


async def test_fractional_start_register_is_not_above_the_next_reading(station, priced):
    from stations.models import MeterSample

    cp = await station("frac201")
    await cp.transaction_event("Started", "tx-frac", token="TOKEN-A", timestamp=at(-20),
                               meter_value=[energy(1979556.6, at(-20), "Transaction.Begin")])
    tx = await tx_of("frac201", "tx-frac")
    assert tx.meter_start == 1979556  # rounded down: 1979557 would make the next reading look backwards
    await cp.transaction_event("Updated", "tx-frac", trigger_reason="MeterValuePeriodic", timestamp=at(-10),
                               meter_value=[energy(1979556.9, at(-10))])
    assert await MeterSample.objects.filter(transaction=tx, energy_wh=1979556.9).aexists()


async def test_noauthorization_token_gets_id_token_info(station, priced):
    """idToken "" of type NoAuthorization (C: no authorization needed) is a token: answered Accepted."""
    cp = await station("noauth")
    answer = await cp.call(call.TransactionEvent(
        event_type="Started", timestamp=at(0), trigger_reason="CablePluggedIn", seq_no=0,
        transaction_info={"transaction_id": "tx-n"}, evse={"id": 1, "connector_id": 1},
        id_token={"id_token": "", "type": "NoAuthorization"}), suppress=False)
    assert answer.id_token_info == {"status": "Accepted"}


async def test_reused_seq_no_with_other_content_is_applied(station, priced):
    """A seqNo seen before is a replay only if it is the same event: an Ended reusing an Updated's seqNo
    (the charger's counter restarted) still ends the transaction."""
    cp = await station("reuse")
    await cp.transaction_event("Started", "tx", seq_no=0, token="TOKEN-A", meter_value=[energy(10, at(-10))])
    await cp.transaction_event("Updated", "tx", trigger_reason="MeterValuePeriodic", seq_no=1,
                               meter_value=[energy(20, at(-5))])
    ended = await cp.transaction_event("Ended", "tx", trigger_reason="StopAuthorized", seq_no=1,
                                       meter_value=[energy(30, at(0))])
    tx = await tx_of("reuse", "tx")
    assert tx.stopped_at is not None and (tx.meter_stop, tx.energy_wh) == (30, 20)
    assert ended.total_cost is not None
    assert len(await kinds("transaction.stopped", "reuse")) == 1


async def test_started_after_ended_corrects_start_silently(station, priced):
    """The offline queue sent the Ended first, the Started after it: the start is the Started's time and
    register; energy, duration and cost follow, and transaction.stopped is not announced again."""
    cp = await station("late-start")
    await cp.transaction_event("Ended", "tx", trigger_reason="EVCommunicationLost", seq_no=3, offline=True,
                               token="TOKEN-A", timestamp=at(-100), stopped_reason="EVDisconnected",
                               meter_value=[energy(7000, at(-100), "Transaction.End")])
    await cp.transaction_event("Started", "tx", seq_no=0, token="TOKEN-A", offline=True, timestamp=at(-4000),
                               meter_value=[energy(5000, at(-4000), "Transaction.Begin")])
    tx = await tx_of("late-start", "tx")
    assert (tx.meter_start, tx.meter_stop, tx.energy_wh, tx.cost) == (5000, 7000, 2000, Decimal("0.60"))
    assert 3890 <= tx.duration_seconds <= 3910
    assert len(await kinds("transaction.stopped", "late-start")) == 1


async def test_ended_first_starts_at_its_first_reading(station, priced):
    cp = await station("ended-first")
    await cp.transaction_event("Ended", "tx", trigger_reason="EVCommunicationLost", seq_no=3, offline=True,
                               token="TOKEN-A", timestamp=at(-100), stopped_reason="EVDisconnected",
                               meter_value=[energy(5000, at(-4000), "Transaction.Begin"),
                                            energy(7000, at(-100), "Transaction.End")])
    tx = await tx_of("ended-first", "tx")
    assert 3890 <= tx.duration_seconds <= 3910 and tx.energy_wh == 2000


async def test_updated_before_started_takes_the_started_register(station, priced):
    cp = await station("upd-first")
    await cp.transaction_event("Updated", "tx", trigger_reason="MeterValuePeriodic", seq_no=1,
                               timestamp=at(-50), meter_value=[energy(1500, at(-50))])
    await cp.transaction_event("Started", "tx", seq_no=0, token="TOKEN-A", timestamp=at(-100),
                               meter_value=[energy(1000, at(-100), "Transaction.Begin")])
    ended = await cp.transaction_event("Ended", "tx", trigger_reason="StopAuthorized", seq_no=2, timestamp=at(0),
                                       meter_value=[energy(2000, at(0), "Transaction.End")])
    tx = await tx_of("upd-first", "tx")
    assert (tx.meter_start, tx.energy_wh, tx.cost, ended.total_cost) == (1000, 1000, Decimal("0.30"), 0.3)
    assert 95 <= tx.duration_seconds <= 105


async def test_tokenless_transaction_closed_by_a_new_start_or_a_reboot_is_announced_started(station, priced):
    """Closed by the CSMS before it had a token: transaction.started before its transaction.stopped."""
    cp = await station("tokenless")
    await cp.transaction_event("Started", "tx-1", trigger_reason="CablePluggedIn", seq_no=0)
    await cp.transaction_event("Started", "tx-2", trigger_reason="CablePluggedIn", seq_no=0)  # closes tx-1
    old = await tx_of("tokenless", "tx-1")
    assert [e["transactionId"] for e in await kinds("transaction.started", "tokenless")] == [old.pk]
    await cp._connection.close()
    await eventually(lambda: _offline("tokenless"))
    await _reconnect(station, "tokenless", "PowerUp")  # closes tx-2
    new = await tx_of("tokenless", "tx-2")
    assert new.stopped_at is not None
    assert [e["transactionId"] for e in await kinds("transaction.started", "tokenless")] == [old.pk, new.pk]
    assert [e["transactionId"] for e in await kinds("transaction.stopped", "tokenless")] == [old.pk, new.pk]
