"""The remote-command service: send a command to a charger from anywhere.

Callable from any process (mobile consumer, admin, HTTP API, management
command): a registered command (``registry.py``) is built for the OCPP version
the station speaks, travels over the channel layer to the channel of
whichever consumer holds the station's socket (``Station.channel_name``), that
consumer runs the OCPP call in a task of its own, and the charger's answer
comes back on a channel made for this request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from csms import metrics
from csms.events import call_service
from csms.layers import ChannelLayerUnavailable
from stations import ocpp as adapters
from stations import services
from stations.actors import CHARGER, Actor
from stations.commands import registry
from stations.errors import ChargerError, Conflict, DomainError, NotFound, Timeout, Unavailable
from stations.models import IdTag, Station, TokenType, Transaction
from stations.ocpp import Adapter, Configuration

log = logging.getLogger("stations.commands")

# The action and payload to send, given the adapter of the station's version.
Request = Callable[[Adapter], tuple[str, dict[str, Any]]]


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


def _station_channel(station_id: str) -> tuple[bool, str, str] | None:
    return Station.objects.filter(pk=station_id).values_list("is_online", "channel_name", "ocpp_version").first()


def action_of(command: str, version: str) -> str:
    """The action a registered command is sent as to a station of this OCPP version ("": the
    preferred version, for a station not looked up yet)."""
    return adapters.for_version(version).action_of(command)


def _raw(action: str, payload: dict[str, Any] | None) -> Request:
    def request(adapter: Adapter) -> tuple[str, dict[str, Any]]:
        if action not in adapter.csms_actions:
            raise DomainError(f"Unsupported command {action}")
        return action, payload or {}

    return request


def _built(command: str, params: Mapping[str, Any]) -> Request:
    def request(adapter: Adapter) -> tuple[str, dict[str, Any]]:
        if command not in adapter.commands:
            raise Conflict(f"{command} cannot be sent to an OCPP {adapter.version} station")
        return adapter.build(command, params)

    return request


async def send_command(
    station_id: str, action: str, payload: dict[str, Any] | None = None, *, timeout: float | None = None,
    on_sent: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Send one call of the station's OCPP version (its action name and camelCase payload);
    return the charger's answer payload (camelCase). Raises as ``send`` does."""
    return (await _deliver(station_id, _raw(action, payload), timeout, on_sent))[2]


async def send(
    station_id: str, command: str, params: Mapping[str, Any], *, timeout: float | None = None,
    on_sent: Callable[[], None] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Send a registered command (its parameters checked: ``registry.Command.validate``);
    return the action sent and the charger's answer payload (camelCase).

    Raises NotFound (unknown station), StationOffline, StationDisconnected
    (the socket closed while waiting), CommandTimeout, CommandFailed
    (CALLERROR), BusUnavailable (Redis down) or DomainError (a payload the
    OCPP schema refuses).
    """
    _, action, answer = await _deliver(station_id, _built(command, params), timeout, on_sent)
    return action, answer


async def _deliver(
    station_id: str, request: Request, timeout: float | None, on_sent: Callable[[], None] | None
) -> tuple[Adapter, str, dict[str, Any]]:
    row = await call_service(_station_channel, station_id)
    if row is None:
        raise NotFound(f"Unknown station {station_id}")
    is_online, channel, version = row
    adapter = adapters.for_version(version)
    action, payload = request(adapter)
    try:
        await adapter.charge_point.check_command(action, payload)
    except ValueError as error:
        raise DomainError(str(error)) from None
    timeout = float(timeout or settings.OCPP_COMMAND_TIMEOUT)
    try:
        if not is_online or not channel:
            raise StationOffline(f"Station {station_id} is offline")
        answer = await _send(station_id, channel, action, payload, timeout, on_sent)
    except CommandError as error:
        metrics.remote_commands.labels(action, error.outcome).inc()
        raise
    metrics.remote_commands.labels(action, metrics.command_outcome(answer.get("status"))).inc()
    return adapter, action, answer


async def _send(
    station_id: str, channel: str, action: str, payload: dict[str, Any], timeout: float,
    on_sent: Callable[[], None] | None,
) -> dict[str, Any]:
    layer = get_channel_layer()
    reply_channel = await layer.new_channel()
    message = {"type": "station.command", "action": action, "payload": payload, "reply_to": reply_channel,
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


async def operate(
    station_id: str, command: str, params: Mapping[str, Any], *, actor: str, timeout: float | None = None
) -> dict[str, Any]:
    """Send a command on an operator's behalf and record it as a ``station.command`` event
    (with the action and payload as sent); return the charger's answer.

    ``command`` is a registered command with its checked parameters, or an
    action of the station's OCPP version with its payload (camelCase). Raises
    as ``send`` does. A command that was sent is recorded whatever its
    outcome (answer, CALLERROR, timeout, disconnect); one refused before
    sending (unknown station, invalid payload) is not.
    """
    return (await _operate(station_id, command, params, actor, timeout))[1]


async def read_configuration(station_id: str, *, actor: str) -> Configuration:
    """``get_configuration`` on an operator's behalf, its answer read by the station's adapter."""
    adapter, answer = await _operate(station_id, "get_configuration", {}, actor, None)
    return adapter.configuration(answer)


async def _operate(
    station_id: str, command: str, params: Mapping[str, Any], actor: str, timeout: float | None
) -> tuple[Adapter, dict[str, Any]]:
    build = _built(command, params) if command in registry.REGISTRY else _raw(command, dict(params))
    sent: dict[str, Any] = {}

    def request(adapter: Adapter) -> tuple[str, dict[str, Any]]:
        sent["action"], sent["payload"] = build(adapter)
        if command not in registry.REGISTRY:
            adapter.check_raw(sent["action"], sent["payload"])
        return sent["action"], sent["payload"]

    try:
        adapter, action, answer = await _deliver(station_id, request, timeout, None)
    except CommandError as error:
        if not isinstance(error, StationOffline):
            await call_service(services.record_command, "station.command", station_id,
                               {**_sent(station_id, sent), "outcome": error.outcome, "error": str(error)},
                               actor=actor)
        raise
    await call_service(services.record_command, "station.command", station_id,
                       {**_sent(station_id, sent), "outcome": "ok", "answer": adapter.recorded_answer(action, answer)},
                       actor=actor)
    return adapter, answer


def _sent(station_id: str, sent: dict[str, Any]) -> dict[str, Any]:
    return {"stationId": station_id, "action": sent["action"], "payload": sent["payload"]}


async def run(
    station_id: str, command: str, params: Mapping[str, Any], *, actor: str, requested_by: Actor = CHARGER,
    correlation_id: str = "", timeout: float | None = None,
) -> dict[str, Any]:
    """Any registered command with checked parameters, as its own flow has it: a remote
    start or stop with its preconditions and result events, any other as ``operate``.
    Returns the charger's answer (a start or stop: its ``status``)."""
    if command == "remote_start":
        status = await remote_start(station_id, params["connector"], params["id_tag"], correlation_id=correlation_id,
                                    requested_by=requested_by, actor=actor, timeout=timeout)
        return {"status": status}
    if command == "remote_stop":
        status, _, _ = await remote_stop(transaction_id=params["transaction"], station_id=station_id,
                                         correlation_id=correlation_id, actor=actor, timeout=timeout)
        return {"status": status}
    return await operate(station_id, command, params, actor=actor, timeout=timeout)


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
    """A remote start (1.6 RemoteStartTransaction, 2.0.1 RequestStartTransaction) with its preconditions;
    returns the charger's status.

    ``requested_by`` is recorded with the transaction the charger then starts;
    ``actor`` (default: its event-log spelling) with the events. The outcome
    (Accepted, Rejected, Timeout, Offline, Error) is recorded as a
    ``remote.start.result`` event carrying the correlationId, and the
    transaction the charger then starts carries it in ``transaction.started``.
    """
    prepared = await prepare_remote_start(station_id, connector_id, id_tag, correlation_id=correlation_id,
                                          actor=requested_by)
    return await execute_remote_start(station_id, connector_id, id_tag, correlation_id=correlation_id,
                                      actor=actor or requested_by.event_actor, timeout=timeout, prepared=prepared)


@dataclass(frozen=True)
class PreparedStart:
    """What a remembered remote start is sent with: its request's id (2.0.1's remoteStartId, which the
    station's TransactionEvent carries back) and the token's type (its IdTag row's, else Central)."""

    remote_start_id: int
    token_type: str


async def prepare_remote_start(station_id: str, connector_id: int, id_tag: str, **who: Any) -> PreparedStart:
    """Check the station and connector can start (404/409), and the token fits the station's OCPP version
    (400), and remember who asked (``correlation_id``, ``actor``: see services.prepare_remote_start)."""
    _require_bus(action_of("remote_start", ""))
    return await call_service(_prepare_remote_start, station_id, connector_id, id_tag, who)


def _prepare_remote_start(station_id: str, connector_id: int, id_tag: str, who: dict[str, Any]) -> PreparedStart:
    # Before the request is remembered: a token the charger's version cannot carry would hold the
    # connector's "remote start pending" until the timeout for a command never sent.
    version = Station.objects.filter(pk=station_id).values_list("ocpp_version", flat=True).first()
    if version is not None:
        adapters.for_version(version).check_token(id_tag)
    remote_start_id = services.prepare_remote_start(station_id, connector_id, id_tag, **who)
    token_type = IdTag.objects.filter(id_tag=id_tag).values_list("type", flat=True).first()
    return PreparedStart(remote_start_id, token_type or TokenType.CENTRAL)


async def execute_remote_start(
    station_id: str, connector_id: int, id_tag: str, *, correlation_id: str = "", actor: str = "",
    timeout: float | None = None, on_sent: Callable[[], None] | None = None, prepared: PreparedStart | None = None,
) -> str:
    """Send a prepared remote start (RemoteStartTransaction, RequestStartTransaction) and record its outcome
    (``on_sent``: called once the command is on its way to the charger; ``prepared``: what
    ``prepare_remote_start`` returned)."""
    result: dict[str, Any] = {"stationId": station_id, "connectorId": connector_id, "idTag": id_tag}
    if correlation_id:
        result["correlationId"] = correlation_id
    params: dict[str, Any] = {"connector": connector_id, "id_tag": id_tag}
    if prepared is not None:
        params.update(remote_start_id=prepared.remote_start_id, token_type=prepared.token_type)
    status, error = await _send_recording(station_id, "remote_start", params, timeout, on_sent)
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
    _require_bus(action_of("remote_stop", ""))
    return await call_service(
        services.prepare_remote_stop, station_id, transaction_id, connector_id, correlation_id=correlation_id
    )


async def execute_remote_stop(
    tx: Transaction, *, correlation_id: str = "", actor: str = "", timeout: float | None = None,
    on_sent: Callable[[], None] | None = None,
) -> str:
    """Send a prepared remote stop (RemoteStopTransaction, RequestStopTransaction) and record its outcome (``on_sent`` as for a start)."""
    result: dict[str, Any] = {"stationId": tx.station_id, "connectorId": tx.connector.number, "transactionId": tx.pk}
    if correlation_id:
        result["correlationId"] = correlation_id
    # Recorded before sending: the charger's StopTransaction may arrive before its answer, and
    # services._close attributes transaction.stopped to whoever asked (not to its starter).
    await call_service(services.record_command, "remote.stop.requested", tx.station_id, result, actor=actor)
    # 1.6 stops the CSMS's integer id (the one it gave the charger), 2.0.1 the station's own transactionId.
    params = {"transaction": tx.pk, "charger_transaction_id": tx.charger_transaction_id or None}
    status, error = await _send_recording(tx.station_id, "remote_stop", params, timeout, on_sent)
    await call_service(services.record_command, "remote.stop.result", tx.station_id, {**result, "status": status},
                       actor=actor)
    if error is not None:
        raise error
    return status


async def _send_recording(
    station_id: str, command: str, params: dict[str, Any], timeout: float | None, on_sent: Callable[[], None] | None
) -> tuple[str, CommandError | None]:
    """The charger's status word, or the outcome word and the error to raise once it is recorded."""
    try:
        _, answer = await send(station_id, command, params, timeout=timeout, on_sent=on_sent)
    except CommandError as error:
        return {"timeout": "Timeout", "offline": "Offline"}.get(error.outcome, "Error"), error
    return answer["status"], None
