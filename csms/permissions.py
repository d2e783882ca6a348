"""Staff groups, kept in step with the models after every ``migrate``.

``support``: views everything, acts on chargers (commands, accept/reject),
manages idTags and ends mobile sessions; cannot manage API keys, tariffs,
station settings or station passwords. Superusers do everything.
"""

from __future__ import annotations

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

SUPPORT_GROUP = "support"
SUPPORT_APPS = ("csms", "stations", "mobileapi")
SUPPORT_EXTRA = (
    "stations.operate_station",
    "stations.add_idtag",
    "stations.change_idtag",
    "stations.delete_idtag",
    "mobileapi.end_mobilesession",
)


def support_permissions(permission_model, using: str = "default") -> list:
    views = permission_model.objects.using(using).filter(
        content_type__app_label__in=SUPPORT_APPS, codename__startswith="view_"
    )
    extra = [
        permission_model.objects.using(using).get(content_type__app_label=app, codename=codename)
        for app, codename in (name.split(".") for name in SUPPORT_EXTRA)
    ]
    return [*views, *extra]


def ensure_groups(sender=None, apps=global_apps, using="default", **kwargs) -> None:
    """post_migrate: create the support group with its permissions (idempotent)."""
    if getattr(sender, "name", None) != "csms":
        return
    for config in global_apps.get_app_configs():  # permissions of apps migrated after csms
        create_permissions(config, verbosity=0, using=using)
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.using(using).get_or_create(name=SUPPORT_GROUP)
    group.permissions.set(support_permissions(Permission, using))
