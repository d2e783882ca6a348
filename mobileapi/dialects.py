"""The two documented dialects of the one mobile API.

``/ws`` follows mobile-ws-api-ru.md, ``/mobile-client`` the Dart guide. They
differ only in what this object decides; everything else is common.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class Dialect:
    name: str
    nested_events: bool  # push envelope {"data": {...}} or fields flat
    start_replies_pending: bool  # startCharging answers "pending" at once, or after the charger
    meter_event: str
    string_transaction_ids: bool
    capitalized_status: bool  # "Completed"/"Active" or "completed"/"active"
    rate_setting: str
    size_setting: str

    def event_name(self, kind: str) -> str:
        return self.meter_event if kind == "meter.update" else kind

    def transaction_id(self, value: Any) -> Any:
        if value is None or not self.string_transaction_ids:
            return value
        return str(value)

    def transaction_status(self, active: bool) -> str:
        word = "active" if active else "completed"
        return word.capitalize() if self.capitalized_status else word

    def rate_limit(self) -> tuple[int, float]:
        """(messages, per seconds) from the setting, e.g. "10/1"."""
        count, _, seconds = getattr(settings, self.rate_setting).partition("/")
        return int(count), float(seconds or 1)

    def max_message_bytes(self) -> int:
        return getattr(settings, self.size_setting)


WS = Dialect(
    name="ws",
    nested_events=True,
    start_replies_pending=True,
    meter_event="meter.update",
    string_transaction_ids=False,
    capitalized_status=False,
    rate_setting="MOBILE_WS_RATE_LIMIT",
    size_setting="MOBILE_WS_MAX_MESSAGE_BYTES",
)

MOBILE_CLIENT = Dialect(
    name="mobile-client",
    nested_events=False,
    start_replies_pending=False,
    meter_event="meter.values.delta",
    string_transaction_ids=True,
    capitalized_status=True,
    rate_setting="MOBILE_CLIENT_RATE_LIMIT",
    size_setting="MOBILE_CLIENT_MAX_MESSAGE_BYTES",
)
