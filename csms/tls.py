"""Did a connection reach us over TLS?

Three servers, three ways of telling:

- an ASGI server that terminates TLS and says so in the scope (uvicorn,
  hypercorn: ``scheme`` is ``wss``/``https``);
- daphne's own TLS endpoint (``-e ssl:PORT:...``), which does not put a
  ``scheme`` in a WebSocket's scope (django/daphne#538): the port it arrived
  on is listed in ``TLS_PORTS``;
- nginx terminating TLS in front (``BEHIND_PROXY``): its
  ``X-Forwarded-Proto: https`` header, trusted only then.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

_SECURE_SCHEMES = frozenset({"wss", "https"})


def forwarded_proto(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-proto":
            return value.decode("latin1").split(",")[0].strip().lower()
    return ""


def is_secure(scope: dict[str, Any]) -> bool:
    if scope.get("scheme") in _SECURE_SCHEMES:
        return True
    server = scope.get("server")
    if server and server[1] in settings.TLS_PORTS:
        return True
    return settings.BEHIND_PROXY and forwarded_proto(scope) in _SECURE_SCHEMES
