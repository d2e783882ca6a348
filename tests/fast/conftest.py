"""The fast tier: the services called directly, inside each test's own database transaction.

No server, no socket, no channel layer: a test calls ``stations.services`` as the
adapters, the mobile API and the admin do, then reads the rows and the events the
call wrote. Events are only pushed after a commit, which never comes here, so what a
test checks is the outbox itself (round-tripped through JSON, as a push would be).
What is about sockets, handshakes and processes stays in the socket tests (tests/*.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from csms.models import Event
from stations import services
from stations.models import Station


@pytest.fixture
def station(db: None) -> Station:
    """fora072: known, accepted and online on a channel of process ``p1!``, with connectors 1 and 2 Available."""
    station = Station.objects.create(pk="fora072", registration_status="Accepted")
    services.station_connected("fora072", "p1!fora072")
    for number in (1, 2):
        services.update_connector_status("fora072", number, "Available")
    station.refresh_from_db()
    return station


def events(kind: str | None = None, station_id: str | None = None) -> list[dict[str, Any]]:
    """The payloads of the events written so far (of ``kind``), oldest first, as a push would carry them."""
    query = Event.objects.order_by("seq")
    if kind is not None:
        query = query.filter(kind=kind)
    if station_id is not None:
        query = query.filter(station_id=station_id)
    return [json.loads(json.dumps(data)) for data in query.values_list("data", flat=True)]


def many(service: Callable[..., Any]) -> Callable[[list[tuple[tuple, dict]]], list[tuple[bool, Any]] | None]:
    """A service's batched form, as csms.groupcommit calls it: (args, kwargs) per call, (ok, result) per call."""
    return service.many  # type: ignore[attr-defined]


def kinds() -> list[str]:
    return list(Event.objects.order_by("seq").values_list("kind", flat=True))


def ago(seconds: float) -> str:
    """A charger's timestamp ``seconds`` before now (ISO 8601, UTC)."""
    return (timezone.now() - dt.timedelta(seconds=seconds)).isoformat()
