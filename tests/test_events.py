"""The event bus: durable numbered rows first, pushes after commit, once and in order."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from channels.layers import get_channel_layer
from django.db import transaction

from csms.events import ALL_EVENTS_GROUP, call_service, emit
from csms.models import Event

pytestmark = pytest.mark.django_db(transaction=True)


async def listen(group: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def drain(channel: str, count: int) -> list[dict]:
    layer = get_channel_layer()
    return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(count)]


async def nothing_more(channel: str) -> bool:
    try:
        await asyncio.wait_for(get_channel_layer().receive(channel), 0.3)
    except TimeoutError:
        return True
    return False


def emit_many(station_id: str, count: int) -> None:
    for n in range(count):
        emit("test.step", station_id, {"n": n})


async def test_each_event_reaches_group_members_once_and_in_order():
    everything = await listen(ALL_EVENTS_GROUP)
    only_a = await listen(ALL_EVENTS_GROUP)  # no group per station: a reader picks a station's events itself
    await call_service(emit_many, "A", 5)
    await call_service(emit_many, "B", 3)
    await call_service(emit_many, "A", 5)

    received_a = [m for m in await drain(only_a, 13) if m["stationId"] == "A"]
    assert [m["data"]["n"] for m in received_a] == [0, 1, 2, 3, 4] * 2
    assert [m["seq"] for m in received_a] == sorted(m["seq"] for m in received_a)
    assert await nothing_more(only_a)

    received_all = await drain(everything, 13)
    assert [m["seq"] for m in received_all] == sorted({m["seq"] for m in received_all})
    assert await nothing_more(everything)
    for message in received_all:
        json.dumps(message)  # every pushed payload must be serialisable
        assert re.fullmatch(r"evt-\d{13}-\d+", message["eventId"])


async def test_sequence_is_global_and_increasing():
    await call_service(emit_many, "A", 3)
    await call_service(emit_many, "B", 3)
    seqs = [seq async for seq in Event.objects.values_list("seq", flat=True)]
    assert seqs == list(range(seqs[0], seqs[0] + 6))


def emit_then_fail() -> None:
    with transaction.atomic():
        emit("test.doomed", "A", {})
        raise RuntimeError("rollback")


async def test_no_push_for_a_rolled_back_event():
    channel = await listen(ALL_EVENTS_GROUP)
    with pytest.raises(RuntimeError):
        await call_service(emit_then_fail)
    assert await nothing_more(channel)
    assert not await Event.objects.filter(kind="test.doomed").aexists()


async def test_sync_callers_push_too():
    """Admin views and management commands call services without call_service."""
    from asgiref.sync import sync_to_async

    channel = await listen(ALL_EVENTS_GROUP)
    await sync_to_async(emit)("test.sync", "S", {"ok": True})
    (message,) = await drain(channel, 1)
    assert message["kind"] == "test.sync" and message["data"] == {"ok": True}


async def test_embedded_layer_still_expires_messages_and_memberships(settings):
    """csms.layers sweeps for expired messages at most once a second, but still sweeps."""
    from csms.layers import InMemoryChannelLayer

    layer = InMemoryChannelLayer(expiry=0.2, capacity=10)
    stale, live = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", stale)
    await layer.group_add("g", live)
    await layer.group_send("g", {"type": "x", "n": 1})
    assert (await layer.receive(live))["n"] == 1
    await asyncio.sleep(1.1)  # the message to `stale` expires unread
    await layer.group_send("g", {"type": "x", "n": 2})  # runs the sweep
    assert stale not in layer.groups["g"] and live in layer.groups["g"]
    assert (await layer.receive(live))["n"] == 2
    for n in range(10):
        await layer.group_send("g", {"type": "x", "n": n})
    await layer.group_send("g", {"type": "x", "n": 99})  # full: dropped, as Channels does
    assert [(await layer.receive(live))["n"] for _ in range(10)] == list(range(10))


async def test_embedded_layer_honours_channel_capacity_patterns():
    from csms.layers import InMemoryChannelLayer

    layer = InMemoryChannelLayer(capacity=2, channel_capacity={"*!hub*": 5})
    hub_channel, plain = (await layer.new_channel()).replace("!", "!hub", 1), await layer.new_channel()
    assert layer.get_capacity(hub_channel) == 5 and layer.get_capacity(plain) == 2
