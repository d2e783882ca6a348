"""The version-neutral structure: EVSEs, the station's OCPP version, the charger's
transaction id and the token's type and group id.

Existing data was all OCPP 1.6's, so:

- each connector *n* >= 1 becomes connector 1 of a new EVSE *n* of its station
  (connector 0, the station itself, has no EVSE), and each transaction gets its
  connector's EVSE;
- a transaction's ``charger_transaction_id`` is its id as text (the 1.6
  transactionId the CSMS gave);
- stations speak 1.6 and tokens are ISO14443 (the defaults); the group ids
  are filled from ``parent`` in 0006, which replaces it.

The schema changes come first and the data last: on PostgreSQL, altering a
table after rows changed their foreign keys in the same transaction fails
("pending trigger events").
"""

from __future__ import annotations

import django.db.models.deletion
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Cast

BATCH = 1000


def add_evses_and_charger_ids(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    Connector = apps.get_model("stations", "Connector")
    Evse = apps.get_model("stations", "Evse")
    Transaction = apps.get_model("stations", "Transaction")
    pairs = Connector.objects.filter(number__gt=0).values_list("station_id", "number").distinct()
    Evse.objects.bulk_create((Evse(station_id=station_id, number=number) for station_id, number in pairs.iterator()),
                             batch_size=BATCH)
    evse = Evse.objects.filter(station_id=OuterRef("station_id"), number=OuterRef("number")).values("pk")[:1]
    Connector.objects.filter(number__gt=0).update(evse=Subquery(evse))
    connector_evse = Connector.objects.filter(pk=OuterRef("connector_id")).values("evse_id")[:1]
    Transaction.objects.update(evse=Subquery(connector_evse),
                               charger_transaction_id=Cast("id", output_field=models.CharField(max_length=36)))


class Migration(migrations.Migration):

    dependencies = [
        ("stations", "0004_plausibility"),
    ]

    operations = [
        migrations.CreateModel(
            name="Evse",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("number", models.PositiveIntegerField(help_text="OCPP 2.0.1 evseId (>= 1); for 1.6 the connectorId")),
                ("availability", models.CharField(choices=[("Operative", "Operative"), ("Inoperative", "Inoperative")],
                                                  default="Operative", max_length=16)),
                ("station", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="evses",
                                              to="stations.station")),
            ],
            options={
                "verbose_name": "EVSE",
                "ordering": ["station_id", "number"],
                "constraints": [models.UniqueConstraint(fields=("station", "number"), name="unique_evse_number")],
            },
        ),
        migrations.AddField(
            model_name="station",
            name="ocpp_version",
            field=models.CharField(choices=[("1.6", "OCPP 1.6J"), ("2.0.1", "OCPP 2.0.1")], default="1.6",
                                   help_text="The OCPP version of its last connection", max_length=8),
        ),
        migrations.AlterModelOptions(
            name="connector",
            options={"ordering": ["station_id", "number", "connector_id"]},
        ),
        migrations.RemoveConstraint(
            model_name="connector",
            name="unique_connector_number",
        ),
        migrations.AddField(
            model_name="connector",
            name="evse",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="connectors", to="stations.evse"),
        ),
        migrations.AddField(
            model_name="connector",
            name="connector_id",
            field=models.PositiveIntegerField(default=1, help_text="The connector's number within its EVSE"),
        ),
        migrations.AlterField(
            model_name="connector",
            name="number",
            field=models.PositiveIntegerField(
                help_text="Its EVSE's number (OCPP 1.6 connectorId); 0 is the station itself"),
        ),
        migrations.AddConstraint(
            model_name="connector",
            constraint=models.UniqueConstraint(fields=("station", "number", "connector_id"),
                                               name="unique_connector_number"),
        ),
        migrations.AddField(
            model_name="transaction",
            name="evse",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="transactions", to="stations.evse"),
        ),
        migrations.AddField(
            model_name="transaction",
            name="charger_transaction_id",
            field=models.CharField(blank=True, help_text="The charger's transaction id", max_length=36),
        ),
        migrations.AddConstraint(
            model_name="transaction",
            constraint=models.UniqueConstraint(condition=models.Q(("charger_transaction_id", ""), _negated=True),
                                               fields=("station", "charger_transaction_id"),
                                               name="unique_charger_transaction_id"),
        ),
        migrations.AlterModelOptions(
            name="idtag",
            options={"ordering": ["id_tag"], "verbose_name": "idTag (token)", "verbose_name_plural": "idTags (tokens)"},
        ),
        migrations.AddField(
            model_name="idtag",
            name="type",
            field=models.CharField(
                choices=[("ISO14443", "ISO14443"), ("ISO15693", "ISO15693"), ("eMAID", "eMAID"), ("Central", "Central"),
                         ("KeyCode", "KeyCode"), ("Local", "Local"), ("MacAddress", "MacAddress"),
                         ("NoAuthorization", "NoAuthorization")],
                default="ISO14443", max_length=16),
        ),
        migrations.AddField(
            model_name="idtag",
            name="group_id",
            field=models.CharField(blank=True, max_length=36,
                                   help_text="Tokens of one group may stop each other's sessions (1.6 parentIdTag)"),
        ),
        migrations.RunPython(add_evses_and_charger_ids, migrations.RunPython.noop),
    ]
