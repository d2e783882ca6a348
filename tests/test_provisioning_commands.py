"""The provisioning commands: station, idtag and import_network.

What an operator (or another project's test suite) types to set up a network: each
command is idempotent, says what it did, and refuses with a message and a non-zero exit.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings

from csms.models import Event
from simulator.v16 import connect
from stations.models import Connector, IdTag, Station, Transaction
from tests.conftest import ROOT, Charger, server_database_url

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

def test_station_add_generates_a_password_once_and_is_idempotent(settings: Settings) -> None:
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


def test_station_add_updates_what_is_given_and_says_so(settings: Settings) -> None:
    settings.OCPP_UNKNOWN_STATIONS = "reject"
    assert run("station", "add", "fora1", "--password", PASSWORD) == (
        "Created station fora1: registration Pending, password set\n")
    assert run("station", "add", "fora1", "--accepted", "--name", "Depot", "--password", PASSWORD) == (
        "Updated station fora1: name '' -> 'Depot', registration Pending -> Accepted\n")
    assert run("station", "add", "fora1", "--password", PASSWORD + "-new") == "Updated station fora1: password set\n"
    assert Event.objects.filter(kind="station.registration.changed", station_id="fora1",
                                actor="system:station").count() == 2
    assert Event.objects.filter(kind="station.password.set", station_id="fora1").count() == 2


def test_station_add_gives_new_stations_the_unknown_station_policys_status(settings: Settings) -> None:
    settings.OCPP_UNKNOWN_STATIONS = "pending"
    run("station", "add", "p1")
    run("station", "add", "a1", "--accepted")
    assert dict(Station.objects.values_list("pk", "registration_status")) == {"p1": "Pending", "a1": "Accepted"}


def test_station_add_refusals_write_nothing() -> None:
    assert refused("station", "add", "short1", "--password", "too-short") == (
        "A station password needs at least 16 characters")
    assert refused("station", "add", "empty1", "--password", "") == (
        "the password is empty (leave it out to have one generated)")
    assert refused("station", "add", "a" * 65).endswith("is not a station identity (1 to 64 characters, no spaces, "
                                                       "'/' or '\\')")
    assert refused("station", "add", "two words").startswith("'two words' is not a station identity")
    assert refused("station", "add", "long1", "--name", "n" * 101).endswith("… is longer than 100 characters")
    assert not Station.objects.exists()
    assert "the following arguments are required: station_id" in refused("station", "add")


def test_station_list_and_remove() -> None:
    assert run("station", "list") == "No stations\n"
    run("station", "add", "b2", "--password", PASSWORD, "--accepted")
    run("station", "add", "a1", "--name", "Depot", "--password", PASSWORD, "--accepted")
    assert run("station", "list").splitlines() == [
        "ID  NAME   REGISTRATION  SOCKET   OCPP  PASSWORD  LAST BOOT",
        "a1  Depot  Accepted      offline  1.6   yes",
        "b2         Accepted      offline  1.6   yes",
    ]
    assert run("station", "remove", "a1") == "Removed station a1\n"
    assert run("station", "remove", "a1") == "No station a1: nothing to remove\n"
    assert list(Station.objects.values_list("pk", flat=True)) == ["b2"]


def test_station_remove_keeps_billing_records_and_connected_stations() -> None:
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
def test_manage_py_station_in_a_process_of_its_own() -> None:
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
async def test_a_station_added_with_a_password_connects_with_it_and_boots(
    server: str, settings: Settings, charger_factory: Callable[..., Awaitable[Charger]]
) -> None:
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


# --- idtag ------------------------------------------------------------------------------------

def test_idtag_add_is_idempotent_and_updates_what_is_given() -> None:
    assert run("idtag", "add", "04A2B3C4") == "Created token 04A2B3C4: type ISO14443, status Accepted\n"
    assert run("idtag", "add", "04A2B3C4") == "Token 04A2B3C4 unchanged\n"
    out = run("idtag", "add", "04A2B3C4", "--type", "Central", "--status", "Blocked", "--group", "FLEET-1",
              "--expiry", "2027-01-31")
    assert out == ("Updated token 04A2B3C4: type ISO14443 -> Central, status Accepted -> Blocked, "
                   "group '' -> FLEET-1, expiry none -> 2027-01-31T00:00:00.000Z\n")
    token = IdTag.objects.get(id_tag="04A2B3C4")
    assert (token.type, token.status, token.group_id) == ("Central", "Blocked", "FLEET-1")
    assert token.expiry_date == dt.datetime(2027, 1, 31, tzinfo=dt.UTC)
    assert run("idtag", "add", "04A2B3C4", "--status", "Blocked", "--expiry", "2027-01-31T00:00:00Z") == (
        "Token 04A2B3C4 unchanged\n")
    assert run("idtag", "add", "04A2B3C4", "--group", "", "--expiry", "") == (
        "Updated token 04A2B3C4: group FLEET-1 -> '', expiry 2027-01-31T00:00:00.000Z -> none\n")


def test_idtag_refusals_write_nothing() -> None:
    assert refused("idtag", "add", "T" * 37) == f"token {'T' * 37!r} is longer than 36 characters"
    assert refused("idtag", "add", " padded") == (
        "token ' padded' must be printable ASCII characters, without spaces around them")
    assert refused("idtag", "add", "T1", "--expiry", "tomorrow") == (
        "expiry 'tomorrow' is not an ISO 8601 date or time, e.g. 2027-01-31T00:00:00Z")
    assert refused("idtag", "add", "T1", "--group", "G" * 37).endswith("is longer than 36 characters")
    assert "invalid choice: 'Sometimes'" in refused("idtag", "add", "T1", "--status", "Sometimes")
    assert "invalid choice: 'RFID'" in refused("idtag", "add", "T1", "--type", "RFID")
    assert not IdTag.objects.exists()


def test_idtag_list_and_remove() -> None:
    assert run("idtag", "list") == "No tokens\n"
    run("idtag", "add", "B-2", "--type", "Central")
    run("idtag", "add", "A-1", "--group", "FLEET", "--expiry", "2027-01-31T12:00:00+02:00")
    assert run("idtag", "list").splitlines() == [
        "TOKEN  TYPE      STATUS    GROUP  EXPIRY",
        "A-1    ISO14443  Accepted  FLEET  2027-01-31T10:00:00.000Z",
        "B-2    Central   Accepted",
    ]
    assert run("idtag", "remove", "A-1") == "Removed token A-1\n"
    assert run("idtag", "remove", "A-1") == "No token A-1: nothing to remove\n"
    assert list(IdTag.objects.values_list("id_tag", flat=True)) == ["B-2"]


# --- import_network ---------------------------------------------------------------------------

NETWORK = """\
kind,id,name,accepted,password,type,status,group,expiry
# the car park
station,imp1,Car park,yes,,,,,
station,imp2,,,a-long-password-for-imp2,,,,

token,04A2B3C4D5,,,,ISO14443,Accepted,FLEET-1,2027-01-31T00:00:00Z
token,APP-1,,,,Central,,,
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "network.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_import_network_creates_then_changes_nothing(tmp_path: Path, settings: Settings) -> None:
    settings.OCPP_UNKNOWN_STATIONS = "reject"
    path = write(tmp_path, NETWORK)
    lines = run("import_network", path).splitlines()
    assert lines[0] == "Created station imp1: registration Accepted, name 'Car park', password generated"
    assert lines[1].startswith("  password (shown once): ")
    assert lines[2:] == [
        "Created station imp2: registration Pending, password set",
        "Created token 04A2B3C4D5: type ISO14443, status Accepted, group FLEET-1, expiry 2027-01-31T00:00:00.000Z",
        "Created token APP-1: type Central, status Accepted",
        f"{path}: 4 created, 0 updated, 0 unchanged",
    ]
    hashes = dict(Station.objects.values_list("pk", "password_hash"))
    events = Event.objects.count()
    assert run("import_network", path) == f"{path}: nothing changed, its 4 row(s) match the database\n"
    assert dict(Station.objects.values_list("pk", "password_hash")) == hashes
    assert Event.objects.count() == events
    assert Event.objects.filter(actor="system:import_network").exists()


def test_import_network_updates_only_what_differs(tmp_path: Path) -> None:
    run("import_network", write(tmp_path, NETWORK))
    changed = NETWORK.replace("token,APP-1,,,,Central,,,", "token,APP-1,,,,Central,Blocked,,")
    path = write(tmp_path, changed)
    assert run("import_network", path).splitlines() == [
        "Updated token APP-1: status Accepted -> Blocked",
        f"{path}: 0 created, 1 updated, 3 unchanged",
    ]


def test_import_network_with_errors_imports_nothing_and_names_every_line(tmp_path: Path) -> None:
    run("idtag", "add", "KEEP-1")
    path = write(tmp_path, """\
kind,id,name,accepted,password,type,status,group,expiry
station,new1,New one,yes,,,,,
station,new2,,,short,,,,
token,NEW-T,,,,Central,,,
token,APP-2,a name,,,,,,
stove,x,,,,,,,
token,NEW-T,,,,,,,
token,APP-3,,,,,Maybe,,
station,new3,,maybe,,,,,
token,KEEP-1,,,,,Blocked,,
station,a/b,,,,,,,
""")
    message = refused("import_network", path)
    assert message.splitlines() == [
        f"{path}: nothing imported, 7 problem(s):",
        "line 3: station new2: A station password needs at least 16 characters",
        "line 5: a token takes no name (only expiry, group, status, type)",
        "line 6: kind 'stove' is neither station nor token",
        "line 7: token NEW-T is already on line 4",
        "line 8: token APP-3: status 'Maybe' is not one of Accepted, Blocked, Expired, Invalid",
        "line 9: accepted 'maybe' is neither yes nor no",
        "line 11: station a/b: 'a/b' is not a station identity (1 to 64 characters, no spaces, '/' or '\\')",
    ]
    assert not Station.objects.exists()
    assert list(IdTag.objects.values_list("id_tag", "status")) == [("KEEP-1", "Accepted")]
    assert not Event.objects.exists()


@pytest.mark.parametrize(("text", "problem"), [
    ("", "line 1: the file is empty: it needs a header row (kind,id,...) and rows"),
    ("kind,id,colour\n", "line 1: the header needs the columns kind and id and may have name, accepted, password, "
                         "type, status, group, expiry, each once; it has kind,id,colour"),
    ("id,name\nfora1,x\n", "line 1: the header needs the columns kind and id and may have name, accepted, password, "
                           "type, status, group, expiry, each once; it has id,name"),
    ("kind,id\nstation\n", "line 2: 1 cells where the header has 2"),
    ("kind,id\nstation,\n", "line 2: the id is empty"),
])
def test_import_network_refuses_a_malformed_file(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    assert refused("import_network", path).splitlines()[1:] == [problem]


def test_import_network_takes_a_spreadsheets_export(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark and ends lines with CRLF; column order is free."""
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffid,kind,accepted\r\nxl1,station,YES\r\n".encode())
    assert "Created station xl1: registration Accepted, password generated" in run("import_network", str(path))
    assert refused("import_network", str(tmp_path / "missing.csv")).startswith(
        f"cannot read {tmp_path / 'missing.csv'}: ")
