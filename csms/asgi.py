"""ASGI entry point: HTTP (admin) and WebSocket routes (OCPP, mobile API).

Nothing here is specific to one server, so daphne and any other ASGI server
can run it (the production server is chosen by measurement); what daphne
lacks as a server is patched into daphne by csms/daphne_support.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "csms.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from csms.admission import HandshakeAdmission  # noqa: E402
from csms.checks import log_startup_warnings  # noqa: E402
from csms.daphne_support import install as install_daphne_support  # noqa: E402
from csms.routing import websocket_urlpatterns  # noqa: E402
from csms.runtime import tune_garbage_collector  # noqa: E402
from stations.presence import presence  # noqa: E402

# Static files (the admin's) are served by WhiteNoise's middleware, in every mode.
# Every WebSocket handshake (chargers and apps) passes one admission control:
# beyond WS_MAX_PENDING_HANDSHAKES in flight, a wait of at most WS_HANDSHAKE_QUEUE_MS
# for a slot, then HTTP 503 with Retry-After.
router = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": HandshakeAdmission(URLRouter(websocket_urlpatterns))}
)


async def application(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
    # The presence rounds (stations/presence.py) need a running event loop:
    # they start with the first request or connection this process serves.
    presence.ensure_running()
    await router(scope, receive, send)


tune_garbage_collector()
# What daphne lacks (send-buffer bound, the websocket.http.response extension,
# close code 1009, a header deadline), patched into daphne's classes before it
# builds its factories; inert under another server. See the module.
install_daphne_support()
log_startup_warnings()  # production: unsafe settings and the development key, in the server's log
