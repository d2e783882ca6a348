"""/metrics shows live values while chargers and apps are connected."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stations import commands
from stations.models import Station
from tests.test_commands import SilentOnReset

pytestmark = pytest.mark.django_db(transaction=True)


async def scrape(server: str, token: str | None = None) -> dict[tuple[str, tuple], float]:
    request = urllib.request.Request(server.replace("ws://", "http://") + "/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=5).read().decode())
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(figures: dict, name: str, **labels: str) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_follow_chargers_apps_and_commands(charger_factory, mobile, server, settings):
    settings.OCPP_COMMAND_TIMEOUT = 1
    before = await scrape(server)
    await charger_factory("fora072", connectors=2)
    await charger_factory("fora073", connectors=1, cls=SilentOnReset)
    app = await mobile("/ws")
    await app.result("subscribe", {"events": ["all"]})
    assert await commands.remote_start("fora072", 1, "TAG-1") == "Accepted"
    await app.event("transaction.started")
    with pytest.raises(commands.CommandTimeout):
        await commands.send_command("fora073", "Reset", {"type": "Soft"})
    await Station.objects.acreate(pk="fora074")  # known, never connected
    with pytest.raises(commands.StationOffline):
        await commands.send_command("fora074", "Reset", {"type": "Soft"})
    await asyncio.sleep(0.5)  # the session watcher's round (0.2 s in tests)
    after = await scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "csms_chargers_connected") == value(before, "csms_chargers_connected") + 2
    assert value(after, "csms_mobile_sessions") >= 1
    assert delta("csms_messages_total", protocol="ocpp", action="BootNotification", result="ok") == 2
    assert delta("csms_messages_total", protocol="ws", action="subscribe", result="200") == 1
    assert delta("csms_message_handling_seconds_count", protocol="ocpp", action="StartTransaction") == 1
    assert delta("csms_remote_commands_total", action="RemoteStartTransaction", outcome="accepted") == 1
    assert delta("csms_remote_commands_total", action="Reset", outcome="timeout") == 1
    assert delta("csms_remote_commands_total", action="Reset", outcome="offline") == 1
    assert delta("csms_events_emitted_total", kind="transaction.started") == 1
    assert delta("csms_events_pushed_total", kind="transaction.started") == 1
    assert delta("csms_push_latency_seconds_count") >= 1


async def test_metrics_token(server, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    with pytest.raises(urllib.error.HTTPError) as refused:
        await scrape(server)
    assert refused.value.code == 401
    assert value(await scrape(server, "s3cret-token"), "csms_chargers_connected") >= 0
