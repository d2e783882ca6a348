"""The provisioning commands: station, idtag and import_network.

What an operator (or another project's test suite) types to set up a network: each
command is idempotent, says what it did, and refuses with a message and a non-zero exit.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError

from csms.models import Event
from stations.models import Connector, Station, Transaction
from stations.simulator import connect
from tests.conftest import ROOT, server_database_url

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-enough-password-1"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as error:
        run(*args)
    return str(error.value)


# --- station ----------------------------------------------------------------------------------

def test_station_add_generates_a_password_once_and_is_idempotent(settings):
    settings.OCPP_UNKNOWN_STATIONS = "accept"
    out = run("station", "add", "fora072", "--name", "Car park")
    first, second = out.splitlines()
    assert first == "Created station fora072: registration Accepted, name 'Car park', password generated"
    password = second.removeprefix("  password (shown once): ")
    station = Station.objects.get(pk="fora072")
    assert (station.name, station.registration_status) == ("Car park", "Accepted")
    from stations import services

    assert services.check_station_password(password, station.password_hash)
    assert run("station", "add", "fora072", "--name", "Car park") == "Station fora072 unchanged\n"
    assert run("station", "add", "fora072") == "Station fora072 unchanged\n"
    assert Station.objects.get(pk="fora072").password_hash == station.password_hash


def test_station_add_updates_what_is_given_and_says_so(settings):
    settings.OCPP_UNKNOWN_STATIONS = "reject"
    assert run("station", "add", "fora1", "--password", PASSWORD) == (
        "Created station fora1: registration Pending, password set\n")
    assert run("station", "add", "fora1", "--accepted", "--name", "Depot", "--password", PASSWORD) == (
        "Updated station fora1: name '' -> 'Depot', registration Pending -> Accepted\n")
    assert run("station", "add", "fora1", "--password", PASSWORD + "-new") == "Updated station fora1: password set\n"
    assert Event.objects.filter(kind="station.registration.changed", station_id="fora1",
                                actor="system:station").count() == 2
    assert Event.objects.filter(kind="station.password.set", station_id="fora1").count() == 2


def test_station_add_gives_new_stations_the_unknown_station_policys_status(settings):
    settings.OCPP_UNKNOWN_STATIONS = "pending"
    run("station", "add", "p1")
    run("station", "add", "a1", "--accepted")
    assert dict(Station.objects.values_list("pk", "registration_status")) == {"p1": "Pending", "a1": "Accepted"}


def test_station_add_refusals_write_nothing():
    assert refused("station", "add", "short1", "--password", "too-short") == (
        "A station password needs at least 16 characters")
    assert refused("station", "add", "empty1", "--password", "") == (
        "the password is empty (leave it out to have one generated)")
    assert refused("station", "add", "a" * 65) == f"{'a' * 65!r} is not a station identity (1 to 64 characters, no '/')"
    assert refused("station", "add", "long1", "--name", "n" * 101).endswith("… is longer than 100 characters")
    assert not Station.objects.exists()
    assert "the following arguments are required: station_id" in refused("station", "add")


def test_station_list_and_remove():
    assert run("station", "list") == "No stations\n"
    run("station", "add", "b2", "--password", PASSWORD, "--accepted")
    run("station", "add", "a1", "--name", "Depot", "--password", PASSWORD, "--accepted")
    assert run("station", "list").splitlines() == [
        "ID  NAME   REGISTRATION  SOCKET   PASSWORD  LAST BOOT",
        "a1  Depot  Accepted      offline  yes",
        "b2         Accepted      offline  yes",
    ]
    assert run("station", "remove", "a1") == "Removed station a1\n"
    assert run("station", "remove", "a1") == "No station a1: nothing to remove\n"
    assert list(Station.objects.values_list("pk", flat=True)) == ["b2"]


def test_station_remove_keeps_billing_records_and_connected_stations():
    from django.utils import timezone

    station = Station.objects.create(pk="used1")
    connector = Connector.objects.create(station=station, number=1)
    Transaction.objects.create(station=station, connector=connector, id_tag="T1", meter_start=0,
                               started_at=timezone.now())
    assert refused("station", "remove", "used1") == (
        "station used1 has 1 transaction(s), which are billing records and are kept: "
        "set its registration to Rejected instead")
    Station.objects.create(pk="live1", is_online=True)
    assert refused("station", "remove", "live1") == (
        "station live1 is connected: remove it once its charger is offline")
    assert Station.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_manage_py_station_in_a_process_of_its_own():
    """The real command line: output, exit codes, and the message on stderr without a traceback."""
    env = {**os.environ, "DATABASE_URL": server_database_url(), "LOG_LEVEL": "WARNING"}

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)

    added = manage("station", "add", "proc1", "--password", PASSWORD, "--accepted")
    assert (added.returncode, added.stdout) == (0, "Created station proc1: registration Accepted, password set\n")
    again = manage("station", "add", "proc1", "--password", PASSWORD, "--accepted")
    assert (again.returncode, again.stdout) == (0, "Station proc1 unchanged\n")
    bad = manage("station", "add", "proc2", "--password", "short")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "CommandError: A station password needs at least 16 characters\n"
    usage = manage("station", "frobnicate")
    assert usage.returncode == 2 and "invalid choice: 'frobnicate'" in usage.stderr


@pytest.mark.django_db(transaction=True)
async def test_a_station_added_with_a_password_connects_with_it_and_boots(server, settings, charger_factory):
    """What an operator does for a new charger, end to end: add it, configure the charger, it boots."""
    settings.OCPP_REQUIRE_AUTH = True
    settings.OCPP_UNKNOWN_STATIONS = "reject"
    out = await sync_to_async(run)("station", "add", "cp-new", "--password", PASSWORD, "--accepted")
    assert out == "Created station cp-new: registration Accepted, password set\n"
    with pytest.raises(websockets.InvalidStatus) as wrong:
        await connect(f"{server}/ocpp", "cp-new", PASSWORD + "x")
    assert wrong.value.response.status_code == 403
    charger = await charger_factory("cp-new", connectors=1, password=PASSWORD, boot=False)
    assert await charger.cp.boot() == "Accepted"
    station = await Station.objects.aget(pk="cp-new")
    assert station.is_online and station.last_boot_at is not None and station.vendor == "CSMS"
