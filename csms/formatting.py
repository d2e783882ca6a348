"""How the back-office shows energy, money and durations."""

from __future__ import annotations

from decimal import Decimal


def kwh(wh: float | int | None, places: int = 2) -> str:
    """Wh as kWh: 15500 -> "15.50"; None -> ""."""
    return "" if wh is None else f"{wh / 1000:.{places}f}"


def money(amount: Decimal | None, currency: str) -> str:
    """1.55 and EUR -> "1.55 EUR"; None -> ""."""
    return "" if amount is None else f"{amount:.2f} {currency}".strip()


def duration(seconds: float | int | None) -> str:
    """3725 -> "1:02:05"; more than a day -> "2 d 3:00:00"."""
    if seconds is None:
        return ""
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days} d {clock}" if days else clock
