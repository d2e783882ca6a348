"""A small mobile API client: JSON-RPC requests over a WebSocket, pushes queued.

Used by ``manage.py mobile_client`` (the smoke scenario, for support staff and
app developers) and by the test suite.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import websockets

_ids = itertools.count(1)


class ApiReplyError(AssertionError):
    """The server answered with an error (or not at all as expected)."""

    def __init__(self, reply: dict) -> None:
        super().__init__(json.dumps(reply))
        self.reply = reply


class MobileClient:
    def __init__(self, ws: websockets.ClientConnection, dialect: str) -> None:
        self.ws = ws
        self.dialect = dialect
        self.events: list[dict] = []  # pushes received while waiting for replies

    @classmethod
    async def connect(
        cls, server: str, path: str = "/ws", api_key: str | None = None, **options: Any
    ) -> MobileClient:
        """``options`` go to ``websockets.connect`` (e.g. ``ssl=`` for a wss:// server)."""
        ws = await websockets.connect(f"{server}{path}", max_size=None, **options)
        client = cls(ws, path.strip("/"))
        if api_key is not None:
            reply = await client.request("auth", {"apiKey": api_key})
            if reply.get("result", {}).get("status") != "ok":
                await ws.close()
                raise ApiReplyError(reply)
        return client

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def receive(self, timeout: float = 5) -> dict:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def reply_to(self, request_id: Any, timeout: float = 10) -> dict:
        while True:
            message = await self.receive(timeout)
            if "event" in message and "id" not in message:
                self.events.append(message)
                continue
            if message.get("id") != request_id:
                raise ApiReplyError({"unexpected": message, "expected_id": request_id})
            return message

    async def request(self, action: str, params: dict | None = None, *, timeout: float = 10) -> dict:
        request_id = f"req-{next(_ids)}"
        message: dict[str, Any] = {"id": request_id, "action": action}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return await self.reply_to(request_id, timeout)

    async def result(self, action: str, params: dict | None = None, **kwargs: Any) -> Any:
        reply = await self.request(action, params, **kwargs)
        if "result" not in reply:
            raise ApiReplyError(reply)
        return reply["result"]

    async def event(self, name: str, timeout: float = 10, **match: Any) -> dict:
        """The next push named ``name`` whose fields match (queued ones first)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event["event"] == name and all(self.field(event, k) == v for k, v in match.items()):
                    return self.events.pop(index)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {name} {match} within {timeout} s; got {[e['event'] for e in self.events]}")
            message = await self.receive(remaining)
            if "event" in message:
                self.events.append(message)

    def field(self, event: dict, name: str) -> Any:
        return event["data"].get(name) if "data" in event else event.get(name)

    async def close(self) -> None:
        await self.ws.close()
