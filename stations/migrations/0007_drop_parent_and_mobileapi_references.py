"""The columns 0006 replaced: the charging side no longer refers to the mobile API or
the auth tables, and a token's group is its group id.

Apart from 0006, so that no table is altered in the transaction that rewrote its rows
(PostgreSQL refuses while their foreign-key checks are pending).
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("stations", "0006_actors_and_group_ids"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="transaction",
            name="started_by_key",
        ),
        migrations.RemoveField(
            model_name="transaction",
            name="started_by_user",
        ),
        migrations.RemoveField(
            model_name="remotestartrequest",
            name="api_key",
        ),
        migrations.RemoveField(
            model_name="remotestartrequest",
            name="user",
        ),
        migrations.RemoveField(
            model_name="idtag",
            name="parent",
        ),
    ]
