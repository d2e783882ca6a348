"""Tokens up to 36 characters (2.0.1's idToken) in the domain; a 1.6 charger is never sent more than its 20."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from django.utils import timezone

from csms.models import Event
from mobileapi.client import MobileClient
from stations import commands, rules, services
from stations.errors import InvalidValue
from stations.models import IdTag, RemoteStartRequest, Station, Transaction
from stations.ocpp.v16.authorization import id_tag_info
from tests.conftest import http_json

TOKEN_36 = "E" * 36  # an eMAID-length idToken, as a 2.0.1 charger may send it
TOKEN_30 = "A" * 30
REFUSED = "idTag must be at most 20 characters for an OCPP 1.6 station"


def test_a_1_6_charger_is_told_no_group_longer_than_its_parent_id_tag() -> None:
    def info(group: str) -> dict[str, Any]:
        return id_tag_info(rules.authorization(rules.TagRecord("Accepted", None, group), accept_unknown=False,
                                               now=dt.datetime.now(dt.UTC)))

    assert info("G" * 20) == {"status": "Accepted", "parentIdTag": "G" * 20}
    assert info("G" * 21) == {"status": "Accepted"}  # left out, not cut short into another group's id


@pytest.mark.django_db
def test_the_domain_keeps_a_36_character_token() -> None:
    Station.objects.create(pk="fora072", registration_status="Accepted")
    services.station_connected("fora072", "p1!fora072")
    for number in (1, 2):
        services.update_connector_status("fora072", number, "Available")
    assert services.provision_token(TOKEN_36, group=TOKEN_36).created
    transaction_id, authorization = services.start_transaction("fora072", 1, TOKEN_36, 0,
                                                               timezone.now().isoformat())
    assert authorization["status"] == "Accepted" and authorization["group_id"] == TOKEN_36
    assert Transaction.objects.get(pk=transaction_id).id_tag == TOKEN_36
    assert IdTag.objects.get().id_tag == TOKEN_36
    services.prepare_remote_start("fora072", 2, TOKEN_36)
    assert RemoteStartRequest.objects.get().id_tag == TOKEN_36


@pytest.mark.django_db(transaction=True)
async def test_a_1_6_station_is_sent_no_token_longer_than_20(
    server: str, keys: dict[str, str], charger_factory: Callable[..., Awaitable[Any]],
    mobile: Callable[..., Awaitable[MobileClient]],
) -> None:
    await charger_factory("fora072", connectors=2)
    for path in ("/ws", "/mobile-client"):
        client = await mobile(path)
        reply = await client.request("startCharging", {"stationId": "fora072", "connectorId": 1, "idTag": TOKEN_30})
        assert reply["error"] == {"code": 400, "message": REFUSED}, path
    status, body = await http_json(server, "POST", "/api/stations/fora072/connectors/1/start", keys["full"],
                                   {"idTag": TOKEN_30})
    assert (status, body["error"]["message"]) == (400, REFUSED)
    status, body = await http_json(server, "POST", "/api/stations/fora072/commands/remote_start", keys["full"],
                                   {"connector": 1, "idTag": TOKEN_30})
    assert (status, body["error"]["message"]) == (400, REFUSED)
    with pytest.raises(InvalidValue, match=REFUSED):
        await commands.remote_start("fora072", 1, TOKEN_30)
    # Refused before anything was remembered or sent: the connector is free for the next start.
    assert not await RemoteStartRequest.objects.aexists()
    assert not await Event.objects.filter(kind="remote.start.result").aexists()
    assert await commands.remote_start("fora072", 1, "A" * 20) == "Accepted"
