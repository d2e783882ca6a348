"""WebSocket routes. Unknown paths are refused (HTTP 403), not a server error."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path, re_path

from stations.consumers import OcppConsumer


class RefuseConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.close()


websocket_urlpatterns = [
    re_path(r"^ocpp/(?P<station_id>[^/]{1,64})/?$", OcppConsumer.as_asgi()),
    re_path(r"", RefuseConsumer.as_asgi()),
]
