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
    if tx.started_by_key_id:
        return f"API key: {tx.started_by_key.name}" if tx.started_by_key else f"API key #{tx.started_by_key_id}"
    if tx.started_by_user_id:
        return f"staff: {tx.started_by_user.get_username()}" if tx.started_by_user else "staff"
    return "charger (local)"


def transaction_state(tx: Transaction) -> str:
    return "Active" if tx.stopped_at is None else "Completed"
