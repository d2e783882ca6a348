"""Data retention: forget old meter samples and events, never transactions.

Deletes in small batches, each its own short transaction, so a running server
(SQLite's single writer included) is never blocked for more than a moment.
"""

from __future__ import annotations

import datetime as dt
import time

from django.db import transaction
from django.db.models import Q, QuerySet

from csms.models import Event
from stations.models import MeterSample

BATCH = 2000


def _delete_in_batches(query: QuerySet, batch: int, pause: float) -> int:
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(query.order_by("pk").values_list("pk", flat=True)[:batch])
            if not ids:
                return deleted
            deleted += query.model.objects.filter(pk__in=ids).delete()[0]
        if pause:
            time.sleep(pause)  # let the server's writers in between batches


def old_meter_samples(before: dt.datetime) -> QuerySet[MeterSample]:
    """Samples taken before ``before``, except those of a transaction still running."""
    return MeterSample.objects.filter(timestamp__lt=before).filter(
        Q(transaction__isnull=True) | Q(transaction__stopped_at__isnull=False)
    )


def old_events(before: dt.datetime) -> QuerySet[Event]:
    """Events recorded before ``before``; the sequence goes on (ids are never reused)."""
    return Event.objects.filter(created_at__lt=before)


def prune_meter_samples(before: dt.datetime, *, batch: int = BATCH, pause: float = 0.0) -> int:
    return _delete_in_batches(old_meter_samples(before), batch, pause)


def prune_events(before: dt.datetime, *, batch: int = BATCH, pause: float = 0.0) -> int:
    return _delete_in_batches(old_events(before), batch, pause)
