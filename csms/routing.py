"""WebSocket routes. Unknown paths are refused (HTTP 403), not a server error."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path

from mobileapi.consumers import MobileConsumer
from mobileapi.dialects import MOBILE_CLIENT, WS
from stations.consumers import OcppConsumer


class RefuseConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.close()


websocket_urlpatterns = [
    re_path(r"^ocpp/(?P<station_id>[^/]{1,64})/?$", OcppConsumer.as_asgi()),
    re_path(r"^ws/?$", MobileConsumer.as_asgi(dialect=WS)),
    re_path(r"^mobile-client/?$", MobileConsumer.as_asgi(dialect=MOBILE_CLIENT)),
    re_path(r"", RefuseConsumer.as_asgi()),
]
