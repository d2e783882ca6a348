"""A Security: stations authenticated by a client certificate (profile 3), and the security events
stations report (SecurityEventNotification)."""

from __future__ import annotations

import inspect
from typing import Any

from django.conf import settings

from csms.events import emit
from stations import rules
from stations.models import Station
from stations.services._common import _arguments
from stations.services.connections import ConnectDecision

# OCPP 2.0.1 (and the 1.6 security whitepaper): type is a string of up to 50, techInfo up to 255.
EVENT_TYPE_MAX = 50
TECH_INFO_MAX = 255
TIMESTAMP_MAX = 64  # an ISO 8601 date-time is at most ~35


def check_certificate_connect(station_id: str) -> ConnectDecision:
    """May a station whose client certificate names it (its CN, verified by nginx) open a socket?

    The certificate is its credential: no password is asked for, one set for it
    included (profile 2 on the TLS port, profile 3 on the client-certificate port:
    certificate or password). An unknown station is registered per the unknown-station
    policy, as one with a password would be; OCPP_REQUIRE_AUTH is met by the certificate.
    """
    status = Station.objects.filter(pk=station_id).values_list("registration_status", flat=True).first()
    if status is not None:
        return ConnectDecision(True, registration_status=status)
    status = rules.boot_status(False, None, settings.OCPP_UNKNOWN_STATIONS)
    if status is None:
        return ConnectDecision(False, "unknown station")
    created, _ = Station.objects.get_or_create(pk=station_id, defaults={"registration_status": status})
    return ConnectDecision(True, registration_status=created.registration_status)


def _check_certificate_connect_many(calls: list[tuple[tuple, dict]]) -> list[tuple[bool, Any]] | None:
    """``check_certificate_connect`` for the handshakes of one group commit (a reconnect storm
    of profile 3 chargers): one query for all; None (one by one) if one is unknown."""
    wanted = [_arguments(_CHECK_CERTIFICATE_CONNECT, args, kwargs)[0] for args, kwargs in calls]
    stored = dict(Station.objects.filter(pk__in=set(wanted)).values_list("pk", "registration_status"))
    if not all(station_id in stored for station_id in wanted):
        return None
    return [(True, ConnectDecision(True, registration_status=stored[station_id])) for station_id in wanted]


_CHECK_CERTIFICATE_CONNECT = inspect.signature(check_certificate_connect)
check_certificate_connect.many = _check_certificate_connect_many  # type: ignore[attr-defined]  # csms/groupcommit.py


def record_security_event(station_id: str, event_type: str, timestamp: str, tech_info: str | None = None) -> None:
    """Store a security event a station reported, as the event ``station.security_event``.

    The texts are cut to their OCPP limits (the 2.0.1 schema enforces them already; a
    1.6 charger's whitepaper message is not always checked). The charger's time is kept
    as it sent it, even when its clock is wrong (SettingSystemTime reports just that);
    the event row has the receive time.
    """
    emit("station.security_event", station_id, {
        "stationId": station_id,
        "type": event_type[:EVENT_TYPE_MAX],
        "timestamp": timestamp[:TIMESTAMP_MAX],
        "techInfo": tech_info[:TECH_INFO_MAX] if tech_info else None,
    })
