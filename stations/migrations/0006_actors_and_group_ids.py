"""Who acted, as the charging side records it, and the tokens' group ids.

``Transaction.started_by_key``/``started_by_user`` and
``RemoteStartRequest.api_key``/``user`` pointed into the mobile API and the
auth tables; they become an actor (``stations.actors``: ``apikey:<id>``,
``user:<id>``, empty for the charger) with the name it had (the key's name, the
username). A token's parent becomes its group id (1.6's parentIdTag is the
group id). 0007 then drops the old columns.

Migrating back restores the references whose key, user or parent token still
exists.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Cast, Concat

# (model, its API key column, its user column, the actor column, the actor's name column)
ACTORS = (
    ("Transaction", "started_by_key", "started_by_user", "started_by", "started_by_name"),
    ("RemoteStartRequest", "api_key", "user", "actor", "actor_name"),
)


def _as_actor(kind: str, column: str) -> Concat:
    return Concat(Value(f"{kind}:"), Cast(column, output_field=models.CharField(max_length=20)),
                  output_field=models.CharField(max_length=100))


def record_actors_and_groups(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    ApiKey = apps.get_model("mobileapi", "ApiKey")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    username = get_user_model().USERNAME_FIELD
    for model_name, key, user, actor, name in ACTORS:
        Model = apps.get_model("stations", model_name)
        Model.objects.filter(**{f"{key}__isnull": False}).update(**{
            actor: _as_actor("apikey", f"{key}_id"),
            name: Subquery(ApiKey.objects.filter(pk=OuterRef(f"{key}_id")).values("name")[:1]),
        })
        Model.objects.filter(**{f"{key}__isnull": True, f"{user}__isnull": False}).update(**{
            actor: _as_actor("user", f"{user}_id"),
            name: Subquery(User.objects.filter(pk=OuterRef(f"{user}_id")).values(username)[:1]),
        })
    IdTag = apps.get_model("stations", "IdTag")
    IdTag.objects.filter(parent__isnull=False).update(
        group_id=Subquery(IdTag.objects.filter(pk=OuterRef("parent_id")).values("id_tag")[:1])
    )


def restore_references(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    ApiKey = apps.get_model("mobileapi", "ApiKey")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    for model_name, key, user, actor, _ in ACTORS:
        Model = apps.get_model("stations", model_name)
        for kind, column, Target in (("apikey", key, ApiKey), ("user", user, User)):
            rows = dict(Model.objects.filter(**{f"{actor}__startswith": f"{kind}:"}).values_list("pk", actor))
            wanted = {pk: text.partition(":")[2] for pk, text in rows.items()}
            existing = {str(pk) for pk in Target.objects.filter(
                pk__in=[ref for ref in wanted.values() if ref.isdigit()]).values_list("pk", flat=True)}
            for pk, ref in wanted.items():
                if ref in existing:
                    Model.objects.filter(pk=pk).update(**{f"{column}_id": int(ref)})
    IdTag = apps.get_model("stations", "IdTag")
    IdTag.objects.exclude(group_id="").update(
        parent=Subquery(IdTag.objects.filter(id_tag=OuterRef("group_id")).values("pk")[:1])
    )
    if schema_editor.connection.vendor == "postgresql":
        # Check the restored foreign keys now: the actor columns are dropped next, in this
        # transaction, and PostgreSQL refuses to alter a table with checks still pending.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):

    dependencies = [
        ("stations", "0005_evses_and_charger_ids"),
    ]

    operations = [
        migrations.AddField(
            model_name="transaction",
            name="started_by",
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.AddField(
            model_name="transaction",
            name="started_by_name",
            field=models.CharField(blank=True, help_text="The starter's name at the time", max_length=150),
        ),
        migrations.AddField(
            model_name="remotestartrequest",
            name="actor",
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.AddField(
            model_name="remotestartrequest",
            name="actor_name",
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.RunPython(record_actors_and_groups, restore_references),
    ]
