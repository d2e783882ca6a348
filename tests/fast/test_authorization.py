"""services.authorization: may a token charge (its row, or the unknown-token policy), in no OCPP
version's words; and tokens as an operator provisions them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from stations import services
from stations.errors import InvalidValue
from stations.models import IdTag

pytestmark = pytest.mark.django_db


def test_an_unknown_token_is_decided_by_the_policy(settings: Settings) -> None:
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = True
    assert services.authorize("NOBODY") == {"status": "Accepted", "expires_at": None, "group_id": None}
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = False
    assert services.authorize("NOBODY") == {"status": "Invalid", "expires_at": None, "group_id": None}


def test_a_known_token_answers_its_status_expiry_and_group(settings: Settings) -> None:
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = False
    expiry = timezone.now() + dt.timedelta(days=30)
    IdTag.objects.create(id_tag="CARD-1", expiry_date=expiry, group_id="FLEET-1")
    IdTag.objects.create(id_tag="CARD-2", status="Blocked")
    assert services.authorize("CARD-1") == {"status": "Accepted", "expires_at": expiry, "group_id": "FLEET-1"}
    assert services.authorize("CARD-2") == {"status": "Blocked", "expires_at": None, "group_id": None}


def test_an_accepted_token_past_its_expiry_is_expired() -> None:
    past = timezone.now() - dt.timedelta(seconds=1)
    IdTag.objects.create(id_tag="OLD-1", expiry_date=past)
    IdTag.objects.create(id_tag="OLD-2", expiry_date=past, status="Blocked")
    assert services.authorize("OLD-1")["status"] == "Expired"
    assert services.authorize("OLD-2")["status"] == "Blocked"  # blocked says more than expired


# --- Tokens as an operator provisions them --------------------------------------------------------------

def test_provision_token_creates_with_defaults_then_changes_only_what_is_given() -> None:
    created = services.provision_token("CARD-1")
    assert (created.created, created.changes) == (True, ("type ISO14443", "status Accepted"))
    assert services.provision_token("CARD-1").changed is False
    updated = services.provision_token("CARD-1", type="Central", group="FLEET-1", expiry="2027-01-31T12:00:00+02:00")
    assert updated.changes == ("type ISO14443 -> Central", "group '' -> FLEET-1",
                               "expiry none -> 2027-01-31T10:00:00.000Z")
    token = IdTag.objects.get(id_tag="CARD-1")
    assert (token.type, token.status, token.group_id) == ("Central", "Accepted", "FLEET-1")
    assert services.provision_token("CARD-1", status="Accepted", expiry="2027-01-31T10:00:00Z").changed is False
    assert services.provision_token("CARD-1", group="", expiry="").changes == (
        "group FLEET-1 -> ''", "expiry 2027-01-31T10:00:00.000Z -> none")
    assert services.authorize("CARD-1") == {"status": "Accepted", "expires_at": None, "group_id": None}


def test_a_naive_or_date_only_expiry_is_utc() -> None:
    services.provision_token("CARD-1", expiry="2027-01-31")
    assert IdTag.objects.get().expiry_date == dt.datetime(2027, 1, 31, tzinfo=dt.UTC)


@pytest.mark.parametrize(("fields", "message"), [
    ({"value": ""}, "token '' must be printable ASCII characters, without spaces around them"),
    ({"value": "CARD 1 "}, "token 'CARD 1 ' must be printable ASCII characters, without spaces around them"),
    ({"value": "CÄRD"}, "token 'CÄRD' must be printable ASCII characters, without spaces around them"),
    ({"value": "T" * 37}, f"token {'T' * 37!r} is longer than 36 characters"),
    ({"value": "T1", "type": "RFID"}, "type 'RFID' is not one of ISO14443, ISO15693, eMAID, Central, KeyCode, Local, "
                                      "MacAddress, NoAuthorization"),
    ({"value": "T1", "status": "ConcurrentTx"}, "status 'ConcurrentTx' is not one of Accepted, Blocked, Expired, "
                                                "Invalid"),
    ({"value": "T1", "expiry": "31/01/2027"}, "expiry '31/01/2027' is not an ISO 8601 date or time, "
                                              "e.g. 2027-01-31T00:00:00Z"),
    ({"value": "T1", "group": "G\n"}, "group 'G\\n' must be printable ASCII characters, without spaces around them"),
])
def test_provision_token_refuses_what_no_charger_could_send(fields: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        services.provision_token(**fields)
    assert str(refused.value) == message
    assert not IdTag.objects.exists()


def test_remove_token_says_whether_there_was_one() -> None:
    services.provision_token("CARD-1")
    assert services.remove_token("CARD-1") is True
    assert services.remove_token("CARD-1") is False
