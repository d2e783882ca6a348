"""Production warnings: settings that pass csms/settings.py but leave a network open.

settings.py refuses what cannot run safely at all (no secret key, DEBUG). The
values checked here are legitimate during a migration or a trial, so they
are warnings, not refusals: Django system checks (``manage.py check``, also
run by ``migrate``) and, because daphne runs no system checks, log lines
at WARNING when the server process loads (``log_startup_warnings``, called
from csms/asgi.py), which the operator sees in journalctl and the log file.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register

log = logging.getLogger("csms.checks")

TAG = "csms_production"


@register(TAG)
def unsafe_production_settings(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    if not settings.PRODUCTION:
        return []
    warnings = []
    if "*" in settings.ALLOWED_HOSTS:
        warnings.append(Warning(
            "ALLOWED_HOSTS contains '*': any Host header is accepted (host-header attacks, poisoned links)",
            hint="List the public host names, e.g. ALLOWED_HOSTS=csms.example.com", id="csms.W001"))
    if not settings.OCPP_REQUIRE_AUTH:
        warnings.append(Warning(
            "OCPP_REQUIRE_AUTH is false: a station without a password connects with nothing but its id, "
            "so anyone who knows an id can impersonate that charger",
            hint="Set a password for every station in the admin, then OCPP_REQUIRE_AUTH=true", id="csms.W002"))
    if settings.OCPP_UNKNOWN_STATIONS != "reject" and not settings.OCPP_REQUIRE_AUTH:
        # With OCPP_REQUIRE_AUTH an unknown station cannot authenticate, so it is refused anyway.
        warnings.append(Warning(
            f"OCPP_UNKNOWN_STATIONS={settings.OCPP_UNKNOWN_STATIONS}: any client that opens /ocpp/<id> "
            "is registered as a station" + (" and accepted" if settings.OCPP_UNKNOWN_STATIONS == "accept" else ""),
            hint="OCPP_UNKNOWN_STATIONS=reject once the stations are registered", id="csms.W003"))
    if settings.OCPP_ACCEPT_UNKNOWN_IDTAGS:
        warnings.append(Warning(
            "OCPP_ACCEPT_UNKNOWN_IDTAGS is true: any RFID card or idTag may charge",
            hint="Register the idTags in the admin, then OCPP_ACCEPT_UNKNOWN_IDTAGS=false", id="csms.W004"))
    if not settings.MOBILE_REQUIRE_TLS:
        warnings.append(Warning(
            "MOBILE_REQUIRE_TLS is false: apps may send their API key over plain HTTP/ws://",
            hint="Terminate TLS (nginx with BEHIND_PROXY=true, or daphne's TLS_PORTS), then MOBILE_REQUIRE_TLS=true",
            id="csms.W005"))
    if settings.AUTH_FAILURE_LIMIT <= 0:
        warnings.append(Warning(
            "AUTH_FAILURE_LIMIT=0: no lockout after failed authentications (API keys and station passwords "
            "can be guessed at hundreds per second)", hint="Leave AUTH_FAILURE_LIMIT at its default (10)",
            id="csms.W006"))
    return warnings


@register(TAG)
def client_certificate_headers(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Security profile 3 switched on where csms/tls.py will not read the certificate headers."""
    if settings.OCPP_CLIENT_CERT_HEADERS and not settings.BEHIND_PROXY:
        return [Warning(
            "OCPP_CLIENT_CERT_HEADERS is true without BEHIND_PROXY: the proxy's client-certificate headers "
            "are ignored, so no charger can log in with a certificate (security profile 3)",
            hint="Behind nginx running deploy/nginx/ (it overwrites X-SSL-Client-Verify and X-SSL-Client-S-DN "
                 "on every server block): BEHIND_PROXY=true; without such a proxy: OCPP_CLIENT_CERT_HEADERS=false",
            id="csms.W007")]
    return []


@register(TAG, Tags.database)
def development_key_in_database(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Warning]:
    """The documents' test key, left by `make run` in a database now served in production."""
    if not settings.PRODUCTION or not databases or "default" not in databases:
        return []
    from django.db import DatabaseError

    from mobileapi.models import ApiKey, hash_key

    hashes = [hash_key(raw) for raw in settings.MOBILE_REFUSED_KEYS]
    try:
        ids = list(ApiKey.objects.filter(key_hash__in=hashes, is_active=True).values_list("pk", flat=True))
    except DatabaseError:  # not migrated yet (migrate runs the checks first): nothing to find
        return []
    if not ids:
        return []
    return [Warning(
        f"The database holds a development API key (the documents' {settings.DOCUMENTED_TEST_API_KEY}, "
        f"created by `make run`; API key id {', '.join(map(str, ids))}). Production refuses it at authentication.",
        hint="Delete it in the admin, under API keys", id="csms.W010")]


def log_startup_warnings() -> None:
    """Log the production warnings when a server process loads (daphne runs no system checks)."""
    if not settings.PRODUCTION:
        return
    # In a thread of its own: an ASGI server may load the application inside
    # its event loop (uvicorn), where the ORM refuses to run, and the
    # connection opened for the check closes with the thread's work.
    with ThreadPoolExecutor(1, thread_name_prefix="csms-checks") as pool:
        try:
            found = pool.submit(_run_production_checks).result(timeout=30)
        except Exception:  # a warning must never keep the server from starting
            log.exception("could not run the production checks")
            return
    for warning in found:
        log.warning("%s: %s%s", warning.id, warning.msg, f". Fix: {warning.hint}" if warning.hint else "")


def _run_production_checks() -> list[Any]:
    from django.core.checks import run_checks
    from django.db import connections

    try:
        return run_checks(tags=[TAG], databases=["default"])
    finally:
        connections.close_all()
