"""OCPP 1.6's basic-auth password is the configuration key AuthorizationKey (security whitepaper): a
change_configuration of it is refused (InvalidValue) before anything is sent, so the password never lands
in a command's event. The charger: the simulator's ocpp.v16 ChargePoint over a real socket."""

from __future__ import annotations

from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from csms.models import Event
from simulator.v16 import SimulatedCharger
from stations import commands
from stations.errors import InvalidValue

pytestmark = pytest.mark.django_db(transaction=True)


class Recording(SimulatedCharger):
    """Records every ChangeConfiguration it is sent."""

    changed: list[tuple[str, str]]

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **extra: Any) -> call_result.ChangeConfiguration:
        self.changed = [*getattr(self, "changed", []), (key, value)]
        return call_result.ChangeConfiguration(status="Accepted")


@pytest.mark.parametrize("key", ["AuthorizationKey", "authorizationkey", "AUTHORIZATIONKEY"])
async def test_authorization_key_is_no_configuration_a_command_sets(charger_factory, key) -> None:
    charger = await charger_factory("fora072", connectors=1, cls=Recording)
    with pytest.raises(InvalidValue, match="AuthorizationKey is the station's basic-auth password"):
        await commands.operate("fora072", "change_configuration", {"key": key, "value": "a" * 40}, actor="test")
    assert not getattr(charger.cp, "changed", [])
    assert not await Event.objects.filter(kind="station.command").aexists()
    # Any other key still goes out.
    answer = await commands.operate("fora072", "change_configuration", {"key": "HeartbeatInterval", "value": "60"},
                                    actor="test")
    assert answer["status"] == "Accepted" and charger.cp.changed == [("HeartbeatInterval", "60")]


async def test_the_raw_change_configuration_of_the_key_is_refused_too(charger_factory):
    await charger_factory("rawkey16")
    with pytest.raises(InvalidValue):
        await commands.operate("rawkey16", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "x" * 20},
                               actor="test")
    assert not await Event.objects.filter(kind="station.command").aexists()
