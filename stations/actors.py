"""Who acted: an API key, a staff user, the charger itself or the system.

The charging domain records who started a transaction or asked for a remote
start without pointing into the mobile API or the auth tables, so that it
depends on neither. An actor is stored as text, ``"<kind>:<ref>"``, next to
the name it had at the time (a key's name, a username), so that a rename or a
deleted key leaves the record readable:

    ``apikey:12``        the mobile API key with id 12
    ``user:7``           the staff user with id 7
    ``system:<what>``    the CSMS itself, e.g. ``system:import_network``
    ``""``               the charger, on its own (an RFID card, a local start)

The charger's form is empty, as in the event log (``csms.models.Event.actor``),
so that a row made without naming an actor reads as the charger's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ActorKind(StrEnum):
    API_KEY = "apikey"
    USER = "user"
    CHARGER = "charger"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    ref: str = ""
    name: str = ""

    @classmethod
    def api_key(cls, key_id: int, name: str = "") -> Actor:
        return cls(ActorKind.API_KEY, str(key_id), name)

    @classmethod
    def user(cls, user: Any) -> Actor:
        """A staff user (any ``AbstractBaseUser``), named by their username."""
        return cls(ActorKind.USER, str(user.pk), user.get_username())

    @classmethod
    def system(cls, what: str) -> Actor:
        return cls(ActorKind.SYSTEM, what, what)

    @classmethod
    def parse(cls, text: str, name: str = "") -> Actor:
        """The actor stored as ``text``; anything unreadable is the charger's (the empty form)."""
        kind, _, ref = text.partition(":")
        if kind in (ActorKind.API_KEY, ActorKind.USER, ActorKind.SYSTEM) and ref:
            return cls(ActorKind(kind), ref, name)
        return CHARGER

    def __str__(self) -> str:
        return "" if self.kind == ActorKind.CHARGER else f"{self.kind}:{self.ref}"

    def id_of(self, kind: ActorKind) -> int | None:
        """The key's or user's id if this actor is one of ``kind``."""
        return int(self.ref) if self.kind == kind and self.ref.isdigit() else None

    @property
    def event_actor(self) -> str:
        """The event log's spelling: staff by username (what support reads and filters by), the rest as stored."""
        return f"user:{self.name}" if self.kind == ActorKind.USER else str(self)

    @property
    def label(self) -> str:
        """How the back-office names the actor."""
        if self.kind == ActorKind.API_KEY:
            return f"API key: {self.name}" if self.name else f"API key #{self.ref}"
        if self.kind == ActorKind.USER:
            return f"staff: {self.name}" if self.name else "staff"
        if self.kind == ActorKind.SYSTEM:
            return f"system: {self.name or self.ref}"
        return "charger (local)"


CHARGER = Actor(ActorKind.CHARGER)
