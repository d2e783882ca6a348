"""The admin's HTML comes from templates: what a charger or an app sends is escaped on every page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from csms.models import Event
from mobileapi.models import MobileSession
from stations.models import Connector, MeterSample, Station, Transaction
from tests.admin_support import make_superuser

pytestmark = pytest.mark.django_db(transaction=True)

MARKUP = '<img src=x onerror="alert(1)">'
ESCAPED = "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(make_superuser())
    return client


def test_a_samples_context_is_escaped_and_the_chart_drawn(root: Client) -> None:
    station = Station.objects.create(pk="fora072", name=MARKUP)
    connector = Connector.objects.create(station=station, number=1, status="Charging")
    start = timezone.now() - dt.timedelta(minutes=20)
    tx = Transaction.objects.create(station=station, connector=connector, id_tag="RFID-1", meter_start=0,
                                    started_at=start)
    for i in range(3):
        MeterSample.objects.create(station=station, connector_number=1, transaction=tx, context=MARKUP,
                                   timestamp=start + dt.timedelta(minutes=5 * i), energy_wh=500 * i, power_w=7000)
    page = root.get(reverse("admin:stations_transaction_change", args=[tx.pk])).content.decode()
    assert MARKUP not in page and page.count(ESCAPED) >= 3
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="tx-chart"' in page and "3 samples" in page


def test_an_event_payload_and_a_sessions_subscriptions_are_escaped(root: Client) -> None:
    event = Event.objects.create(seq=1, kind="station.connected", station_id="fora072",
                                 created_at=timezone.now(), data={"note": MARKUP}, actor=f"user:{MARKUP}")
    page = root.get(reverse("admin:csms_event_change", args=[event.pk])).content.decode()
    assert MARKUP not in page and ESCAPED in page and "<pre>" in page
    assert MARKUP not in root.get(reverse("admin:csms_event_changelist")).content.decode()
    now = timezone.now()
    session = MobileSession.objects.create(
        connection_id="a" * 32, endpoint="/ws", server="h:1", connected_at=now, seen_at=now,
        subscriptions=[{"id": "s1", "stationId": MARKUP, "events": ["meter.update"]}])
    page = root.get(reverse("admin:mobileapi_mobilesession_change", args=[session.pk])).content.decode()
    assert MARKUP not in page and f"<li><code>s1</code> {ESCAPED}: meter.update</li>" in page
