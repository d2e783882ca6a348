"""How the admin shows times, numbers and who started a transaction (shared by its pages)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from stations.models import Transaction


def local_time(value: dt.datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def short_time(value: dt.datetime | None) -> str:
    """A list's time: to the minute, the year only when it is not this one."""
    if not value:
        return ""
    local = timezone.localtime(value)
    return local.strftime("%m-%d %H:%M" if local.year == timezone.localtime().year else "%Y-%m-%d %H:%M")


def number(value: float | None, places: int, divide: float = 1) -> str:
    return "" if value is None else f"{value / divide:.{places}f}"


def started_by(tx: Transaction) -> str:
    return tx.starter.label


def transaction_state(tx: Transaction) -> str:
    return "Active" if tx.stopped_at is None else "Completed"
