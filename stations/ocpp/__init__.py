"""The OCPP adapters: one package per OCPP version, each the only place its message shapes exist.

Adding a version is one line in ``_REGISTERED`` (and its package); which versions a
charger may speak, and in which preference, is the OCPP_VERSIONS setting.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from stations.ocpp import v16, v201
from stations.ocpp.adapter import Adapter, Builder, ChargePoint, Configuration

_REGISTERED = (v201.ADAPTER, v16.ADAPTER)

ADAPTERS: dict[str, Adapter] = {adapter.subprotocol: adapter for adapter in _REGISTERED}
BY_VERSION: dict[str, Adapter] = {adapter.version: adapter for adapter in _REGISTERED}


def enabled() -> list[Adapter]:
    """The adapters OCPP_VERSIONS lets chargers use, most preferred first."""
    try:
        return [BY_VERSION[version] for version in settings.OCPP_VERSIONS]
    except KeyError as error:
        raise ImproperlyConfigured(f"OCPP_VERSIONS: unknown version {error}; known: {sorted(BY_VERSION)}") from None


def negotiate(offered: Iterable[str]) -> Adapter | None:
    """The most preferred enabled adapter among the subprotocols a charger offers (None: none fits)."""
    offered = set(offered)
    return next((adapter for adapter in enabled() if adapter.subprotocol in offered), None)


def for_version(version: str) -> Adapter:
    """A station's adapter by the version it last connected with (the preferred one before it ever did)."""
    return BY_VERSION.get(version) or enabled()[0]


__all__ = ["ADAPTERS", "BY_VERSION", "Adapter", "Builder", "ChargePoint", "Configuration", "enabled", "for_version",
           "negotiate"]
