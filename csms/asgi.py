"""ASGI entry point: HTTP (admin) and WebSocket routes (OCPP, mobile API).

Nothing here is specific to one server, so daphne and any other ASGI server
can run it (the production server is chosen by measurement).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "csms.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from csms.routing import websocket_urlpatterns  # noqa: E402
from csms.runtime import tune_garbage_collector  # noqa: E402

# Static files (the admin's) are served by WhiteNoise's middleware, in every mode.
application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": URLRouter(websocket_urlpatterns)})

tune_garbage_collector()
