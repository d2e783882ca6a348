"""Measured pitfall: SQLite under concurrent writers from several processes.

With Django's defaults, 409 of 800 read-then-write transactions from 4
processes failed with "database is locked"; the embedded default uses
IMMEDIATE transactions, WAL and synchronous=NORMAL, and must lose none.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from stations.models import Connector, Station
from tests.conftest import ROOT, server_database_url

pytestmark = pytest.mark.django_db(transaction=True)

WRITER = """
from stations import services
for n in range(200):
    # read-then-write: get_or_create the connector, then update it and log an event
    services.update_connector_status("shared", {connector}, "Charging" if n % 2 else "Available")
print("ok")
"""


def test_four_processes_writing_at_once_lose_nothing():
    if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        pytest.skip("about the embedded SQLite database")
    Station.objects.create(pk="shared")
    env = {**os.environ, "DATABASE_URL": server_database_url(), "LOG_LEVEL": "WARNING"}
    writers = [
        subprocess.Popen([sys.executable, "manage.py", "shell", "-c", WRITER.format(connector=c)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in (1, 2, 3, 4)
    ]
    results = [w.communicate(timeout=120) for w in writers]
    assert [w.returncode for w in writers] == [0, 0, 0, 0], [err[-800:] for _, err in results]
    assert all("locked" not in err for _, err in results)
    from csms.models import Event

    assert Event.objects.filter(kind="connector.status.changed", station_id="shared").count() == 800
    assert Connector.objects.filter(station_id="shared").count() == 4
