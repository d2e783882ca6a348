"""A connection's subscriptions: which events it wants, and which groups that needs."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from csms.event_kinds import DIRECT_KINDS, PUBLIC_KINDS
from csms.events import EventMessage
from mobileapi.dialects import MOBILE_CLIENT, WS

# Names a client may subscribe to: both dialects' names for every pushed event.
KNOWN_EVENTS = frozenset(dialect.event_name(kind) for kind in PUBLIC_KINDS | DIRECT_KINDS for dialect in (WS, MOBILE_CLIENT))
_PATTERN = re.compile(r"^[a-z]+(\.[a-z]+)*(\.\*)?$")


def check_patterns(patterns: list[str]) -> str | None:
    """Why a list of event patterns is unusable, or None."""
    for pattern in patterns:
        if pattern in ("all", "*"):
            continue
        if not _PATTERN.match(pattern):
            return f"events: {pattern!r} is not an event name, 'all' or a 'prefix.*' pattern"
        if not any(_match(pattern, name) for name in KNOWN_EVENTS):
            return f"events: {pattern!r} matches no event (known: {', '.join(sorted(KNOWN_EVENTS))})"
    return None


def _match(pattern: str, name: str) -> bool:
    if pattern in ("all", "*"):
        return True
    if pattern.endswith(".*"):
        return name.startswith(pattern[:-1])
    return pattern == name


@dataclass(frozen=True)
class Subscription:
    id: str
    station_id: str | None
    patterns: tuple[str, ...]
    names: frozenset[str]  # every event name the patterns match, worked out once

    def matches(self, names: tuple[str, ...], station_id: str) -> bool:
        if self.station_id is not None and self.station_id != station_id:
            return False
        return not self.names.isdisjoint(names)


class Subscriptions:
    def __init__(self) -> None:
        self._by_id: dict[str, Subscription] = {}
        self._counter = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, station_id: str | None, patterns: list[str]) -> Subscription:
        self._counter += 1
        sub_id = f"sub-{int(time.time() * 1000)}-{self._counter:03d}"
        names = frozenset(name for name in KNOWN_EVENTS if any(_match(p, name) for p in patterns))
        subscription = Subscription(sub_id, station_id, tuple(patterns), names)
        self._by_id[sub_id] = subscription
        return subscription

    def remove(self, sub_id: str) -> bool:
        return self._by_id.pop(sub_id, None) is not None

    def describe(self) -> list[dict[str, object]]:
        return [
            {"id": s.id, "stationId": s.station_id, "events": list(s.patterns)} for s in self._by_id.values()
        ]

    def clear(self) -> None:
        self._by_id.clear()

    def stations(self) -> frozenset[str | None]:
        """The stations subscribed to (None: a subscription to every station)."""
        return frozenset(s.station_id for s in self._by_id.values())

    def wants(self, event: EventMessage, dialect_name: str) -> bool:
        names = (dialect_name, event["kind"])
        return any(s.matches(names, event["stationId"]) for s in self._by_id.values())
