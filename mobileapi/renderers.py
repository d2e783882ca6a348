"""The mobile API's own fields, derived from the domain's neutral values.

The charging domain counts energy in whole Wh (a session's, a meter's
register); the mobile documents, and the HTTP API beside them, also show a
session's energy in kWh (``totalKWh``) and a reading's ``unit``, and the Dart
guide's ``meter.values.delta`` shows a reading as the energy since the one
before (``delta``) and in the session so far (``total``). Those derivations
and field lists are here, not in the services that compute the energies.

The events charging writes keep their documented fields as they are (``delta``,
``total``, ``unit`` on meter.update, ``totalKWh`` on transaction.stopped): the
HTTP API's /api/events serves them verbatim, and tests/test_ocpp_charger.py
checks the stored rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ENERGY_UNIT = "Wh"

# Connector statuses the mobile contract has not (../shared/seeds/) as the apps see them: 2.0.1's Occupied
# (an EV plugged in, not charging) is 1.6's Preparing. Stored, in the admin and in the event log as it is.
MOBILE_STATUSES = {"Occupied": "Preparing"}

# A meter.update as each dialect pushes it: /ws the reading, /mobile-client the Dart guide's meter.values.delta.
READING_FIELDS = ("stationId", "connectorId", "transactionId", "timestamp", "energy", "power", "current", "voltage",
                  "soc")
DELTA_FIELDS = ("stationId", "connectorId", "transactionId", "timestamp", "delta", "total", "unit")


def total_kwh(energy_wh: int) -> float:
    """A session's energy in kWh, to the Wh."""
    return round(energy_wh / 1000, 3)


def connector_status(status: str) -> str:
    """A connector's status as the mobile API shows it (getStations, getConnectorStatus, the HTTP API's
    station and connector, connector.status.changed pushes and replays)."""
    return MOBILE_STATUSES.get(status, status)


def meter_event(data: Mapping[str, Any], *, as_delta: bool) -> dict[str, Any]:
    """A meter.update's fields as a dialect pushes them (``as_delta``: the Dart guide's meter.values.delta)."""
    return {name: data.get(name) for name in (DELTA_FIELDS if as_delta else READING_FIELDS)}
