"""Authorize, and the idTagInfo of every answer that carries one."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from stations import services
from stations.ocpp.dispatch import run
from stations.rules import Authorization

# IdToken, 1.6's idTag and parentIdTag: CiString20 (a token or group id may be up to 36, 2.0.1's).
ID_TOKEN_LENGTH = 20


def id_tag_info(authorization: Authorization) -> dict[str, Any]:
    """The 1.6 idTagInfo of a token's authorization (the answer to Authorize, StartTransaction, StopTransaction)."""
    info: dict[str, Any] = {"status": authorization["status"]}
    if authorization["expires_at"] is not None:
        info["expiryDate"] = authorization["expires_at"].isoformat()
    group_id = authorization["group_id"]
    # A group id longer than 1.6's parentIdTag can be is left out, not cut: a truncated id would name
    # another group (or none) to the charger, and the answer would break the charger's schema.
    if group_id and len(group_id) <= ID_TOKEN_LENGTH:
        info["parentIdTag"] = group_id
    return info


class AuthorizationHandlers:
    @on(Action.authorize)
    async def on_authorize(self, id_tag: str) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=id_tag_info(await run(services.authorize, id_tag)))
