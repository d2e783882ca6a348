"""Staff groups, kept in step with the models after every ``migrate``.

``support``: views everything, acts on chargers (commands, accept/reject),
manages idTags and ends mobile sessions; cannot manage API keys, tariffs,
station settings or station passwords. Superusers do everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

if TYPE_CHECKING:
    from django.apps import AppConfig
    from django.apps.registry import Apps
    from django.contrib.auth.models import Permission

SUPPORT_GROUP = "support"
SUPPORT_APPS = ("csms", "stations", "mobileapi")
SUPPORT_EXTRA = (
    "stations.operate_station",
    "stations.add_idtag",
    "stations.change_idtag",
    "stations.delete_idtag",
    "mobileapi.end_mobilesession",
)


def support_permissions(permission_model: type[Permission], using: str = "default") -> list[Permission]:
    views = permission_model.objects.using(using).filter(
        content_type__app_label__in=SUPPORT_APPS, codename__startswith="view_"
    )
    extra = [
        permission_model.objects.using(using).get(content_type__app_label=app, codename=codename)
        for app, codename in (name.split(".") for name in SUPPORT_EXTRA)
    ]
    return [*views, *extra]


def ensure_groups(
    sender: AppConfig | None = None, apps: Apps = global_apps, using: str = "default", **kwargs: Any
) -> None:
    """post_migrate: create the support group with its permissions (idempotent)."""
    if getattr(sender, "name", None) != "csms":
        return
    for config in global_apps.get_app_configs():  # permissions of apps migrated after csms
        create_permissions(config, verbosity=0, using=using)
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.using(using).get_or_create(name=SUPPORT_GROUP)
    group.permissions.set(support_permissions(Permission, using))
