"""python manage.py prune_data [--meter-samples-days N] [--events-days N] [--dry-run]

Delete meter samples and events older than N days (defaults:
RETENTION_METER_SAMPLE_DAYS and RETENTION_EVENT_DAYS; 0 keeps them forever).
Transactions are never touched. Safe while the server runs: small batches,
each its own transaction. Run it daily from cron or a systemd timer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from csms import retention
from mobileapi import services as mobile_services


class Command(BaseCommand):
    help = "Delete meter samples and events older than the retention settings (never transactions)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--meter-samples-days", type=int, default=settings.RETENTION_METER_SAMPLE_DAYS)
        parser.add_argument("--events-days", type=int, default=settings.RETENTION_EVENT_DAYS)
        parser.add_argument("--batch", type=int, default=retention.BATCH)
        parser.add_argument("--pause", type=float, default=0.05, help="Seconds between batches")
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        for name, days, prune, old in (
            ("meter samples", options["meter_samples_days"], retention.prune_meter_samples,
             retention.old_meter_samples),
            ("events", options["events_days"], retention.prune_events, retention.old_events),
        ):
            if days <= 0:
                self.stdout.write(f"{name}: kept forever (retention 0)")
                continue
            before = now - dt.timedelta(days=days)
            if options["dry_run"]:
                count = old(before).count()
                self.stdout.write(f"{name}: {count} older than {days} days would be deleted")
                continue
            count = prune(before, batch=options["batch"], pause=options["pause"])
            self.stdout.write(f"{name}: deleted {count} older than {days} days")
        cutoff = now - dt.timedelta(days=settings.MOBILE_SESSION_HISTORY_DAYS)
        if not options["dry_run"]:
            self.stdout.write(f"mobile sessions: deleted {mobile_services.purge_sessions(cutoff)} ended before "
                              f"{settings.MOBILE_SESSION_HISTORY_DAYS} days")
