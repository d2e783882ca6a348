"""services.transactions: start and stop (idempotent on re-send, priced, plausible), the session a
new start supersedes, and the preconditions of remote starts and stops."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from stations import services
from stations.actors import Actor
from stations.errors import Conflict, DomainError, InvalidValue, NotFound
from stations.models import Connector, IdTag, MeterSample, RemoteStartRequest, Station, Tariff, Transaction
from tests.fast.conftest import ago, events

pytestmark = pytest.mark.django_db


def start(evse_id: int = 1, token: str = "CARD-1", meter_start: int = 1000, timestamp: str | None = None,
          **kwargs: int) -> int:
    transaction_id, _ = services.start_transaction("fora072", evse_id, token, meter_start, timestamp, **kwargs)
    return transaction_id


def connector(number: int = 1) -> Connector:
    return Connector.objects.get(station_id="fora072", number=number)


# --- Start ------------------------------------------------------------------------------------------------

def test_a_start_allocates_the_csms_id_and_the_connector_holds_it(station: Station, settings: Settings) -> None:
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = True
    at = ago(10)
    transaction_id, authorization = services.start_transaction("fora072", 1, "CARD-1", 1000, at)
    assert authorization == {"status": "Accepted", "expires_at": None, "group_id": None}
    tx = Transaction.objects.get(pk=transaction_id)
    assert (tx.charger_transaction_id, tx.meter_start, tx.id_tag) == (str(transaction_id), 1000, "CARD-1")
    assert tx.evse_id == connector().evse_id and tx.evse_id is not None
    assert connector().current_transaction_id == transaction_id
    assert events("transaction.started") == [{
        "transactionId": transaction_id, "stationId": "fora072", "connectorId": 1, "idTag": "CARD-1",
        "startTime": services.iso(tx.started_at), "meterStart": 1000,
    }]


def test_a_re_sent_start_gets_the_same_id_and_no_second_event(station: Station) -> None:
    at = ago(10)
    first = start(timestamp=at)
    assert start(timestamp=at) == first
    assert Transaction.objects.count() == 1
    assert len(events("transaction.started")) == 1


def test_a_refused_token_still_gets_an_id_but_does_not_hold_the_connector(station: Station) -> None:
    IdTag.objects.create(id_tag="STOLEN", status="Blocked")
    transaction_id, authorization = services.start_transaction("fora072", 1, "STOLEN", 0, ago(1))
    assert authorization["status"] == "Blocked"
    assert Transaction.objects.filter(pk=transaction_id).exists()  # the charger will stop it: it needs the id
    assert connector().current_transaction_id is None


def test_a_new_start_supersedes_the_connectors_active_session(station: Station) -> None:
    old = start(timestamp=ago(600), meter_start=1000)
    new = start(token="CARD-2", timestamp=ago(60), meter_start=4000)
    closed = Transaction.objects.get(pk=old)
    assert (closed.stop_reason, closed.meter_stop, closed.energy_wh) == ("Other", 4000, 3000)
    assert closed.stopped_at == Transaction.objects.get(pk=new).started_at
    assert connector().current_transaction_id == new
    assert [e["transactionId"] for e in events("transaction.stopped")] == [old]


def test_an_implausible_start_time_is_replaced_and_its_re_send_still_recognised(station: Station) -> None:
    first = start(timestamp="2001-01-01T00:00:00Z")
    tx = Transaction.objects.get(pk=first)
    assert tx.reported_start == "2001-01-01T00:00:00Z"
    assert (timezone.now() - tx.started_at).total_seconds() < 5
    assert start(timestamp="2001-01-01T00:00:00Z") == first


@pytest.mark.parametrize(("evse_id", "meter_start", "timestamp", "message"), [
    (0, 0, None, "connectorId 0 is the station itself: a transaction needs a connector >= 1"),
    (1, -5, None, "meterStart -5 is negative: an energy register is not"),
    (1, 2**63, None, "meterStart 9223372036854775808 is out of range"),
    (1, 0, "the day before", "timestamp 'the day before' is not an ISO 8601 date-time"),
])
def test_a_start_that_identifies_nothing_is_refused(
    station: Station, evse_id: int, meter_start: int, timestamp: str | None, message: str
) -> None:
    with pytest.raises(InvalidValue) as refused:
        start(evse_id=evse_id, meter_start=meter_start, timestamp=timestamp)
    assert str(refused.value).startswith(message)
    assert not Transaction.objects.exists()


def test_a_reservation_id_no_column_holds_is_dropped_not_refused(station: Station) -> None:
    transaction_id = start(reservation_id=2**40)
    assert Transaction.objects.get(pk=transaction_id).reservation_id is None


# --- Stop -------------------------------------------------------------------------------------------------

def test_a_stop_closes_prices_and_frees_the_connector(station: Station) -> None:
    Tariff.objects.create(name="Documents", price_per_kwh=Decimal("0.10"), is_default=True)
    transaction_id = start(meter_start=1000, timestamp=ago(3600))
    assert services.stop_transaction("fora072", transaction_id, 16500, ago(0), "Local") is None
    tx = Transaction.objects.get(pk=transaction_id)
    assert (tx.meter_stop, tx.energy_wh, tx.cost, tx.currency, tx.stop_reason) == (
        16500, 15500, Decimal("1.55"), "EUR", "Local")
    assert connector().current_transaction_id is None
    [stopped] = events("transaction.stopped")
    assert (stopped["energy"], stopped["totalKWh"], stopped["cost"], stopped["currency"], stopped["reason"]) == (
        15500, 15.5, 1.55, "EUR", "Local")


def test_a_re_sent_stop_changes_nothing(station: Station) -> None:
    transaction_id = start(timestamp=ago(60))
    services.stop_transaction("fora072", transaction_id, 1500, ago(0))
    stopped_at = Transaction.objects.get(pk=transaction_id).stopped_at
    services.stop_transaction("fora072", transaction_id, 9999, ago(0), "Remote")
    tx = Transaction.objects.get(pk=transaction_id)
    assert (tx.stopped_at, tx.meter_stop, tx.stop_reason) == (stopped_at, 1500, "Local")
    assert len(events("transaction.stopped")) == 1


def test_a_stop_for_an_unknown_transaction_is_answered_and_logged(station: Station, settings: Settings) -> None:
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = False
    assert services.stop_transaction("fora072", 999, 1500, ago(0), token="CARD-1") == {
        "status": "Invalid", "expires_at": None, "group_id": None}
    assert events("transaction.stop.unknown") == [{"stationId": "fora072", "transactionId": 999, "meterStop": 1500}]
    services.stop_transaction("fora072", 2**70, 2**70, ago(0))  # ids no column holds match nothing
    assert events("transaction.stop.unknown")[-1] == {"stationId": "fora072", "transactionId": 2**70,
                                                      "meterStop": None}


def test_a_stop_names_the_chargers_id_for_the_transaction(station: Station) -> None:
    """The id a charger chose (2.0.1) finds its transaction as 1.6's integer does; the CSMS's id is not the charger's."""
    transaction_id = start(timestamp=ago(60))
    Transaction.objects.filter(pk=transaction_id).update(charger_transaction_id="f3a9-chosen")
    services.stop_transaction("fora072", transaction_id, 1500, ago(0))
    assert events("transaction.stop.unknown")[-1]["transactionId"] == transaction_id
    services.stop_transaction("fora072", "f3a9-chosen", 1500, ago(0))
    assert Transaction.objects.get(pk=transaction_id).stopped_at is not None


def test_another_stations_transaction_is_not_stopped(station: Station) -> None:
    transaction_id = start(timestamp=ago(60))
    Station.objects.create(pk="other")
    services.stop_transaction("other", transaction_id, 1500, ago(0))
    assert Transaction.objects.get(pk=transaction_id).stopped_at is None


def test_an_implausible_meter_stop_is_replaced_by_the_newest_plausible_register(station: Station) -> None:
    transaction_id = start(meter_start=1000, timestamp=ago(600))
    services.record_meter_values("fora072", 1, transaction_id, [
        {"timestamp": ago(300), "sampled_value": [{"value": "1800", "measurand": "Energy.Active.Import.Register"}]},
    ])
    services.stop_transaction("fora072", transaction_id, 500, ago(0))  # below meterStart: a register never runs back
    assert Transaction.objects.get(pk=transaction_id).energy_wh == 800
    other = start(evse_id=2, meter_start=1000, timestamp=ago(600))
    services.stop_transaction("fora072", other, 10**12, ago(0))  # no sample: meterStart itself
    assert Transaction.objects.get(pk=other).energy_wh == 0


def test_a_stop_before_its_start_lasts_nothing(station: Station) -> None:
    transaction_id = start(timestamp=ago(60))
    services.stop_transaction("fora072", transaction_id, 1200, ago(120))
    tx = Transaction.objects.get(pk=transaction_id)
    assert (tx.duration_seconds, tx.energy_wh) == (0, 200)


def test_a_stops_transaction_data_is_stored(station: Station) -> None:
    transaction_id = start(timestamp=ago(600))
    data = [{"timestamp": ago(300), "sampled_value": [{"value": "1400"}]}]
    services.stop_transaction("fora072", transaction_id, 1500, ago(0), "EVDisconnected", "CARD-1", data)
    assert list(MeterSample.objects.values_list("transaction_id", "energy_wh")) == [(transaction_id, 1400.0)]


# --- Remote start and stop --------------------------------------------------------------------------------

def test_a_remote_start_is_claimed_by_the_chargers_start(station: Station) -> None:
    who = Actor.api_key(12, "App")
    services.prepare_remote_start("fora072", 1, "APP-1", correlation_id="c-1", actor=who)
    transaction_id = start(token="APP-1")
    tx = Transaction.objects.get(pk=transaction_id)
    assert (tx.start_correlation_id, tx.started_by) == ("c-1", "apikey:12")
    assert RemoteStartRequest.objects.get().transaction_id == transaction_id
    assert events("transaction.started")[0]["correlationId"] == "c-1"


@pytest.mark.parametrize(("change", "evse_id", "error", "message"), [
    ({"pk": "nowhere"}, 1, NotFound, "Unknown station nowhere"),
    ({"is_online": False}, 1, Conflict, "Station fora072 is offline"),
    ({"registration_status": "Pending"}, 1, Conflict, "Station fora072 is not accepted (Pending)"),
    ({}, 9, NotFound, "Unknown connector 9 on station fora072"),
    ({}, 0, NotFound, "Unknown connector 0 on station fora072"),
])
def test_a_remote_start_is_refused_before_anything_is_sent(
    station: Station, change: dict[str, object], evse_id: int, error: type[DomainError], message: str
) -> None:
    station_id = str(change.pop("pk", "fora072"))
    Station.objects.filter(pk="fora072").update(**change)
    with pytest.raises(error) as refused:
        services.prepare_remote_start(station_id, evse_id, "APP-1")
    assert str(refused.value) == message
    assert not RemoteStartRequest.objects.exists()


def test_one_remote_start_per_connector_at_a_time(station: Station) -> None:
    services.prepare_remote_start("fora072", 1, "APP-1", correlation_id="c-1")
    with pytest.raises(Conflict, match="has a remote start pending"):
        services.prepare_remote_start("fora072", 1, "APP-2")
    services.prepare_remote_start("fora072", 2, "APP-2")  # another connector is free
    services.forget_remote_start("fora072", "APP-1", "c-1")  # refused by the charger: free again
    services.prepare_remote_start("fora072", 1, "APP-3")


def test_a_busy_connector_is_refused(station: Station) -> None:
    start()
    with pytest.raises(Conflict, match="Connector 1 is busy"):
        services.prepare_remote_start("fora072", 1, "APP-1")
    services.update_connector_status("fora072", 2, "Faulted", "GroundFailure")
    with pytest.raises(Conflict, match=r"Connector 2 is busy \(Faulted\)"):
        services.prepare_remote_start("fora072", 2, "APP-1")


def test_a_remote_stop_finds_the_active_session_by_id_or_connector(station: Station) -> None:
    transaction_id = start(evse_id=2)
    assert services.prepare_remote_stop(None, transaction_id, None, correlation_id="s-1").pk == transaction_id
    assert Transaction.objects.get(pk=transaction_id).stop_correlation_id == "s-1"
    assert services.prepare_remote_stop("fora072", None, 2).pk == transaction_id
    with pytest.raises(NotFound):
        services.prepare_remote_stop("other", transaction_id, None)
    with pytest.raises(NotFound):
        services.prepare_remote_stop("fora072", None, 1)
    with pytest.raises(DomainError, match="Give transactionId, or stationId and connectorId"):
        services.prepare_remote_stop("fora072", None, None)
    Station.objects.filter(pk="fora072").update(is_online=False)
    with pytest.raises(Conflict, match="offline"):
        services.prepare_remote_stop(None, transaction_id, None)


def test_a_stopped_session_cannot_be_stopped_remotely(station: Station) -> None:
    transaction_id = start(timestamp=ago(60))
    services.stop_transaction("fora072", transaction_id, 1100, ago(0))
    with pytest.raises(NotFound, match="No active transaction matches"):
        services.prepare_remote_stop(None, transaction_id, None)


def test_a_remote_start_older_than_the_window_is_not_claimed(station: Station, settings: Settings) -> None:
    settings.OCPP_REMOTE_START_WINDOW = 60
    services.prepare_remote_start("fora072", 1, "APP-1", correlation_id="c-old")
    RemoteStartRequest.objects.update(created_at=timezone.now() - dt.timedelta(seconds=61))
    transaction_id = start(token="APP-1")
    assert Transaction.objects.get(pk=transaction_id).start_correlation_id == ""
