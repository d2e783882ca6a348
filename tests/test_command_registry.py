"""The registry of charger commands: one registration, offered by the admin, the HTTP API and station_command."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from stations import commands
from stations import ocpp as adapters
from stations.admin import operations
from stations.commands.registry import REGISTRY, Command, Param
from stations.errors import InvalidValue, NotFound
from stations.management.commands import station_command
from stations.models import Connector, Station
from stations.ocpp.v16 import commands as v16_commands
from tests.admin_support import make_support
from tests.conftest import http_json

# Parameters each command can be sent with (by wire name), for the checks that build every one.
EXAMPLES: dict[str, dict[str, Any]] = {
    "remote_start": {"connector": 1, "idTag": "TAG-1"},
    "remote_stop": {"transaction": 7},
    "reset": {"type": "Soft"},
    "unlock": {"connector": 2},
    "change_availability": {"connector": 0, "type": "Inoperative"},
    "get_configuration": {"keys": ["HeartbeatInterval"]},
    "change_configuration": {"key": "HeartbeatInterval", "value": "60"},
    "trigger_message": {"message": "StatusNotification", "connector": 1},
    "clear_cache": {},
    "data_transfer": {"vendorId": "com.example", "messageId": "hello", "data": "{}"},
    "get_base_report": {"reportBase": "FullInventory"},
    "get_report": {"component": "OCPPCommCtrlr", "criteria": ["Available"]},
    "get_variables": {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval"},
    "set_variables": {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "60"},
}
# What a version cannot say at all (stations.commands answers Conflict for its stations).
ONLY_201 = {"get_base_report", "get_report", "get_variables", "set_variables"}

PING = Command("ping_config", "Ping configuration", (Param("key", str, "Key", max_length=50),), button="Ping")


@pytest.fixture
def ping(monkeypatch: pytest.MonkeyPatch) -> Command:
    """A command registered once, with its 1.6 builder: nothing else names it."""
    monkeypatch.setitem(REGISTRY, PING.name, PING)
    monkeypatch.setitem(v16_commands.COMMANDS, PING.name, ("GetConfiguration", lambda p: {"key": [p["key"]]}))
    return PING


def test_every_command_has_an_example_here() -> None:
    assert set(EXAMPLES) == set(REGISTRY)


def test_only_a_start_or_a_stop_is_a_phone_apps_command() -> None:
    """A key with write:charging (every app's) starts and stops; anything else changes a charger for everyone."""
    assert {name: command.scope for name, command in REGISTRY.items()} == {
        name: "write:charging" if name in ("remote_start", "remote_stop") else "operate:stations" for name in EXAMPLES
    }
    assert PING.scope == "operate:stations"  # a newly registered command too, unless it says otherwise


@pytest.mark.parametrize("adapter, name", [
    pytest.param(adapter, name, id=f"{name}-{adapter.version}")
    for adapter in adapters.ADAPTERS.values() for name in sorted(EXAMPLES) if name in adapter.commands])
async def test_every_adapter_builds_every_command_as_its_schema_wants(adapter: adapters.Adapter, name: str) -> None:
    action, payload = adapter.build(name, REGISTRY[name].validate(EXAMPLES[name]))
    assert action in adapter.csms_actions
    await adapter.charge_point.check_command(action, payload)  # raises ValueError if the schema refuses it


def test_each_adapter_has_every_command_its_version_can_say() -> None:
    assert {adapter.version: set(REGISTRY) - set(adapter.commands) for adapter in adapters.ADAPTERS.values()} == {
        "1.6": ONLY_201, "2.0.1": set()}


def test_optional_parameters_left_out_are_left_out_of_the_call() -> None:
    adapter = adapters.BY_VERSION["1.6"]
    trigger = REGISTRY["trigger_message"].validate({})
    assert adapter.build("trigger_message", trigger) == ("TriggerMessage", {"requestedMessage": "StatusNotification"})
    assert adapter.build("get_configuration", REGISTRY["get_configuration"].validate({})) == ("GetConfiguration", {})
    assert adapter.build("change_configuration", REGISTRY["change_configuration"].validate({"key": "K"})) == (
        "ChangeConfiguration", {"key": "K", "value": ""})


def test_a_configuration_answer_is_read_by_the_adapter() -> None:
    answer = {"configurationKey": [{"key": "MeterValueSampleInterval", "readonly": False, "value": "60"},
                                   {"key": "NumberOfConnectors", "readonly": True}], "unknownKey": ["Nope"]}
    assert adapters.BY_VERSION["1.6"].configuration(answer) == (
        [{"key": "MeterValueSampleInterval", "value": "60", "readonly": False},
         {"key": "NumberOfConnectors", "value": "", "readonly": True}], ["Nope"])


@pytest.mark.parametrize(
    "name, given, message",
    [
        ("reset", {}, "type is required"),
        ("reset", {"type": "Medium"}, "type must be one of Soft, Hard"),
        ("reset", {"type": "Soft", "force": True}, "reset takes no parameter force (it takes: evse, type)"),
        ("unlock", {"connector": "1"}, "connector must be an integer"),
        ("unlock", {"connector": True}, "connector must be an integer"),
        ("unlock", {"connector": 0}, "connector must be at least 1"),
        ("remote_start", {"connector": 1, "idTag": "X" * 37}, "idTag must be at most 36 characters"),
        ("get_configuration", {"keys": "HeartbeatInterval"}, "keys must be a list of strings"),
        ("clear_cache", {"x": 1}, "clear_cache takes no parameter x (it takes: none)"),
    ],
)
def test_parameters_are_checked_by_their_declaration(name: str, given: dict, message: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        REGISTRY[name].validate(given)
    assert str(refused.value) == message and refused.value.code == 400


def test_an_unknown_command_is_not_found() -> None:
    from stations.commands import registry

    with pytest.raises(NotFound, match="Unknown command warp"):
        registry.get("warp")


def test_negotiate_takes_the_preferred_version_offered(settings) -> None:
    chosen = adapters.negotiate(["ocpp1.6", "ocpp2.0.1"])
    assert chosen is not None and chosen.version == "2.0.1"  # the default prefers 2.0.1
    settings.OCPP_VERSIONS = ["1.6", "2.0.1"]
    chosen = adapters.negotiate(["ocpp2.0.1", "ocpp1.6"])
    assert chosen is not None and chosen.version == "1.6"
    settings.OCPP_VERSIONS = ["1.6"]
    chosen = adapters.negotiate(["ocpp2.0.1", "ocpp1.6"])
    assert chosen is not None and chosen.version == "1.6"
    assert adapters.negotiate(["ocpp2.0.1"]) is None
    settings.OCPP_VERSIONS = []
    assert adapters.negotiate(["ocpp1.6"]) is None  # a version not enabled is not spoken


# --- One registration, three places ------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_a_registered_command_is_in_the_admin_panel(ping: Command) -> None:
    row = Station.objects.create(pk="fora072", is_online=True)
    Connector.objects.create(station=row, number=1, status="Available")
    assert "ping_config" in operations.operations() and PING.name in [op.name for op in operations.panel()]
    agent = Client()
    agent.force_login(make_support())
    page = agent.get(reverse("admin:stations_station_change", args=["fora072"])).content.decode()
    assert 'id="op-ping_config"' in page and "Ping configuration" in page and 'name="key"' in page
    # Its form refuses what its parameters refuse.
    response = agent.post(reverse("admin:stations_station_operate", args=["fora072", "ping_config"]),
                          {"key": "K" * 51}, follow=True)
    assert "Ping configuration: key: Ensure this value has at most 50 characters" in response.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_a_registered_command_is_sent_by_the_http_api(ping: Command, server, keys, charger_factory) -> None:
    await charger_factory("fora072", connectors=1)
    status, answer = await http_json(server, "POST", "/api/stations/fora072/commands/ping_config", keys["operator"],
                                     {"key": "HeartbeatInterval"})
    assert status == 200, answer
    assert answer == {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]}
    status, answer = await http_json(server, "POST", "/api/stations/fora072/commands/ping_config", keys["full"],
                                     {"key": "HeartbeatInterval"})
    assert status == 403 and answer["error"]["message"] == "Missing scope operate:stations"


@pytest.mark.django_db(transaction=True)
def test_a_registered_command_is_sent_by_station_command(ping: Command, monkeypatch, settings, capsys) -> None:
    parser = station_command.Command().create_parser("manage.py", "station_command")
    command_argument = next(action for action in parser._actions if action.dest == "action")
    assert command_argument.choices is not None
    assert "ping_config" in command_argument.choices and "Reset" in command_argument.choices
    sent: list[tuple] = []

    async def run(station_id: str, name: str, params: dict, **kwargs: Any) -> dict:
        sent.append((station_id, name, params, kwargs["actor"]))
        return {"status": "Accepted"}

    monkeypatch.setattr(commands, "run", run)
    # Past the in-memory refusal (the command is not sent over the layer: ``run`` is the fake above).
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
    call_command("station_command", "fora072", "ping_config", '{"key": "HeartbeatInterval"}')
    assert sent == [("fora072", "ping_config", {"key": "HeartbeatInterval"}, "system:station_command")]
    assert capsys.readouterr().out.strip() == '{"status": "Accepted"}'
    with pytest.raises(CommandError, match="400 key is required"):
        call_command("station_command", "fora072", "ping_config", "{}")


@pytest.mark.django_db(transaction=True)
async def test_the_station_records_the_version_its_adapter_speaks(charger_factory) -> None:
    await charger_factory("fora072", connectors=1)
    assert (await Station.objects.aget(pk="fora072")).ocpp_version == "1.6"
    assert commands.action_of("reset", "1.6") == "Reset"
