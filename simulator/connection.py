"""What every simulated charger shares, whatever its OCPP version: the socket, the clock's format,
HTTP Basic credentials and the reconnect backoff."""

from __future__ import annotations

import base64
import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.typing import Subprotocol


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def basic_auth_header(station_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def open_socket(url: str, station_id: str, subprotocol: str, password: str | None = None, **kwargs: Any) -> Any:
    """Open a WebSocket to ``<url>/<station_id>`` (``url`` ends with /ocpp) offering ``subprotocol``."""
    headers = basic_auth_header(station_id, password) if password else None
    return await websockets.connect(
        f"{url.rstrip('/')}/{station_id}", subprotocols=[Subprotocol(subprotocol)], additional_headers=headers, **kwargs
    )


@dataclass
class ReconnectBackoff:
    """When to try again after a failed or lost connection: jittered exponential backoff.

    The wait doubles from ``minimum`` with each failure in a row up to
    ``maximum``, and is drawn at random from [wait, 2 x wait], as OCPP 2.0.1's
    RetryBackOffWaitMinimum / RetryBackOffRandomRange describe: after a CSMS
    outage every charger of a network reconnects at the same moment, and
    without the random part they would keep arriving together. A server's
    ``Retry-After`` (an HTTP 503 at the handshake: the CSMS is busy) is a
    floor, with up to a quarter more at random: the CSMS spreads the refused
    chargers over its Retry-After values already.
    """

    minimum: float = 1.0
    maximum: float = 60.0
    failures: int = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        wait = min(self.minimum * 2 ** min(self.failures, 30), self.maximum)
        self.failures += 1
        delay = random.uniform(wait, 2 * wait)
        if retry_after is not None:
            delay = max(delay, retry_after * random.uniform(1.0, 1.25))
        return delay

    def reset(self) -> None:
        """After a connection that worked: the next failure waits ``minimum`` again."""
        self.failures = 0


def retry_after(error: BaseException) -> float | None:
    """The seconds of a handshake refusal's ``Retry-After`` header (HTTP 503/429), if any."""
    response = getattr(error, "response", None)
    if response is None or response.status_code not in (429, 503):
        return None
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date, or nothing: the backoff alone decides
