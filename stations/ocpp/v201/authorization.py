"""C Authorization: Authorize, and the idTokenInfo of every answer that carries one."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from stations import services
from stations.ocpp.dispatch import run
from stations.rules import Authorization

# A group is a token too (IdTokenType); the CSMS's groups are its own: Central.
GROUP_TOKEN_TYPE = "Central"


def id_token_info(authorization: Authorization) -> dict[str, Any]:
    """The 2.0.1 idTokenInfo of a token's authorization (Authorize, TransactionEvent)."""
    info: dict[str, Any] = {"status": authorization["status"]}
    if authorization["expires_at"] is not None:
        info["cacheExpiryDateTime"] = authorization["expires_at"].isoformat()
    if authorization["group_id"]:
        info["groupIdToken"] = {"idToken": authorization["group_id"], "type": GROUP_TOKEN_TYPE}
    return info


class AuthorizationHandlers:
    @on(Action.authorize)
    async def on_authorize(self, id_token: dict[str, Any], **extra: Any) -> call_result.Authorize:
        # certificate and iso15118CertificateHashData (ISO 15118 Plug & Charge) are not checked here:
        # the answer carries no certificateStatus, which the specification allows.
        authorization = await run(services.authorize, id_token["id_token"], id_token["type"])
        return call_result.Authorize(id_token_info=id_token_info(authorization))
