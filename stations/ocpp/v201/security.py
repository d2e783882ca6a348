"""A Security: the security events a station reports (A04).

Authentication (profiles 1-3) happens before any message, in the consumer's
connect (stations/consumers.py, csms/tls.py).
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from stations.ocpp.dispatch import run
from stations.services.security import record_security_event


class SecurityHandlers:
    station_id: str

    @on(Action.security_event_notification)
    async def on_security_event_notification(
        self, type: str, timestamp: str, tech_info: str | None = None, **extra: Any
    ) -> call_result.SecurityEventNotification:
        # Stored as an event (admin: Events, type station.security_event; the station's page).
        await run(record_security_event, self.station_id, type, timestamp, tech_info)
        return call_result.SecurityEventNotification()
