"""The version-neutral migrations move a database made by the schema before them.

The test migrates the test database back to that schema, writes rows through
its historical models (a station with connectors, tokens with a parent, a
transaction started by an API key and one by staff, remote start requests),
migrates forward and checks where the data went. The database is left at the
latest migration for the other tests, whatever the outcome.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.state import StateApps
from django.utils import timezone

from stations.models import Connector, Evse, Station, Transaction

BEFORE = [("stations", "0004_plausibility"), ("mobileapi", "0003_mobilesession")]


def migrate(targets: list[tuple[str, str]] | None = None) -> StateApps:
    """Migrate to ``targets`` (default: the latest of every app); the historical apps there."""
    executor = MigrationExecutor(connection)
    targets = targets or executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def old_apps() -> Iterator[StateApps]:
    try:
        yield migrate(BEFORE)
    finally:
        migrate()


def old_network(apps: StateApps) -> dict[str, int]:
    """Today's rows, as the schema before the migrations has them; their ids by name."""
    Station = apps.get_model("stations", "Station")
    Connector = apps.get_model("stations", "Connector")
    Transaction = apps.get_model("stations", "Transaction")
    station = Station.objects.create(id="old1")
    connectors = {n: Connector.objects.create(station=station, number=n) for n in (0, 1, 2)}
    now = timezone.now()
    by_charger = Transaction.objects.create(station=station, connector=connectors[1], id_tag="CARD-1", meter_start=0,
                                            started_at=now, meter_stop=1500, stopped_at=now, energy_wh=1500)
    running = Transaction.objects.create(station=station, connector=connectors[2], id_tag="CARD-1", meter_start=10,
                                         started_at=now)
    return {"by_charger": by_charger.pk, "running": running.pk}


@pytest.mark.django_db(transaction=True)
def test_a_database_of_todays_schema_is_migrated(old_apps):
    ids = old_network(old_apps)
    migrate()

    evses = {evse.number: evse for evse in Evse.objects.filter(station_id="old1")}
    assert sorted(evses) == [1, 2]
    connectors = {c.number: c for c in Connector.objects.filter(station_id="old1")}
    assert connectors[0].evse_id is None
    assert [(connectors[n].evse_id, connectors[n].connector_id) for n in (1, 2)] == [(evses[1].pk, 1), (evses[2].pk, 1)]
    assert Station.objects.get(pk="old1").ocpp_version == "1.6"
    for name, evse_number in (("by_charger", 1), ("running", 2)):
        tx = Transaction.objects.get(pk=ids[name])
        assert (tx.evse_id, tx.charger_transaction_id) == (evses[evse_number].pk, str(tx.pk))
