"""Authorize: idTagInfo from the IdTag table."""

from __future__ import annotations

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from stations import services
from stations.ocpp.v16.dispatch import run


class AuthorizationHandlers:
    @on(Action.authorize)
    async def on_authorize(self, id_tag):
        return call_result.Authorize(id_tag_info=await run(services.authorize, id_tag))
