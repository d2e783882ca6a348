"""A connection whose socket does not drain waits for its pushes in a line of its own.

The push hub (``hub.py``) hands each event to every local connection in turn.
Under uvicorn a send waits while the client's socket is not taking data (ASGI
backpressure), so if the hub awaited such a push, one phone that stopped
reading would hold up every other subscriber's pushes for as long as it does
not read. Instead the hub starts each push and, only if the push has to wait,
hands the rest of it to a task of that connection's own; the events that
follow for that connection queue behind it, in order, up to ``MAX_BEHIND``
(further ones are dropped and counted: the client gets them back with
``getEventsSince``, and the server's ping timeout ends a connection that
never reads). A push that does not wait - every push under daphne, whose sends
never wait (its bound is the send buffer, csms/daphne_support.py) - runs to
completion at once in the hub's task, as before, at no extra cost.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections import deque
from collections.abc import Coroutine, Generator
from typing import Any

from csms import metrics
from csms.events import EventMessage

log = logging.getLogger("mobileapi.hub")

MAX_BEHIND = 1000  # events queued for one connection whose socket is not draining


def start(coro: Coroutine) -> tuple[bool, Any, Any]:
    """Run ``coro`` until it finishes or first has to wait.

    Returns (True, its result, None), or (False, None, the rest) where the
    rest is an awaitable that goes on with it. Exceptions raised before it
    waits propagate, as with ``await``. Like Python 3.12's eager tasks, but
    the first step runs in the caller's task.
    """
    try:
        waiting_on = coro.send(None)
    except StopIteration as done:
        return True, done.value, None
    return False, None, _go_on(coro, waiting_on)


@types.coroutine
def _go_on(coro: Coroutine, waiting_on: Any) -> Generator[Any, Any, Any]:
    """Continue a started coroutine as a task would: hand the task what it waits on, pass back what comes."""
    while True:
        try:
            value = yield waiting_on
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as error:  # cancelled, or thrown in by the awaited future
            try:
                waiting_on = coro.throw(error)
            except StopIteration as done:
                return done.value
            continue
        try:
            waiting_on = coro.send(value)
        except StopIteration as done:
            return done.value


class PushLines:
    """The connections whose last push is still waiting, with the events queued behind it."""

    def __init__(self) -> None:
        self.behind: dict[Any, deque[EventMessage]] = {}
        self._tasks: set[asyncio.Task] = set()

    def push(self, listener: Any, event: EventMessage) -> bool:
        """Push without waiting; True if the event was sent to the app now."""
        line = self.behind.get(listener)
        if line is not None:
            if len(line) < MAX_BEHIND:
                line.append(event)
            else:
                metrics.pushes_dropped.inc()
            return False
        finished, result, rest = start(listener.push(event))
        if finished:
            return bool(result)
        self.behind[listener] = deque()
        task = asyncio.get_running_loop().create_task(self._catch_up(listener, rest, event), name="push line")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return False

    def forget(self, listener: Any) -> None:
        """The connection is gone: nothing more for it."""
        line = self.behind.get(listener)
        if line is not None:
            line.clear()

    async def _catch_up(self, listener: Any, waiting_push: Any, event: EventMessage) -> None:
        line = self.behind[listener]
        try:
            if await waiting_push:
                metrics.events_pushed.labels(event.get("kind", "")).inc()
            while line:
                event = line.popleft()
                if await listener.push(event):
                    metrics.events_pushed.labels(event.get("kind", "")).inc()
        except Exception:  # as in the hub: this connection's problem only
            metrics.channel_send_failures.labels("push").inc()
            log.exception("push of %s to one connection failed", event.get("eventId"))
        finally:
            del self.behind[listener]
