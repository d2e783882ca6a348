"""Transaction.reported_start, and repair of times that were stored but cannot be read.

Before the value limits (stations/values.py), PostgreSQL stored a charger's
``9999-12-31T23:59:59-01:00`` as year 10000 and ``0001-01-01T00:00:00+01:00``
as 1 BC: Python cannot read either, so every read of such a row (the mobile
API's getMeterValuesRecent, the admin's transaction and station pages)
failed. Found with range filters, so the rows are never loaded:

- meter samples at such a time are deleted (a reading that cannot be placed in
  time means nothing; its transaction's energy is meterStop - meterStart);
- a connector's ``updated_at`` at such a time is cleared.

SQLite could not store such times (the write failed), so it has none to repair.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import migrations, models
from django.db.models import Q

log = logging.getLogger("stations.migrations")

# As stations.values.EARLIEST_READABLE / LATEST_READABLE (a migration keeps its own copy).
EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
LATEST = dt.datetime.max.replace(tzinfo=dt.UTC) - dt.timedelta(days=1)


def _unreadable(field_name: str) -> Q:
    return Q(**{f"{field_name}__lt": EARLIEST}) | Q(**{f"{field_name}__gt": LATEST})


def repair_unreadable_times(apps, schema_editor) -> None:
    MeterSample = apps.get_model("stations", "MeterSample")
    Connector = apps.get_model("stations", "Connector")
    samples, _ = MeterSample.objects.filter(_unreadable("timestamp")).delete()
    connectors = Connector.objects.filter(_unreadable("updated_at")).update(updated_at=None)
    if samples or connectors:
        log.warning("removed %d meter samples and cleared %d connector times that could not be read",
                    samples, connectors)


class Migration(migrations.Migration):

    dependencies = [
        ("stations", "0003_serverprocess"),
    ]

    operations = [
        migrations.AddField(
            model_name="transaction",
            name="reported_start",
            field=models.CharField(
                blank=True, help_text="The charger's start timestamp when its clock was not believed", max_length=40
            ),
        ),
        migrations.RunPython(repair_unreadable_times, migrations.RunPython.noop, elidable=True),
    ]
