"""auth and ping."""

from __future__ import annotations

import time

from csms.events import call_service
from mobileapi import services
from mobileapi.errors import Unauthorized
from mobileapi.registry import action


@action(
    "auth",
    params={"properties": {"apiKey": {"type": "string", "minLength": 1, "maxLength": 256}}, "required": ["apiKey"]},
    auth=False,
)
async def auth(conn, params):
    key = await call_service(services.authenticate, params["apiKey"])
    if key is None:
        raise Unauthorized("Invalid apiKey")
    session_id = await conn.login(key)
    return {"status": "ok", "sessionId": session_id, "scopes": sorted(key.scopes)}


@action("ping")
async def ping(conn, params):
    return {"pong": True, "ts": int(time.time() * 1000)}
