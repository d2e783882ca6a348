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

from stations.actors import Actor, ActorKind
from stations.models import Connector, Evse, IdTag, RemoteStartRequest, Station, Transaction

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
    IdTag = apps.get_model("stations", "IdTag")
    Transaction = apps.get_model("stations", "Transaction")
    RemoteStartRequest = apps.get_model("stations", "RemoteStartRequest")
    ApiKey = apps.get_model("mobileapi", "ApiKey")
    User = apps.get_model("auth", "User")
    station = Station.objects.create(id="old1")
    connectors = {n: Connector.objects.create(station=station, number=n) for n in (0, 1, 2)}
    fleet = IdTag.objects.create(id_tag="FLEET")
    IdTag.objects.create(id_tag="CARD-1", parent=fleet)
    key = ApiKey.objects.create(name="Partner app", key_hash="0" * 64, prefix="csk_0000")
    agent = User.objects.create(username="agent", is_staff=True)
    now = timezone.now()
    by_charger = Transaction.objects.create(station=station, connector=connectors[1], id_tag="CARD-1", meter_start=0,
                                            started_at=now, meter_stop=1500, stopped_at=now, energy_wh=1500)
    by_key = Transaction.objects.create(station=station, connector=connectors[2], id_tag="APP-1", meter_start=10,
                                        started_at=now, started_by_key=key, start_correlation_id="corr-1")
    by_staff = Transaction.objects.create(station=station, connector=connectors[1], id_tag="SUPPORT-1",
                                          meter_start=1500, started_at=now, started_by_user=agent)
    RemoteStartRequest.objects.create(station=station, connector_number=2, id_tag="APP-1", correlation_id="corr-1",
                                      api_key=key, transaction=by_key)
    RemoteStartRequest.objects.create(station=station, connector_number=1, id_tag="SUPPORT-1", user=agent)
    return {"by_charger": by_charger.pk, "by_key": by_key.pk, "by_staff": by_staff.pk, "key": key.pk,
            "agent": agent.pk}


@pytest.mark.django_db(transaction=True)
def test_a_database_of_the_schema_before_is_migrated(old_apps):
    ids = old_network(old_apps)
    migrate()

    evses = {evse.number: evse for evse in Evse.objects.filter(station_id="old1")}
    assert sorted(evses) == [1, 2]
    connectors = {c.number: c for c in Connector.objects.filter(station_id="old1")}
    assert connectors[0].evse_id is None
    assert [(connectors[n].evse_id, connectors[n].connector_id) for n in (1, 2)] == [(evses[1].pk, 1), (evses[2].pk, 1)]
    assert Station.objects.get(pk="old1").ocpp_version == "1.6"
    for name, evse_number in (("by_charger", 1), ("by_key", 2), ("by_staff", 1)):
        tx = Transaction.objects.get(pk=ids[name])
        assert (tx.evse_id, tx.charger_transaction_id) == (evses[evse_number].pk, str(tx.pk))

    tokens = {tag.id_tag: (tag.type, tag.group_id) for tag in IdTag.objects.all()}
    assert tokens == {"FLEET": ("ISO14443", ""), "CARD-1": ("ISO14443", "FLEET")}

    starters = {name: Transaction.objects.get(pk=ids[name]).starter for name in ("by_charger", "by_key", "by_staff")}
    assert starters == {
        "by_charger": Actor(ActorKind.CHARGER),
        "by_key": Actor(ActorKind.API_KEY, str(ids["key"]), "Partner app"),
        "by_staff": Actor(ActorKind.USER, str(ids["agent"]), "agent"),
    }
    by_key = Transaction.objects.get(pk=ids["by_key"])
    assert (by_key.started_by, by_key.started_by_key_id, by_key.starter.label) == (
        f"apikey:{ids['key']}", ids["key"], "API key: Partner app")
    requests = {r.id_tag: (r.actor, r.actor_name, r.transaction_id) for r in RemoteStartRequest.objects.all()}
    assert requests == {"APP-1": (f"apikey:{ids['key']}", "Partner app", ids["by_key"]),
                        "SUPPORT-1": (f"user:{ids['agent']}", "agent", None)}


@pytest.mark.django_db(transaction=True)
def test_migrating_back_restores_the_references(old_apps):
    ids = old_network(old_apps)
    migrate()
    apps = migrate(BEFORE)

    Transaction = apps.get_model("stations", "Transaction")
    starters = {tx.pk: (tx.started_by_key_id, tx.started_by_user_id) for tx in Transaction.objects.all()}
    assert starters == {ids["by_charger"]: (None, None), ids["by_key"]: (ids["key"], None),
                        ids["by_staff"]: (None, ids["agent"])}
    RemoteStartRequest = apps.get_model("stations", "RemoteStartRequest")
    assert {(r.api_key_id, r.user_id) for r in RemoteStartRequest.objects.all()} == {(ids["key"], None),
                                                                                     (None, ids["agent"])}
    IdTag = apps.get_model("stations", "IdTag")
    assert IdTag.objects.get(id_tag="CARD-1").parent.id_tag == "FLEET"
