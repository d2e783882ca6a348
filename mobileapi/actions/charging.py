"""startCharging, stopCharging, getMySessions, getRecentTransactions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from csms.events import call_service
from mobileapi import services
from mobileapi.errors import BadRequest
from mobileapi.registry import CONNECTOR_ID, STATION_ID, TRANSACTION_ID, action, limit
from stations import commands
from stations.commands.registry import REGISTRY
from stations.errors import Forbidden

if TYPE_CHECKING:
    from mobileapi.consumers import MobileConsumer

log = logging.getLogger("mobileapi")

# Commands finishing after their "pending" reply (/ws); kept so they are not collected.
_background: set[asyncio.Task] = set()

# A token as 2.0.1 has it; a 1.6 station takes at most 20 (stations.commands.prepare_remote_start: 400).
ID_TAG = {"type": "string", "minLength": 1, "maxLength": 36}


async def _pending_once_sent(execute: Callable[[Callable[[], None]], Coroutine[Any, Any, str]]) -> None:
    """/ws: return (for a "pending" reply) once the command is on its way to the charger,
    and let its outcome follow as an event. A command that cannot be sent (Redis gone,
    whether or not this process knew it yet) raises its error here, instead of a
    "pending" whose outcome could never be pushed."""
    sent = asyncio.get_running_loop().create_future()

    def mark_sent() -> None:
        if not sent.done():
            sent.set_result(None)

    task = asyncio.create_task(execute(mark_sent))
    _background.add(task)
    task.add_done_callback(_finished)
    await asyncio.wait({sent, task}, return_when=asyncio.FIRST_COMPLETED)
    if not sent.done():
        task.result()  # it ended before sending: its error (e.g. 503) is the reply


def _finished(task: asyncio.Task) -> None:
    _background.discard(task)
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, commands.CommandError):  # those are remote.*.result events
        log.error("background remote command failed", exc_info=error)


async def _id_tag_for(key: services.KeyInfo, requested: str | None) -> str:
    """The idTag to start with, by the rule every API shares (services.permitted_id_tag: 403)."""
    id_tag = await call_service(services.permitted_id_tag, key, requested)
    if id_tag is None:
        raise BadRequest("params: 'idTag' is a required property")
    return id_tag


@action(
    "startCharging",
    params={"properties": {"stationId": STATION_ID, "connectorId": CONNECTOR_ID, "idTag": ID_TAG},
            "required": ["stationId", "connectorId"]},
    scope=REGISTRY["remote_start"].scope,
    detached=True,
    summary="Asks the charger to start a transaction (OCPP 1.6 RemoteStartTransaction, 2.0.1 "
            "RequestStartTransaction with a remoteStartId tied to the correlationId). `idTag` may be left out "
            "only by a key bound to exactly one idTag (that tag is used); a bound key may use only its own tags.",
    result="`status` and `correlationId` (`corr-<ms>-<stationId>-<connectorId>`), the id carried by the "
           "`remote.start.result` and `transaction.started` events of this start.",
    dialects="`/ws` answers `pending` at once and the charger's answer follows as `remote.start.result`; "
             "`/mobile-client` answers after the charger, with its answer (`Accepted` or `Rejected`), "
             "or an error (504, 502, 409).",
    errors=(
        (400, "params: 'idTag' is a required property (the key is not bound to exactly one idTag)"),
        (400, "idTag must be at most 20 characters for an OCPP 1.6 station"),
        (403, "idTag X is not bound to this API key"),
        (403, "idTag X is bound to another API key"),
        (404, "Unknown station X"),
        (404, "Unknown connector N on station X"),
        (409, "Station X is offline"),
        (409, "Station X is not accepted (Pending)"),
        (409, "Connector N is busy (Charging)"),
        (409, "Connector N of station X has a remote start pending (asked T s ago): wait for its remote.start.result"),
        (409, "Station X disconnected before answering RemoteStartTransaction (`/mobile-client`)"),
        (502, "Station X answered RemoteStartTransaction with <OCPP error> (`/mobile-client`)"),
        (503, "RemoteStartTransaction not sent: the message bus (Redis) does not answer; retry in a few seconds"),
        (504, "RemoteStart timeout (`/mobile-client`, after OCPP_COMMAND_TIMEOUT)"),
    ),
)
async def start_charging(conn: MobileConsumer, params: dict[str, Any]) -> dict[str, Any]:
    station_id, connector_id, key = params["stationId"], params["connectorId"], conn.auth_key
    id_tag = await _id_tag_for(key, params.get("idTag"))
    correlation_id = f"corr-{int(time.time() * 1000)}-{station_id}-{connector_id}"
    conn.issued_command(correlation_id)  # before the command: its outcome may come before the reply
    prepared = await commands.prepare_remote_start(
        station_id, connector_id, id_tag, correlation_id=correlation_id, actor=key.as_actor
    )
    def execute(on_sent: Callable[[], None] | None = None) -> Coroutine[Any, Any, str]:
        return commands.execute_remote_start(
            station_id, connector_id, id_tag, correlation_id=correlation_id, actor=key.actor, on_sent=on_sent,
            prepared=prepared,
        )

    if conn.dialect.start_replies_pending:
        await _pending_once_sent(execute)
        return {"status": "pending", "correlationId": correlation_id}
    status = await execute()  # CommandTimeout -> 504 "RemoteStart timeout"
    return {"status": status, "correlationId": correlation_id}


@action(
    "stopCharging",
    params={"properties": {"transactionId": TRANSACTION_ID, "stationId": STATION_ID, "connectorId": CONNECTOR_ID}},
    scope=REGISTRY["remote_stop"].scope,
    detached=True,
    summary="Asks the charger to stop an active transaction (OCPP 1.6 RemoteStopTransaction, 2.0.1 "
            "RequestStopTransaction with the station's own transactionId): give `transactionId`, "
            "or `stationId` and `connectorId` (`transactionId` alone decides when both are given).",
    result="`status`, `correlationId` (`corr-stop-<ms>`, carried by `remote.stop.result` and "
           "`transaction.stopped`) and `transactionId`.",
    dialects="`/ws` answers `pending` at once; `/mobile-client` answers after the charger "
             "(`Accepted` or `Rejected`) or with an error (504, 502). `transactionId` is an integer on `/ws`, "
             "a string on `/mobile-client`.",
    errors=(
        (400, "params: give 'transactionId', or 'stationId' and 'connectorId'"),
        (403, "This transaction was not started with this API key or its idTags"),
        (404, "No active transaction matches"),
        (409, "Station X is offline"),
        (502, "Station X answered RemoteStopTransaction with <OCPP error> (`/mobile-client`)"),
        (503, "RemoteStopTransaction not sent: the message bus (Redis) does not answer; retry in a few seconds"),
        (504, "RemoteStopTransaction timeout: station X did not answer in 30 s (`/mobile-client`)"),
    ),
)
async def stop_charging(conn: MobileConsumer, params: dict[str, Any]) -> dict[str, Any]:
    transaction_id = int(params["transactionId"]) if "transactionId" in params else None
    station_id, connector_id, key = params.get("stationId"), params.get("connectorId"), conn.auth_key
    if transaction_id is None and (station_id is None or connector_id is None):
        raise BadRequest("params: give 'transactionId', or 'stationId' and 'connectorId'")
    if not await call_service(services.owns_transaction, key, transaction_id, station_id, connector_id):
        raise Forbidden("This transaction was not started with this API key or its idTags")
    correlation_id = f"corr-stop-{int(time.time() * 1000)}"
    conn.issued_command(correlation_id)
    tx = await commands.prepare_remote_stop(
        transaction_id=transaction_id, station_id=station_id if transaction_id is None else None,
        connector_id=connector_id, correlation_id=correlation_id,
    )
    def execute(on_sent: Callable[[], None] | None = None) -> Coroutine[Any, Any, str]:
        return commands.execute_remote_stop(tx, correlation_id=correlation_id, actor=key.actor, on_sent=on_sent)

    reply = {"correlationId": correlation_id, "transactionId": conn.dialect.transaction_id(tx.pk)}
    if conn.dialect.start_replies_pending:
        await _pending_once_sent(execute)
        return {"status": "pending", **reply}
    return {"status": await execute(), **reply}


# getMySessions and getRecentTransactions are one action under each document's name.
_SESSIONS_RESULT = (
    "The transactions this key owns, newest first, active ones included: `transactionId`, `stationId`, "
    "`connectorId`, `idTag`, `startTime`, `stopTime` (null while active), `energy` (Wh, integer), `totalKWh`, "
    "`duration` (s; null while active), `cost` and `currency` (null while active or without a tariff), "
    "`reason` (null while active), `status`."
)
_SESSIONS_DIALECTS = (
    "`transactionId` integer and `status` `active`/`completed` on `/ws`; "
    "string and `Active`/`Completed` on `/mobile-client`."
)


def _render_sessions(conn: MobileConsumer, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["transactionId"] = conn.dialect.transaction_id(row["transactionId"])
        row["status"] = conn.dialect.transaction_status(row.pop("active"))
    return rows


@action(
    "getMySessions",
    params={"properties": {"limit": limit(20, 100)}},
    summary="The transactions of this key (the Russian document's name; the same as getRecentTransactions).",
    result=_SESSIONS_RESULT,
    dialects=_SESSIONS_DIALECTS,
)
async def get_my_sessions(conn: MobileConsumer, params: dict[str, Any]) -> list[dict[str, Any]]:
    return _render_sessions(conn, await call_service(services.transactions_for_key, conn.auth_key, params.get("limit", 20)))


@action(
    "getRecentTransactions",
    params={"properties": {"limit": limit(10, 100)}},
    summary="The transactions of this key (the Dart guide's name; the same as getMySessions).",
    result=_SESSIONS_RESULT,
    dialects=_SESSIONS_DIALECTS,
)
async def get_recent_transactions(conn: MobileConsumer, params: dict[str, Any]) -> list[dict[str, Any]]:
    return _render_sessions(conn, await call_service(services.transactions_for_key, conn.auth_key, params.get("limit", 10)))
