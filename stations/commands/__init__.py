"""The remote-command service: send an OCPP call to a charger from anywhere.

Callable from any process (mobile consumer, admin, management command): the
command travels over the channel layer to the channel of whichever consumer
holds the station's socket (``Station.channel_name``), that consumer runs the
OCPP call in a task of its own, and the charger's answer comes back on a
channel made for this request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from csms import metrics
from csms.events import call_service
from csms.layers import ChannelLayerUnavailable
from stations import services
from stations.actors import CHARGER, Actor
from stations.errors import ChargerError, Conflict, DomainError, NotFound, Timeout, Unavailable
from stations.models import Station, Transaction
from stations.ocpp.v16 import ChargePoint16

log = logging.getLogger("stations.commands")

# The CSMS-initiated OCPP 1.6 actions this service sends.
ACTIONS = frozenset(
    {
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "Reset",
        "UnlockConnector",
        "ChangeAvailability",
        "GetConfiguration",
        "ChangeConfiguration",
        "ClearCache",
        "TriggerMessage",
        "DataTransfer",
    }
)


class CommandError(DomainError):
    """A command that did not get the charger's answer; ``outcome`` names why in the metrics and events.
    Each one is also the stations.errors class whose code it is answered with."""

    outcome = "error"


class StationOffline(CommandError, Conflict):
    outcome = "offline"


class StationDisconnected(CommandError, Conflict):
    outcome = "offline"


class CommandTimeout(CommandError, Timeout):
    outcome = "timeout"


class CommandFailed(CommandError, ChargerError):
    """The charger answered with a CALLERROR."""

    outcome = "call_error"


class BusUnavailable(CommandError, Unavailable):
    """The channel layer (Redis) does not answer: the command could not be sent.
    Nothing reached the charger; retry once Redis is back (docs/operations.md)."""

    outcome = "unavailable"

    @classmethod
    def for_action(cls, action: str) -> BusUnavailable:
        return cls(f"{action} not sent: the message bus (Redis) does not answer; retry in a few seconds")


def _require_bus(action: str) -> None:
    """Refuse a start/stop while the channel layer knows Redis is gone: on /ws the
    app would get "pending" and then never the push of the outcome."""
    if not getattr(get_channel_layer(), "available", True):
        metrics.remote_commands.labels(action, BusUnavailable.outcome).inc()
        raise BusUnavailable.for_action(action)


def _station_channel(station_id: str) -> tuple[bool, str] | None:
    return Station.objects.filter(pk=station_id).values_list("is_online", "channel_name").first()


async def send_command(
    station_id: str, action: str, payload: dict[str, Any] | None = None, *, timeout: float | None = None,
    on_sent: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Send one OCPP call to a station; return the charger's answer payload (camelCase).

    Raises NotFound (unknown station), StationOffline, StationDisconnected
    (the socket closed while waiting), CommandTimeout, CommandFailed
    (CALLERROR), BusUnavailable (Redis down) or DomainError (a payload the
    OCPP schema refuses).
    """
    if action not in ACTIONS:
        raise DomainError(f"Unsupported command {action}")
    try:
        await ChargePoint16.check_command(action, payload or {})
    except ValueError as error:
        raise DomainError(str(error)) from None
    timeout = float(timeout or settings.OCPP_COMMAND_TIMEOUT)
    try:
        answer = await _send(station_id, action, payload, timeout, on_sent)
    except CommandError as error:
        metrics.remote_commands.labels(action, error.outcome).inc()
        raise
    metrics.remote_commands.labels(action, metrics.command_outcome(answer.get("status"))).inc()
    return answer


async def _send(
    station_id: str, action: str, payload: dict[str, Any] | None, timeout: float, on_sent: Callable[[], None] | None
) -> dict[str, Any]:
    row = await call_service(_station_channel, station_id)
    if row is None:
        raise NotFound(f"Unknown station {station_id}")
    is_online, channel = row
    if not is_online or not channel:
        raise StationOffline(f"Station {station_id} is offline")
    layer = get_channel_layer()
    reply_channel = await layer.new_channel()
    message = {"type": "station.command", "action": action, "payload": payload or {}, "reply_to": reply_channel,
               "timeout": timeout}
    try:
        await layer.send(channel, message)
    except ChannelLayerUnavailable:
        metrics.channel_send_failures.labels("command").inc()
        raise BusUnavailable.for_action(action) from None
    except Exception as error:  # e.g. the holder's channel full
        metrics.channel_send_failures.labels("command").inc()
        raise CommandFailed(f"{action} could not reach the process holding station {station_id}: {error}") from None
    if on_sent is not None:
        on_sent()  # handed to the bus: what follows is the charger's answer
    try:
        # A little longer than the consumer's own deadline, which answers
        # "timeout" itself; this one covers a consumer that died silently.
        reply = await asyncio.wait_for(layer.receive(reply_channel), timeout + 2)
    except TimeoutError:
        raise CommandTimeout(f"{action} timeout: station {station_id} did not answer in {timeout:g} s") from None
    return _outcome(station_id, action, timeout, reply)


def _outcome(station_id: str, action: str, timeout: float, reply: dict[str, Any]) -> dict[str, Any]:
    outcome = reply.get("outcome")
    if outcome == "ok":
        return reply["payload"]
    if outcome == "timeout":
        raise CommandTimeout(f"{action} timeout: station {station_id} did not answer in {timeout:g} s")
    if outcome == "offline":
        raise StationDisconnected(f"Station {station_id} disconnected before answering {action}")
    if outcome == "call_error":
        raise CommandFailed(f"Station {station_id} answered {action} with {reply.get('error')}")
    raise DomainError(f"Invalid {action}: {reply.get('error')}")


async def operate(station_id: str, action: str, payload: dict[str, Any], *, actor: str) -> dict[str, Any]:
    """Send a command on an operator's behalf and record it as a ``station.command`` event.

    Returns the charger's answer; raises as ``send_command`` does. A command
    that was sent is recorded whatever its outcome (answer, CALLERROR,
    timeout, disconnect); one refused before sending (unknown station,
    invalid payload) is not.
    """
    data: dict[str, Any] = {"stationId": station_id, "action": action, "payload": payload}
    try:
        answer = await send_command(station_id, action, payload)
    except CommandError as error:
        if not isinstance(error, StationOffline):
            await call_service(services.record_command, "station.command", station_id,
                               {**data, "outcome": error.outcome, "error": str(error)}, actor=actor)
        raise
    recorded = {"keys": len(answer.get("configurationKey") or [])} if action == "GetConfiguration" else answer
    await call_service(services.record_command, "station.command", station_id,
                       {**data, "outcome": "ok", "answer": recorded}, actor=actor)
    return answer


async def remote_start(
    station_id: str,
    connector_id: int,
    id_tag: str,
    *,
    correlation_id: str = "",
    requested_by: Actor = CHARGER,
    actor: str = "",
    timeout: float | None = None,
) -> str:
    """RemoteStartTransaction with its preconditions; returns the charger's status.

    ``requested_by`` is recorded with the transaction the charger then starts;
    ``actor`` (default: its event-log spelling) with the events. The outcome
    (Accepted, Rejected, Timeout, Offline, Error) is recorded as a
    ``remote.start.result`` event carrying the correlationId, and the
    transaction the charger then starts carries it in ``transaction.started``.
    """
    await prepare_remote_start(station_id, connector_id, id_tag, correlation_id=correlation_id, actor=requested_by)
    return await execute_remote_start(station_id, connector_id, id_tag, correlation_id=correlation_id,
                                      actor=actor or requested_by.event_actor, timeout=timeout)


async def prepare_remote_start(station_id: str, connector_id: int, id_tag: str, **who: Any) -> None:
    """Check the station and connector can start (404/409) and remember who asked
    (``correlation_id``, ``actor``: see services.prepare_remote_start)."""
    _require_bus("RemoteStartTransaction")
    await call_service(services.prepare_remote_start, station_id, connector_id, id_tag, **who)


async def execute_remote_start(
    station_id: str, connector_id: int, id_tag: str, *, correlation_id: str = "", actor: str = "",
    timeout: float | None = None, on_sent: Callable[[], None] | None = None,
) -> str:
    """Send a prepared RemoteStartTransaction and record its outcome (``on_sent``: called
    once the command is on its way to the charger)."""
    result: dict[str, Any] = {"stationId": station_id, "connectorId": connector_id, "idTag": id_tag}
    if correlation_id:
        result["correlationId"] = correlation_id
    payload = {"connectorId": connector_id, "idTag": id_tag}
    status, error = await _send_recording(station_id, "RemoteStartTransaction", payload, timeout, on_sent)
    if status != "Accepted":
        await call_service(services.forget_remote_start, station_id, id_tag, correlation_id)
    await call_service(services.record_command, "remote.start.result", station_id, {**result, "status": status},
                       actor=actor)
    if error is not None:
        raise error
    return status


async def remote_stop(
    *,
    transaction_id: int | None = None,
    station_id: str | None = None,
    connector_id: int | None = None,
    correlation_id: str = "",
    actor: str = "",
    timeout: float | None = None,
) -> tuple[str, int, str]:
    """RemoteStopTransaction for an active transaction; returns (status, transactionId, stationId)."""
    tx = await prepare_remote_stop(
        transaction_id=transaction_id, station_id=station_id, connector_id=connector_id, correlation_id=correlation_id
    )
    status = await execute_remote_stop(tx, correlation_id=correlation_id, actor=actor, timeout=timeout)
    return status, tx.pk, tx.station_id


async def prepare_remote_stop(
    *, transaction_id: int | None = None, station_id: str | None = None, connector_id: int | None = None,
    correlation_id: str = "",
) -> Transaction:
    """Find the active transaction to stop (404) on an online station (409)."""
    _require_bus("RemoteStopTransaction")
    return await call_service(
        services.prepare_remote_stop, station_id, transaction_id, connector_id, correlation_id=correlation_id
    )


async def execute_remote_stop(
    tx: Transaction, *, correlation_id: str = "", actor: str = "", timeout: float | None = None,
    on_sent: Callable[[], None] | None = None,
) -> str:
    """Send a prepared RemoteStopTransaction and record its outcome (``on_sent`` as for a start)."""
    result: dict[str, Any] = {"stationId": tx.station_id, "connectorId": tx.connector.number, "transactionId": tx.pk}
    if correlation_id:
        result["correlationId"] = correlation_id
    # Recorded before sending: the charger's StopTransaction may arrive before its answer, and
    # services._close attributes transaction.stopped to whoever asked (not to its starter).
    await call_service(services.record_command, "remote.stop.requested", tx.station_id, result, actor=actor)
    status, error = await _send_recording(
        tx.station_id, "RemoteStopTransaction", {"transactionId": tx.pk}, timeout, on_sent
    )
    await call_service(services.record_command, "remote.stop.result", tx.station_id, {**result, "status": status},
                       actor=actor)
    if error is not None:
        raise error
    return status


async def _send_recording(
    station_id: str, action: str, payload: dict[str, Any], timeout: float | None, on_sent: Callable[[], None] | None
) -> tuple[str, CommandError | None]:
    """The charger's status word, or the outcome word and the error to raise once it is recorded."""
    try:
        answer = await send_command(station_id, action, payload, timeout=timeout, on_sent=on_sent)
    except CommandError as error:
        return {"timeout": "Timeout", "offline": "Offline"}.get(error.outcome, "Error"), error
    return answer["status"], None
