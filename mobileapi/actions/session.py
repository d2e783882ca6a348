"""auth and ping."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from csms import lockout
from csms.events import call_service
from mobileapi import services
from mobileapi.errors import RateLimited
from mobileapi.registry import action
from stations.errors import Unauthorized

if TYPE_CHECKING:
    from mobileapi.consumers import MobileConsumer

log = logging.getLogger("mobileapi")


@action(
    "auth",
    params={"properties": {"apiKey": {"type": "string", "minLength": 1, "maxLength": 256}}, "required": ["apiKey"]},
    auth=False,
    summary="Authenticates the connection and starts a session; it must be the first message.",
    result="`status` (`ok`), `sessionId` (`sess-<ms>`) and `scopes` (the key's scopes, sorted).",
    errors=(
        (401, "Invalid apiKey"),
        (401, "The development test key is refused in production"),
        (429, "Too many failed authentications from this address: retry in N s (with `retryAfterMs`)"),
    ),
)
async def auth(conn: MobileConsumer, params: dict[str, Any]) -> dict[str, Any]:
    # An address locked out for failed attempts is refused before its key is
    # looked at: a guesser learns nothing, and it costs no ORM hop.
    address = lockout.client_address(conn.scope)
    wait = lockout.refused(lockout.api_keys, address, conn.dialect.name)
    if wait:
        raise RateLimited(f"Too many failed authentications from this address: retry in {wait} s",
                          retryAfterMs=wait * 1000)
    try:
        key = await call_service(services.authenticate, params["apiKey"])
    except services.KeyRefused:
        _failed(conn, address)
        raise
    if key is None:
        _failed(conn, address)
        raise Unauthorized("Invalid apiKey")
    session_id = await conn.login(key)
    return {"status": "ok", "sessionId": session_id, "scopes": sorted(key.scopes)}


def _failed(conn: MobileConsumer, address: str) -> None:
    locked = lockout.failed(lockout.api_keys, address, conn.dialect.name)
    if locked:
        log.warning("[WS-API:AUTH] endpoint=%s address=%s locked out for %g s: too many failed authentications",
                    conn.dialect.name, address, locked)


@action(
    "ping",
    summary="A heartbeat that keeps the connection from being closed as idle: send one every 20-30 s.",
    result="`pong` (`true`) and `ts` (the server time in ms).",
)
async def ping(conn: MobileConsumer, params: dict[str, Any]) -> dict[str, Any]:
    return {"pong": True, "ts": int(time.time() * 1000)}
