"""Mobile API actions, one module per family; importing this registers them all."""

from mobileapi.actions import charging, events, session, stations  # noqa: F401
