"""Failed-authentication budgets per client address, with growing lockouts.

Without one, a client guessed ~535 mobile API keys a second over 50
connections and 426 station passwords a second over OCPP basic auth. Each
budget counts the failures of one client address; after
``AUTH_FAILURE_LIMIT`` failures within ``AUTH_FAILURE_WINDOW`` seconds the
address is locked out for ``AUTH_LOCKOUT_SECONDS``, twice as long at each
further lockout (up to ``AUTH_LOCKOUT_MAX_SECONDS``). While locked, every
attempt from that address is refused before its credentials are looked at,
right ones included: otherwise the lockout would still tell a guesser which
guess was right. An address quiet for a window after its lockout ends is
forgotten.

Per process and in memory (nothing to set up, nothing to go down): with N
processes behind a load balancer an address gets at most N budgets. The table
is bounded (``AUTH_LOCKOUT_MAX_ADDRESSES``; the least recently failing address
is forgotten first), so a client rotating addresses cannot grow it, and IPv6
addresses are counted per /64 (what one subscriber is given). A successful
authentication costs one dictionary lookup and is never delayed.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from csms import metrics


@dataclass(slots=True)
class _Record:
    failures: int = 0  # in the current window
    window_start: float = 0.0
    strikes: int = 0  # lockouts so far: each one lasts twice as long as the one before
    locked_until: float = 0.0
    last_failure: float = 0.0

    def forgotten(self, now: float, window: float) -> bool:
        """Quiet for a whole window since its last failure and its last lockout."""
        return now - max(self.last_failure, self.locked_until) > window


class FailureBudget:
    """The failed-authentication budget of every client address for one kind of credential.

    Thread-safe: the HTTP API authenticates in request threads, the WebSocket
    consumers on the event loop.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._records: OrderedDict[str, _Record] = OrderedDict()  # least recently failing first
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float:
        """Seconds until this address may try again; 0 if it may now."""
        record = self._records.get(address)  # no lock: a dict lookup is atomic, and this is every auth's path
        if record is None:
            return 0.0
        wait = record.locked_until - time.monotonic()
        return wait if wait > 0 else 0.0

    def record_failure(self, address: str) -> float:
        """Count a failed attempt; return the lockout it started (seconds), 0 if none."""
        limit = settings.AUTH_FAILURE_LIMIT
        if limit <= 0:
            return 0.0
        window = float(settings.AUTH_FAILURE_WINDOW)
        now = time.monotonic()
        with self._lock:
            record = self._records.pop(address, None)
            if record is None or record.forgotten(now, window):
                record = _Record(window_start=now)
            elif now >= record.locked_until and now - record.window_start > window:
                record.failures, record.window_start = 0, now
            record.failures += 1
            record.last_failure = now
            locked = 0.0
            if record.failures >= limit:
                locked = min(settings.AUTH_LOCKOUT_SECONDS * 2 ** record.strikes, settings.AUTH_LOCKOUT_MAX_SECONDS)
                record.strikes += 1
                record.locked_until = now + locked
                # The next window opens when the lockout ends.
                record.failures, record.window_start = 0, record.locked_until
            self._records[address] = record
            self._trim(now, window)
        return locked

    def _trim(self, now: float, window: float) -> None:
        while self._records:
            oldest = next(iter(self._records.values()))
            if len(self._records) <= settings.AUTH_LOCKOUT_MAX_ADDRESSES and not oldest.forgotten(now, window):
                return
            self._records.popitem(last=False)

    def __len__(self) -> int:
        return len(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


# One budget per secret space: a guesser of API keys has the same budget on
# /ws, /mobile-client and /api/.
api_keys = FailureBudget("API key")
station_passwords = FailureBudget("station password")
BUDGETS = (api_keys, station_passwords)


def refused(budget: FailureBudget, address: str, endpoint: str) -> int:
    """0 if the address may try to authenticate now, else the whole seconds to wait (and counted)."""
    wait = budget.retry_after(address)
    if not wait:
        return 0
    metrics.auth_lockout_refusals.labels(endpoint).inc()
    return max(1, math.ceil(wait))


def failed(budget: FailureBudget, address: str, endpoint: str) -> float:
    """Count a failed authentication; return the lockout it started (seconds), 0 if none."""
    metrics.auth_failures.labels(endpoint).inc()
    return budget.record_failure(address)


# --- Client addresses --------------------------------------------------------------------

def _counted_as(address: str) -> str:
    """The address a budget counts: IPv4 as is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:  # not an IP address (a proxy's odd header): counted as given, printable only (logged)
        return "".join(ch for ch in address if ch.isprintable())[:64] or "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _forwarded_for(headers: Any) -> str:
    for name, value in headers:
        if name == b"x-forwarded-for":
            # The last entry is the one the nearest proxy (ours) added; the
            # ones before it are whatever the client sent.
            entries = [entry.strip() for entry in value.decode("latin1").split(",") if entry.strip()]
            return entries[-1] if entries else ""
    return ""


def client_address(scope: dict[str, Any]) -> str:
    """The client's address of an ASGI scope, as the budgets count it.

    Behind nginx (``BEHIND_PROXY``) the address nginx forwards
    (``X-Forwarded-For``, which deploy/nginx sets to the client's address),
    never trusted otherwise: a client could claim any address. Daphne's
    ``--proxy-headers`` puts the same address in the scope.
    """
    if settings.BEHIND_PROXY:
        forwarded = _forwarded_for(scope.get("headers", []))
        if forwarded:
            return _counted_as(forwarded)
    client = scope.get("client")
    return _counted_as(str(client[0])) if client else "unknown"


def request_address(request: Any) -> str:
    """The client's address of a Django request (ASGI, or the WSGI test client)."""
    scope = getattr(request, "scope", None)
    if scope is not None:
        return client_address(scope)
    if settings.BEHIND_PROXY and request.META.get("HTTP_X_FORWARDED_FOR"):
        return _counted_as(request.META["HTTP_X_FORWARDED_FOR"].split(",")[-1])
    return _counted_as(request.META.get("REMOTE_ADDR", ""))


async def refuse_handshake(send: Any, scope: dict[str, Any], retry_after: int) -> None:
    """Refuse a WebSocket handshake from a locked-out address.

    HTTP 429 with ``Retry-After`` where the server lets the application answer
    a handshake with an HTTP response (the ASGI ``websocket.http.response``
    extension: uvicorn); otherwise a close before accept, which servers
    answer with HTTP 403 (daphne).
    """
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({
            "type": "websocket.http.response.start",
            "status": 429,
            "headers": [(b"retry-after", str(retry_after).encode()), (b"content-type", b"text/plain; charset=utf-8")],
        })
        await send({"type": "websocket.http.response.body",
                    "body": b"Too many failed authentications from this address: retry later\n"})
    else:
        await send({"type": "websocket.close"})
