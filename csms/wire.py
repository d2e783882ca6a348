"""Reading what clients send: JSON within bounds, before anything trusts it.

Both WebSocket consumers (OCPP and the mobile API) parse frames here, and
nothing downstream sees a frame this refused. ``json.loads`` alone lets
through what crashed consumers, stalled the event loop or poisoned the
database (issue 10, each measured):

- nesting ~1,000 levels deep raises ``RecursionError``, not ``ValueError``,
  and anything that later walks the value recursively (schema validation,
  ``json.dumps``) can hit it again;
- ``NaN``, ``Infinity`` and ``1e999`` are read as floats that no standard
  JSON encoder may write back, and PostgreSQL refuses them in ``jsonb``;
- ``"\\ud800"`` decodes to a lone surrogate, which cannot be encoded as
  UTF-8: echoing it back made the server's own send fail, and PostgreSQL
  refuses it (and NUL, ``"\\u0000"``) in any text column;
- an array of 150,000 items, checked item by item against a schema that caps
  it at 50, cost 620 ms of event-loop time per message.

So a frame is refused when it is not JSON, nests deeper than
``Limits.max_depth``, has an array or object with more than
``Limits.max_items`` entries, holds a non-finite number, or holds a string
(or key) with a NUL or an unpaired surrogate. The messages of ``WireError``
are short and never quote the frame, so they are safe to send back and log.

The extra work stays off the common path: a small frame with few brackets
cannot break the limits, and strings are inspected only when the frame
contains a ``\\u0000`` or surrogate escape (raw NULs and surrogates cannot
arrive: JSON forbids raw control characters and the WebSocket layer only
delivers valid UTF-8).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from django.utils.dateparse import parse_datetime

_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
# Station identities: what an OCPP charge point identity may be, and what
# every database and log line can hold (no NUL, control characters, spaces or
# slashes; OCPP 2.0.1 caps identities at 48, our column at 64).
_STATION_ID = re.compile(r"^[^\x00-\x20\x7f/\\\ud800-\udfff]{1,64}$")


class WireError(ValueError):
    """Why a frame was refused; ``str()`` is short and quotes nothing of the frame."""


@dataclass(frozen=True)
class Limits:
    max_depth: int  # arrays and objects inside one another
    max_items: int  # elements of one array, members of one object


def _refuse_constant(name: str) -> float:
    raise WireError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise WireError("a number is out of range")
    return value


def parse(text: str, limits: Limits) -> Any:
    """The JSON value of ``text``, or ``WireError`` saying briefly why not."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except WireError:
        raise
    except RecursionError:
        raise WireError(f"JSON is nested deeper than {limits.max_depth} levels") from None
    except ValueError as error:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise WireError(f"Invalid JSON: {str(error)[:80]}") from None
    suspect = _SUSPECT_ESCAPE.search(text) is not None
    could_exceed = len(text) > 2 * limits.max_items or text.count("[") + text.count("{") > limits.max_depth
    if suspect or could_exceed:
        _check_shape(value, limits, suspect)
    return value


def _check_shape(value: Any, limits: Limits, check_strings: bool) -> None:
    # Iterative, so that the check itself cannot recurse too deeply.
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= limits.max_depth:
                raise WireError(f"JSON is nested deeper than {limits.max_depth} levels")
            if len(item) > limits.max_items:
                raise WireError(f"an array or object has more than {limits.max_items} entries")
            if isinstance(item, dict):
                if check_strings:
                    for key in item:
                        _check_string(key)
                stack.extend((member, depth + 1) for member in item.values())
            else:
                stack.extend((element, depth + 1) for element in item)
        elif check_strings and isinstance(item, str):
            _check_string(item)


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise WireError("strings must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise WireError("strings must be valid Unicode (an unpaired surrogate was sent)") from None


def is_station_id(value: str) -> bool:
    """Whether ``value`` can be a station identity (in a URL, a parameter or a row)."""
    return bool(_STATION_ID.match(value))


# Times clients ask about (not times chargers report: see stations.rules).
_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def parse_client_time(value: str) -> dt.datetime:
    """An ISO 8601 time with a zone, in UTC, between 1970 and 9999; WireError otherwise.

    Converted to UTC here: an offset such as +23:59 is valid ISO 8601 but not
    a zone PostgreSQL accepts, and 0001-01-01T00:00+01:00 has no UTC
    equivalent a database can hold.
    """
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise WireError("expected an ISO 8601 time with a zone, e.g. 2025-10-24T16:00:00.000Z")
    try:
        parsed = parsed.astimezone(dt.UTC)
    except OverflowError:
        parsed = None
    if parsed is None or not _EARLIEST <= parsed < _LATEST:
        raise WireError("time out of range (1970 to 9999)")
    return parsed


def excerpt(text: str, limit: int = 120) -> str:
    """The start of a client's text for a log line: bounded, one line."""
    text = text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")[: limit * 2]
