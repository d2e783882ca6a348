"""The back-office with Django's test client: every page, action and permission.

Charger actions run against a simulated charger on a real socket (the
in-process server), through Django's AsyncClient in the same event loop.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import http.cookiejar
import io
import math
import re
import time
import urllib.parse
import urllib.request

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone

from csms.models import Event
from mobileapi import services as mobile_services
from mobileapi.models import ApiKey, MobileSession
from stations import charts, rules, selectors, services
from stations.actors import Actor
from stations.models import Connector, IdTag, MeterSample, ServerProcess, Station, Tariff, Transaction
from tests.admin_support import PASSWORD, make_superuser, make_support
from tests.conftest import eventually
from tests.test_mobile_sessions import closed_code

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(make_superuser())
    return client


@pytest.fixture
def agent() -> Client:
    client = Client()
    client.force_login(make_support())
    return client


def station(station_id: str, online: bool, *statuses: str) -> Station:
    row = Station.objects.create(pk=station_id, is_online=online, vendor="Fora", model="F-22")
    Connector.objects.create(station=row, number=0, status="Available")
    for number, status in enumerate(statuses, start=1):
        Connector.objects.create(station=row, number=number, status=status)
    return row


def finished_tx(station_row: Station, *, tx_id_tag: str = "RFID-1", energy_wh: int = 15500, minutes: int = 30,
                started_at: dt.datetime | None = None) -> Transaction:
    start = started_at or timezone.now() - dt.timedelta(minutes=minutes + 5)
    connector = station_row.connectors.get(number=1)
    return Transaction.objects.create(
        station=station_row, connector=connector, id_tag=tx_id_tag, meter_start=1000, meter_stop=1000 + energy_wh,
        started_at=start, stopped_at=start + dt.timedelta(minutes=minutes), energy_wh=energy_wh,
        cost="1.55", currency="EUR", stop_reason="Local",
    )


# --- Permissions -----------------------------------------------------------------------

SUPPORT_CAN_VIEW = ["stations_station", "stations_transaction", "stations_idtag", "stations_tariff",
                    "csms_event", "mobileapi_apikey", "mobileapi_mobilesession", "stations_serverprocess"]


@pytest.mark.parametrize("model", SUPPORT_CAN_VIEW)
def test_support_views_every_list(agent, model):
    assert agent.get(reverse(f"admin:{model}_changelist")).status_code == 200


@pytest.mark.parametrize("url", [
    reverse("admin:mobileapi_apikey_add"),
    reverse("admin:stations_tariff_add"),
    reverse("admin:stations_station_add"),
    reverse("admin:auth_user_changelist"),
])
def test_support_cannot_reach_what_the_group_excludes(agent, url):
    assert agent.get(url).status_code == 403


def test_support_cannot_change_keys_tariffs_or_station_passwords(agent):
    key, _ = mobile_services.create_api_key("App", ["read:stations"])
    tariff = Tariff.objects.create(name="Base", price_per_kwh="0.30")
    station("fora072", False, "Available")
    # Forms are read-only for them, and posting anyway is refused.
    page = agent.get(reverse("admin:mobileapi_apikey_change", args=[key.pk]))
    assert page.status_code == 200 and b'name="name"' not in page.content
    assert agent.post(reverse("admin:mobileapi_apikey_change", args=[key.pk]),
                      {"name": "Hijacked", "scopes": ["write:charging"], "is_active": "on"}).status_code == 403
    assert agent.post(reverse("admin:stations_tariff_change", args=[tariff.pk]),
                      {"name": "Cheap", "price_per_kwh": "0.01"}).status_code == 403
    assert agent.post(reverse("admin:mobileapi_apikey_changelist"),
                      {"action": "deactivate", "_selected_action": [key.pk]}).status_code in (200, 302)
    assert ApiKey.objects.get(pk=key.pk).is_active and ApiKey.objects.get(pk=key.pk).name == "App"
    assert Tariff.objects.get(pk=tariff.pk).name == "Base"
    assert agent.post(reverse("admin:stations_station_password", args=["fora072"])).status_code == 403
    assert Station.objects.get(pk="fora072").password_hash == ""


def test_support_manages_id_tags(agent):
    response = agent.post(reverse("admin:stations_idtag_add"), {"id_tag": "RFID-NEW", "status": "Accepted"})
    assert response.status_code == 302
    tag = IdTag.objects.get(id_tag="RFID-NEW")
    agent.post(reverse("admin:stations_idtag_change", args=[tag.pk]), {"id_tag": "RFID-NEW", "status": "Blocked"})
    assert IdTag.objects.get(pk=tag.pk).status == "Blocked"
    assert services.authorize("RFID-NEW")["status"] == "Blocked"  # the OCPP path sees it at once


def test_anonymous_is_sent_to_login():
    response = Client().get(reverse("admin:stations_station_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- API keys ----------------------------------------------------------------------------

def shown_once(client: Client, response) -> str:
    """The secret a POST made, from the page it redirects to; that page shows it once only."""
    assert response.status_code == 302, "the POST that makes a secret answers with a redirect (POST/redirect/GET)"
    page = client.get(response["Location"])
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    secret = re.search(rb'<code id="secret"[^>]*>([^<]+)</code>', page.content).group(1).decode()
    reload = client.get(response["Location"], follow=True).content.decode()
    assert secret not in reload and "shown once and is not stored" in reload
    return secret


def test_reloading_the_key_created_page_creates_no_second_key(root):
    response = root.post(reverse("admin:mobileapi_apikey_add"), {"name": "Partner app", "scopes": ["read:stations"],
                                                                  "is_active": "on"})
    raw = shown_once(root, response)
    assert ApiKey.objects.filter(name="Partner app").count() == 1
    assert mobile_services.authenticate(raw) is not None
    from django.contrib.sessions.models import Session

    assert all(raw not in str(s.get_decoded()) for s in Session.objects.all())  # popped when shown


def test_api_key_is_shown_once_then_only_its_prefix(root, caplog):
    IdTag.objects.create(id_tag="FLEET-1")
    tag = IdTag.objects.get(id_tag="FLEET-1")
    response = root.post(reverse("admin:mobileapi_apikey_add"),
                         {"name": "Partner app", "scopes": ["read:stations", "write:charging"],
                          "id_tags": [tag.pk], "is_active": "on"})
    raw = shown_once(root, response)
    key = ApiKey.objects.get(name="Partner app")
    info = mobile_services.authenticate(raw)
    assert info is not None and info.id == key.pk
    assert info.scopes == {"read:stations", "write:charging"} and info.id_tags == {"FLEET-1"}
    assert raw not in str(ApiKey.objects.filter(pk=key.pk).values().get())  # only its hash is stored
    for url in (reverse("admin:mobileapi_apikey_changelist"), reverse("admin:mobileapi_apikey_change", args=[key.pk]),
                reverse("admin:index")):
        page = root.get(url).content.decode()
        assert raw not in page
    assert key.prefix + "…" in root.get(reverse("admin:mobileapi_apikey_changelist")).content.decode()
    assert raw not in caplog.text


def test_api_key_edit_goes_through_the_service(root):
    key, _ = mobile_services.create_api_key("App", ["read:stations"])
    root.post(reverse("admin:mobileapi_apikey_change", args=[key.pk]),
              {"name": "App v2", "scopes": ["read:stations", "write:charging"], "is_active": ""})
    key.refresh_from_db()
    assert key.name == "App v2" and key.scopes == ["read:stations", "write:charging"] and not key.is_active


def test_operating_stations_is_a_field_of_its_own_not_a_scope_checkbox(root):
    add = root.get(reverse("admin:mobileapi_apikey_add")).content.decode()
    assert 'name="scopes" value="operate:stations"' not in add  # ticking every app scope does not give it
    assert 'name="operate_stations"' in add and "never a phone app" in add
    response = root.post(reverse("admin:mobileapi_apikey_add"),
                         {"name": "Back office", "scopes": ["read:stations"], "operate_stations": "on",
                          "is_active": "on"})
    info = mobile_services.authenticate(shown_once(root, response))
    assert info is not None and info.scopes == {"read:stations", "operate:stations"}
    key = ApiKey.objects.get(name="Back office")
    assert "operate:stations, read:stations" in root.get(reverse("admin:mobileapi_apikey_changelist")).content.decode()
    page = root.get(reverse("admin:mobileapi_apikey_change", args=[key.pk])).content.decode()
    assert re.search(r'<input[^>]*name="operate_stations"[^>]*checked', page)
    root.post(reverse("admin:mobileapi_apikey_change", args=[key.pk]),
              {"name": "Back office", "scopes": ["read:stations"], "is_active": "on"})
    key.refresh_from_db()
    assert key.scopes == ["read:stations"]


def test_deactivate_and_reactivate_actions(root):
    key, raw = mobile_services.create_api_key("App", ["read:stations"])
    url = reverse("admin:mobileapi_apikey_changelist")
    root.post(url, {"action": "deactivate", "_selected_action": [key.pk]})
    assert mobile_services.authenticate(raw) is None
    root.post(url, {"action": "reactivate", "_selected_action": [key.pk]})
    assert mobile_services.authenticate(raw) is not None


# --- Stations ---------------------------------------------------------------------------

def test_station_status_filter_agrees_with_the_rule():
    rows = [
        station("off", False, "Charging"),
        station("charging", True, "Charging", "Available"),
        station("free", True, "Available", "Available"),
        station("partly", True, "Available", "Faulted"),
        station("none", True, "Faulted", "Unavailable"),
        station("empty", True),
    ]
    for row in rows:
        expected = rules.station_status(row.is_online, row.connectors.filter(number__gt=0).values_list("status",
                                                                                                         flat=True))
        found = [s.pk for s in selectors.filter_station_status(Station.objects.all(), expected)]
        assert row.pk in found, (row.pk, expected, found)
        for other in selectors.STATION_STATUSES:
            if other != expected:
                assert row.pk not in [s.pk for s in selectors.filter_station_status(Station.objects.all(), other)]


def test_station_list_and_page(agent):
    row = station("fora072", True, "Charging", "Available")
    station("fora073", False, "Available")
    tx = finished_tx(row)
    services.record_command("station.command", "fora072", {"action": "Reset"}, actor="user:someone")
    listing = agent.get(reverse("admin:stations_station_changelist") + "?status=Charging").content.decode()
    assert "fora072" in listing and "fora073" not in listing
    page = agent.get(reverse("admin:stations_station_change", args=["fora072"])).content.decode()
    assert "Act on the charger" in page and "Remote start" in page
    assert f"#{tx.pk}" in page and "15.50" in page and "1.55 EUR" in page  # recent transactions
    assert "station.command" in page and "staff someone" in page  # recent events, one line each
    assert "Reset()" in page
    assert 'class="badge badge-charging">Charging' in page  # connectors in the overview
    assert "Set password" not in page  # support may not set it


def _op_form(page: str, name: str) -> str:
    return re.search(rf'<form[^>]*id="op-{name}".*?</form>', page, re.S).group(0)


def test_the_panel_offers_only_what_can_work_and_says_why(agent):
    row = station("fora072", True, "Charging", "Available", "Faulted")
    connector = row.connectors.get(number=1)
    older = Transaction.objects.create(station=row, connector=connector, id_tag="OLD", meter_start=0,
                                       started_at=timezone.now() - dt.timedelta(minutes=9))
    Connector.objects.filter(pk=connector.pk).update(current_transaction=older)
    url = reverse("admin:stations_station_change", args=["fora072"])
    page = agent.get(url).content.decode()
    start = _op_form(page, "remote_start")
    assert 'value="2"' in start and 'value="1"' not in start and 'value="3"' not in start  # only the free one
    stop = _op_form(page, "remote_stop")
    assert re.search(r'<option value="" selected>Choose a transaction', stop), stop  # nothing preselected
    assert "disabled" not in start and "disabled" not in stop
    # Nothing active, nothing free: both disabled, each with its reason.
    Transaction.objects.filter(pk=older.pk).update(stopped_at=timezone.now(), energy_wh=0)
    Connector.objects.filter(station=row).update(current_transaction=None, status="Charging")
    page = agent.get(url).content.decode()
    assert "<fieldset disabled>" in _op_form(page, "remote_stop") and "No transaction is active" in page
    assert "<fieldset disabled>" in _op_form(page, "remote_start") and "No connector is free" in page
    # Offline: every command is disabled and the panel says why; registration still works.
    Station.objects.filter(pk="fora072").update(is_online=False)
    page = agent.get(url).content.decode()
    for name in ("remote_start", "remote_stop", "reset", "unlock", "availability", "trigger_status",
                 "read-configuration"):
        assert "<fieldset disabled>" in _op_form(page, name), name
    assert "The charger is offline: commands are disabled" in page
    assert "<fieldset disabled>" not in _op_form(page, "registration")


def test_accept_a_pending_station_is_logged_with_the_user(agent):
    Station.objects.create(pk="newbie", registration_status="Pending")
    response = agent.post(reverse("admin:stations_station_operate", args=["newbie", "registration"]),
                          {"status": "Accepted"}, follow=True)
    assert "Registration status set to Accepted" in response.content.decode()
    assert Station.objects.get(pk="newbie").registration_status == "Accepted"
    event = Event.objects.get(kind="station.registration.changed")
    assert event.actor == "user:agent" and event.data["status"] == "Accepted"


def test_command_to_an_offline_station_is_an_error_message(agent):
    station("fora072", False, "Available")
    response = agent.post(reverse("admin:stations_station_operate", args=["fora072", "reset"]), {"type": "Soft"},
                          follow=True)
    text = response.content.decode()
    assert "Reset on fora072 failed: Station fora072 is offline (409)" in text
    response = agent.post(reverse("admin:stations_station_operate", args=["fora072", "reset"]), {"type": "Warm"},
                          follow=True)
    assert "Select a valid choice" in response.content.decode()


def test_station_password_is_shown_once(root):
    station("fora072", False)
    response = root.post(reverse("admin:stations_station_password", args=["fora072"]), {"password": ""})
    password = shown_once(root, response)
    stored = Station.objects.get(pk="fora072").password_hash
    assert services.check_station_password(password, stored) and password not in stored
    assert password not in root.get(reverse("admin:stations_station_change", args=["fora072"])).content.decode()
    short = root.post(reverse("admin:stations_station_password", args=["fora072"]), {"password": "short"},
                      follow=True)
    assert "at least 16 characters" in short.content.decode()
    assert Event.objects.filter(kind="station.password.set", actor="user:root").count() == 1


# --- Transactions ------------------------------------------------------------------------

def test_transaction_list_filters_search_and_csv(agent):
    row = station("fora072", True, "Charging", "Available")
    other = station("fora073", True, "Available")
    done = finished_tx(row, tx_id_tag="RFID-A")
    finished_tx(other, tx_id_tag="RFID-B")
    active = Transaction.objects.create(station=row, connector=row.connectors.get(number=1), id_tag="RFID-C",
                                        meter_start=5000, started_at=timezone.now() - dt.timedelta(minutes=3))
    MeterSample.objects.create(station=row, connector_number=1, transaction=active, timestamp=timezone.now(),
                               energy_wh=7250, power_w=11000)
    url = reverse("admin:stations_transaction_changelist")
    listing = agent.get(url + "?station=fora072").content.decode()
    assert "RFID-A" in listing and "RFID-C" in listing and "RFID-B" not in listing
    assert "2.25 so far" in listing  # live energy of the active one
    assert "RFID-A" not in agent.get(url + "?state=active").content.decode()
    assert "RFID-A" in agent.get(url + f"?q={done.pk}").content.decode()
    assert "RFID-B" in agent.get(url + "?q=RFID-B").content.decode()
    export = agent.get(reverse("admin:stations_transaction_export") + "?station=fora072&state=completed")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [r["idTag"] for r in rows] == ["RFID-A"]
    assert rows[0]["energy_kwh"] == "15.500" and rows[0]["cost"] == "1.55" and rows[0]["currency"] == "EUR"
    assert rows[0]["started_by"] == "charger (local)" and rows[0]["duration_s"] == "1800"


def test_transaction_page_has_chart_and_samples(agent):
    row = station("fora072", True, "Charging")
    tx = finished_tx(row, energy_wh=3000)
    for i in range(4):
        MeterSample.objects.create(station=row, connector_number=1, transaction=tx,
                                   timestamp=tx.started_at + dt.timedelta(minutes=i * 10),
                                   energy_wh=1000 + i * 1000, power_w=6000 + i * 100)
    page = agent.get(reverse("admin:stations_transaction_change", args=[tx.pk])).content.decode()
    assert '<svg' in page and 'class="series-power"' in page and 'class="series-energy"' in page
    assert "4 samples" in page and "6.30" in page  # power in kW in the table
    assert "Completed" in page and "3.00" in page


def _ticks(page: str, name: str) -> list[str]:
    return re.findall(rf'<text class="tick-{name}"[^>]*>([^<]+)</text>', page)


def test_a_five_second_session_reads_in_one_unit_with_round_ticks(agent):
    """Registers in kWh like the samples; the chart spans the session from its start, on round ticks."""
    row = station("fora072", True, "Charging")
    start = timezone.now().replace(microsecond=400000) - dt.timedelta(minutes=5)
    connector = row.connectors.get(number=1)
    tx = Transaction.objects.create(station=row, connector=connector, id_tag="RFID-1", meter_start=2899062,
                                    started_at=start)
    for i, (energy, power) in enumerate([(2899062, 24900), (2899080, 25000), (2899093, 24800)], start=3):
        MeterSample.objects.create(station=row, connector_number=1, transaction=tx, energy_wh=energy, power_w=power,
                                   timestamp=start + dt.timedelta(seconds=i * 0.6))
    Transaction.objects.filter(pk=tx.pk).update(stopped_at=start + dt.timedelta(seconds=5), meter_stop=2899093,
                                                energy_wh=31)
    page = agent.get(reverse("admin:stations_transaction_change", args=[tx.pk])).content.decode()
    assert "Meter start, kWh" in page and "2899.062" in page and "2899.093" in page  # one unit: kWh
    assert re.search(r'Cost:</label>\s*<div class="readonly">not priced', page), "an empty Cost row"
    times = _ticks(page, "time")
    assert len(times) >= 4 and len(set(times)) == len(times), times  # the axis fits 5 s: distinct labels
    for name in ("power", "energy"):
        values = [float(v) for v in _ticks(page, name)]
        steps = {round(b - a, 9) for a, b in zip(values, values[1:])}
        assert len(steps) == 1, values
        step = steps.pop()
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in (1, 2, 5), (name, values)  # 0/10/20/30, not 6.2/12.5/18.8
    energy = re.search(r'class="series-energy" points="([^"]+)"', page).group(1).split()
    assert energy[0].startswith(f"{charts.LEFT}.0,"), energy  # from the transaction's start, at 0 kWh
    power = [float(p.split(",")[0]) for p in re.search(r'class="series-power" points="([^"]+)"', page).group(1).split()]
    assert power[-1] - power[0] > 100, power  # 1.2 s of samples in a 5 s session: not one vertical line


def test_dashboard_counts_and_fragment(agent):
    row = station("fora072", True, "Charging", "Available")
    station("fora073", False, "Available")
    finished_tx(row, energy_wh=2500, started_at=selectors.start_of_today() + dt.timedelta(minutes=1), minutes=1)
    summary = selectors.network_summary()
    assert summary["stations_online"] == 1 and summary["stations_offline"] == 1
    assert dict(summary["connectors"]) == {"Charging": 1, "Available": 1} and summary["connectors_offline"] == 1
    assert summary["energy_today_kwh"] == 2.5
    index = agent.get(reverse("admin:index")).content.decode()
    assert "1 online" in index and "2.50 kWh" in index
    fragment = agent.get(reverse("admin:dashboard")).content.decode()
    assert "1 offline" in fragment and "<html" not in fragment


def test_tariff_default_moves(root):
    first = Tariff.objects.create(name="Base", price_per_kwh="0.30", is_default=True)
    root.post(reverse("admin:stations_tariff_add"), {"name": "Night", "price_per_kwh": "0.20", "currency": "EUR",
                                                     "price_per_minute": "0", "session_fee": "0", "is_default": "on"})
    assert Tariff.objects.get(is_default=True).name == "Night"
    root.post(reverse("admin:stations_tariff_changelist"), {"action": "make_default", "_selected_action": [first.pk]})
    assert Tariff.objects.get(is_default=True).name == "Base"


def test_events_are_read_only_and_filterable(agent):
    services.record_command("station.command", "fora072", {"action": "Reset"}, actor="user:agent")
    services.record_command("remote.start.result", "fora073", {"status": "Accepted"}, actor="apikey:1")
    url = reverse("admin:csms_event_changelist")
    assert "fora073" not in agent.get(url + "?station=fora072").content.decode()
    assert "fora072" not in agent.get(url + "?kind=remote.start.result").content.decode()
    event = Event.objects.get(kind="station.command")
    assert agent.post(reverse("admin:csms_event_change", args=[event.pk]), {}).status_code == 403
    assert agent.post(reverse("admin:csms_event_delete", args=[event.pk]), {"post": "yes"}).status_code == 403


def test_the_event_log_reads_one_line_per_event_by_name(agent, django_assert_max_num_queries):
    key, _ = mobile_services.create_api_key("Partner app", ["write:charging"])
    for number in range(1, 21):
        services.record_command("remote.start.result", "fora072", {"stationId": "fora072", "connectorId": number,
                                                                   "status": "Accepted"}, actor=f"apikey:{key.pk}")
    with django_assert_max_num_queries(12):  # the key's name once per page, not once per row
        page = agent.get(reverse("admin:csms_event_changelist")).content.decode()
    assert page.count(">API key Partner app<") == 20
    assert "Remote start of connector 20: the charger answered Accepted" in page and '{"stationId"' not in page


def test_server_processes_show_who_is_alive(agent, settings):
    now = timezone.now()
    ServerProcess.objects.create(channel_prefix="specific.a!", server="host-a:101", started_at=now, seen_at=now,
                                 chargers=1200)
    ServerProcess.objects.create(channel_prefix="specific.b!", server="host-b:202", started_at=now,
                                 seen_at=now - dt.timedelta(seconds=settings.OCPP_PROCESS_TIMEOUT + 5), chargers=900)
    page = agent.get(reverse("admin:stations_serverprocess_changelist")).content.decode()
    rows = re.findall(r"<tr>.*?</tr>", page, re.S)
    alive = {name: "icon-yes" in row for row in rows for name in ("host-a:101", "host-b:202") if name in row}
    assert alive == {"host-a:101": True, "host-b:202": False}
    assert "1200" in page


# --- Charger actions against a live charger ---------------------------------------------------

class ServerLikeAsyncClient(AsyncClient):
    """AsyncClient, with each request in a ThreadSensitiveContext as Django's ASGIHandler does.

    Without it a sync admin view runs in the process-wide ORM thread and blocks it
    while it waits for the charger's answer; the consumer's service calls (a
    MeterValues arriving just before the answer) then wait for that thread, and
    the answer, queued behind them, is read only after the command timed out. Under
    a real server each request has a thread of its own (tests/test_admin.py
    ::test_a_charger_busy_with_meter_values_answers_the_admin_at_once).
    """

    async def request(self, **request):
        async with ThreadSensitiveContext():
            return await super().request(**request)


@pytest.fixture
async def async_agent(transactional_db) -> AsyncClient:
    client = ServerLikeAsyncClient()
    user = await sync_to_async(make_support)()
    await client.aforce_login(user)
    return client


async def post(client: AsyncClient, station_id: str, operation: str, data: dict) -> str:
    url = reverse("admin:stations_station_operate", args=[station_id, operation])
    response = await client.post(url, data)
    assert response.status_code == 302
    page = await client.get(response["Location"])
    return page.content.decode()


async def test_remote_start_and_stop_from_the_station_page(charger_factory, async_agent):
    await charger_factory("fora072", connectors=2)
    page = await post(async_agent, "fora072", "remote_start", {"connector": "1", "id_tag": "SUPPORT-1"})
    assert "the charger answered Accepted" in page

    async def started():
        return await Transaction.objects.filter(station_id="fora072", stopped_at__isnull=True).afirst()

    tx = await eventually(started)
    assert tx.started_by_user_id is not None
    result = await Event.objects.filter(kind="remote.start.result").aget()
    assert result.actor == "user:agent" and result.data["status"] == "Accepted"
    page = await post(async_agent, "fora072", "remote_stop", {"transaction": str(tx.pk)})
    assert f"RemoteStopTransaction of transaction {tx.pk}: the charger answered Accepted" in page

    async def stopped():
        return await Transaction.objects.filter(pk=tx.pk, stopped_at__isnull=False).aexists()

    await eventually(stopped)
    listing = (await async_agent.get(reverse("admin:stations_transaction_changelist"))).content.decode()
    assert "staff: agent" in listing


async def test_a_session_stopped_from_the_admin_is_attributed_to_who_stopped_it(charger_factory, async_agent):
    """An app's key started it, staff stopped it: transaction.stopped names the staff member."""
    from stations import commands

    await charger_factory("fora072", connectors=2)
    key, _ = await sync_to_async(mobile_services.create_api_key)("Partner app", ["write:charging"])
    status = await commands.remote_start("fora072", 1, "APP-1", requested_by=Actor.api_key(key.pk, key.name),
                                          actor=f"apikey:{key.pk}")
    assert status == "Accepted"

    async def started():
        return await Transaction.objects.filter(station_id="fora072", stopped_at__isnull=True).afirst()

    tx = await eventually(started)
    assert (await Event.objects.filter(kind="transaction.started").aget()).actor == f"apikey:{key.pk}"
    page = await post(async_agent, "fora072", "remote_stop", {"transaction": str(tx.pk)})
    assert "the charger answered Accepted" in page

    async def stopped_event():
        return await Event.objects.filter(kind="transaction.stopped").afirst()

    stopped = await eventually(stopped_event)
    assert stopped.data["reason"] == "Remote" and stopped.actor == "user:agent", stopped.actor
    # The station page names who did what: the key by its name, the staff member by theirs.
    page = (await async_agent.get(reverse("admin:stations_station_change", args=["fora072"]))).content.decode()
    assert re.search(r"Transaction #\d+ started on connector 1, idTag APP-1</td><td[^>]*>API key Partner app<", page)
    assert re.search(r"Transaction #\d+ stopped \(Remote\): [0-9.]+ kWh</td><td[^>]*>staff agent<", page)
    assert f"apikey:{key.pk}</td>" not in page


class BrowserSession:
    """A staff member's browser against the live server: cookies, CSRF, redirects (urllib)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def open(self, path: str, data: dict | None = None) -> str:
        body = None
        if data is not None:
            token = next(c.value for c in self.jar if c.name == "csrftoken")
            body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(self.base + path, data=body, headers={"Referer": self.base + path})
        with self.opener.open(request, timeout=30) as response:
            return response.read().decode()

    def login(self, username: str) -> None:
        self.open(reverse("admin:login"))
        self.open(reverse("admin:login"), {"username": username, "password": PASSWORD, "next": "/admin/"})


async def test_a_charger_busy_with_meter_values_answers_the_admin_at_once(server, charger_factory):
    """Through the real ASGI handler a sync admin view waits for the charger in a thread of its
    own, never in the ORM thread the charger's own messages need: a charger sending MeterValues
    every 2 ms still answers RemoteStop at once (in the ORM thread, it took the 5 s timeout)."""
    await sync_to_async(make_support)()
    await charger_factory("fora072", connectors=1, meter_interval=0.002)
    browser = BrowserSession(server.replace("ws://", "http://"))
    await asyncio.to_thread(browser.login, "agent")
    operate = reverse("admin:stations_station_operate", args=["fora072", "remote_start"])
    page = await asyncio.to_thread(browser.open, operate, {"connector": "1", "id_tag": "BUSY-1"})
    assert "the charger answered Accepted" in page

    async def started():
        return await Transaction.objects.filter(station_id="fora072", stopped_at__isnull=True).afirst()

    tx = await eventually(started)
    await asyncio.sleep(0.3)  # MeterValues flowing
    operate = reverse("admin:stations_station_operate", args=["fora072", "remote_stop"])
    began = time.monotonic()
    page = await asyncio.to_thread(browser.open, operate, {"transaction": str(tx.pk)})
    assert "the charger answered Accepted" in page
    assert time.monotonic() - began < 2


async def test_every_command_is_answered_and_logged(charger_factory, async_agent):
    await charger_factory("fora072", connectors=2)
    cases = [
        ("unlock", {"connector": "2"}, "UnlockConnector: the charger answered Unlocked"),
        ("availability", {"connector": "0", "type": "Inoperative"}, "ChangeAvailability: the charger answered"),
        ("trigger_status", {"connector": ""}, "TriggerMessage: the charger answered Accepted"),
        ("change_configuration", {"key": "HeartbeatInterval", "value": "120"},
         "ChangeConfiguration: the charger answered Accepted"),
    ]
    for operation, data, expected in cases:
        page = await post(async_agent, "fora072", operation, data)
        assert expected in page, (operation, re.findall(r'<li class="[a-z]+">([^<]+)</li>', page))
    config = await async_agent.post(reverse("admin:stations_station_configuration", args=["fora072"]))
    text = config.content.decode()
    assert config.status_code == 200 and '<table id="configuration">' in text
    assert re.search(r"<code>HeartbeatInterval</code></td>\s*<td>120</td>", text)
    # Reset last: the simulated charger then reboots (stops, boots again).
    assert "Reset: the charger answered Accepted" in await post(async_agent, "fora072", "reset", {"type": "Soft"})
    logged = [e async for e in Event.objects.filter(kind="station.command").order_by("seq")]
    assert [e.data["action"] for e in logged] == [
        "UnlockConnector", "ChangeAvailability", "TriggerMessage", "ChangeConfiguration", "GetConfiguration", "Reset"]
    assert {e.actor for e in logged} == {"user:agent"} and all(e.data["outcome"] == "ok" for e in logged)
    assert logged[4].data["answer"] == {"keys": len(re.findall("<code>", text))}


async def test_command_timeout_is_an_error_message(charger_factory, async_agent, settings):
    from tests.test_commands import SilentOnReset

    settings.OCPP_COMMAND_TIMEOUT = 1
    await charger_factory("fora072", connectors=1, cls=SilentOnReset)
    page = await post(async_agent, "fora072", "reset", {"type": "Hard"})
    assert "Reset on fora072 failed: Reset timeout: station fora072 did not answer in 1 s (504)" in page
    logged = await Event.objects.filter(kind="station.command").aget()
    assert logged.data["outcome"] == "timeout" and logged.actor == "user:agent"


# --- Mobile sessions ---------------------------------------------------------------------------

async def test_mobile_sessions_are_recorded_and_can_be_ended(mobile):
    await Station.objects.acreate(pk="fora072")
    client = await mobile("/ws", "full")
    bystander = await mobile("/mobile-client", "other")
    await client.result("subscribe", {"stationId": "fora072", "events": ["connector.*"]})

    async def recorded():
        return await MobileSession.objects.filter(session_id__startswith="sess-").exclude(subscriptions=[]).afirst()

    row = await eventually(recorded)
    assert row.endpoint == "/ws" and row.api_key_id is not None and row.ended_at is None
    assert row.subscriptions[0]["stationId"] == "fora072" and row.subscriptions[0]["events"] == ["connector.*"]
    assert await sync_to_async(mobile_services.request_session_end)([row.pk], actor="user:agent") == 1
    expired = await client.event("session.expired", timeout=5)
    assert client.field(expired, "reason") == "ended"
    assert await closed_code(client) == 4004

    async def marked():
        return await MobileSession.objects.filter(pk=row.pk, ended_at__isnull=False).afirst()

    assert (await eventually(marked)).end_reason == "ended by operator"
    assert await bystander.result("ping", {})  # the other session is untouched
    assert await MobileSession.objects.filter(ended_at__isnull=True).acount() == 1


def test_mobile_session_admin_filters_and_end_permission(agent):
    key, _ = mobile_services.create_api_key("App", ["read:stations"])
    now = timezone.now()
    live = MobileSession.objects.create(connection_id="a" * 32, endpoint="/ws", api_key=key, session_id="sess-1",
                                        server="h:1", connected_at=now - dt.timedelta(hours=1), seen_at=now)
    MobileSession.objects.create(connection_id="b" * 32, endpoint="/mobile-client", api_key=key,
                                 session_id="sess-2", server="h:1", connected_at=now - dt.timedelta(hours=5),
                                 ended_at=now - dt.timedelta(hours=4), end_reason="idle", seen_at=now)
    url = reverse("admin:mobileapi_mobilesession_changelist")
    assert "sess-2" not in agent.get(url + "?state=live").content.decode()
    at = timezone.localtime(now - dt.timedelta(hours=4, minutes=30)).strftime("%Y-%m-%d %H:%M")
    page = agent.get(url, {"at": at}).content.decode()
    assert "sess-2" in page and "sess-1" not in page
    agent.post(url, {"action": "end_sessions", "_selected_action": [live.pk]})
    live.refresh_from_db()
    assert live.end_requested_by == "user:agent"
