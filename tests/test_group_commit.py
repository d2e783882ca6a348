"""Group commit (csms/groupcommit.py): many chargers' writes in one transaction, each
answered after its commit; a failing message fails alone."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
import websockets
from prometheus_client import REGISTRY

from csms import groupcommit
from csms.events import emit
from csms.models import Event, EventCounter
from stations.models import MeterSample

pytestmark = pytest.mark.django_db(transaction=True)


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _emits(kind: str, fail: str = "") -> str:
    """A service call that records an event, and raises before or after writing if told to."""
    if fail == "before":
        raise ValueError("refused before writing")
    emit(kind, "gc1", {"kind": kind})
    if fail == "after":
        EventCounter.objects.filter(pk=1).update(value=10**6)  # a write the rollback must undo
        raise ValueError("failed after writing")
    return kind


async def _kinds() -> list[str]:
    return [kind async for kind in Event.objects.order_by("seq").values_list("kind", flat=True)]


async def _seqs_are_contiguous() -> None:
    seqs = [seq async for seq in Event.objects.order_by("seq").values_list("seq", flat=True)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert (await EventCounter.objects.aget(pk=1)).value == len(seqs)


async def test_messages_waiting_together_commit_together_numbered_in_arrival_order():
    before_count, before_sum = _metric("csms_group_commit_messages_count"), _metric("csms_group_commit_messages_sum")
    results = await asyncio.gather(*(groupcommit.call(_emits, f"k{i}") for i in range(30)))
    assert results == [f"k{i}" for i in range(30)]
    assert await _kinds() == [f"k{i}" for i in range(30)]
    await _seqs_are_contiguous()
    batches = _metric("csms_group_commit_messages_count") - before_count
    assert _metric("csms_group_commit_messages_sum") - before_sum == 30
    assert batches <= 2, f"30 messages waiting together took {batches} transactions"


async def test_a_message_refused_before_writing_fails_alone_and_the_batch_goes_on():
    reruns = _metric("csms_group_commit_reruns_total")
    outcomes = await asyncio.gather(
        groupcommit.call(_emits, "a"), groupcommit.call(_emits, "b", "before"), groupcommit.call(_emits, "c"),
        return_exceptions=True,
    )
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], ValueError) and "before" in str(outcomes[1])
    assert await _kinds() == ["a", "c"]
    await _seqs_are_contiguous()
    assert _metric("csms_group_commit_reruns_total") == reruns  # no rollback was needed


async def test_a_message_failing_after_a_write_rolls_back_only_itself():
    reruns = _metric("csms_group_commit_reruns_total")
    outcomes = await asyncio.gather(
        groupcommit.call(_emits, "a"), groupcommit.call(_emits, "b", "after"), groupcommit.call(_emits, "c"),
        return_exceptions=True,
    )
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], ValueError) and "after" in str(outcomes[1])
    # b's event and its counter write are gone; a and c are committed, numbered 1 and 2.
    assert await _kinds() == ["a", "c"]
    await _seqs_are_contiguous()
    assert _metric("csms_group_commit_reruns_total") == reruns + 1


async def test_a_caller_that_goes_away_still_has_its_write_committed():
    task = asyncio.ensure_future(groupcommit.call(_emits, "left"))
    await asyncio.sleep(0)  # queued
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await groupcommit.call(_emits, "next")  # the next batch runs after the one holding "left"
    assert await _kinds() == ["left", "next"]


async def test_chargers_sending_at_once_share_transactions_and_every_reading_is_stored(server):
    """50 chargers over real sockets send MeterValues at the same moment: fewer transactions
    than messages, every reading stored, every one announced once, the numbering contiguous."""
    chargers = 50
    sockets = [await websockets.connect(f"{server}/ocpp/gcs{i}", subprotocols=["ocpp1.6"]) for i in range(chargers)]
    try:
        for i, ws in enumerate(sockets):
            await ws.send(json.dumps([2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))
            assert json.loads(await ws.recv())[2]["status"] == "Accepted"
        before_count, before_sum = _metric("csms_group_commit_messages_count"), _metric("csms_group_commit_messages_sum")
        at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        for round_ in range(3):
            stamp = (at + dt.timedelta(seconds=round_)).isoformat().replace("+00:00", "Z")
            frame = [2, f"m{round_}", "MeterValues", {"connectorId": 1, "meterValue": [
                {"timestamp": stamp, "sampledValue": [{"value": str(1000 + round_), "unit": "Wh"}]}]}]
            await asyncio.gather(*(ws.send(json.dumps(frame)) for ws in sockets))
            answers = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 10) for ws in sockets))
            assert all(json.loads(answer)[:2] == [3, f"m{round_}"] for answer in answers)
        batches = _metric("csms_group_commit_messages_count") - before_count
        assert _metric("csms_group_commit_messages_sum") - before_sum == 3 * chargers
        assert batches < 3 * chargers / 2, f"{3 * chargers} messages took {batches} transactions"

        # Together again: a third re-send the newest reading (neither stored nor pushed again),
        # a third send one older than the newest stored (stored and pushed), the rest a new one.
        def frame(i: int) -> list:
            seconds = {0: 2, 1: -1}.get(i % 3, 3)
            stamp = (at + dt.timedelta(seconds=seconds, milliseconds=500 if seconds < 0 else 0))
            return [2, "mix", "MeterValues", {"connectorId": 1, "meterValue": [
                {"timestamp": stamp.isoformat().replace("+00:00", "Z"),
                 "sampledValue": [{"value": "1002" if seconds == 2 else "999", "unit": "Wh"}]}]}]
        await asyncio.gather(*(ws.send(json.dumps(frame(i))) for i, ws in enumerate(sockets)))
        answers = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 10) for ws in sockets))
        assert all(json.loads(answer)[:2] == [3, "mix"] for answer in answers)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
    resent = len(range(0, chargers, 3))
    stored = 3 * chargers + chargers - resent
    assert await MeterSample.objects.filter(station__id__startswith="gcs").acount() == stored
    assert await Event.objects.filter(kind="meter.update").acount() == stored
    await _seqs_are_contiguous()


async def test_handshakes_at_once_are_decided_together_each_by_its_own_rule(server, settings):
    """30 unknown stations and two with passwords (one given wrong) open their sockets at the
    same moment: each gets its own answer, the unknown ones are registered once each."""
    from simulator.v16 import connect
    from stations import services
    from stations.models import Station

    settings.OCPP_UNKNOWN_STATIONS = "accept"
    await Station.objects.acreate(pk="gcpw1")
    await Station.objects.acreate(pk="gcpw2")
    await groupcommit.call(services.set_station_password, "gcpw1", "right-password-1")
    await groupcommit.call(services.set_station_password, "gcpw2", "right-password-2")
    before_count, before_sum = _metric("csms_group_commit_messages_count"), _metric("csms_group_commit_messages_sum")
    opened = await asyncio.gather(
        *(connect(f"{server}/ocpp", f"gcn{i}") for i in range(30)),
        connect(f"{server}/ocpp", "gcpw1", "right-password-1"),
        connect(f"{server}/ocpp", "gcpw2", "wrong-password"),
        return_exceptions=True,
    )
    try:
        assert all(not isinstance(ws, BaseException) for ws in opened[:31]), opened
        assert isinstance(opened[31], websockets.InvalidStatus) and opened[31].response.status_code == 403

        async def online() -> int:
            return await Station.objects.filter(is_online=True).acount()
        assert await _eventually_equal(online, 31)
        jobs = _metric("csms_group_commit_messages_sum") - before_sum
        batches = _metric("csms_group_commit_messages_count") - before_count
        assert batches < jobs / 2, f"{jobs} connect checks and online writes took {batches} transactions"
        assert await Station.objects.filter(pk__startswith="gcn").acount() == 30
        assert await Event.objects.filter(kind="station.connected").acount() == 31
        await _seqs_are_contiguous()
    finally:
        await asyncio.gather(*(ws.close() for ws in opened[:31] if not isinstance(ws, BaseException)))


async def _eventually_equal(check, expected, timeout: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await check()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{value} != {expected}"
        await asyncio.sleep(0.05)
    return True
