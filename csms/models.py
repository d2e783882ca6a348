"""The durable event log: every state change a user can see, numbered."""

from __future__ import annotations

from django.db import models


class EventCounter(models.Model):
    """One row holding the last event sequence number.

    Taking this row FOR UPDATE inside the writer's transaction serialises
    event writers, so sequence order is commit order: a reader paging with
    ``getEventsSince`` can never skip an event that commits late with a
    smaller number (which a plain auto-increment id allows on PostgreSQL).
    """

    value = models.BigIntegerField(default=0)


class Event(models.Model):
    seq = models.BigIntegerField(unique=True, help_text="Global, increasing sequence number")
    kind = models.CharField(max_length=64, db_index=True)
    # A plain string, not a foreign key: the log outlives deleted stations.
    station_id = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(db_index=True)
    data = models.JSONField(default=dict)
    actor = models.CharField(
        max_length=150, blank=True, help_text="Who caused it: apikey:<id>, user:<name>, or empty"
    )

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.kind} {self.station_id}"

    @property
    def ts_ms(self) -> int:
        return int(self.created_at.timestamp() * 1000)

    @property
    def event_id(self) -> str:
        return f"evt-{self.ts_ms}-{self.seq}"
