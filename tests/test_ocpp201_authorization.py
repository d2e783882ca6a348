"""OCPP 2.0.1 block C (Authorization): Authorize with idToken and type, idTokenInfo, group ids, the
unknown-token policy; tokens provisioned as an operator does (`manage.py idtag add`). Named after the OCTT
2.0.1 CSMS test cases (TC_C_02_CSMS ...)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)


def provision(token: str, **options: str) -> None:
    call_command("idtag", "add", token, **options)


@pytest.fixture
async def tokens(transactional_db):
    from asgiref.sync import sync_to_async

    expiry = (timezone.now() - dt.timedelta(days=1)).isoformat()
    for token, options in [
        ("TOK-ACCEPTED", {"type": "Central", "group": "FLEET-1"}),
        ("TOK-FLEETMATE", {"type": "Central", "group": "FLEET-1"}),
        ("TOK-BLOCKED", {"type": "Central", "status": "Blocked"}),
        ("TOK-EXPIRED", {"type": "Central", "expiry": expiry}),
        ("TOK-INVALID", {"type": "Central", "status": "Invalid"}),
        ("04A2B3C4D5E6F7", {"type": "ISO14443"}),
    ]:
        await sync_to_async(provision)(token, **options)


async def test_tc_c_01_accepted_token_with_its_group(station201, tokens):
    cp = await station201()
    info = (await cp.authorize("TOK-ACCEPTED", "Central")).id_token_info
    assert info == {"status": "Accepted", "group_id_token": {"id_token": "FLEET-1", "type": "Central"}}


async def test_group_members_share_the_group_id(station201, tokens):
    # C: a token of the same group may stop a transaction: the station compares the groupIdToken.
    cp = await station201()
    first = (await cp.authorize("TOK-ACCEPTED")).id_token_info["group_id_token"]
    second = (await cp.authorize("TOK-FLEETMATE")).id_token_info["group_id_token"]
    assert first == second == {"id_token": "FLEET-1", "type": "Central"}


async def test_tc_c_02_invalid_and_unknown_tokens(station201, tokens, settings):
    cp = await station201()
    assert (await cp.authorize("TOK-INVALID")).id_token_info == {"status": "Invalid"}
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = False
    assert (await cp.authorize("NOBODY")).id_token_info["status"] in ("Invalid", "Unknown")
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = True  # the same setting as for 1.6
    assert (await cp.authorize("NOBODY")).id_token_info["status"] == "Accepted"


async def test_tc_c_06_blocked_token(station201, tokens):
    cp = await station201()
    assert (await cp.authorize("TOK-BLOCKED")).id_token_info["status"] == "Blocked"


async def test_tc_c_07_expired_token(station201, tokens):
    cp = await station201()
    info = (await cp.authorize("TOK-EXPIRED")).id_token_info
    assert info["status"] == "Expired"
    assert dt.datetime.fromisoformat(info["cache_expiry_date_time"]) < timezone.now()


async def test_a_token_is_its_value_and_its_type(station201, tokens, settings):
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = False
    cp = await station201()
    assert (await cp.authorize("04A2B3C4D5E6F7", "ISO14443")).id_token_info["status"] == "Accepted"
    # The same characters as a key code are another token: not provisioned.
    assert (await cp.authorize("04A2B3C4D5E6F7", "KeyCode")).id_token_info["status"] == "Invalid"
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = True  # not "unknown": a Blocked card re-sent as a key code stays refused
    assert (await cp.authorize("04A2B3C4D5E6F7", "KeyCode")).id_token_info["status"] == "Invalid"
    assert (await cp.authorize("TOK-BLOCKED", "KeyCode")).id_token_info["status"] == "Invalid"


async def test_no_authorization_type_needs_none(station201, settings):
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = False
    cp = await station201()
    assert (await cp.authorize("", "NoAuthorization")).id_token_info["status"] == "Accepted"


async def test_a_36_character_token_fits_2_0_1(station201, settings):
    settings.OCPP_ACCEPT_UNKNOWN_IDTAGS = False
    from asgiref.sync import sync_to_async

    token = "E" * 36
    await sync_to_async(provision)(token, type="eMAID")
    cp = await station201()
    assert (await cp.authorize(token, "eMAID")).id_token_info["status"] == "Accepted"
