"""Session lifetime: expiry, idle close, key deactivation."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from csms.events import call_service
from mobileapi import services
from mobileapi.models import ApiKey

pytestmark = pytest.mark.django_db(transaction=True)


async def closed_code(client, timeout: float = 5) -> int:
    await asyncio.wait_for(client.ws.wait_closed(), timeout)
    return client.ws.close_code


@pytest.mark.parametrize("path", ["/ws", "/mobile-client"])
async def test_session_expires_then_auth_again(mobile, keys, settings, path):
    settings.MOBILE_SESSION_TTL = 1
    client = await mobile(path)
    expired = await client.event("session.expired", timeout=5)
    assert expired["eventId"].startswith("evt-") and isinstance(expired["ts"], int)
    assert client.field(expired, "reason") == "expired"
    reply = await client.request("getStations")
    assert reply["error"]["code"] == 401
    settings.MOBILE_SESSION_TTL = 3600
    assert (await client.result("auth", {"apiKey": keys["full"]}))["status"] == "ok"
    assert isinstance(await client.result("getStations"), list)


async def test_idle_connection_is_closed(mobile, settings):
    settings.MOBILE_IDLE_TIMEOUT = 1
    client = await mobile("/ws")
    began = time.monotonic()
    assert await closed_code(client) == 4002
    assert 1 <= time.monotonic() - began < 3


async def test_pings_keep_a_connection_alive(mobile, settings):
    settings.MOBILE_IDLE_TIMEOUT = 1
    client = await mobile("/ws")
    for _ in range(6):
        await asyncio.sleep(0.4)
        assert (await client.result("ping"))["pong"] is True
    assert client.ws.close_code is None


async def test_deactivating_a_key_ends_its_live_sessions_within_seconds(mobile):
    kicked = [await mobile("/ws"), await mobile("/mobile-client")]
    bystander = await mobile("/ws", "other")
    key = await ApiKey.objects.aget(name="App")
    began = time.monotonic()
    await call_service(services.set_key_active, key.pk, False)
    for client in kicked:
        expired = await client.event("session.expired", timeout=5)
        assert client.field(expired, "reason") == "revoked"
        assert await closed_code(client) == 4003
    assert time.monotonic() - began < 5
    assert (await bystander.result("ping"))["pong"] is True


async def test_deleting_a_key_ends_its_sessions(mobile):
    client = await mobile("/mobile-client")
    await ApiKey.objects.filter(name="App").adelete()
    assert client.field(await client.event("session.expired"), "reason") == "revoked"
    with pytest.raises(websockets.ConnectionClosed):
        await client.result("ping")
