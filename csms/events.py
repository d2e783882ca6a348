"""The event bus: record an event in the caller's transaction, push it after commit.

Every state change a user can see is an Event row first (durable, ordered,
numbered) and a channel-layer message second, to the one group ``events.all``
(each process's push hub reads it and picks, per connection, what it wants: a
group per station would cost one more Redis round trip per event, for no
reader). The channel layer is treated as lossy; ``Event`` rows are the
recovery path. The kinds and their payloads are declared in ``csms.event_kinds``.

Service functions run synchronously (in the ORM thread). Async callers use
``call_service`` so that the pushes of the events a service recorded are sent
from the event loop after the service's transaction committed, instead of
blocking the ORM thread on the channel layer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypedDict, TypeVar

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from csms import metrics
from csms.layers import ChannelLayerUnavailable
from csms.models import Event, EventCounter

log = logging.getLogger("csms.events")

ALL_EVENTS_GROUP = "events.all"

T = TypeVar("T")


class EventMessage(TypedDict):
    """The channel-layer message carrying one event (type ``events.push``)."""

    type: str
    seq: int
    eventId: str
    kind: str
    stationId: str
    ts: int
    data: dict[str, Any]
    actor: str


def to_message(event: Event) -> EventMessage:
    return {
        "type": "events.push",
        "seq": event.seq,
        "eventId": event.event_id,
        "kind": event.kind,
        "stationId": event.station_id,
        "ts": event.ts_ms,
        "data": event.data,
        "actor": event.actor,
    }


def _next_seq(count: int = 1) -> int:
    """Take ``count`` sequence numbers under the counter row's lock; the first of them."""
    counter = EventCounter.objects.select_for_update().filter(pk=1).first()
    if counter is None:
        counter, _ = EventCounter.objects.select_for_update().get_or_create(pk=1)
    counter.value += count
    counter.save(update_fields=["value"])
    return counter.value - count + 1


def emit(
    kind: str, station_id: str = "", data: Mapping[str, Any] | None = None, *, actor: str = "", push: bool = True
) -> Event:
    """Record an event in the current transaction; push it once that commits.

    ``kind`` is an ``EventKind`` (a str) and ``data`` its declared payload (csms.event_kinds).

    ``push=False`` only records it (an event meant for one connection). In a
    group commit (``csms.groupcommit``) the event is written, numbered, with the
    others of its batch just before the batch commits: its ``seq`` is None until then.
    """
    now = timezone.now()
    event = Event(
        kind=kind,
        station_id=station_id,
        created_at=now.replace(microsecond=now.microsecond // 1000 * 1000),
        data=data or {},
        actor=actor,
    )
    metrics.events_emitted.labels(kind).inc()  # counted even if the transaction rolls back
    pending = getattr(_batch, "events", None)
    if pending is not None:
        pending.append((event, push))
        return event
    with transaction.atomic():
        event.seq = _next_seq()
        event.save(force_insert=True)
    if push:
        message = to_message(event)
        transaction.on_commit(lambda: _dispatch(message))
    return event


# --- Group commit -----------------------------------------------------------------
#
# csms.groupcommit runs the writes of many charger messages in one transaction.
# Inside it, emit() only collects events; number_batch() writes them all at the
# end, under one take of the counter row, so events are still numbered in
# commit order and a rolled-back batch numbers nothing.

_batch = threading.local()


def in_batch() -> bool:
    return getattr(_batch, "events", None) is not None


def atomic() -> transaction.Atomic:
    """``transaction.atomic()`` for service functions: a savepoint, except inside a
    group commit, whose failure (an error after a write) reruns each of its messages alone."""
    return transaction.atomic(savepoint=not in_batch())


@contextmanager
def batching() -> Iterator[list[tuple[Event, bool]]]:
    """Collect the events emitted in this thread until ``number_batch``."""
    pending: list[tuple[Event, bool]] = []
    _batch.events = pending
    try:
        yield pending
    finally:
        _batch.events = None


def number_batch(pending: list[tuple[Event, bool]]) -> list[EventMessage]:
    """Number and write a batch's events in the current transaction; their push messages."""
    if not pending:
        return []
    first = _next_seq(len(pending))
    events = [event for event, _ in pending]
    for offset, event in enumerate(events):
        event.seq = first + offset
    Event.objects.bulk_create(events)
    return [to_message(event) for event, push in pending if push]


# --- Delivery ---------------------------------------------------------------------

_collector = threading.local()


def _dispatch(message: EventMessage) -> None:
    pending = getattr(_collector, "messages", None)
    if pending is not None:
        pending.append(message)  # call_service sends it from the event loop
    else:
        async_to_sync(publish)([message])


@contextmanager
def collecting() -> Iterator[list[EventMessage]]:
    previous = getattr(_collector, "messages", None)
    messages: list[EventMessage] = []
    _collector.messages = messages
    try:
        yield messages
    finally:
        _collector.messages = previous


async def publish(messages: list[EventMessage]) -> None:
    """Send events to ``events.all``. A failed send is logged, never raised:
    the rows are written, and clients recover them with getEventsSince."""
    layer = get_channel_layer()
    if layer is None:
        return
    for message in messages:
        try:
            await layer.group_send(ALL_EVENTS_GROUP, message)
        except ChannelLayerUnavailable:  # Redis is gone: the layer logged it once, not per event
            metrics.channel_send_failures.labels("group_send").inc()
        except Exception:
            metrics.channel_send_failures.labels("group_send").inc()
            log.exception("push of %s failed", message["eventId"])


async def call_service(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a synchronous service function in the ORM thread, then push its events."""

    def run() -> tuple[T, list[EventMessage]]:
        with collecting() as messages:
            result = fn(*args, **kwargs)
        return result, messages

    result, messages = await database_sync_to_async(run)()
    if messages:
        await publish(messages)
    return result

