"""What the domain accepts from a charger: the bounds of times, integers and numbers.

One module decides them and every service that stores what a charger sent
applies them, so that

- nothing gets in that the database cannot store, or stores but cannot give
  back (PostgreSQL keeps ``9999-12-31T23:59:59-01:00`` as year 10000, which
  Python cannot read: every later read of the row failed);
- integers fit the column they go to, checked against the column's portable
  range (PostgreSQL's: SQLite would store 2**40 in a column PostgreSQL refuses);
- numbers are finite (NaN and infinities are not JSON, and PostgreSQL refuses
  them in an event's data);
- a charger's broken clock or meter does not become a duration, a cost or an
  energy: see ``charger_time`` and ``plausible_energy``.

What a service does with a value outside the bounds (refuse the message,
drop the value, or use the server's own reading) is the service's rule;
``docs/ocpp.md`` ("Plausibility and value limits") lists them all.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db import models
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import Q
from django.utils.dateparse import parse_datetime

from stations.errors import InvalidValue

# Times Python can hold and show in any time zone: one day inside datetime's range.
EARLIEST_READABLE = dt.datetime.min.replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
LATEST_READABLE = dt.datetime.max.replace(tzinfo=dt.UTC) - dt.timedelta(days=1)
# A register is compared with the session's length, but never held to less than an
# hour at full power: clocks drift, and a short session may report its whole energy.
MIN_ENERGY_WINDOW_S = 3600
EXCERPT_CHARS = 40
PROBLEMS_LOGGED = 3


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A value as a log line or an error message may quote it: repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- Integers --------------------------------------------------------------------------

def column_range(model: type[models.Model], field_name: str) -> tuple[int, int]:
    """The range of an integer column (of the key it refers to, for a foreign key)."""
    column = cast("models.Field[Any, Any]", model._meta.get_field(field_name))
    if column.is_relation:
        column = cast("models.ForeignKey[Any, Any]", column).target_field
    return BaseDatabaseOperations.integer_field_ranges[column.get_internal_type()]


def as_int(value: Any) -> int | None:
    """An integer (an integral float too: JSON does not tell 5 from 5.0), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def fits(model: type[models.Model], field_name: str, value: Any) -> bool:
    number = as_int(value)
    low, high = column_range(model, field_name)
    return number is not None and low <= number <= high


def column_int(model: type[models.Model], field_name: str, value: Any, name: str) -> int:
    """``value`` as an integer its column can hold; raises InvalidValue (named ``name``) if not."""
    number = as_int(value)
    low, high = column_range(model, field_name)
    if number is None or not low <= number <= high:
        raise InvalidValue(f"{name} {excerpt(value)} is out of range ({low}..{high})")
    return number


def fits_decimal(model: type[models.Model], field_name: str, value: Decimal) -> bool:
    column = cast(models.DecimalField, model._meta.get_field(field_name))
    return value.is_finite() and abs(value) < Decimal(10) ** (column.max_digits - column.decimal_places)


def column_text(model: type[models.Model], field_name: str, value: str, name: str) -> str:
    """``value`` if its text column can hold it; raises InvalidValue (named ``name``) if not."""
    column = model._meta.get_field(field_name)
    limit = column.max_length if isinstance(column, models.Field) else None
    if limit is not None and len(value) > limit:
        raise InvalidValue(f"{name} {excerpt(value)} is longer than {limit} characters")
    return value


# --- Numbers ---------------------------------------------------------------------------

def finite(value: Any) -> float | None:
    """A finite float from a number or a numeric string, else None (NaN, inf, "1e999", "abc")."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


# --- Times -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ChargerTime:
    """A charger's timestamp as the domain takes it.

    ``value``: the time, in UTC, if it was readable and plausible, else None.
    ``readable``: False if it was no ISO 8601 date-time at all.
    ``problem``: why it is not used ("" if it is).
    """

    value: dt.datetime | None
    readable: bool = True
    problem: str = ""


def plausible_window(received: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The charger times that are believed for a message received at ``received``.

    Up to ``OCPP_TIMESTAMP_MAX_AGE_DAYS`` old (a charger that was offline
    sends its queued messages with their own, older times) and up to
    ``OCPP_TIMESTAMP_MAX_AHEAD_SECONDS`` ahead (clocks drift). A clock reset
    to 1970, or set to a far future, is outside; so is every time the
    database or Python cannot hold.
    """
    return (
        received - dt.timedelta(days=settings.OCPP_TIMESTAMP_MAX_AGE_DAYS),
        received + dt.timedelta(seconds=settings.OCPP_TIMESTAMP_MAX_AHEAD_SECONDS),
    )


def charger_time(text: Any, received: dt.datetime) -> ChargerTime:
    """Read a charger's timestamp and judge it against the receive time."""
    try:
        parsed = parse_datetime(text) if isinstance(text, str) else None
    except ValueError:  # e.g. month 13, or a UTC offset of 24 h or more
        parsed = None
    if parsed is None:
        return ChargerTime(None, False, f"timestamp {excerpt(text)} is not an ISO 8601 date-time")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    earliest, latest = plausible_window(received)
    # Aware datetimes compare without converting, so even year 10000 in UTC is safe here.
    if not earliest <= parsed <= latest:
        return ChargerTime(None, True, f"timestamp {excerpt(text)} is not plausible (the charger's clock is wrong)")
    return ChargerTime(parsed.astimezone(dt.UTC))


def readable(field_name: str) -> Q:
    """Rows whose ``field_name`` time Python can read: a guard for reads of rows
    written before the bounds existed (migration 0004 removed those it found)."""
    return Q(**{f"{field_name}__range": (EARLIEST_READABLE, LATEST_READABLE)})


# --- Energy ----------------------------------------------------------------------------

def max_session_wh(elapsed_s: float) -> float:
    """The most energy a connector can deliver in ``elapsed_s`` seconds at
    ``OCPP_MAX_POWER_KW``, and never less than an hour's worth."""
    return settings.OCPP_MAX_POWER_KW * 1000 * max(elapsed_s, MIN_ENERGY_WINDOW_S) / 3600


def plausible_energy(energy_wh: float, elapsed_s: float) -> bool:
    """Can a session have delivered ``energy_wh`` (a register minus meterStart) in
    ``elapsed_s``? Never negative (an import register does not run backwards), and
    never more than ``max_session_wh``."""
    return 0 <= energy_wh <= max_session_wh(elapsed_s)


# --- Reporting -------------------------------------------------------------------------

@dataclass
class Problems:
    """What one message lost or had replaced, logged as one bounded line.

    A frame may carry thousands of bad values; the log gets the count and the
    first few reasons, each with a short excerpt of the value, never the payload.
    """

    reasons: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, reason: str) -> None:
        self.count += 1
        if len(self.reasons) < PROBLEMS_LOGGED:
            self.reasons.append(reason)

    def log(self, logger: logging.Logger, station_id: str, action: str) -> None:
        if not self.count:
            return
        more = f" (+{self.count - len(self.reasons)} more)" if self.count > len(self.reasons) else ""
        logger.warning("[OCPP:%s] station=%s %d value(s) not taken: %s%s",
                       action, station_id, self.count, "; ".join(self.reasons), more)


def wh(value: float | None) -> int | None:
    """An energy in whole Wh, as every reply and event shows energies.

    Registers are stored as floats (a charger may send 0.0285 kWh), so without
    this one place ``energy`` was ``28.0`` in one message and ``28`` in the next:
    a JSON type per field, everywhere (docs/mobile-api.md, "Types").
    """
    return None if value is None else int(round(value))
