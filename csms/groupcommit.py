"""Group commit: the writes of many charger messages in one transaction.

Every OCPP message used to be one trip to the ORM thread and one commit (with
a savepoint and a locked counter row per event): measured, the ORM thread was
busy 98% of a burst while the event loop idled. Here, the service calls of
the charger messages that arrive while a batch is being written wait in a
queue; the next batch takes them all (at most ``OCPP_GROUP_COMMIT_MAX``) and
runs them one after another in one transaction, in arrival order, with the
events they emit numbered and written together before the commit
(``csms.events.number_batch``). Consecutive calls of a service that has a
``many`` form (``services.record_meter_values``: the MeterValues of many
stations) run as one call of it, a few queries for all of them. No message
waits for a timer: a batch starts
as soon as the previous one has committed, so under light load a batch is one
message and costs what it did before.

Acknowledgement still means durable: each caller gets its result, and the
charger its CALLRESULT, only after the batch's commit. The events' pushes go
out after that, in order, while the next batch is written.

A message whose service raises before writing anything (a value the domain
refuses) gets its error and the batch goes on. One that fails after a write
(or a database error: a deadlock, a lost connection) rolls the whole batch
back, and then each of its messages runs alone, in a transaction of its own:
the failing one fails alone (none of its writes stay), the others commit.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from csms import events, metrics

log = logging.getLogger("csms.groupcommit")

T = TypeVar("T")


@dataclass(slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: asyncio.Future
    outcome: tuple[bool, Any] = field(default=(False, None))


class _Rerun(Exception):
    """A message failed after writing: the batch is rolled back and rerun message by message."""


class _Writes:
    """Counts the statements of a service call that may have changed data."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if not sql.lstrip()[:6].upper() == "SELECT":
            self.count += 1
        return execute(sql, params, many, context)


def _run_batch(jobs: list[_Job]) -> list[events.EventMessage]:
    """Run the jobs in one transaction (in the ORM thread); set each one's outcome."""
    try:
        with transaction.atomic(), events.batching() as pending:
            start = 0
            while start < len(jobs):
                end = start + 1
                many = getattr(jobs[start].fn, "many", None)
                if many is not None:
                    while end < len(jobs) and jobs[end].fn is jobs[start].fn:
                        end += 1
                if end - start == 1 or not _run_together(cast(Callable[..., Any], many), jobs[start:end]):
                    for job in jobs[start:end]:
                        _run_one(job, pending)
                start = end
            messages = events.number_batch(pending)
    except _Rerun as rerun:
        metrics.group_commit_reruns.inc()
        log.info("group commit of %d messages rolled back (%r): each runs alone", len(jobs), rerun.__cause__)
        return _run_alone(jobs)
    metrics.group_commit_size.observe(len(jobs))
    return messages


def _run_one(job: _Job, pending: list) -> None:
    mark = len(pending)
    writes = _Writes()
    try:
        with connection.execute_wrapper(writes):
            job.outcome = (True, job.fn(*job.args, **job.kwargs))
    except Exception as error:
        if writes.count or connection.needs_rollback or isinstance(error, DatabaseError):
            raise _Rerun from error
        del pending[mark:]  # it wrote nothing; its events go with it
        job.outcome = (False, error)


def _run_together(many: Callable[..., Any], jobs: list[_Job]) -> bool:
    """Consecutive calls of one service that has a ``many`` form (e.g. every MeterValues
    of a batch): one call of it. False if it declined (the calls then run one by one)."""
    try:
        outcomes = many([(job.args, job.kwargs) for job in jobs])
    except Exception as error:
        raise _Rerun from error
    if outcomes is None:
        return False
    for job, outcome in zip(jobs, outcomes, strict=True):
        job.outcome = outcome
    return True


def _run_alone(jobs: list[_Job]) -> list[events.EventMessage]:
    messages: list[events.EventMessage] = []
    for job in jobs:
        with events.collecting() as collected:
            try:
                with transaction.atomic():  # all of it or, if it fails, none of it
                    job.outcome = (True, job.fn(*job.args, **job.kwargs))
            except Exception as error:
                job.outcome = (False, error)
        messages.extend(collected)
    return messages


class GroupCommit:
    """The queue of one event loop's charger writes, and the task that drains it."""

    def __init__(self) -> None:
        self._jobs: list[_Job] = []
        self._drainer: asyncio.Task | None = None
        self._pushes: list[list[events.EventMessage]] = []
        self._pusher: asyncio.Task | None = None

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call_service``, in the next batch: the result once the batch has committed."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, args, kwargs, loop.create_future())
        self._jobs.append(job)
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        # Shielded: a caller cancelled mid-way (its socket closed) leaves its
        # write in the batch, as an ORM call already handed to the thread would.
        return await asyncio.shield(job.future)

    async def _drain(self) -> None:
        while self._jobs:
            limit = settings.OCPP_GROUP_COMMIT_MAX
            jobs, self._jobs = self._jobs[:limit], self._jobs[limit:]
            try:
                messages = await database_sync_to_async(_run_batch)(jobs)
            except BaseException as error:  # the ORM thread itself failed (or the loop is closing)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error if isinstance(error, Exception) else RuntimeError(error))
                if not isinstance(error, Exception):
                    raise
                log.exception("group commit of %d messages failed", len(jobs))
                continue
            for job in jobs:
                if job.future.done():
                    continue
                ok, value = job.outcome
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
            if messages:
                self._push(messages)

    def _push(self, messages: list[events.EventMessage]) -> None:
        """Publish after the commit, in batch order, without holding up the next batch."""
        self._pushes.append(messages)
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.get_running_loop().create_task(self._push_all())

    async def _push_all(self) -> None:
        while self._pushes:
            await events.publish(self._pushes.pop(0))


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommit] = weakref.WeakKeyDictionary()


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a service function with the charger writes of this event loop's next batch."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = GroupCommit()
    return await queue.call(fn, *args, **kwargs)
